"""upscale_array, single files and batches: sizes, channels, bit depth, alpha, values, bad inputs, resume."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import data_path
from sst_cli.cli import main
from sst_cli.errors import UsageError
from sst_cli.evaluation.metrics import psnr
from sst_cli.io import files
from sst_cli.io import images as imageio
from sst_cli.io.images import from_float, read_image, save_array, to_float
from sst_cli.model.archs import build_model
from sst_cli.model.bicubic import imresize, quantize_uint8
from sst_cli.model.weights import save_checkpoint
from sst_cli.upscale import batch as up_mod
from sst_cli.upscale import manifest
from sst_cli.upscale.array import upscale_array
from sst_cli.upscale.batch import run_batch
from sst_cli.upscale.jobs import Job, Settings, plan_jobs
from sst_cli.upscale.upscaler import Upscaler, load_upscaler

REPO = Path(__file__).resolve().parents[1]
TINY = {"dim": 16, "window_sizes": [8, 16], "num_heads": 2, "ranks": 8, "n_blocks": 1, "exp_ratio": 1.5,
        "upscaling_factor": 2, "upsampler_type": "pixelshuffle_direct"}


@pytest.fixture(scope="module")
def bicubic() -> Upscaler:
    return load_upscaler("bicubic", scale=4, device="cpu")


@pytest.fixture(scope="module")
def tiny() -> Upscaler:
    torch.manual_seed(0)
    net = build_model(TINY).eval()
    return Upscaler(net, "tiny", 2, torch.device("cpu"), torch.float32, "sdpa", "test")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("w") / "tiny_x2.safetensors", build_model(TINY).eval())


def image(h: int, w: int, c: int, bits: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.random((h // 4 + 2, w // 4 + 2, c))
    x = np.asarray(torch.nn.functional.interpolate(torch.from_numpy(base).permute(2, 0, 1)[None], size=(h, w),
                                                   mode="bilinear")[0].permute(1, 2, 0))
    return from_float(x, bits)


def bicubic_ref(a: np.ndarray, scale: int = 4) -> np.ndarray:
    """The eval path: float in [0, 1] -> MATLAB bicubic -> clip/round."""
    t = torch.from_numpy(to_float(a)).permute(2, 0, 1)
    return from_float(imresize(t, scale).permute(1, 2, 0).numpy(), 16 if a.dtype == np.uint16 else 8)


# ------------------------------------------------------------------------------------- upscale_array
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("bits", [8, 16])
def test_bicubic_values_channels_and_depth(bicubic: Upscaler, channels: int, bits: int) -> None:
    a = image(13, 17, channels, bits, seed=channels)
    if channels in (2, 4):
        a[..., -1] = from_float(np.linspace(0, 1, 17, dtype=np.float32)[None].repeat(13, 0), bits)
    out = upscale_array(a, bicubic, alpha="bicubic")
    assert out.shape == (52, 68, channels) and out.dtype == a.dtype
    assert np.array_equal(out, bicubic_ref(a))  # every channel, alpha included, is exactly eval's bicubic


def test_16bit_is_not_rounded_to_8_bits(bicubic: Upscaler) -> None:
    a = image(10, 12, 3, 16, seed=3)
    out = upscale_array(a, bicubic)
    assert (out % 257 != 0).mean() > 0.9
    via8 = bicubic_ref((a >> 8).astype(np.uint8)).astype(np.int64) * 257
    assert np.abs(out.astype(np.int64) - bicubic_ref(a)).max() == 0
    assert np.abs(out.astype(np.int64) - via8).max() > 100  # 8-bit processing would be visibly different


def test_grey_2d_and_float_inputs(bicubic: Upscaler) -> None:
    import sst_cli

    assert sst_cli.upscale_array is upscale_array  # the library entry point
    a = image(9, 11, 1, seed=4)
    out2d = upscale_array(a[..., 0], bicubic)
    assert out2d.shape == (36, 44) and np.array_equal(out2d, bicubic_ref(a)[..., 0])
    f = to_float(image(9, 11, 3, seed=5))
    outf = upscale_array(f, bicubic)
    assert outf.dtype == np.float32 and outf.min() >= 0 and outf.max() <= 1


def test_pil_images_in_pil_images_out(tiny: Upscaler) -> None:
    from PIL import Image

    rgba = image(9, 11, 4, seed=6)
    for mode in ("RGB", "L", "LA", "RGBA", "P", "1", "CMYK"):
        im = Image.fromarray(rgba).convert(mode)
        out = tiny(im)
        want = {"P": "RGB", "1": "L", "CMYK": "RGB"}.get(mode, mode)
        assert out.mode == want and out.size == (22, 18), (mode, out.mode, out.size)
    rgb = image(9, 11, 3, seed=7)
    assert np.array_equal(np.asarray(tiny(Image.fromarray(rgb))), tiny(rgb))  # same pixels as numpy
    deep = image(9, 11, 1, 16, seed=8)[..., 0]
    out16 = tiny(Image.fromarray(deep))
    assert out16.mode == "I;16" and np.array_equal(np.asarray(out16), tiny(deep))
    with pytest.raises(TypeError, match="numpy array, a PIL image or a torch tensor, not list"):
        tiny([[0, 1]])


def test_pil_images_are_read_as_their_files(tiny: Upscaler, tmp_path: Path) -> None:
    """EXIF orientation applied and the ICC profile carried, as `sst upscale` does for the same file."""
    from PIL import Image, ImageCms

    rgb = image(10, 16, 3, seed=9)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to show
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rgb).save(tmp_path / "rot.png", exif=exif, icc_profile=icc)
    with Image.open(tmp_path / "rot.png") as im:
        out = tiny(im)
    assert out.size == (20, 32) and out.info["icc_profile"] == icc
    assert np.array_equal(np.asarray(out), tiny(np.ascontiguousarray(np.rot90(rgb, -1))))


def test_alpha_is_aligned_with_colour(tiny: Upscaler) -> None:
    """A shape drawn in colour and in alpha comes out in the same place, by model and by bicubic."""
    mask = np.zeros((24, 30), np.uint8)
    mask[5:15, 8:22] = 255
    rgba = np.dstack([mask, mask, mask, mask])
    for mode in ("model", "bicubic"):
        out = upscale_array(rgba, tiny, alpha=mode)
        assert out.shape == (48, 60, 4)
        assert np.array_equal(out[..., :3], upscale_array(rgba[..., :3], tiny))
        if mode == "model":  # alpha goes through the model exactly as a grey image would
            assert np.array_equal(out[..., 3], upscale_array(mask, tiny))
        else:
            assert np.array_equal(out[..., 3:], bicubic_ref(mask[..., None], 2))
        inside = np.zeros((48, 60), bool)
        inside[10:30, 16:44] = True  # the mask's place at x2
        for channel in (out[..., 0].astype(int), out[..., 3].astype(int)):
            assert channel[inside].mean() > channel[~inside].mean() + 150, mode


def test_tile_batch_gives_the_same_image(tiny: Upscaler) -> None:
    rgba = image(40, 90, 4, seed=5)
    one = upscale_array(rgba, tiny, tile=16)
    batched = upscale_array(rgba, tiny, tile=16, tile_batch=4)
    assert batched.shape == one.shape and np.abs(batched.astype(int) - one.astype(int)).max() <= 1


def test_opaque_alpha_stays_opaque(tiny: Upscaler) -> None:
    a = image(16, 16, 4, seed=6)
    a[..., 3] = 255
    out = upscale_array(a, tiny)
    assert (out[..., 3] == 255).all()
    assert np.array_equal(out[..., :3], upscale_array(a[..., :3], tiny))


def test_outscale(bicubic: Upscaler) -> None:
    a = image(20, 30, 3, seed=7)
    assert upscale_array(a, bicubic, outscale=2.5).shape == (50, 75, 3)
    assert upscale_array(a, bicubic, outscale=6).shape == (120, 180, 3)
    assert np.array_equal(upscale_array(a, bicubic, outscale=4), upscale_array(a, bicubic))


def test_tiny_images(bicubic: Upscaler, tiny: Upscaler) -> None:
    one = np.full((1, 1, 3), 200, np.uint8)
    assert np.array_equal(upscale_array(one, bicubic), np.full((4, 4, 3), 200, np.uint8))
    assert upscale_array(one, tiny).shape == (2, 2, 3)
    assert upscale_array(image(3, 50, 3), tiny, tile=16).shape == (6, 100, 3)


def test_tiled_array_matches_whole(tiny: Upscaler) -> None:
    a = image(70, 90, 4, seed=8)
    whole = upscale_array(a, tiny, tile=0).astype(int)
    tiled = upscale_array(a, tiny, tile=32, overlap=16).astype(int)
    assert np.abs(whole - tiled).max() <= 1


def test_set5_bicubic_matches_the_reference_psnr(bicubic: Upscaler) -> None:
    """Upscaling the shipped Set5 x4 LR with the bicubic model reproduces the reference bicubic scores."""
    lr_dir = data_path("Set5", "LR_bicubic", "X4")
    ref = json.loads(data_path("metrics", "bicubic_Set5.json").read_text())["Set5"]["x4"]["images"]
    for lr_path in sorted(lr_dir.glob("*.png")):
        name = lr_path.stem.replace("x4", "")
        lr = read_image(lr_path).pixels
        sr = upscale_array(lr, bicubic, tile=0)
        t = torch.from_numpy(to_float(lr)).permute(2, 0, 1)
        assert np.array_equal(sr, quantize_uint8(imresize(t, 4)).transpose(1, 2, 0))  # the eval path
        hr = np.asarray(Image.open(lr_dir.parents[1] / "HR" / f"{name}.png").convert("RGB"))
        hr = hr[: sr.shape[0], : sr.shape[1]]
        assert psnr(sr, hr, crop_border=4) == pytest.approx(ref[name]["psnr_y"], abs=1e-3)


# ------------------------------------------------------------------------------------------- batches
def make_inputs(folder: Path) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    imgs = {"rgb.png": image(12, 10, 3), "grey.png": image(9, 9, 1), "rgba.png": image(8, 11, 4),
            "photo.jpg": image(16, 16, 3), "deep.tif": image(7, 9, 3, 16)}
    for name, a in imgs.items():
        save_array(folder / name, a)
    (folder / "sub").mkdir(exist_ok=True)
    save_array(folder / "sub" / "inner.webp", image(6, 6, 3))
    return imgs


def test_naming_formats_and_recursion(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in")
    jobs = plan_jobs([str(tmp_path / "in")], tmp_path / "out", Settings(recursive=True, suffix="_x4"))
    names = sorted(str(j.dst.relative_to(tmp_path / "out")) for j in jobs)
    assert names == ["deep_x4.tif", "grey_x4.png", "photo_x4.jpg", "rgb_x4.png", "rgba_x4.png", "sub/inner_x4.webp"]
    jobs = plan_jobs([str(tmp_path / "in")], tmp_path / "out", Settings(format="png"))
    assert sorted(j.dst.name for j in jobs) == ["deep.png", "grey.png", "photo.png", "rgb.png", "rgba.png"]
    jobs = plan_jobs([str(tmp_path / "in" / "**" / "*.webp")], tmp_path / "out", Settings())
    assert [str(j.dst.relative_to(tmp_path / "out")) for j in jobs] == ["sub/inner.webp"]


def test_an_output_folder_inside_the_input_is_not_read_back(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in")
    for pattern in ([str(tmp_path / "in")], [str(tmp_path / "in" / "**" / "*.*")]):
        first = plan_jobs(pattern, tmp_path / "in" / "up", Settings(recursive=True))
        for job in first:  # as if the first run had written them
            job.dst.parent.mkdir(parents=True, exist_ok=True)
            job.dst.write_bytes(job.src.read_bytes())
        again = plan_jobs(pattern, tmp_path / "in" / "up", Settings(recursive=True))
        assert [(j.src, j.dst) for j in again] == [(j.src, j.dst) for j in first]
        assert not any("up" in j.src.relative_to(tmp_path / "in").parts for j in again)
    # an output folder above the input folder hides nothing
    assert len(plan_jobs([str(tmp_path / "in")], tmp_path, Settings())) == 5
    assert len(plan_jobs([str(tmp_path / "in" / "*.png")], tmp_path, Settings())) == 3
    # a file in the output folder named on its own is still an input, and may not be overwritten
    with pytest.raises(UsageError, match="overwrite an input"):
        plan_jobs([str(tmp_path / "in" / "up" / "rgb.png")], tmp_path / "in" / "up", Settings())


def test_usage_errors(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in")
    with pytest.raises(UsageError, match="overwrite an input"):
        plan_jobs([str(tmp_path / "in")], tmp_path / "in", Settings())
    assert plan_jobs([str(tmp_path / "in")], tmp_path / "in", Settings(suffix="_x4"))
    with pytest.raises(UsageError, match="both be written"):
        save_array(tmp_path / "in" / "rgb.bmp", image(4, 4, 3))
        plan_jobs([str(tmp_path / "in")], tmp_path / "out", Settings(format="png"))
    with pytest.raises(UsageError, match="does not exist"):
        plan_jobs([str(tmp_path / "nope")], tmp_path / "out", Settings())
    with pytest.raises(UsageError, match="path separator"):  # would write outside the output folder
        plan_jobs([str(tmp_path / "in")], tmp_path / "out", Settings(suffix="/../../x"))
    with pytest.raises(UsageError, match="no file matches"):
        plan_jobs([str(tmp_path / "*.xyz")], tmp_path / "out", Settings())
    assert UsageError("x").exit_code == 2


def test_batch_outputs_skip_and_overwrite(tmp_path: Path, bicubic: Upscaler) -> None:
    imgs = make_inputs(tmp_path / "in")
    settings = Settings(recursive=True)
    jobs = plan_jobs([str(tmp_path / "in")], tmp_path / "out", settings)
    summary = run_batch(jobs, bicubic, settings)
    assert summary.count("done") == 6 and summary.exit_code == 0
    for name, a in imgs.items():
        got = read_image(tmp_path / "out" / name).pixels
        assert got.shape == (a.shape[0] * 4, a.shape[1] * 4, a.shape[2]) and got.dtype == a.dtype, name
        if name.endswith((".png", ".tif")):  # lossless: exactly the bicubic of the decoded input
            assert np.array_equal(got, bicubic_ref(read_image(tmp_path / "in" / name).pixels)), name
    again = run_batch(plan_jobs([str(tmp_path / "in")], tmp_path / "out", settings), bicubic, settings)
    assert again.count("skipped") == 6 and again.count("done") == 0
    settings.overwrite = True
    redo = run_batch(plan_jobs([str(tmp_path / "in")], tmp_path / "out", settings), bicubic, settings)
    assert redo.count("done") == 6


def visible(folder: Path) -> list[str]:
    """Names in ``folder`` that are not hidden (records and temporaries are)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def bad_inputs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_array(folder / "good1.png", image(8, 8, 3))
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    good = (folder / "good1.png").read_bytes()
    (folder / "cut.png").write_bytes(good[: len(good) // 2])
    (folder / "odd.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    save_array(folder / "tiny.png", np.zeros((1, 1, 3), np.uint8))
    save_array(folder / "good2.png", image(5, 7, 4))


def test_bad_files_fail_alone(tmp_path: Path, bicubic: Upscaler) -> None:
    bad_inputs(tmp_path / "in")
    settings = Settings()
    summary = run_batch(plan_jobs([str(tmp_path / "in")], tmp_path / "out", settings), bicubic, settings)
    status = {r.job.src.name: r.status for r in summary.results}
    assert status == {"good1.png": "done", "good2.png": "done", "tiny.png": "done", "empty.png": "failed",
                      "text.png": "failed", "cut.png": "failed", "odd.jpg": "failed"}
    for r in summary.results:
        if r.status == "failed":
            assert r.reason and "\n" not in r.reason and "Traceback" not in r.reason
    assert summary.exit_code == 1
    assert read_image(tmp_path / "out" / "tiny.png").pixels.shape == (4, 4, 3)
    assert visible(tmp_path / "out") == ["good1.png", "good2.png", "tiny.png"]
    assert sorted(p.name for p in (tmp_path / "out" / manifest.RECORD_DIR).iterdir()) == [
        "good1.png.json", "good2.png.json", "tiny.png.json"]  # no record of what failed


def test_unwritable_output_and_full_disk(tmp_path: Path, bicubic: Upscaler, monkeypatch: pytest.MonkeyPatch) -> None:
    save_array(tmp_path / "in" / "a.png", image(8, 8, 3))
    (tmp_path / "blocked").write_text("a file where a folder should be")
    settings = Settings()
    jobs = plan_jobs([str(tmp_path / "in")], tmp_path / "blocked" / "out", settings)
    summary = run_batch(jobs, bicubic, settings)
    assert summary.count("failed") == 1 and "cannot create output folder" in summary.results[0].reason

    def full(*args: object, **kw: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imageio, "encode", full)  # a whole image at once (JPEG, ...)
    monkeypatch.setattr(up_mod.PngWriter, "write_rows", full)  # PNG rows, in the encoder's thread
    for fmt in ("png", "jpg"):
        settings = Settings(format=fmt)
        jobs = plan_jobs([str(tmp_path / "in")], tmp_path / "out", settings)
        summary = run_batch(jobs, bicubic, settings)
        assert summary.results[0].reason == f"cannot write a.{fmt}: no space left on the device."
        assert list((tmp_path / "out").iterdir()) == []


def test_streams_to_png_when_the_output_does_not_fit(tmp_path: Path, tiny: Upscaler,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    a = image(40, 52, 4, 16, seed=9)
    imageio.write_image(tmp_path / "in" / "big.png", imageio.ImageData(a, "png", None, (300.0, 72.0)))
    expected = upscale_array(a, tiny, tile=16)
    settings = Settings(tile=16)
    jobs = plan_jobs([str(tmp_path / "in")], tmp_path / "out", settings)
    need = up_mod.memory_needed(40, 52, 4, 16, 2, None, 16, streamed=True)
    monkeypatch.setattr(up_mod, "free_memory", lambda device: int(need * 1.5))  # too little for the full output
    summary = run_batch(jobs, tiny, settings)
    assert summary.results[0].status == "done", summary.results[0].reason
    assert any("streamed" in n for n in summary.results[0].notes)
    streamed = read_image(tmp_path / "out" / "big.png")
    assert np.array_equal(streamed.pixels, expected)
    assert streamed.dpi is None  # as when not streamed: an upscale's pixels no longer have the input's size in inches
    # JPEG cannot be streamed: a clear refusal instead of running out of memory
    settings = Settings(tile=16, format="jpg")
    summary = run_batch(plan_jobs([str(tmp_path / "in")], tmp_path / "out", settings), tiny, settings)
    assert summary.results[0].status == "failed" and "use --format png" in summary.results[0].reason


def test_out_of_memory_retry_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Picky:
        scale, device, dtype = 2, torch.device("cpu"), torch.float32

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            if max(x.shape[-2:]) > 40:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
            return imresize(x, 2)

    save_array(tmp_path / "in" / "a.png", image(64, 64, 3))
    retries: list[tuple[int, int]] = []

    class Events(up_mod.NoEvents):
        def retry(self, job: Job, old: int, new: int) -> None:
            retries.append((old, new))

    settings = Settings(tile=0)
    summary = run_batch(plan_jobs([str(tmp_path / "in")], tmp_path / "out", settings), Picky(), settings, Events())
    assert summary.count("done") == 1 and retries == [(64, 32)]


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["upscale", str(tmp_path / "in"), str(out), "--model", "bicubic", "--scale", "2", "--json", "-"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["done"], report["failed"], report["skipped"]) == (3, 4, 0)
    assert main(["upscale", str(tmp_path / "in" / "good1.png"), str(out), "--model", "bicubic", "-s", "2"]) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert main(["upscale", str(tmp_path / "in")]) == 2  # no output folder
    assert main(["upscale", str(tmp_path / "in"), str(out), "--tile", "big"]) == 2
    assert main(["upscale", str(tmp_path / "in"), str(tmp_path / "in"), "--model", "bicubic"]) == 2
    assert main(["upscale", str(tmp_path / "missing"), str(out), "--model", "bicubic"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_options(tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_array(tmp_path / "in" / "a.png", image(30, 26, 4, 16))
    code = main(["upscale", str(tmp_path / "in"), str(tmp_path / "out"), "--weights", str(tiny_weights), "--tile", "16",
                 "--tile-overlap", "8", "--tta", "--alpha", "bicubic", "--outscale", "3", "--format", "tiff",
                 "--suffix", "_big", "--device", "cpu", "--dtype", "fp32"])
    assert code == 0, capsys.readouterr()
    got = read_image(tmp_path / "out" / "a_big.tif").pixels
    assert got.shape == (90, 78, 4) and got.dtype == np.uint16


# ------------------------------------------------------------------------------- stale outputs
def small_set(folder: Path, n: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        save_array(folder / f"im{i}.png", image(8, 10, 3, seed=i))


def upscale_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["upscale", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_rerun_keeps_outputs_made_with_other_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 23: `sst upscale in/ out/` then `-s 2`: the first outputs stay byte for byte, are named, exit 1."""
    small_set(tmp_path / "in")
    inp, out = str(tmp_path / "in"), str(tmp_path / "out")
    code, text, _ = upscale_cli(capsys, inp, out, "-m", "bicubic")
    assert code == 0 and "3 done" in text
    first = {p.name: p.read_bytes() for p in (tmp_path / "out").glob("*.png")}
    code, text, _ = upscale_cli(capsys, inp, out, "-m", "bicubic")
    assert code == 0 and "0 done" in text and "3 skipped" in text  # same settings: done already
    for extra in (["-s", "2"], ["--tta"], ["--outscale", "5"], ["-s", "2", "--tta", "--outscale", "5"]):
        code, text, err = upscale_cli(capsys, inp, out, "-m", "bicubic", *extra)
        assert code == 1 and "0 done" in text and "3 kept (not replaced)" in text, extra
        assert {p.name: p.read_bytes() for p in (tmp_path / "out").glob("*.png")} == first, extra
        line = next(x for x in text.splitlines() if x.startswith("not replaced"))
        assert "im0.png, im1.png, im2.png" in line and manifest.OTHER_SETTINGS in line and manifest.WAY_OUT in line
        assert "Traceback" not in err
    assert "scale 4, now 2" in text and "tta off, now on" in text and "outscale none, now 5" in text
    code, text, _ = upscale_cli(capsys, inp, out, "-m", "bicubic", "-s", "2", "--suffix", "_x2")
    assert code == 0 and "3 done" in text and (tmp_path / "out" / "im0_x2.png").is_file()  # the way out
    code, text, _ = upscale_cli(capsys, inp, out, "-m", "bicubic", "-s", "2", "--overwrite")
    assert code == 0 and "3 done" in text and "redone" not in text  # --overwrite replaces, no questions asked
    assert read_image(tmp_path / "out" / "im0.png").pixels.shape == (16, 20, 3)


def test_sst_redoes_its_own_stale_work_and_keeps_hand_edits(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    small_set(tmp_path / "in")
    inp, out = str(tmp_path / "in"), str(tmp_path / "out")
    args = ("-m", "bicubic", "-s", "3", "--tta", "--outscale", "5")
    assert upscale_cli(capsys, inp, out, *args)[0] == 0
    save_array(tmp_path / "in" / "im1.png", image(8, 10, 3, seed=9))  # an edited input: sst's output is stale
    code, text, _ = upscale_cli(capsys, inp, out, *args)
    assert code == 0 and "1 done (1 redone: input changed)" in text and "2 skipped" in text
    save_array(tmp_path / "out" / "im2.png", image(4, 4, 3))  # an output edited by hand
    edited = (tmp_path / "out" / "im2.png").read_bytes()
    for _ in range(2):  # never replaced, however often sst runs
        code, text, _ = upscale_cli(capsys, inp, out, *args)
        assert code == 1 and "1 kept (not replaced)" in text and "2 skipped" in text
        assert f"not replaced: im2.png: {manifest.CHANGED}; {manifest.WAY_OUT}." in text
        assert (tmp_path / "out" / "im2.png").read_bytes() == edited
    code, text, _ = upscale_cli(capsys, inp, out, *args, "-s", "2")  # other settings too: still the user's
    assert code == 1 and (tmp_path / "out" / "im2.png").read_bytes() == edited
    record = manifest.record_path(tmp_path / "out" / "im0.png")
    record.write_text(record.read_text().replace('"output": {', '"output": null, "x": {'))
    code, text, _ = upscale_cli(capsys, inp, out, *args)  # a pending record: sst stopped while writing it
    assert code == 1 and f"1 done (1 redone: {manifest.UNFINISHED})" in text
    code, text, _ = upscale_cli(capsys, inp, out, *args, "--overwrite")
    assert code == 0 and "3 done" in text
    assert read_image(tmp_path / "out" / "im2.png").pixels.shape == (40, 50, 3)


def test_a_failed_rewrite_leaves_the_old_record(tmp_path: Path, bicubic: Upscaler,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An --overwrite that fails keeps the old file and its record: a rerun still knows what made it."""
    small_set(tmp_path / "in", 1)
    settings = Settings()
    jobs = plan_jobs([str(tmp_path / "in")], tmp_path / "out", settings)
    assert run_batch(jobs, bicubic, settings).count("done") == 1
    record = manifest.record_path(jobs[0].dst).read_text()

    def broken(*args: object, **kwargs: object) -> list[str]:
        raise up_mod.SSTError("disk full.")

    monkeypatch.setattr(up_mod, "process_file", broken)
    again = Settings(overwrite=True, tta=True)
    assert run_batch(plan_jobs([str(tmp_path / "in")], tmp_path / "out", again), bicubic, again).count("failed") == 1
    assert manifest.record_path(jobs[0].dst).read_text() == record
    assert run_batch(jobs, bicubic, settings).count("skipped") == 1  # as before the failed rewrite


def test_outputs_sst_did_not_make_are_kept_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small_set(tmp_path / "in", 2)
    (tmp_path / "out").mkdir()
    save_array(tmp_path / "out" / "im0.png", image(5, 5, 3))  # a user's own file with an output's name
    code, text, _ = upscale_cli(capsys, str(tmp_path / "in"), str(tmp_path / "out"), "-m", "bicubic", "-s", "2")
    assert code == 0 and "1 done" in text
    assert f"1 skipped (1 kept, {manifest.NO_RECORD}: im0.png)" in text  # named
    assert read_image(tmp_path / "out" / "im0.png").pixels.shape == (5, 5, 3)
    upscale_cli(capsys, str(tmp_path / "in"), str(tmp_path / "out"), "-m", "bicubic", "-s", "2", "--overwrite")
    assert read_image(tmp_path / "out" / "im0.png").pixels.shape == (16, 20, 3)


def test_other_weights_keep_and_the_json_traces_the_weights(tmp_path: Path, tiny_weights: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    small_set(tmp_path / "in", 2)
    torch.manual_seed(1)
    other = save_checkpoint(tmp_path / "other_x2.safetensors", build_model(TINY).eval())
    args = [str(tmp_path / "in"), str(tmp_path / "out"), "--device", "cpu", "--json", "-"]
    code, text, _ = upscale_cli(capsys, *args, "--weights", str(tiny_weights))
    first = json.loads(text)
    assert code == 0 and first["done"] == 2
    import sst_cli

    assert first["sst_version"] == sst_cli.__version__ and len(first["weights_sha256"]) == 64
    record = json.loads((tmp_path / "out" / manifest.RECORD_DIR / "im0.png.json").read_text())
    assert record["recipe"]["weights_sha256"] == first["weights_sha256"] and record["output"] is not None
    code, text, _ = upscale_cli(capsys, *args, "--weights", str(tiny_weights))
    assert json.loads(text)["skipped"] == 2
    code, text, _ = upscale_cli(capsys, *args, "--weights", str(other))
    second = json.loads(text)
    assert code == 1 and (second["done"], second["kept"]) == (0, 2)
    assert second["weights_sha256"] != first["weights_sha256"]
    assert {r["status"] for r in second["results"]} == {"kept"}
    assert all(r["reason"].startswith(manifest.OTHER_SETTINGS) and f"weights {first['weights_sha256'][:12]}, now "
               in r["reason"] for r in second["results"])
    code, text, _ = upscale_cli(capsys, *args, "--weights", str(other), "--overwrite")
    assert code == 0 and json.loads(text)["done"] == 2


def test_records_of_many_writers_stay_apart(tmp_path: Path, bicubic: Upscaler) -> None:
    """Two runs filling one folder at once (as ranks do) each keep their own records, never a shared file."""
    small_set(tmp_path / "in", 4)
    settings = Settings()
    jobs = plan_jobs([str(tmp_path / "in")], tmp_path / "out", settings)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        halves = list(pool.map(lambda part: run_batch(part, bicubic, settings, clean_temps=False),
                               [jobs[0::2], jobs[1::2]]))
    assert [h.count("done") for h in halves] == [2, 2]
    again = run_batch(jobs, bicubic, settings)
    assert again.count("skipped") == 4 and all(r.reason == "" for r in again.results)


# ------------------------------------------------------------------------------------ output paths
def test_one_input_and_an_image_name_writes_that_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small_set(tmp_path / "in", 2)
    src, big = tmp_path / "in" / "im0.png", tmp_path / "res" / "big.jpg"
    code, text, _ = upscale_cli(capsys, str(src), str(big), "-m", "bicubic", "-s", "2")
    assert code == 0 and "1 done" in text
    assert big.is_file() and read_image(big).format == "jpg" and read_image(big).size == (20, 16)
    assert visible(tmp_path / "res") == ["big.jpg"]
    code, text, _ = upscale_cli(capsys, str(src), str(big), "-m", "bicubic", "-s", "2")
    assert "1 skipped" in text  # the file is an output like any other: recorded, kept on a rerun
    code, _, err = upscale_cli(capsys, str(tmp_path / "in"), str(tmp_path / "two.png"), "-m", "bicubic")
    assert code == 2 and "2 input images" in err and "names one file" in err
    code, _, err = upscale_cli(capsys, str(src), str(tmp_path / "in" / "im1.png"), str(tmp_path / "x.png"))
    assert code == 2 and "give an output folder" in err
    code, _, err = upscale_cli(capsys, str(src), str(tmp_path / "x.gif"), "-m", "bicubic")
    assert code == 2 and "cannot write .gif" in err
    code, _, err = upscale_cli(capsys, str(src), str(tmp_path / "x.png"), "-m", "bicubic", "--format", "jpg")
    assert code == 2 and "contradicts" in err
    code, _, err = upscale_cli(capsys, str(src), str(src), "-m", "bicubic")
    assert code == 2 and "is the input" in err
    assert not (tmp_path / "two.png").exists() and not (tmp_path / "x.png").exists()
    (tmp_path / "dir.png").mkdir()  # an existing folder stays a folder, whatever its name
    code, text, _ = upscale_cli(capsys, str(src), str(tmp_path / "dir.png"), "-m", "bicubic", "-s", "2")
    assert code == 0 and (tmp_path / "dir.png" / "im0.png").is_file()


# --------------------------------------------------------------------------------- hostile images
def deflate_zeros(n: int) -> bytes:
    """A valid zlib stream of ``n`` zero bytes, a few MB, made in a blink: one literal 0, then 258-byte
    copies at distance 1 in a fixed-Huffman block (what zlib would take seconds to find)."""
    literal = np.array([0, 0, 1, 1, 0, 0, 0, 0], np.uint8)  # code of literal 0, first bit first
    copy = np.array([1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0], np.uint8)  # length 258 (code 285), distance 1
    q, r = divmod(n - 1, 258)
    bits = np.concatenate([np.array([1, 1, 0], np.uint8), literal, np.tile(copy, q), np.tile(literal, r),
                           np.zeros(7, np.uint8)])  # BFINAL + fixed Huffman, ..., end of block
    adler = ((n % 65521) << 16) | 1  # Adler-32 of n zeros
    return b"\x78\x01" + np.packbits(bits, bitorder="little").tobytes() + adler.to_bytes(4, "big")


def bomb_png(path: Path, side: int = 30000) -> Path:
    """A grey PNG declaring side x side pixels, all black: a decompression bomb of a few MB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + (zlib.crc32(kind + data) & 0xFFFFFFFF).to_bytes(4, "big")

    header = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", deflate_zeros(side * (side + 1)))
                     + chunk(b"IEND", b""))
    return path


BOMB_CHILD = """
import json, sys, time
import torch  # loaded before the clock starts: the bound is on sst's work
from sst_cli.cli import main
t = time.perf_counter()
code = main(sys.argv[1:])
seconds = time.perf_counter() - t
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) * 1024
print("RESULT " + json.dumps({"code": code, "seconds": seconds, "peak": peak}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc")
def test_decompression_bomb_is_refused_at_once_and_the_batch_goes_on(tmp_path: Path) -> None:
    bomb = bomb_png(tmp_path / "in" / "a_bomb.png")
    save_array(tmp_path / "in" / "b_next.png", image(12, 12, 3))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", BOMB_CHILD, "upscale", str(tmp_path / "in"), str(out),
                           "-m", "bicubic", "-s", "2", "--device", "cpu", "--json", "-"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert bomb.stat().st_size < 8 << 20
    stdout, _, result_line = proc.stdout.rpartition("RESULT ")
    result = json.loads(result_line)
    assert result["code"] == 1, proc.stderr  # one image failed, the rest were done
    assert result["seconds"] < 2 and result["peak"] < 500e6, result
    report = json.loads(stdout)
    rows = {Path(r["input"]).name: r for r in report["results"]}
    assert rows["b_next.png"]["status"] == "done"
    reason = rows["a_bomb.png"]["reason"]
    assert rows["a_bomb.png"]["status"] == "failed" and "30000x30000" in reason and "--max-pixels" in reason
    assert "\n" not in reason and "Traceback" not in reason
    assert visible(out) == ["b_next.png"]
    assert sorted(p.name for p in (out / manifest.RECORD_DIR).iterdir()) == ["b_next.png.json"]


def test_images_that_cannot_fit_are_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    save_array(tmp_path / "in" / "big.png", image(300, 400, 3))
    save_array(tmp_path / "in" / "small.png", image(6, 6, 3))
    decoded: list[str] = []
    real_read = imageio.read_image

    def read(path: str | os.PathLike[str]) -> imageio.ImageData:
        decoded.append(Path(path).name)
        return real_read(path)

    monkeypatch.setattr(imageio, "read_image", read)
    # enough for the small image, not for the big one even streamed to disk
    monkeypatch.setattr(up_mod, "free_memory", lambda device: 100_000)
    code, text, _ = upscale_cli(capsys, str(tmp_path / "in"), str(tmp_path / "out"), "-m", "bicubic", "-s", "4",
                                "--tile", "64", "--json", "-")
    report = json.loads(text)
    rows = {Path(r["input"]).name: r for r in report["results"]}
    assert code == 1 and rows["small.png"]["status"] == "done" and decoded == ["small.png"]
    assert rows["big.png"]["status"] == "failed" and "needs about" in rows["big.png"]["reason"]
    assert visible(tmp_path / "out") == ["small.png"]
    # the pixel limit is the user's to raise or lower
    code, text, _ = upscale_cli(capsys, str(tmp_path / "in" / "small.png"), str(tmp_path / "o2"), "-m", "bicubic",
                                "--max-pixels", "35", "--json", "-")
    assert code == 1 and "over the limit" in json.loads(text)["results"][0]["reason"]


# ---------------------------------------------------------------------------------- interruptions
def _spawn(inp: Path, out: Path, weights: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "sst_cli", "upscale", str(inp), str(out), "--weights", str(weights),
                             "--tile", "48", "--device", "cpu"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    # A job started in the background of a non-interactive shell (CI, nohup) inherits SIGINT as ignored,
    # and Python then never raises KeyboardInterrupt; a user's Ctrl-C is what this test stands for.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_output(out: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
            return
        if proc.poll() is not None:
            pytest.fail(f"upscale ended early: {proc.communicate()}")
        time.sleep(0.02)
    pytest.fail("no output appeared")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_killed_batch_leaves_no_partial_file_and_resumes(tmp_path: Path, tiny_weights: Path, tiny: Upscaler,
                                                         sig: signal.Signals) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    sources = {f"img{i}.png": image(128, 128, 3, seed=i) for i in range(10)}  # ~0.2 s each
    for name, a in sources.items():
        save_array(inp / name, a)
    proc = _spawn(inp, out, tiny_weights)
    _wait_for_output(out, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    finished = visible(out)
    temps = [p for p in out.rglob(".*") if p.is_file() and files.is_temp(p)]
    assert 1 <= len(finished) < len(sources), "the kill should land mid-batch"
    if sig != signal.SIGKILL:
        assert proc.returncode == 130 and b"Traceback" not in err
        assert b"run the same command again to resume" in err
        assert temps == []  # Ctrl-C (and kill) remove the temporary file of the image in progress
    else:
        assert proc.returncode == -signal.SIGKILL
        hidden = [p for p in out.iterdir() if p.name.startswith(".") and p.name != manifest.RECORD_DIR]
        assert all(files.is_temp(p) for p in hidden)  # at most a hidden temp, never a partial image
    for name in finished:  # every visible output is complete and correct
        expected = upscale_array(sources[name], tiny, tile=48).astype(int)
        assert np.abs(read_image(out / name).pixels.astype(int) - expected).max() <= 1
    rerun = _spawn(inp, out, tiny_weights)
    stdout, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    # a kill between an image and its record leaves the image unfinished in the record: it is redone
    kept = int(re.search(r"(\d+) skipped", stdout.decode())[1])
    redone = re.search(r"(\d+) redone: " + manifest.UNFINISHED, stdout.decode())
    assert kept + (int(redone[1]) if redone else 0) == len(finished), stdout.decode()
    assert sig == signal.SIGKILL or redone is None
    assert visible(out) == sorted(sources)  # all done
    assert [p for p in out.rglob(".*") if p.is_file() and files.is_temp(p)] == []  # stale temps removed
    for name in sources:
        assert read_image(out / name).pixels.shape == (256, 256, 3)


@pytest.mark.slow
def test_20000_pixel_image_is_upscaled_in_tiles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 20000x20000 grey PNG (400 Mpixels) goes through the CLI at x2 in bounded memory (minutes)."""
    src = tmp_path / "in" / "huge.png"
    src.parent.mkdir()
    ramp = (np.arange(20000) % 256).astype(np.uint8)
    with open(src, "wb") as fh:
        w = imageio.PngWriter(fh, 20000, 20000, 1, 8)
        for _ in range(20):
            w.write_rows(np.broadcast_to(ramp[None, :, None], (1000, 20000, 1)))
        w.close()
    out = tmp_path / "out"
    code = main(["upscale", str(src), str(out), "--model", "bicubic", "--scale", "2", "--device", "cpu", "--json", "-",
                 "--max-pixels", str(20000 * 20000)])
    captured = capsys.readouterr()
    assert code == 0, captured.out[-2000:] + captured.err[-2000:]
    assert imageio.probe(out / "huge.png") == (40000, 40000)


def test_upscaler_repr_is_one_line(tiny: Upscaler, bicubic: Upscaler) -> None:
    """Issue 23: a notebook shows what runs, not the whole network."""
    assert repr(tiny) == ("Upscaler(model='tiny', scale=2, device='cpu', dtype='float32', backend='sdpa', "
                          "weights='test')")
    assert "\n" not in repr(bicubic) and "model='bicubic', scale=4" in repr(bicubic)


def test_run_header_says_what_runs(bicubic: Upscaler) -> None:
    """Issue 23: --tta and --outscale are in the header; x4 then resized to x3 is not "x4"."""
    from sst_cli.cli.upscale import run_header

    assert run_header(bicubic, Settings()).startswith("[bold]bicubic[/] x4 (built-in) on cpu, float32")
    line = run_header(bicubic, Settings(outscale=3, tta=True))
    assert line.startswith("[bold]bicubic[/] x4 then resized to x3 (") and line.endswith(", TTA x8")
    assert "resized" not in run_header(bicubic, Settings(outscale=4.0))
    assert "x2.5" in run_header(bicubic, Settings(outscale=2.5))


def test_plan_line_keeps_the_reasons_apart(tmp_path: Path) -> None:
    """Issue 23: inputs that changed are not counted as "made with other settings or unfinished"."""
    from sst_cli.cli.upscale import plan_line
    from sst_cli.upscale.batch import Result

    def job(name: str, redo: str = "") -> Job:
        return Job(tmp_path / name, tmp_path / "out" / name, Path(name), redo)

    todo = [job("a.png"), job("b.png", manifest.INPUT_CHANGED), job("c.png", manifest.UNFINISHED),
            job("d.png", manifest.INPUT_CHANGED)]
    kept = [Result(job("e.png"), "skipped"), Result(job("f.png"), "kept", manifest.CHANGED)]
    assert plan_line("H", todo, kept) == "H; 4 to do (2 input changed, 1 unfinished), 1 skipped, 1 kept (not replaced)"
    assert plan_line("H", todo[:1], []) == "H; 1 to do"


def test_the_record_of_a_one_file_output_is_beside_it_not_in_the_current_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    small_set(tmp_path / "in", 1)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    code, _, _ = upscale_cli(capsys, str(tmp_path / "in" / "im0.png"), str(tmp_path / "res" / "big.png"), "-m", "bicubic")
    assert code == 0 and list((tmp_path / "cwd").iterdir()) == []
    assert manifest.record_path(tmp_path / "res" / "big.png").is_file()


def test_bicubic_outscale_by_an_integer_is_one_resize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`-m bicubic --outscale 3` is MATLAB bicubic x3 itself, not x4 then shrunk to x3."""
    src = tmp_path / "a.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)).save(src)
    assert main(["upscale", str(src), str(tmp_path / "o"), "-m", "bicubic", "--outscale", "3"]) == 0
    assert "bicubic x3 (built-in)" in capsys.readouterr().err
    assert main(["upscale", str(src), str(tmp_path / "s"), "-m", "bicubic", "-s", "3"]) == 0
    once = np.asarray(Image.open(tmp_path / "o" / "a.png"))
    assert once.shape == (51, 69, 3)
    assert np.array_equal(once, np.asarray(Image.open(tmp_path / "s" / "a.png")))
    assert main(["upscale", str(src), str(tmp_path / "h"), "-m", "bicubic", "--outscale", "2.5"]) == 0
    assert "bicubic x4 then resized to x2.5" in capsys.readouterr().err.splitlines()[-1]  # a fraction
