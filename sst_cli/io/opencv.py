"""cv2, the codec behind every image read and write: the one module that imports it.

Arrays cross this module's edge in our layout, (H, W, C) with RGB(A) order; cv2's BGR(A) order stays
inside (:func:`swap_rb` is the one place colour order changes). Set up on import:

- cv2's own cap on decoded pixels (OPENCV_IO_MAX_IMAGE_PIXELS, 2**30 by default) is lifted unless the user
  set it: size is our business, checked against free memory before upscaling (cv2 reads the variable
  once, when it loads, so this must come before ``import cv2``);
- cv2's log is silenced unless OPENCV_LOG_LEVEL is set: a file it cannot decode becomes one sentence in an
  SSTError, so its own lines on stderr would only repeat it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 40))

import cv2  # noqa: E402 - after the environment above
import numpy as np  # noqa: E402

from . import png  # noqa: E402

if "OPENCV_LOG_LEVEL" not in os.environ:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

VERSION = cv2.__version__
_EXT = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif", "bmp": ".bmp"}
# cv2 carries an ICC profile into these (imencodeWithMetadata, opencv >= 4.13); TIFF gets it from containers
ICC_FORMATS = ("png", "jpg", "webp")
# Colour under fully transparent pixels of lossless WebP is kept from opencv 5 on (libwebp's "exact").
_WEBP_EXACT = getattr(cv2, "IMWRITE_WEBP_LOSSLESS_MODE", None)
# TIFF's deflate level, where this opencv takes one (without it: libtiff's default, 6).
_TIFF_LEVEL = getattr(cv2, "IMWRITE_TIFF_COMPRESSION_LEVEL", None)


def swap_rb(a: np.ndarray) -> np.ndarray:
    """BGR(A) <-> RGB(A) of an (H, W, C) array; grey and grey + alpha are returned as they are."""
    if a.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_BGR2RGB)
    if a.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_BGRA2RGBA)
    return a


def interleave(planes: list[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    """C planes of (H, W) -> (H, W, C), written into ``out`` (contiguous, that shape and dtype) when given.

    cv2's merge: from the planar float bands the model gives, 3.6x faster than numpy's strided copy
    (the quantised rows of a 7680x4320 output: 0.07 s against 0.24 s on one core)."""
    shape, dtype = (*planes[0].shape, len(planes)), planes[0].dtype
    if out is not None and (out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous):
        # cv2 would quietly allocate a new array and leave ``out`` as it was
        raise ValueError(f"cannot interleave {shape} {dtype} into {out.shape} {out.dtype}")
    if len(planes) == 1:
        if out is None:
            return planes[0][..., None].copy()
        out[..., 0] = planes[0]
        return out
    return cv2.merge(planes, dst=out)


def decode(data: bytes) -> np.ndarray | None:
    """(H, W, C) RGB(A)/grey pixels as stored (alpha, 16 bits and grey kept), or None when cv2 cannot.

    With IMREAD_UNCHANGED cv2 ignores EXIF orientation, except that its TIFF reader applies the TIFF
    orientation tag itself. Grey + alpha and palettes come out expanded to BGR(A).
    """
    try:
        a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if a is None or a.size == 0:
        return None
    return swap_rb(a[..., None] if a.ndim == 2 else a)


def _params(fmt: str, quality: int, dpi: tuple[float, float] | None) -> list[int]:
    if fmt == "png":
        return [cv2.IMWRITE_PNG_COMPRESSION, png.LEVEL]  # libpng's adaptive row filters
    if fmt == "jpg":
        # Standard Huffman tables, not optimised ones: optimising is a second pass over the image that
        # tripled the encode time of a 7680x4320 output (0.44 s against 0.17 s) for 1 % fewer bytes
        # (benchmarks/RESULTS.md#default-path-1080p). The pixels are the same either way.
        chroma = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444 if quality >= 90 else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420
        return [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, chroma,
                cv2.IMWRITE_JPEG_OPTIMIZE, 0]
    if fmt == "webp":
        if quality < 100:
            return [cv2.IMWRITE_WEBP_QUALITY, max(1, quality)]
        exact = [] if _WEBP_EXACT is None else [_WEBP_EXACT, cv2.IMWRITE_WEBP_LOSSLESS_PRESERVE_COLOR]
        return [cv2.IMWRITE_WEBP_QUALITY, 101, *exact]  # above 100: lossless
    if fmt == "tiff":  # cv2's 8 KB strips: on a 12 MP photo as small as 1 MB strips and 25-50 % faster
        out = [cv2.IMWRITE_TIFF_COMPRESSION, cv2.IMWRITE_TIFF_COMPRESSION_ADOBE_DEFLATE,
               cv2.IMWRITE_TIFF_PREDICTOR, cv2.IMWRITE_TIFF_PREDICTOR_HORIZONTAL]
        if _TIFF_LEVEL is not None:  # PNG's zlib level: on a 7680x4320 x4 photo 2.3 s against 5.7 s, 5 % more bytes
            out += [_TIFF_LEVEL, png.LEVEL]
        if dpi:
            out += [cv2.IMWRITE_TIFF_RESUNIT, cv2.IMWRITE_TIFF_RESOLUTION_UNIT_INCH,
                    cv2.IMWRITE_TIFF_XDPI, max(1, round(dpi[0])), cv2.IMWRITE_TIFF_YDPI, max(1, round(dpi[1]))]
        return out
    return []


def encode(pixels: np.ndarray, fmt: str, quality: int = 95, icc_profile: bytes | None = None,
           dpi: tuple[float, float] | None = None) -> bytes:
    """``fmt`` bytes of (H, W, C) pixels with C in 1, 3, 4; an ICC profile is embedded for ICC_FORMATS,
    DPI for TIFF. Raises ValueError with cv2's reason when it cannot encode."""
    ext, params = _EXT[fmt], _params(fmt, quality, dpi)
    a = np.ascontiguousarray(pixels[..., 0]) if pixels.shape[2] == 1 else swap_rb(pixels)
    try:
        if icc_profile and fmt in ICC_FORMATS:
            ok, buf = cv2.imencodeWithMetadata(ext, a, [cv2.IMAGE_METADATA_ICCP],
                                               [np.frombuffer(icc_profile, np.uint8)], params)
        else:
            ok, buf = cv2.imencode(ext, a, params)
    except cv2.error as exc:
        raise ValueError(str(exc).strip().splitlines()[-1]) from None
    if not ok:
        raise ValueError(f"cv2 could not encode {fmt}")
    return buf.tobytes()
