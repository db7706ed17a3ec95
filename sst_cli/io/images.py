"""Reading and writing images as numpy arrays, keeping what users care about.

Decoded images are ``(H, W, C)`` uint8 or uint16 arrays with C = 1 (grey), 2 (grey + alpha), 3 (RGB)
or 4 (RGBA), upright (EXIF orientation applied). 16-bit stays 16-bit end to end.

cv2 (``opencv``) decodes PNG, JPEG, TIFF, WebP, BMP and PNM, and encodes every output format; the file is
read into memory first and decoded from bytes (``imdecode``), so paths with any characters work on every
platform. Pillow reads headers (orientation, ICC profile, DPI; ``probe`` decodes no pixels) and decodes
the rest (see ``pillow``); ``png`` and ``containers`` write what cv2's encoders cannot. Every write goes
to a hidden temporary file in the target folder, is fsynced, then renamed into place, so a crash never
leaves a half-written image.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from ..errors import SSTError
from . import containers, opencv, pillow, png
from .files import reason as _reason
from .files import write_or_explain
from .png import PngWriter

__all__ = ["EIGHT_BIT_ONLY", "MAX_SIDE", "OUTPUT_FORMATS", "ImageData", "PngWriter", "apply_orientation", "encode",
           "PillowImage", "from_float", "from_pil", "output_format", "prepare_for", "probe", "read_image", "save_array",
           "to_float", "to_pil", "write_image"]

OUTPUT_FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif", "bmp": ".bmp"}
_PIL_TO_FORMAT = {"PNG": "png", "JPEG": "jpg", "MPO": "jpg", "WEBP": "webp", "TIFF": "tiff", "BMP": "bmp"}
EIGHT_BIT_ONLY = ("jpg", "webp", "bmp")
# WebP and JPEG cannot hold images wider or taller than these.
MAX_SIDE = {"jpg": 65535, "webp": 16383}

# Pillow's format name -> the modes cv2 decodes faithfully (None: every mode Pillow reports for it).
# The others go to Pillow (see the ``pillow`` module for why).
_CV2_MODES: dict[str, frozenset[str] | None] = {
    "PNG": None, "JPEG": None, "MPO": None, "WEBP": None, "PPM": None, "BMP": None,
    "TIFF": frozenset({"1", "L", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I;16N"}),  # RGBA: 16-bit only
}
# Modes whose samples come out as stored; any other is converted, and a note says so.
_PLAIN_MODES = frozenset({"1", "L", "LA", "RGB", "RGBA", "P", "PA", "I", "I;16", "I;16B", "I;16L", "I;16N"})


@dataclass
class ImageData:
    """Pixels plus the metadata worth carrying to the output."""

    pixels: np.ndarray  # (H, W, C) uint8 or uint16
    format: str = ""  # source format as we name it: png, jpg, webp, tiff, bmp, or Pillow's lower-cased name
    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)  # conversions made while decoding

    @property
    def bits(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def is_grey(self) -> bool:
        return self.channels in (1, 2)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.pixels.shape[1], self.pixels.shape[0]

    @property
    def mode(self) -> str:
        return {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[self.channels] + (";16" if self.bits == 16 else "")


# ------------------------------------------------------------------------------------------ reading
def _checked(path: Path) -> Path:
    """``path`` when it is a file with bytes in it; otherwise why not, in one sentence."""
    try:
        if path.is_dir():
            raise SSTError(f"{path} is a folder, not an image.")
        if path.stat().st_size == 0:
            raise SSTError(f"{path.name} is empty (0 bytes).")
    except FileNotFoundError:
        raise SSTError(f"{path} does not exist.") from None
    except PermissionError:
        raise SSTError(f"{path.name} cannot be read (permission denied).") from None
    return path


def _read_bytes(path: Path) -> bytes:
    try:
        return _checked(path).read_bytes()
    except PermissionError:
        raise SSTError(f"{path.name} cannot be read (permission denied).") from None
    except OSError as exc:
        raise SSTError(f"{path.name} cannot be read ({_reason(exc)}).") from None


def apply_orientation(a: np.ndarray, value: int) -> np.ndarray:
    """Turn stored pixels (H, W, C) upright for EXIF orientation ``value`` (as ImageOps.exif_transpose)."""
    ops: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.transpose(1, 0, 2),
        6: lambda x: np.rot90(x, -1),
        7: lambda x: x[::-1, ::-1].transpose(1, 0, 2),
        8: lambda x: np.rot90(x, 1),
    }
    op = ops.get(value)
    return np.ascontiguousarray(op(a)) if op else a


def probe(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) as the image will be decoded (EXIF rotation applied), reading only the header."""
    path = Path(path)
    with pillow.opened(_checked(path), path.name) as im:
        w, h = pillow.stored_size(im)
        return (h, w) if pillow.orientation(im) in (5, 6, 7, 8) else (w, h)


def _cv2_decodes(im: Image.Image, data: bytes) -> bool:
    modes = _CV2_MODES.get(im.format or "", frozenset())
    if modes is not None and im.mode not in modes:
        return False
    if im.format == "TIFF" and im.mode == "RGBA":  # 8-bit alpha would come back premultiplied
        return set(im.tag_v2.get(258, (8,))) == {16}
    if im.format == "PNG":  # a PNG cut short goes to Pillow, which says so; libpng would print it on stderr
        return png.complete(data)
    return True


def _fold_palette(a: np.ndarray, notes: list[str]) -> np.ndarray:
    """An expanded palette image (RGB or RGBA) as grey (+ alpha) when every palette entry is grey."""
    has_alpha = a.shape[2] == 4
    grey = bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())
    notes.append("palette converted to " + ("grey" if grey else "RGB") + (" + alpha" if has_alpha else ""))
    if grey:
        return np.ascontiguousarray(a[..., [0, 3]] if has_alpha else a[..., :1])
    return a


def _from_cv2(a: np.ndarray, im: Image.Image, data: bytes, notes: list[str]) -> np.ndarray:
    """cv2's pixels in our layout: it expands PNG grey + alpha (and a transparent colour key) to RGBA."""
    if im.format == "PNG":
        kind = png.colour_type(data)
        if kind in (0, 2) and a.shape[2] == 4:
            notes.append("transparent colour key converted to alpha")
        if kind in (0, 4) and a.shape[2] == 4:
            a = np.ascontiguousarray(a[..., [0, 3]])
    if im.mode not in _PLAIN_MODES:
        notes.append(f"{im.mode} converted to RGB")
    return a


def _decode(im: Image.Image, data: bytes, notes: list[str]) -> tuple[np.ndarray, bool]:
    """Pixels in our layout, and whether the decoder has turned them upright already."""
    if _cv2_decodes(im, data):
        pixels = opencv.decode(data)
        if pixels is not None:
            return _from_cv2(pixels, im, data, notes), im.format == "TIFF"  # cv2's TIFF reader applies the tag
        notes.append("decoded by Pillow (cv2 could not)")
    return pillow.decode(im, notes)  # no cv2 decoder for it, or cv2 refused it: Pillow decodes it or says why


def read_image(path: str | os.PathLike[str]) -> ImageData:
    """Decode ``path`` to an upright ``ImageData``; any problem with the file is one-sentence ``SSTError``."""
    path = Path(path)
    data = _read_bytes(path)
    notes: list[str] = []
    try:
        with pillow.opened(io.BytesIO(data), path.name) as im:
            fmt = _PIL_TO_FORMAT.get(im.format or "", (im.format or "").lower())
            if getattr(im, "n_frames", 1) > 1:
                notes.append("first frame only")
            orient, icc, dpi = pillow.orientation(im), im.info.get("icc_profile"), im.info.get("dpi")
            pixels, upright = _decode(im, data, notes)
            if im.mode in ("P", "PA"):
                pixels = _fold_palette(pixels, notes)
    except SSTError:
        raise
    except MemoryError:
        raise SSTError(f"{path.name} is too large to decode in the available memory.") from None
    except (OSError, ValueError, SyntaxError, struct.error, zlib.error, EOFError, IndexError) as exc:
        msg = _reason(exc)
        if "truncated" in msg.lower() or isinstance(exc, EOFError):
            raise SSTError(f"{path.name} is truncated or corrupt ({msg}).") from None
        raise SSTError(f"{path.name} cannot be decoded ({msg}).") from None
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise SSTError(f"{path.name} has no pixels.")
    if orient != 1:
        pixels = pixels if upright else apply_orientation(pixels, orient)
        notes.append(f"EXIF orientation {orient} applied")
    dpi_pair = tuple(float(v) for v in dpi[:2]) if isinstance(dpi, tuple) and len(dpi) >= 2 else None
    return ImageData(np.ascontiguousarray(pixels), fmt, icc if isinstance(icc, bytes) else None, dpi_pair, notes)


# ------------------------------------------------------------------------------ PIL images (the API)
PillowImage = Image.Image  # for isinstance checks and type hints outside io, which imports no Pillow


def from_pil(im: Image.Image) -> ImageData:
    """A PIL image as :func:`read_image` reads a file of it: turned upright by its EXIF orientation, palettes
    expanded (grey ones to grey), modes other than L, LA, RGB and RGBA converted as for a file; with its
    ICC profile."""
    notes: list[str] = []
    orient = pillow.orientation(im)  # before decoding: Pillow may turn a TIFF upright itself and drop the tag
    pixels, upright = pillow.decode(im, notes)
    if im.mode in ("P", "PA"):
        pixels = _fold_palette(pixels, notes)
    if orient != 1 and not upright:
        pixels = apply_orientation(pixels, orient)
    icc = im.info.get("icc_profile")
    return ImageData(np.ascontiguousarray(pixels), (im.format or "").lower(), icc if isinstance(icc, bytes) else None,
                     None, notes)


def to_pil(pixels: np.ndarray, icc_profile: bytes | None = None) -> Image.Image:
    """(H, W[, C]) uint8/uint16 pixels as a PIL image (L, LA, RGB, RGBA, or I;16 for 16-bit grey), carrying
    the ICC profile in ``info`` where Pillow's encoders look for it."""
    im = Image.fromarray(np.ascontiguousarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels))
    if icc_profile:
        im.info["icc_profile"] = icc_profile
    return im


# -------------------------------------------------------------------------------- float conversion
def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 in [0, 1] (no rounding to 8 bits on the way)."""
    scale = 65535.0 if pixels.dtype == np.uint16 else 255.0
    return pixels.astype(np.float32) / np.float32(scale)


def from_float(x: np.ndarray, bits: int) -> np.ndarray:
    """float in [0, 1] -> uint8/uint16 with clipping and round-half-to-even."""
    top = np.float32(65535.0 if bits == 16 else 255.0)
    out = np.multiply(x, top, dtype=np.float32)  # the one temporary; rounding and clipping happen in place
    np.rint(out, out=out)
    np.clip(out, 0, top, out=out)
    return out.astype(np.uint16 if bits == 16 else np.uint8)


# ------------------------------------------------------------------------------------------ writing
def output_format(requested: str, source_format: str) -> str:
    """``same`` -> the input's format when we can write it, else png."""
    fmt = requested.lower()
    if fmt in ("jpeg",):
        fmt = "jpg"
    if fmt in ("tif",):
        fmt = "tiff"
    if fmt == "same":
        return source_format if source_format in OUTPUT_FORMATS else "png"
    if fmt not in OUTPUT_FORMATS:
        raise SSTError(f"unknown output format '{requested}' (use same, png, jpg, webp, tiff or bmp).")
    return fmt


def prepare_for(img: ImageData, fmt: str) -> tuple[ImageData, list[str]]:
    """Fit pixels to what ``fmt`` can hold (8 bits, no alpha, no grey) and say what was given up."""
    notes: list[str] = []
    a = img.pixels
    if fmt in EIGHT_BIT_ONLY and img.bits == 16:
        a = from_float(to_float(a), 8)
        notes.append(f"16-bit written as 8-bit ({fmt} has no 16-bit)")
    if fmt == "jpg" and a.shape[2] in (2, 4):
        a = a[..., : a.shape[2] - 1]
        notes.append("alpha dropped (jpg has no alpha)")
    if fmt == "webp" and a.shape[2] in (1, 2):
        a = np.concatenate([np.repeat(a[..., :1], 3, axis=2), a[..., 1:]], axis=2)
        notes.append("grey written as RGB (webp has no grey)")
    if fmt == "tiff" and a.shape[2] == 2 and a.dtype == np.uint16:
        a = np.concatenate([np.repeat(a[..., :1], 3, axis=2), a[..., 1:]], axis=2)
        notes.append("16-bit grey + alpha written as RGBA (common TIFF readers lack that layout)")
    if fmt == "bmp" and a.shape[2] == 2:
        a = np.concatenate([np.repeat(a[..., :1], 3, axis=2), a[..., 1:]], axis=2)
        notes.append("grey + alpha written as RGBA (bmp has no grey + alpha)")
    limit = MAX_SIDE.get(fmt)
    if limit and max(a.shape[:2]) > limit:
        raise SSTError(f"{a.shape[1]}x{a.shape[0]} is too large for {fmt} (at most {limit} pixels a side); "
                       "use --format png or tiff.")
    return ImageData(a, img.format, img.icc_profile, img.dpi), notes


def encode(fh: BinaryIO, img: ImageData, fmt: str, quality: int = 95) -> None:
    """Write ``img`` (already fitted by :func:`prepare_for`) to an open binary file."""
    a = img.pixels
    if a.shape[2] == 2 and fmt == "png":  # grey + alpha: cv2 writes 1, 3 or 4 channels only
        png.write_array(fh, a, img.icc_profile, img.dpi)
        return
    if a.shape[2] == 2 and fmt == "tiff":  # 8-bit here (prepare_for turns 16-bit grey + alpha into RGBA)
        pillow.write_tiff(fh, a, img.icc_profile, img.dpi)
        return
    try:
        data = opencv.encode(a, fmt, quality, img.icc_profile, img.dpi)
    except ValueError as exc:
        raise SSTError(f"cannot encode {a.shape[1]}x{a.shape[0]} as {fmt} ({exc}).") from None
    fh.write(containers.add(data, fmt, img.icc_profile, img.dpi, alpha=a.shape[2] == 4))


def write_image(path: str | os.PathLike[str], img: ImageData, fmt: str | None = None, quality: int = 95) -> list[str]:
    """Encode ``img`` to ``path`` atomically; returns notes on what the format could not hold.

    Disk-full, permission and other OS errors become one-sentence ``SSTError``s.
    """
    path = Path(path)
    fmt = output_format(fmt or path.suffix.lstrip(".") or "png", img.format)
    fitted, notes = prepare_for(img, fmt)
    write_or_explain(path, lambda fh: encode(fh, fitted, fmt, quality))
    return notes


def save_array(path: str | os.PathLike[str], pixels: np.ndarray, fmt: str | None = None, quality: int = 95) -> list[str]:
    """Convenience: write an (H, W[, C]) uint8/uint16 array."""
    a = pixels[..., None] if pixels.ndim == 2 else pixels
    return write_image(path, ImageData(a), fmt, quality)
