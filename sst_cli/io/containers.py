"""Metadata that cv2's encoders have no parameter for, added to the bytes they produce.

Each edit touches the container only (headers, a new chunk or directory), never the compressed pixels:
- PNG, JPEG, BMP: the resolution (DPI) in pHYs, the JFIF header and the BMP header;
- TIFF: the ICC profile (tag 34675) and, for RGBA, ExtraSamples = unassociated alpha (tag 338), without
  which readers may take the fourth channel for something else. cv2 writes neither.
"""

from __future__ import annotations

import struct

from . import png


def png_dpi(data: bytes, dpi: tuple[float, float]) -> bytes:
    return png.with_chunks(data, png.phys(dpi))


def jpeg_dpi(data: bytes, dpi: tuple[float, float]) -> bytes:
    """libjpeg opens its output with a JFIF segment: units at byte 13, densities at 14-17."""
    if data[2:4] != b"\xff\xe0" or data[6:11] != b"JFIF\x00":
        return data
    density = (min(65535, max(1, round(v))) for v in dpi)
    return data[:13] + struct.pack(">BHH", 1, *density) + data[18:]


def bmp_dpi(data: bytes, dpi: tuple[float, float]) -> bytes:
    """BITMAPINFOHEADER: pixels per metre across and down at bytes 38-45."""
    return data[:38] + struct.pack("<ii", *png.per_metre(dpi)) + data[46:]


def tiff_tags(data: bytes, icc_profile: bytes | None, alpha: bool) -> bytes:
    """cv2's single-image classic TIFF with the ICC profile and/or ExtraSamples added: a new first
    directory at the end holds the old entries plus these (tags sorted, as TIFF requires)."""
    order = "<" if data[:2] == b"II" else ">"
    if data[2:4] != struct.pack(order + "H", 42):
        raise ValueError("not a classic TIFF")
    first = struct.unpack(order + "I", data[4:8])[0]
    (count,) = struct.unpack(order + "H", data[first : first + 2])
    entries = {}
    for pos in range(first + 2, first + 2 + 12 * count, 12):
        entries[struct.unpack(order + "H", data[pos : pos + 2])[0]] = data[pos : pos + 12]
    out = bytearray(data)
    if len(out) % 2:
        out += b"\0"  # values and directories start on a word boundary
    if icc_profile:
        entries[34675] = struct.pack(order + "HHII", 34675, 7, len(icc_profile), len(out))  # 7: UNDEFINED bytes
        out += icc_profile + b"\0" * (len(icc_profile) % 2)
    if alpha:
        entries[338] = struct.pack(order + "HHIH2x", 338, 3, 1, 2)  # 3: SHORT; 2: unassociated alpha
    directory = len(out)
    out += struct.pack(order + "H", len(entries)) + b"".join(entries[t] for t in sorted(entries))
    out += struct.pack(order + "I", 0)  # no further image
    out[4:8] = struct.pack(order + "I", directory)
    return bytes(out)


def add(data: bytes, fmt: str, icc_profile: bytes | None, dpi: tuple[float, float] | None, alpha: bool) -> bytes:
    """Whatever of ``icc_profile``, ``dpi`` and declared alpha cv2 left out of ``data`` (a ``fmt`` file)."""
    if fmt == "tiff" and (icc_profile or alpha):
        data = tiff_tags(data, icc_profile, alpha)
    if dpi and fmt in _DPI:
        data = _DPI[fmt](data, dpi)
    return data


_DPI = {"png": png_dpi, "jpg": jpeg_dpi, "bmp": bmp_dpi}  # TIFF: cv2 writes it (opencv.encode)
