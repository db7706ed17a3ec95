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


def hand_tiff(a: np.ndarray, big_endian: bool, orientation: int = 0) -> bytes:
    """An uncompressed 16-bit RGB(A) TIFF in either byte order (with an orientation tag unless 0)."""
    h, w, c = a.shape
    e = ">" if big_endian else "<"
    data = a.astype(e + "u2").tobytes()
    bps = struct.pack(e + "H" * c, *([16] * c))
    tags = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, c, None), (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, 8),
            (277, 3, 1, c), (278, 3, 1, h), (279, 4, 1, len(data))] + ([(338, 3, 1, 2)] if c == 4 else [])
    tags = sorted(tags + ([(274, 3, 1, orientation)] if orientation else []))
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


# ------------------------------------------------------------------ cv2 and what stays on Pillow / by hand
def upright(a: np.ndarray, orientation: int) -> np.ndarray:
    """``a`` (H, W, C) turned upright by Pillow's exif_transpose, one channel at a time (any bit depth)."""
    planes = []
    for c in range(a.shape[2]):
        im = Image.fromarray(np.ascontiguousarray(a[..., c]))
        im.getexif()[0x0112] = orientation
        planes.append(np.asarray(ImageOps.exif_transpose(im)))
    return np.stack(planes, axis=2)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("kind", ["rgb8", "rgba8", "grey16", "rgb16"])
def test_tiff_orientation_applied_once(tmp_path: Path, kind: str, orientation: int) -> None:
    """cv2's TIFF reader turns the image itself (8 and 16 bits); what Pillow decodes, we turn."""
    p = tmp_path / "o.tif"
    if kind == "rgb16":
        a = rand((6, 10, 3), 16, seed=orientation)
        p.write_bytes(hand_tiff(a, big_endian=False, orientation=orientation))
    else:
        a = rand((6, 10, {"rgb8": 3, "rgba8": 4, "grey16": 1}[kind]), 16 if kind == "grey16" else 8, seed=orientation)
        im = Image.fromarray(a[..., 0] if kind == "grey16" else a)
        exif = im.getexif()
        exif[0x0112] = orientation
        im.save(p, exif=exif)
    img = read_image(p)
    assert np.array_equal(img.pixels, upright(a, orientation))
    assert probe(p) == img.size
    assert (f"EXIF orientation {orientation} applied" in img.notes) == (orientation != 1)


@pytest.mark.parametrize("fmt", ["png", "webp"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_of_png_and_webp(tmp_path: Path, fmt: str, orientation: int) -> None:
    a = rand((6, 10, 3), seed=orientation)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    p = tmp_path / f"o.{fmt}"
    im.save(p, exif=exif, **({"lossless": True} if fmt == "webp" else {}))
    img = read_image(p)
    assert np.array_equal(img.pixels, upright(a, orientation))
    assert probe(p) == img.size and f"EXIF orientation {orientation} applied" in img.notes


@pytest.mark.parametrize("fmt", ["png", "tiff"])
@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_read_and_written_exactly(tmp_path: Path, fmt: str, channels: int) -> None:
    """A 16-bit file made by hand is read exactly, written by us, and read back exactly; an independent
    8-bit reader (Pillow) sees the high bytes of what we wrote."""
    a = rand((9, 13, channels), 16, seed=20 + channels)
    src = tmp_path / "src.png"
    src.write_bytes(hand_png(a))
    img = read_image(src)
    dst = tmp_path / f"out.{fmt}"
    assert write_image(dst, img, fmt) == []
    back = read_image(dst)
    assert back.pixels.dtype == np.uint16 and np.array_equal(back.pixels, a)
    mode = "RGBA" if channels == 4 else "RGB"
    assert np.array_equal(np.asarray(Image.open(dst).convert(mode)), (a >> 8).astype(np.uint8))


@pytest.mark.parametrize("bits", [8, 16])
def test_grey_alpha_png_round_trip(tmp_path: Path, bits: int) -> None:
    """cv2 cannot write grey + alpha: PngWriter does, and libpng (through cv2) reads it back exactly."""
    import cv2

    la = rand((7, 11, 2), bits, seed=30 + bits)
    p = tmp_path / "la.png"
    save_array(p, la, "png")
    data = p.read_bytes()
    assert data[25] == 4  # IHDR colour type: grey + alpha
    assert np.array_equal(read_image(p).pixels, la)
    bgra = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(bgra[..., [0, 3]], la) and np.array_equal(bgra[..., 1], la[..., 0])
    if bits == 8:
        assert np.array_equal(np.asarray(Image.open(p)), la)


def test_icc_profile_carried_everywhere(tmp_path: Path) -> None:
    """Read from a source file's header, written into every layout that can hold one."""
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "src.jpg"
    Image.fromarray(rand((6, 8, 3), seed=40)).save(src, icc_profile=icc, quality=95)
    img = read_image(src)
    assert img.icc_profile == icc
    for name, pixels in (("rgb.png", img.pixels), ("rgba8.tif", rand((6, 8, 4), seed=41)),
                         ("rgba16.tif", rand((6, 8, 4), 16, seed=42)), ("la8.png", rand((6, 8, 2), seed=43)),
                         ("la16.png", rand((6, 8, 2), 16, seed=44)), ("la8.tif", rand((6, 8, 2), seed=45)),
                         ("grey16.png", rand((6, 8, 1), 16, seed=46))):
        p = tmp_path / name
        write_image(p, ImageData(pixels, "jpg", icc))
        with Image.open(p) as im:
            assert im.info.get("icc_profile") == icc, name
        back = read_image(p)
        assert back.icc_profile == icc and np.array_equal(back.pixels, pixels), name


@pytest.mark.parametrize("bits", [8, 16])
def test_rgba_tiff_declares_unassociated_alpha(tmp_path: Path, bits: int) -> None:
    """cv2 writes no ExtraSamples tag; we add it, so other readers take channel 4 as (straight) alpha."""
    a = rand((5, 6, 4), bits, seed=50 + bits)
    p = tmp_path / "a.tif"
    save_array(p, a, "tiff")
    with Image.open(p) as im:
        assert im.tag_v2.get(338) in (2, (2,)) and im.mode == "RGBA"
        if bits == 8:
            assert np.array_equal(np.asarray(im), a)  # straight alpha: colour not premultiplied
    assert np.array_equal(read_image(p).pixels, a)


def test_dpi_carried(tmp_path: Path) -> None:
    for fmt, channels in [("png", 3), ("png", 2), ("jpg", 3), ("tiff", 3), ("bmp", 3)]:  # grey + alpha PNG: our writer
        p = tmp_path / f"d{channels}.{fmt}"
        write_image(p, ImageData(rand((4, 5, channels), seed=60), "png", None, (300.0, 150.0)), fmt)
        with Image.open(p) as im:
            assert np.allclose(im.info["dpi"], (300, 150), atol=0.5), (fmt, channels)
        assert np.allclose(read_image(p).dpi, (300, 150), atol=0.5), (fmt, channels)


def test_webp_and_bmp_written_and_read(tmp_path: Path) -> None:
    rgba = rand((8, 9, 4), seed=70)
    rgba[..., 3] = np.maximum(rgba[..., 3], 1)  # colour under alpha 0 is kept only from opencv 5 on
    save_array(tmp_path / "a.webp", rgba, "webp", quality=100)
    assert np.array_equal(read_image(tmp_path / "a.webp").pixels, rgba)  # quality 100: lossless
    save_array(tmp_path / "l.webp", rgba[..., :3], "webp", quality=80)
    lossy = read_image(tmp_path / "l.webp").pixels
    assert lossy.shape == (8, 9, 3) and np.array_equal(lossy, np.asarray(Image.open(tmp_path / "l.webp")))
    for channels in (1, 3, 4):
        p = tmp_path / f"b{channels}.bmp"
        a = rgba[..., :channels]
        save_array(p, a, "bmp")
        assert np.array_equal(read_image(p).pixels, a)
        with Image.open(p) as im:  # an independent reader agrees
            got = np.asarray(im)
        assert np.array_equal(got[..., None] if got.ndim == 2 else got, a)


def test_transparent_colour_kept_by_lossless_webp(tmp_path: Path) -> None:
    from sst_cli.io import opencv

    if opencv._WEBP_EXACT is None:
        pytest.skip(f"opencv {opencv.VERSION} has no exact lossless WebP (opencv 5 does)")
    rgba = rand((8, 9, 4), seed=71)
    rgba[::2, :, 3] = 0
    save_array(tmp_path / "t.webp", rgba, "webp", quality=100)
    assert np.array_equal(read_image(tmp_path / "t.webp").pixels, rgba)


@pytest.mark.parametrize("fmt,kw", [("JPEG", {"quality": 90}), ("JPEG", {"quality": 75, "subsampling": 2}),
                                    ("JPEG", {"progressive": True}), ("WEBP", {"quality": 80}), ("PNG", {}),
                                    ("BMP", {}), ("TIFF", {}), ("PPM", {})])
def test_cv2_decodes_the_pixels_pillow_decoded(tmp_path: Path, fmt: str, kw: dict) -> None:
    """Switching decoders changes no pixel, lossy formats included: results on them stay the same."""
    yy, xx = np.mgrid[0:48, 0:64]
    a = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=2).astype(np.uint8) ^ rand((48, 64, 3), seed=72) // 8
    p = tmp_path / f"x.{fmt.lower()}"
    Image.fromarray(a).save(p, format=fmt, **kw)
    img = read_image(p)
    assert np.array_equal(img.pixels, np.asarray(Image.open(p).convert("RGB"))) and img.notes == []


def test_formats_without_cv2_decoder_go_to_pillow(tmp_path: Path) -> None:
    a = rand((6, 7, 3), seed=73)
    Image.fromarray(a).save(tmp_path / "a.tga")
    assert np.array_equal(read_image(tmp_path / "a.tga").pixels, a)
    frames = [Image.fromarray(a).convert("P"), Image.fromarray(a[::-1]).convert("P")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    img = read_image(tmp_path / "a.gif")
    assert np.array_equal(img.pixels, np.asarray(frames[0].convert("RGB"))) and "first frame only" in img.notes


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["tiff", "webp", "bmp", "png16", "png_no_end", "jpg_garbled"])
def test_broken_files_are_one_sentence_and_quiet(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                 kind: str) -> None:
    """Truncated or corrupt files: one sentence, and nothing from cv2 or its libraries on stderr."""
    a = rand((64, 64, 3), seed=74)
    if kind == "png16":
        data = hand_png(rand((32, 32, 3), 16, seed=75))
        data = data[: len(data) // 2]
    elif kind == "png_no_end":
        data = _png(a)[:-40]
    elif kind == "jpg_garbled":
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG")
        data = buf.getvalue()[:-200] + b"\x00" * 100  # lost its end, padded with zeros
    else:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format=kind.upper())
        data = buf.getvalue()[: buf.tell() // 2]
    p = tmp_path / f"x.{kind[:4].rstrip('_')}"
    p.write_bytes(data)
    capfd.readouterr()
    with pytest.raises(SSTError) as info:
        read_image(p)
    msg = str(info.value)
    assert msg.startswith(p.name) and msg.endswith(".") and "\n" not in msg
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("fmt", ["png", "jpg", "tiff", "webp"])
def test_non_ascii_file_names(tmp_path: Path, fmt: str) -> None:
    a = rand((5, 6, 3), seed=76)
    p = tmp_path / f"Ünïcødé 瀑布 ✓.{fmt}"
    save_array(p, a, fmt, quality=100)
    img = read_image(p)
    assert probe(p) == (6, 5) and img.pixels.shape == (5, 6, 3)
    if fmt != "jpg":
        assert np.array_equal(img.pixels, a)


def test_training_reads_through_io(tmp_path: Path) -> None:
    """Training images: 16 bits kept, EXIF orientation applied, grey + alpha as grey, bad files skipped."""
    from sst_cli.training.data import load_rgb_float, scan_images

    a16 = rand((20, 24, 3), 16, seed=77)
    (tmp_path / "a16.png").write_bytes(hand_png(a16))
    assert np.array_equal(load_rgb_float(tmp_path / "a16.png"), imageio.to_float(a16))
    a = rand((20, 30, 3), seed=78)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    assert load_rgb_float(tmp_path / "r.jpg").shape == (30, 20, 3)
    save_array(tmp_path / "la.png", rand((20, 20, 2), seed=79))
    got = load_rgb_float(tmp_path / "la.png")
    assert got.shape == (20, 20, 3) and np.array_equal(got[..., 0], got[..., 2])
    (tmp_path / "cut.png").write_bytes(_png(a)[:100])
    files, report = scan_images([str(tmp_path)], min_side=16)
    assert [f.name for f in files] == ["a16.png", "la.png", "r.jpg"] and report.skipped == {"corrupt": ["cut.png"]}


def test_only_io_decodes_images() -> None:
    """Every image read goes through sst_cli.io: no other module imports Pillow or cv2."""
    root = Path(imageio.__file__).parents[1]
    offenders = [str(f.relative_to(root)) for f in root.rglob("*.py") if "io" not in f.relative_to(root).parts[:1]
                 and any(s in f.read_text(encoding="utf-8") for s in ("import cv2", "from PIL", "import PIL"))]
    assert offenders == []


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_interleave_is_a_transpose_into_the_given_rows(dtype: type, channels: int) -> None:
    from sst_cli.io.opencv import interleave

    planes = np.random.default_rng(channels).random((channels, 5, 7)) * 1000
    planes = planes.astype(dtype)
    expected = planes.transpose(1, 2, 0)
    assert np.array_equal(interleave(list(planes)), expected)
    out = np.zeros((9, 7, channels), dtype)
    assert interleave(list(planes), out=out[2:7]).base is out  # written in place, not into a copy
    assert np.array_equal(out[2:7], expected) and not out[:2].any() and not out[7:].any()


def test_interleave_refuses_an_out_it_could_not_write_into() -> None:
    from sst_cli.io.opencv import interleave

    planes = [np.zeros((2, 3), np.uint8)] * 3
    for out in (np.zeros((2, 3, 3), np.float32), np.zeros((2, 3, 4), np.uint8), np.zeros((2, 3, 3), np.uint8)[:, ::-1]):
        with pytest.raises(ValueError, match="cannot interleave"):
            interleave(planes, out=out)


def test_overlapping_reads_restore_pillows_bomb_limit(tmp_path: Path) -> None:
    """The batch reads the next image's header in a thread while this one's is read: the first in, first out
    order once left Pillow's global limit off for good."""
    import threading

    from sst_cli.io import pillow

    p = tmp_path / "a.png"
    save_array(p, rand((4, 5, 3), seed=1))
    limit = Image.MAX_IMAGE_PIXELS
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with pillow.opened(p, p.name):
            first_in.set()
            second_in.wait(10)
        first_out.set()

    inside: list[int | None] = []

    def second() -> None:
        first_in.wait(10)
        with pillow.opened(p, p.name):
            second_in.set()
            first_out.wait(10)
            inside.append(Image.MAX_IMAGE_PIXELS)  # the first has left, this one is still reading

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert first_out.is_set() and inside == [None] and Image.MAX_IMAGE_PIXELS == limit is not None


def test_tiff_deflate_uses_the_png_level(tmp_path: Path) -> None:
    """zlib's header says how hard it tried: FLEVEL 1 for levels 2-5 (ours: 4), 2 for libtiff's default 6."""
    from sst_cli.io import opencv, png

    if opencv._TIFF_LEVEL is None:
        pytest.skip("this opencv writes libtiff's default level")
    p = tmp_path / "a.tif"
    save_array(p, rand((64, 64, 3), seed=3), "tiff")
    with Image.open(p) as im:
        offset = im.tag_v2[273][0]  # StripOffsets
    header = p.read_bytes()[offset : offset + 2]
    assert header[0] & 0x0F == 8 and header[1] >> 6 == 1 and 2 <= png.LEVEL <= 5  # deflate, FLEVEL "fast"
