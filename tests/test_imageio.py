"""Image decoding/encoding: bit depths, channels, EXIF orientation, palettes, bad files, atomic writes."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from sst_cli.errors import SSTError
from sst_cli.io import files
from sst_cli.io import images as imageio
from sst_cli.io.images import ImageData, PngWriter, probe, read_image, save_array, write_image


def rand(shape: tuple[int, ...], bits: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = 65535 if bits == 16 else 255
    return rng.integers(0, top + 1, size=shape, dtype=np.uint16 if bits == 16 else np.uint8)


# ------------------------------------------------------------------------------ independent encoders
def hand_png(a: np.ndarray, interlace: bool = False) -> bytes:
    """A 16-bit PNG built by hand (filter bytes vary per row) so decoding is not checked against our writer."""
    h, w, c = a.shape
    raw = a.astype(">u2").reshape(h, w * c).view(np.uint8)
    bpp = 2 * c
    rows = []
    for y in range(h):
        line = raw[y].astype(np.int32)
        kind = y % 3  # None, Sub, Up
        if kind == 1:
            prev = np.concatenate([np.zeros(bpp, np.int32), line[:-bpp]])
            line = (line - prev) % 256
        elif kind == 2:
            up = raw[y - 1].astype(np.int32) if y else np.zeros_like(line)
            line = (line - up) % 256
        rows.append(bytes([kind]) + line.astype(np.uint8).tobytes())

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def hand_tiff(a: np.ndarray, big_endian: bool) -> bytes:
    """An uncompressed 16-bit RGB(A) TIFF in either byte order."""
    h, w, c = a.shape
    e = ">" if big_endian else "<"
    data = a.astype(e + "u2").tobytes()
    bps = struct.pack(e + "H" * c, *([16] * c))
    tags = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, c, None), (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, 8),
            (277, 3, 1, c), (278, 3, 1, h), (279, 4, 1, len(data))] + ([(338, 3, 1, 2)] if c == 4 else [])
    bps_off = 8 + len(data)
    ifd_off = bps_off + len(bps)
    ifd = struct.pack(e + "H", len(tags))
    for tag, typ, count, val in tags:
        if tag == 258:
            ifd += struct.pack(e + "HHII", tag, typ, count, bps_off)
        elif typ == 3:
            ifd += struct.pack(e + "HHIHH", tag, typ, count, val, 0)
        else:
            ifd += struct.pack(e + "HHII", tag, typ, count, val)
    ifd += struct.pack(e + "I", 0)
    return (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(e + "I", ifd_off) + data + bps + ifd


# ------------------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("channels", [3, 4, 2])
def test_16bit_png_decoded_exactly(tmp_path: Path, channels: int) -> None:
    a = rand((9, 11, channels), 16)
    assert (a % 257 != 0).any()  # values an 8-bit path would destroy
    p = tmp_path / "x.png"
    p.write_bytes(hand_png(a))
    img = read_image(p)
    assert img.pixels.dtype == np.uint16 and img.bits == 16
    assert np.array_equal(img.pixels, a)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_tiff_decoded_exactly(tmp_path: Path, channels: int, big_endian: bool) -> None:
    a = rand((7, 10, channels), 16, seed=1)
    p = tmp_path / "x.tif"
    p.write_bytes(hand_tiff(a, big_endian))
    img = read_image(p)
    assert img.pixels.dtype == np.uint16
    assert np.array_equal(img.pixels, a)


def test_16bit_grey_png_and_tiff(tmp_path: Path) -> None:
    a = rand((8, 5), 16, seed=2)
    for name in ("g.png", "g.tif"):
        Image.fromarray(a).save(tmp_path / name)  # Pillow's own I;16 writer
        img = read_image(tmp_path / name)
        assert img.pixels.shape == (8, 5, 1) and img.pixels.dtype == np.uint16
        assert np.array_equal(img.pixels[..., 0], a)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_applied(tmp_path: Path, orientation: int) -> None:
    a = rand((6, 10, 3), seed=orientation)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    p = tmp_path / "o.jpg"
    im.save(p, exif=exif, quality=95)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(p)))
    img = read_image(p)
    assert np.array_equal(img.pixels, expected)
    assert probe(p) == (img.pixels.shape[1], img.pixels.shape[0])
    assert img.pixels.shape[:2] == ((10, 6) if orientation >= 5 else (6, 10))


def test_webp_bmp_grey_and_alpha(tmp_path: Path) -> None:
    rgba = rand((6, 7, 4), seed=3)
    Image.fromarray(rgba).save(tmp_path / "a.webp", lossless=True, exact=True)
    assert np.array_equal(read_image(tmp_path / "a.webp").pixels, rgba)
    rgb = rgba[..., :3]
    Image.fromarray(rgb).save(tmp_path / "a.bmp")
    img = read_image(tmp_path / "a.bmp")
    assert img.format == "bmp" and np.array_equal(img.pixels, rgb)
    grey = rgba[..., 0]
    Image.fromarray(grey).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png").pixels.shape == (6, 7, 1)
    la = rgba[..., :2]
    Image.merge("LA", [Image.fromarray(la[..., 0]), Image.fromarray(la[..., 1])]).save(tmp_path / "la.png")
    img = read_image(tmp_path / "la.png")
    assert img.has_alpha and img.is_grey and np.array_equal(img.pixels, la)


def test_palette_images(tmp_path: Path) -> None:
    colour = Image.fromarray(rand((8, 8, 3), seed=4)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    colour.save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    assert img.pixels.shape == (8, 8, 3) and np.array_equal(img.pixels, np.asarray(colour.convert("RGB")))
    # transparency in the palette becomes an alpha channel
    colour.save(tmp_path / "pt.png", transparency=0)
    img = read_image(tmp_path / "pt.png")
    assert img.pixels.shape == (8, 8, 4)
    assert set(np.unique(img.pixels[..., 3])) <= {0, 255} and (img.pixels[..., 3] == 0).any()
    # a palette of greys is a grey image
    grey = Image.fromarray(rand((8, 8), seed=5)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    grey = Image.fromarray(np.asarray(grey.convert("L"))).convert("P")
    grey.save(tmp_path / "pg.png")
    assert read_image(tmp_path / "pg.png").pixels.shape == (8, 8, 1)
    assert any("palette" in n for n in read_image(tmp_path / "pg.png").notes)


def test_other_modes_are_converted(tmp_path: Path) -> None:
    Image.fromarray(rand((5, 5), seed=6) > 128).save(tmp_path / "b.png")  # 1-bit
    assert read_image(tmp_path / "b.png").pixels.shape == (5, 5, 1)
    Image.fromarray(rand((5, 5, 3), seed=7)).convert("CMYK").save(tmp_path / "c.jpg")
    img = read_image(tmp_path / "c.jpg")
    assert img.pixels.shape == (5, 5, 3) and img.pixels.dtype == np.uint8


def test_icc_profile_is_kept(tmp_path: Path) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for fmt, bits in (("png", 8), ("jpg", 8), ("webp", 8), ("tiff", 8), ("png", 16), ("tiff", 16)):
        img = ImageData(rand((4, 5, 3), bits), "png", icc)
        p = tmp_path / f"icc{bits}.{fmt}"
        write_image(p, img, fmt)
        assert Image.open(p).info.get("icc_profile") == icc, (fmt, bits)
        assert read_image(p).icc_profile == icc


# ---------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kind,match", [
    ("empty", "empty"), ("text", "not an image"), ("truncated_png", "truncated|cannot be decoded"),
    ("truncated_jpg", "truncated|cannot be decoded"), ("missing", "does not exist"), ("folder", "folder"),
])
def test_bad_files_give_one_sentence(tmp_path: Path, kind: str, match: str) -> None:
    good = io.BytesIO()
    Image.fromarray(rand((64, 64, 3), seed=8)).save(good, format="PNG")
    jpg = io.BytesIO()
    Image.fromarray(rand((64, 64, 3), seed=8)).save(jpg, format="JPEG")
    p = tmp_path / ("x.jpg" if "jpg" in kind else "x.png")
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("this is not a picture\n")
    elif kind == "truncated_png":
        p.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    elif kind == "truncated_jpg":
        p.write_bytes(jpg.getvalue()[: len(jpg.getvalue()) // 2])
    elif kind == "folder":
        p.mkdir()
    with pytest.raises(SSTError, match=match) as info:
        read_image(p)
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith(".")


def test_large_images_are_not_refused_as_bombs(tmp_path: Path) -> None:
    """Pillow's decompression-bomb guard is off for us: size is handled by tiling and a memory check."""
    p = tmp_path / "wide.png"
    with open(p, "wb") as fh:  # 20000 x 10000 grey: 200 Mpixels, above Pillow's 178 Mpixel refusal
        w = PngWriter(fh, 20000, 10000, 1, 8)
        for _ in range(10):
            w.write_rows(np.zeros((1000, 20000, 1), np.uint8))
        w.close()
    assert p.stat().st_size < 1 << 20
    assert probe(p) == (20000, 10000)
    assert Image.MAX_IMAGE_PIXELS is not None  # our reads do not change the global for others


# ------------------------------------------------------------------------------------------- writing
@pytest.mark.parametrize("fmt", ["png", "tiff"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("bits", [8, 16])
def test_lossless_round_trip(tmp_path: Path, fmt: str, channels: int, bits: int) -> None:
    a = rand((6, 9, channels), bits, seed=channels + bits)
    p = tmp_path / f"x.{fmt}"
    notes = save_array(p, a, fmt)
    got = read_image(p).pixels
    if fmt == "tiff" and channels == 2 and bits == 16:  # written as RGBA (see prepare_for)
        assert notes and np.array_equal(got[..., [0, 3]], a) and np.array_equal(got[..., 1], a[..., 0])
    else:
        assert got.dtype == a.dtype and np.array_equal(got, a)


def test_our_16bit_png_is_read_by_pillow_as_its_high_bytes(tmp_path: Path) -> None:
    """An independent decoder (Pillow's 8-bit path) agrees with what PngWriter encoded."""
    a = rand((13, 17, 3), 16, seed=9)
    save_array(tmp_path / "x.png", a, "png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png").convert("RGB")), (a >> 8).astype(np.uint8))


def test_lossy_formats_fit_what_they_can_hold(tmp_path: Path) -> None:
    a = rand((16, 16, 4), 16, seed=10)
    notes = save_array(tmp_path / "x.jpg", a, "jpg", quality=90)
    im = Image.open(tmp_path / "x.jpg")
    assert im.mode == "RGB" and any("alpha dropped" in n for n in notes) and any("8-bit" in n for n in notes)
    save_array(tmp_path / "x.webp", a[..., :1], "webp", quality=100)
    back = read_image(tmp_path / "x.webp").pixels
    assert back.shape == (16, 16, 3)  # WebP has no grey
    assert np.array_equal(back[..., 0], imageio.from_float(imageio.to_float(a[..., 0]), 8))
    with pytest.raises(SSTError, match="too large for webp"):
        imageio.prepare_for(ImageData(np.zeros((2, 17000, 3), np.uint8)), "webp")


def test_float_conversions_keep_16_bits() -> None:
    a = np.arange(65536, dtype=np.uint16).reshape(256, 256, 1)
    assert np.array_equal(imageio.from_float(imageio.to_float(a), 16), a)
    b = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    assert np.array_equal(imageio.from_float(imageio.to_float(b), 8), b)


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path: Path) -> None:
    p = tmp_path / "out.png"
    p.write_bytes(b"old")

    def boom(fh: object) -> None:
        fh.write(b"partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_stream(p, boom)
    assert p.read_bytes() == b"old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.png"]


def test_disk_full_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object, **kw: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imageio, "encode", full)
    with pytest.raises(SSTError, match="no space left"):
        save_array(tmp_path / "x.png", rand((4, 4, 3)), "png")
    assert list(tmp_path.iterdir()) == []


def test_stale_temps_of_dead_runs_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".a.png{files.TEMP_MARK}{dead_pid}-abcd"
    live = tmp_path / f".b.png{files.TEMP_MARK}{os.getpid()}-abcd"
    old = tmp_path / f".c.png{files.TEMP_MARK}{os.getpid()}-ef01"
    keep = tmp_path / ".hidden-but-not-ours.png"
    for f in (stale, live, old, keep):
        f.write_bytes(b"x")
    os.utime(old, (1, 1))  # a day-old temp is stale whoever made it
    removed = files.clean_stale_temps(tmp_path)
    assert sorted(removed) == sorted([stale, old])
    assert live.exists() and keep.exists()
