"""Metrics and MATLAB-style bicubic against the BasicSR reference values (tests/data/metrics)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import data_path
from sst_cli.evaluation.datasets import discover, generate_lr, mod_crop, read_rgb_u8, resolve_dataset
from sst_cli.evaluation.metrics import psnr, rgb_to_y, ssim
from sst_cli.model.bicubic import imresize, quantize_uint8

CASES = [(name, s) for name in ("Set5", "Set14") for s in (2, 3, 4)]


def _rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))  # BasicSR reads every image as 3 channels


def _reference(name: str) -> dict:
    return json.loads(data_path("metrics", f"bicubic_{name}.json").read_text())[name]


def _hr_lr(name: str, stem: str, s: int) -> tuple[np.ndarray, np.ndarray]:
    root = data_path(name)
    hr = _rgb(root / "HR" / f"{stem}.png")
    hr = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
    return hr, _rgb(root / "LR_bicubic" / f"X{s}" / f"{stem}x{s}.png")


def _to_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255.0


@pytest.mark.parametrize(("name", "s"), CASES)
def test_bicubic_baseline_matches_basicsr_per_image(name: str, s: int) -> None:
    ref = _reference(name)[f"x{s}"]
    psnrs, ssims = [], []
    for stem, want in ref["images"].items():
        hr, lr = _hr_lr(name, stem, s)
        assert list(lr.shape[:2]) == want["lr_shape"]
        sr = quantize_uint8(imresize(_to_chw(lr), s).permute(1, 2, 0))
        p, q = psnr(sr, hr, s), ssim(sr, hr, s)
        assert abs(p - want["psnr_y"]) < 1e-3, (stem, p, want["psnr_y"])
        assert abs(q - want["ssim_y"]) < 1e-4, (stem, q, want["ssim_y"])
        psnrs.append(p)
        ssims.append(q)
    assert abs(np.mean(psnrs) - ref["mean_psnr_y"]) < 1e-4
    assert abs(np.mean(ssims) - ref["mean_ssim_y"]) < 1e-5


@pytest.mark.parametrize(("name", "s"), CASES)
def test_lr_regeneration_differs_from_matlab_exactly_as_basicsr(name: str, s: int) -> None:
    """Same algorithm and rounding as BasicSR => the same differences from MATLAB's LR files.

    float32 dot products round in the last bit according to the CPU's vector width, which moves a
    value sitting exactly on a .5 rounding boundary: allow a handful of such pixels per image."""
    for stem, want in _reference(name)[f"x{s}"]["images"].items():
        hr, lr = _hr_lr(name, stem, s)
        regen = quantize_uint8(imresize(_to_chw(hr), 1 / s).permute(1, 2, 0))
        assert regen.shape == lr.shape
        diff = np.abs(regen.astype(np.int16) - lr.astype(np.int16))  # over all channel values of the RGB image
        n, want_n = int((diff > 0).sum()), want["lr_regen_pixels_differing"]
        assert abs(n - want_n) <= max(2, want_n // 500), (stem, n, want_n)
        assert int(diff.max()) == want["lr_regen_max_abs_diff"], stem


def test_y_formula_is_bt601_matlab_unrounded() -> None:
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [10, 20, 30]]], dtype=np.uint8)
    y = rgb_to_y(img)
    assert y[0, 0] == pytest.approx(16.0)
    assert y[0, 1] == pytest.approx(235.0, abs=1e-4)
    assert y[0, 2] == pytest.approx(16 + 65.481, abs=1e-4)
    assert y[0, 3] == pytest.approx(16 + (65.481 * 10 + 128.553 * 20 + 24.966 * 30) / 255, abs=1e-4)
    assert y[0, 3] != round(float(y[0, 3]))  # not rounded


def test_identical_images_give_inf_psnr_and_unit_ssim() -> None:
    img = np.random.default_rng(0).integers(0, 256, (40, 36, 3), dtype=np.uint8)
    assert math.isinf(psnr(img, img, 4)) and psnr(img, img, 4) > 0
    assert ssim(img, img, 4) == pytest.approx(1.0)


def test_border_crop_and_size_mismatch() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    b = a.copy()
    b[:2] = 255 - b[:2]  # damage only the top two rows
    assert math.isfinite(psnr(a, b, 0)) and math.isfinite(psnr(a, b, 1))
    assert math.isinf(psnr(a, b, 2))  # cropped away
    with pytest.raises(ValueError):
        psnr(a, b[:-1], 0)


def test_grayscale_is_read_as_three_channels() -> None:
    rng = np.random.default_rng(2)
    g1 = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    g2 = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    rgb1, rgb2 = np.repeat(g1[..., None], 3, 2), np.repeat(g2[..., None], 3, 2)
    assert psnr(g1, g2, 2) == psnr(rgb1, rgb2, 2)
    assert ssim(g1, g2, 2) == ssim(rgb1, rgb2, 2)
    # Y of a grey image is 16 + 219/255 * v: the range is compressed, unlike the MATLAB-era "grey as Y"
    mse_gray = np.mean((g1.astype(float) - g2.astype(float)) ** 2)
    assert psnr(g1, g2, 0) == pytest.approx(10 * math.log10(255**2 / (mse_gray * (219 / 255) ** 2)), abs=1e-3)


def test_rgb_psnr_and_ssim_use_all_channels() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-5, 6, a.shape), 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    assert psnr(a, b, 0, y_channel=False) == pytest.approx(10 * math.log10(255**2 / mse))
    assert 0 < ssim(a, b, 0, y_channel=False) < 1


def test_ssim_equals_the_two_dimensional_gaussian_window() -> None:
    """The separable filter gives the same value as BasicSR's 2-D 11x11 window (computed here directly)."""
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (48, 53, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    x = torch.from_numpy(rgb_to_y(a).astype(np.float64))[None, None]
    y = torch.from_numpy(rgb_to_y(b).astype(np.float64))[None, None]
    ax = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(ax**2) / (2 * 1.5**2))
    win = torch.outer(g, g) / torch.outer(g, g).sum()

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win[None, None])

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    want = float((((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))).mean())
    assert ssim(a, b, 0) == pytest.approx(want, abs=1e-12)


def _set5() -> Path:
    """Set5 from the tests' own data, else the shared folder next to the repository (skip if neither)."""
    here = Path(__file__).resolve().parent
    for path in (here / "data" / "Set5", here.parents[1] / "shared" / "data" / "Set5"):
        if path.is_dir():
            return path
    pytest.skip("Set5 is in neither tests/data/Set5 nor ../shared/data/Set5")


@pytest.mark.parametrize("s", [2, 3, 4])
def test_scikit_image_agrees_with_our_basicsr_metrics(s: int) -> None:
    """scikit-image as an independent witness, on bicubic-upscaled Set5 (Y channel, border crop = scale).

    Tolerances (the reasons are in sst_cli.evaluation.metrics' docstring): on the same Y planes, SSIM
    agrees to float64 rounding (1e-12); with scikit-image's own float64 Y (ours is float32, as BasicSR's)
    SSIM agrees to 1e-7 and PSNR to 1e-5 dB.
    """
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    def sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
        return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255)

    pairs = discover(resolve_dataset(str(_set5()), "."), s).pairs
    assert len(pairs) == 5
    for pair in pairs:
        hr = mod_crop(read_rgb_u8(pair.hr)[0], s)
        lr = read_rgb_u8(pair.lr)[0] if pair.lr is not None else generate_lr(hr, s)
        sr = quantize_uint8(imresize(_to_chw(lr), s).permute(1, 2, 0))
        c = s
        ours_y = [rgb_to_y(im[c:-c, c:-c]).astype(np.float64) for im in (hr, sr)]
        sk_y = [rgb2ycbcr(im)[c:-c, c:-c, 0] for im in (hr, sr)]
        ours = ssim(sr, hr, s)
        assert abs(ours - sk_ssim(*ours_y)) < 1e-12, pair.name
        assert abs(ours - sk_ssim(*sk_y)) < 1e-7, pair.name
        assert abs(psnr(sr, hr, s) - peak_signal_noise_ratio(*sk_y, data_range=255)) < 1e-5, pair.name
        assert 0.5 < ours < 1  # a real comparison, not identical images
