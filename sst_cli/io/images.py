"""Reading and writing images as numpy arrays, keeping what users care about.

Decoded images are ``(H, W, C)`` uint8 or uint16 arrays with C = 1 (grey), 2 (grey + alpha), 3 (RGB)
or 4 (RGBA). 16-bit stays 16-bit end to end. Pillow decodes everything, but it has no 16-bit colour
mode: for 16-bit RGB(A) PNG/TIFF we run Pillow's own decoder twice, once keeping the high byte of each
sample and once the low byte (by swapping the declared byte order), and join them. 16-bit colour is
written by the small PNG/TIFF writers below. Every write goes to a hidden temporary file in the target
folder, is fsynced, then renamed into place, so a crash never leaves a half-written image.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ..errors import SSTError
from .files import reason as _reason
from .files import write_or_explain

OUTPUT_FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif", "bmp": ".bmp"}
_PIL_TO_FORMAT = {"PNG": "png", "JPEG": "jpg", "MPO": "jpg", "WEBP": "webp", "TIFF": "tiff", "BMP": "bmp"}
EIGHT_BIT_ONLY = ("jpg", "webp", "bmp")
# WebP and JPEG cannot hold images wider or taller than these.
MAX_SIDE = {"jpg": 65535, "webp": 16383}


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
@contextlib.contextmanager
def _no_bomb_limit() -> Iterator[None]:
    """Large images are our business (we tile them and check memory first), not a decompression bomb."""
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _open(path: Path) -> Image.Image:
    """Open lazily, turning every way a file can be wrong into one sentence."""
    try:
        if path.is_dir():
            raise SSTError(f"{path} is a folder, not an image.")
        if path.stat().st_size == 0:
            raise SSTError(f"{path.name} is empty (0 bytes).")
        return Image.open(path)
    except SSTError:
        raise
    except FileNotFoundError:
        raise SSTError(f"{path} does not exist.") from None
    except PermissionError:
        raise SSTError(f"{path.name} cannot be read (permission denied).") from None
    except UnidentifiedImageError:
        raise SSTError(f"{path.name} is not an image format we can read.") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise SSTError(f"{path.name} cannot be opened ({_reason(exc)}).") from None



def orientation(im: Image.Image) -> int:
    """EXIF orientation (1-8), 1 when absent or unreadable."""
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # noqa: BLE001 - broken EXIF must not stop decoding
        return 1


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
    with _no_bomb_limit():
        im = _open(path)
        with im:
            w, h = im.size
            # Pillow finds a PNG's EXIF chunk only by decoding every pixel (it may follow the image
            # data); a probe must stay a probe, so a PNG without EXIF before its pixels is upright
            if im.format == "PNG" and "exif" not in im.info:
                return w, h
            return (h, w) if orientation(im) in (5, 6, 7, 8) else (w, h)


def _swapped(rawmode: str) -> str | None:
    """The same 16-bit raw mode with the other byte order ('native' resolved to this machine's)."""
    native_little = sys.byteorder == "little"
    for tag, other in ((";16B", ";16L"), (";16L", ";16B"), (";16N", ";16B" if native_little else ";16L")):
        if rawmode.endswith(tag):
            return rawmode[: -len(tag)] + other
    return None


def _decode_16bit_colour(path: Path, tile: Any) -> np.ndarray | None:
    """Exact 16-bit samples of an RGB(A);16 or LA;16 image that Pillow would cut to 8 bits, or None."""
    args = tile.args
    rawmode = args if isinstance(args, str) else args[0]

    def decode(raw: str) -> np.ndarray:
        im = Image.open(path)
        new_args = raw if isinstance(args, str) else (raw, *tuple(args[1:]))
        im.tile = [tile._replace(args=new_args)]
        with im:
            return np.asarray(im)

    if rawmode == "LA;16B" and tile.codec_name == "zip":
        # Pillow opens 16-bit grey + alpha PNGs as RGBA; 4 bytes a pixel, read them unconverted
        raw = decode("RGBA").astype(np.uint16)
        return raw[..., 0::2] * 256 + raw[..., 1::2]
    other = _swapped(rawmode)
    if other is None or not rawmode.startswith(("RGB;16", "RGBA;16")):
        return None
    hi = decode(rawmode).astype(np.uint16)
    lo = decode(other).astype(np.uint16)
    return hi * 256 + lo


def _to_array(im: Image.Image, path: Path, notes: list[str]) -> np.ndarray:
    """Pixels of an opened (not yet loaded) image as (H, W, C) uint8/uint16, in one of our layouts."""
    mode = im.mode
    tile = im.tile[0] if len(im.tile) == 1 else None
    if tile is not None and mode in ("RGB", "RGBA"):
        raw = tile.args if isinstance(tile.args, str) else (tile.args[0] if tile.args else "")
        if isinstance(raw, str) and ";16" in raw:
            try:
                a = _decode_16bit_colour(path, tile)
            except Exception:  # noqa: BLE001 - fall back to Pillow's 8 bits rather than fail
                a = None
                notes.append("16-bit samples read as 8-bit (unusual 16-bit layout)")
            if a is not None:
                if raw.startswith("LA;16"):
                    return a  # (H, W, 2)
                return a.reshape(im.size[1], im.size[0], -1)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im).astype(np.uint16)[..., None]
    if mode == "I":
        a = np.asarray(im)
        if a.min() < 0 or a.max() > 65535:
            notes.append("32-bit integer samples rescaled to 16 bits")
            a = (a.astype(np.float64) - a.min()) / max(1, int(a.max()) - int(a.min())) * 65535
        return np.round(a).astype(np.uint16)[..., None]
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if a.max() > 1.0:
            a = a / max(a.max(), 1e-12)
            notes.append("float samples rescaled to 16 bits")
        return np.round(np.clip(a, 0, 1) * 65535).astype(np.uint16)[..., None]
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        rgb = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
        colour = rgb[..., :3]
        grey = bool((colour[..., 0] == colour[..., 1]).all() and (colour[..., 1] == colour[..., 2]).all())
        notes.append("palette converted to " + ("grey" if grey else "RGB") + (" + alpha" if has_alpha else ""))
        if grey:
            return np.ascontiguousarray(rgb[..., [0, 3]] if has_alpha else rgb[..., :1])
        return np.ascontiguousarray(rgb)
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        notes.append(f"{mode} converted to RGB")
        im = im.convert("RGB")
    a = np.asarray(im)
    return a[..., None] if a.ndim == 2 else a


def read_image(path: str | os.PathLike[str]) -> ImageData:
    """Decode ``path`` to an upright ``ImageData``; any problem with the file is one-sentence ``SSTError``."""
    path = Path(path)
    notes: list[str] = []
    with _no_bomb_limit():
        im = _open(path)
        try:
            with im:
                fmt = _PIL_TO_FORMAT.get(im.format or "", (im.format or "").lower())
                if getattr(im, "n_frames", 1) > 1:
                    notes.append("first frame only")
                pixels = _to_array(im, path, notes)  # before getexif(), which may load and drop the tile
                orient = orientation(im)
                icc = im.info.get("icc_profile")
                dpi = im.info.get("dpi")
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
    pixels = apply_orientation(pixels, orient)
    if orient != 1:
        notes.append(f"EXIF orientation {orient} applied")
    dpi_pair = tuple(float(v) for v in dpi[:2]) if isinstance(dpi, tuple) and len(dpi) >= 2 else None
    return ImageData(np.ascontiguousarray(pixels), fmt, icc if isinstance(icc, bytes) else None, dpi_pair, notes)


# -------------------------------------------------------------------------------- float conversion
def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 in [0, 1] (no rounding to 8 bits on the way)."""
    scale = 65535.0 if pixels.dtype == np.uint16 else 255.0
    return pixels.astype(np.float32) / np.float32(scale)


def from_float(x: np.ndarray, bits: int) -> np.ndarray:
    """float in [0, 1] -> uint8/uint16 with clipping and round-half-to-even."""
    top = 65535.0 if bits == 16 else 255.0
    out = np.clip(np.round(np.asarray(x, dtype=np.float32) * np.float32(top)), 0, top)
    return out.astype(np.uint16 if bits == 16 else np.uint8)


# ------------------------------------------------------------------------------------ PNG (16-bit)
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


class PngWriter:
    """Streaming PNG encoder (8/16-bit, grey/LA/RGB/RGBA): rows go in as they are ready.

    Each row uses the Up filter (difference with the row above), computed with numpy; data goes
    through one zlib stream, so memory does not grow with the image.
    """

    COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}

    def __init__(self, fh: BinaryIO, width: int, height: int, channels: int, bits: int,
                 icc_profile: bytes | None = None, level: int = 6) -> None:
        self.fh, self.width, self.height, self.channels, self.bits = fh, width, height, channels, bits
        self.rows_written = 0
        self._z = zlib.compressobj(level)
        self._prev: np.ndarray | None = None
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, self.COLOUR_TYPE[channels], 0, 0, 0)))
        if icc_profile:
            fh.write(_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))

    def write_rows(self, rows: np.ndarray) -> None:
        """rows: (n, W, C) of the writer's bit depth."""
        if rows.shape[1:] != (self.width, self.channels):
            raise ValueError(f"rows of shape {rows.shape[1:]} do not match {(self.width, self.channels)}")
        dtype = ">u2" if self.bits == 16 else np.uint8
        raw = np.ascontiguousarray(rows, dtype=dtype).reshape(rows.shape[0], -1).view(np.uint8)
        prev = np.zeros_like(raw[:1]) if self._prev is None else self._prev
        up = np.concatenate([prev, raw[:-1]], axis=0)
        filtered = raw - up  # uint8 arithmetic wraps modulo 256, as PNG wants
        out = np.empty((raw.shape[0], raw.shape[1] + 1), dtype=np.uint8)
        out[:, 0] = 2  # filter type Up
        out[:, 1:] = filtered
        data = self._z.compress(out.tobytes())
        if data:
            self.fh.write(_chunk(b"IDAT", data))
        self._prev = raw[-1:].copy()
        self.rows_written += rows.shape[0]

    def close(self) -> None:
        if self.rows_written != self.height:
            raise ValueError(f"PNG has {self.rows_written} of {self.height} rows")
        self.fh.write(_chunk(b"IDAT", self._z.flush()))
        self.fh.write(_chunk(b"IEND", b""))


def _write_png_numpy(fh: BinaryIO, img: ImageData) -> None:
    h, w, c = img.pixels.shape
    writer = PngWriter(fh, w, h, c, img.bits, img.icc_profile)
    step = max(1, (8 << 20) // max(1, w * c * img.bits // 8))  # about 8 MB of rows at a time
    for y in range(0, h, step):
        writer.write_rows(img.pixels[y : y + step])
    writer.close()


# ----------------------------------------------------------------------------------- TIFF (16-bit)
def _write_tiff_numpy(fh: BinaryIO, img: ImageData) -> None:
    """Little-endian baseline TIFF, Adobe Deflate with horizontal predictor, one strip per ~1 MB."""
    a = np.ascontiguousarray(img.pixels)
    h, w, c = a.shape
    bits = img.bits
    dtype = np.dtype("<u2") if bits == 16 else np.dtype(np.uint8)
    rows_per_strip = max(1, (1 << 20) // max(1, w * c * dtype.itemsize))
    strips: list[bytes] = []
    for y in range(0, h, rows_per_strip):
        block = a[y : y + rows_per_strip].astype(dtype)
        diff = block.copy()
        diff[:, 1:] = block[:, 1:] - block[:, :-1]  # predictor 2, wrapping like the decoder expects
        strips.append(zlib.compress(diff.tobytes(), 6))
    photometric = 2 if c >= 3 else 1
    header = 8
    offsets, pos = [], header
    for s in strips:
        offsets.append(pos)
        pos += len(s) + (len(s) & 1)
    extra = bytearray()
    ifd_entries: list[tuple[int, int, int, bytes]] = []  # tag, type, count, packed value (may be long)

    def add(tag: int, typ: int, values: list[int] | bytes) -> None:
        if isinstance(values, bytes):
            ifd_entries.append((tag, typ, len(values), values))
            return
        fmt = {3: "<H", 4: "<I"}[typ]
        ifd_entries.append((tag, typ, len(values), b"".join(struct.pack(fmt, v) for v in values)))

    add(256, 4, [w])
    add(257, 4, [h])
    add(258, 3, [bits] * c)
    add(259, 3, [8])  # Adobe Deflate
    add(262, 3, [photometric])
    add(273, 4, offsets)
    add(277, 3, [c])
    add(278, 4, [rows_per_strip])
    add(279, 4, [len(s) for s in strips])
    add(284, 3, [1])
    add(317, 3, [2])  # horizontal differencing
    if c in (2, 4):
        add(338, 3, [2])  # unassociated alpha
    if img.icc_profile:
        add(34675, 7, img.icc_profile)
    ifd_entries.sort(key=lambda e: e[0])
    ifd_offset = pos
    ifd_size = 2 + 12 * len(ifd_entries) + 4
    extra_pos = ifd_offset + ifd_size
    ifd = bytearray(struct.pack("<H", len(ifd_entries)))
    for tag, typ, count, packed in ifd_entries:
        if len(packed) <= 4:
            ifd += struct.pack("<HHI", tag, typ, count) + packed.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, typ, count, extra_pos + len(extra))
            extra += packed + (b"\0" if len(packed) & 1 else b"")
    ifd += struct.pack("<I", 0)
    fh.write(b"II*\0" + struct.pack("<I", ifd_offset))
    for s in strips:
        fh.write(s + (b"\0" if len(s) & 1 else b""))
    fh.write(bytes(ifd))
    fh.write(bytes(extra))


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
    if fmt == "png" and (img.bits == 16 and a.shape[2] > 1):
        _write_png_numpy(fh, img)
        return
    if fmt == "tiff" and img.bits == 16 and a.shape[2] > 1:
        _write_tiff_numpy(fh, img)
        return
    if img.bits == 16:  # grey 16-bit: Pillow's I;16
        pil = Image.fromarray(np.ascontiguousarray(a[..., 0], dtype=np.uint16))
    else:
        pil = Image.fromarray(np.ascontiguousarray(a[..., 0] if a.shape[2] == 1 else a, dtype=np.uint8))
    kw: dict[str, Any] = {}
    if img.icc_profile and fmt in ("png", "jpg", "webp", "tiff"):
        kw["icc_profile"] = img.icc_profile
    if img.dpi and fmt in ("png", "jpg", "tiff", "bmp"):
        kw["dpi"] = img.dpi
    if fmt == "png":
        pil.save(fh, format="PNG", compress_level=6, **kw)
    elif fmt == "jpg":
        pil.save(fh, format="JPEG", quality=quality, subsampling=0 if quality >= 90 else 2, optimize=True, **kw)
    elif fmt == "webp":
        pil.save(fh, format="WEBP", quality=quality, lossless=quality >= 100, exact=quality >= 100, method=4, **kw)
    elif fmt == "tiff":
        pil.save(fh, format="TIFF", compression="tiff_deflate", **kw)
    elif fmt == "bmp":
        pil.save(fh, format="BMP", **kw)
    else:  # pragma: no cover - output_format validates
        raise SSTError(f"cannot write format {fmt}.")


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


ImageFile.LOAD_TRUNCATED_IMAGES = False  # truncated files are errors, never silently grey
