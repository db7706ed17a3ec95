"""The PNG container written by hand, for the two things cv2 cannot do with PNG.

- :class:`PngWriter` streams rows as they are ready (cv2 encodes a whole array in memory): every upscaled
  PNG is written this way, as its tiles finish (``upscale.batch``), so encoding overlaps the model and memory
  is bounded by a few rows even for outputs larger than memory;
- grey + alpha (colour type 4): cv2 writes 1, 3 or 4 channels only.

Plus the little we read and add around cv2's PNGs: the colour type from the header, and extra chunks.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

# zlib level of every PNG sst writes (cv2's and ours), and of its TIFFs' deflate where cv2 writes them.
# encodes 3.2x faster than 6 (Pillow's default) for 6.6 % more bytes; at 6 a 4K frame took 10.5 s, longer
# than upscaling it (benchmarks/RESULTS.md#png-level).
LEVEL = 4
SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = 8 + 8 + 13 + 4  # signature, IHDR length and type, IHDR data, CRC: IHDR always comes first


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


_METRES_PER_INCH = 0.0254


def per_metre(dpi: tuple[float, float]) -> tuple[int, int]:
    """Dots per inch as the whole pixels per metre that PNG (and BMP) store, at least 1."""
    return max(1, round(dpi[0] / _METRES_PER_INCH)), max(1, round(dpi[1] / _METRES_PER_INCH))


def phys(dpi: tuple[float, float]) -> bytes:
    """The pHYs chunk of a resolution in dots per inch."""
    return chunk(b"pHYs", struct.pack(">IIB", *per_metre(dpi), 1))


def colour_type(data: bytes) -> int:
    """IHDR colour type: 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA."""
    return data[25]  # signature 8, length 4, b"IHDR" 4, width 4, height 4, bit depth 1


def complete(data: bytes) -> bool:
    """Whether the file holds its end chunk (IEND with its fixed CRC), so it was not cut short."""
    return data.rfind(b"IEND\xaeB`\x82") >= 0


def with_chunks(data: bytes, chunks: bytes) -> bytes:
    """A PNG with ``chunks`` (already framed by :func:`chunk`) placed right after IHDR."""
    return data[:_IHDR_END] + chunks + data[_IHDR_END:]


class PngWriter:
    """Streaming PNG encoder (8/16-bit, grey/LA/RGB/RGBA): rows go in as they are ready.

    Each row uses the Up filter (difference with the row above), computed with numpy; data goes
    through one zlib stream, so memory does not grow with the image. Against libpng's adaptive filters
    (cv2, same zlib level), measured on x4 upscales: 0.96x the bytes on a 7680x4320 photo, 1.04x on Set14's
    ppt3 and comic, 1.11x on a 1024x1024 butterfly, while the filtering takes 0.02 s of that photo's 1.8 s of
    encoding (libpng: 3.0 s in all); Paeth alone matched libpng's size but took 0.7 s to filter in numpy.
    """

    COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}

    def __init__(self, fh: BinaryIO, width: int, height: int, channels: int, bits: int,
                 icc_profile: bytes | None = None, level: int = LEVEL, dpi: tuple[float, float] | None = None) -> None:
        self.fh, self.width, self.height, self.channels, self.bits = fh, width, height, channels, bits
        self.rows_written = 0
        self._z = zlib.compressobj(level)
        self._prev: np.ndarray | None = None
        fh.write(SIGNATURE)
        fh.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, self.COLOUR_TYPE[channels], 0, 0, 0)))
        if dpi:
            fh.write(phys(dpi))
        if icc_profile:
            fh.write(chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))

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
            self.fh.write(chunk(b"IDAT", data))
        self._prev = raw[-1:].copy()
        self.rows_written += rows.shape[0]

    def close(self) -> None:
        if self.rows_written != self.height:
            raise ValueError(f"PNG has {self.rows_written} of {self.height} rows")
        self.fh.write(chunk(b"IDAT", self._z.flush()))
        self.fh.write(chunk(b"IEND", b""))


def write_array(fh: BinaryIO, pixels: np.ndarray, icc_profile: bytes | None = None,
                dpi: tuple[float, float] | None = None) -> None:
    """A whole (H, W, C) uint8/uint16 array through :class:`PngWriter`, about 8 MB of rows at a time."""
    h, w, c = pixels.shape
    bits = 16 if pixels.dtype == np.uint16 else 8
    writer = PngWriter(fh, w, h, c, bits, icc_profile, dpi=dpi)
    step = max(1, (8 << 20) // max(1, w * c * bits // 8))
    for y in range(0, h, step):
        writer.write_rows(pixels[y : y + step])
    writer.close()
