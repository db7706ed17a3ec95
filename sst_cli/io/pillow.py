"""What stays on Pillow, and why (cv2 decodes and encodes everything else):

- headers: format, mode, size, EXIF orientation, ICC profile and DPI are read lazily from the file's
  header, without decoding pixels (cv2 has no header-only read, and returns no ICC profile for TIFF);
- decoding what cv2 cannot or does not do faithfully (:func:`decode`): GIF, TGA, ICO and the other formats
  without a cv2 decoder, TIFF with 8-bit alpha (cv2 reads it through libtiff's RGBA interface, which
  premultiplies colour by alpha) or grey + alpha (cv2 drops the alpha), palette, CMYK, float and 32-bit
  TIFF; and any file cv2 refuses, so that Pillow decodes it or the user hears Pillow's reason;
- writing 8-bit grey + alpha TIFF (cv2 writes 1, 3 or 4 channels only).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ..errors import SSTError
from .files import reason

ImageFile.LOAD_TRUNCATED_IMAGES = False  # truncated files are errors, never silently grey


_guard_lock = threading.Lock()
_open_reads = 0  # reads in progress, all threads
_saved_limit: int | None = None  # Pillow's own limit while any is


@contextlib.contextmanager
def _bomb_guard_off() -> Iterator[None]:
    """Pillow's decompression-bomb limit (a global) off while any thread is inside, restored when the last
    one leaves: a save-and-restore per call would leave it off for good when two threads overlap (the batch
    reads the next image's header while this one's is read)."""
    global _open_reads, _saved_limit
    with _guard_lock:
        if not _open_reads:
            _saved_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        _open_reads += 1
    try:
        yield
    finally:
        with _guard_lock:
            _open_reads -= 1
            if not _open_reads:
                Image.MAX_IMAGE_PIXELS = _saved_limit


@contextlib.contextmanager
def opened(source: Path | BinaryIO, name: str) -> Iterator[Image.Image]:
    """The image opened lazily (header only); every way it can fail to open is a one-sentence SSTError.

    Pillow's decompression-bomb guard is off meanwhile: large images are our business (we tile them and
    check memory first). The global is restored afterwards, for other users of Pillow in the process.
    """
    with _bomb_guard_off():
        try:
            im = Image.open(source)
        except UnidentifiedImageError:
            raise SSTError(f"{name} is not an image format we can read.") from None
        except PermissionError:
            raise SSTError(f"{name} cannot be read (permission denied).") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise SSTError(f"{name} cannot be opened ({reason(exc)}).") from None
        with im:
            yield im


_ORIENTATION = 0x0112  # the EXIF tag, and TIFF's own tag 274


def orientation(im: Image.Image) -> int:
    """EXIF orientation (1-8) of an image not yet loaded, 1 when absent or unreadable; decodes no pixels."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1  # Pillow would decode the whole image looking for an eXIf chunk after the pixels
    try:
        tags = im.tag_v2 if im.format == "TIFF" else im.getexif()  # type: ignore[attr-defined]
        value = int(tags.get(_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - broken EXIF must not stop decoding
        return 1
    return value if value in range(1, 9) else 1


def stored_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) as stored, before any orientation (recent Pillow reports a TIFF's size turned)."""
    if im.format == "TIFF":
        return int(im.tag_v2[256]), int(im.tag_v2[257])  # type: ignore[attr-defined]
    return im.size


def decode(im: Image.Image, notes: list[str]) -> tuple[np.ndarray, bool]:
    """Pixels of an opened image as (H, W, C) uint8/uint16: grey, grey + alpha, RGB or RGBA (palettes as
    RGB(A); the caller folds grey palettes), and whether Pillow has turned them upright itself (recent
    Pillow does, for TIFF, and then drops the tag). Pillow's own errors propagate."""
    tiff_tagged = im.format == "TIFF" and _ORIENTATION in im.tag_v2  # type: ignore[attr-defined]
    im.load()
    turned = tiff_tagged and _ORIENTATION not in im.tag_v2  # type: ignore[attr-defined]
    return _pixels(im, notes), turned


def _pixels(im: Image.Image, notes: list[str]) -> np.ndarray:
    mode = im.mode
    if mode.startswith("I;16"):
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
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode in ("1", "La", "RGBa"):
        im = im.convert({"1": "L", "La": "LA", "RGBa": "RGBA"}[mode])
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        notes.append(f"{mode} converted to RGB")
        im = im.convert("RGB")
    a = np.asarray(im)
    return a[..., None] if a.ndim == 2 else a


def write_tiff(fh: BinaryIO, pixels: np.ndarray, icc_profile: bytes | None,
               dpi: tuple[float, float] | None) -> None:
    """8-bit (H, W, C) pixels as a Deflate TIFF (used for grey + alpha, which cv2 cannot write)."""
    a = pixels[..., 0] if pixels.shape[2] == 1 else pixels
    kw: dict[str, object] = {"icc_profile": icc_profile} if icc_profile else {}
    if dpi:
        kw["dpi"] = dpi
    Image.fromarray(np.ascontiguousarray(a)).save(fh, format="TIFF", compression="tiff_deflate", **kw)
