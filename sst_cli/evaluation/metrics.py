"""Y-channel PSNR and SSIM exactly as BasicSR computes them (see shared/design/METRICS.md), and
:func:`measure`, which computes any metric of ``registry.METRICS`` for one image (NIQE from ``niqe.py``, pyiqa's
through the scorers of :func:`load_scorers`).

Inputs are uint8 HWC RGB arrays (quantise SR output first with ``model.bicubic.quantize_uint8``).

Independent witness: scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255)`` and ``peak_signal_noise_ratio(data_range=255)`` agree with
these (tests/test_metrics.py, Set5 x2/x3/x4). Border handling is not a difference: scikit-image filters
the whole image (reflect padding) and then averages the SSIM map without its outer ``(win_size - 1) // 2``
= 5 pixels, which are exactly the window positions that touch the padding, so its mean is over the same
positions as BasicSR's valid-region filter (both after the scale-sized border crop done here). Its window is
also 11 taps (truncate 3.5 x sigma 1.5), normalised. What remains is floating point: on the same Y planes
the two SSIMs differ by ~1e-15 (summation order); scikit-image's own ``rgb2ycbcr`` Y is float64 where
ours, like BasicSR's, is computed in float32, which moves SSIM by up to ~5e-9 and PSNR by ~2e-7 dB. The
test's tolerances: 1e-12 (same Y), 1e-7 SSIM and 1e-5 dB PSNR (scikit-image's Y).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .registry import DEFAULT_METRICS, METRICS, parse_metrics, pyiqa_metrics

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_METRICS", "Scorer", "load_scorers", "measure", "parse_metrics", "psnr", "rgb_to_y", "ssim"]

# pyiqa's metrics: scorer(sr_u8, hr_u8 or None) -> float (the contract of ``iqa.load_scorer``)
Scorer = Callable[[np.ndarray, "np.ndarray | None"], float]


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 "MATLAB" luma on [0, 255], not rounded. uint8 (H, W, 3) RGB -> float (H, W)."""
    # C order first: the float32 dot product rounds differently for other memory layouts (e.g. a permuted
    # tensor), and the same pixels must always give the same score
    x = np.ascontiguousarray(img).astype(np.float32) / 255.0
    y = np.dot(x, np.array([65.481, 128.553, 24.966], dtype=np.float32)) + 16.0
    return y / 255.0 * 255.0  # BasicSR: computed on [0, 1] in float32, then scaled back to [0, 255]


def _as_rgb(img: np.ndarray) -> np.ndarray:
    # BasicSR reads every image as 3 channels: a grey image goes through the Y formula too.
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    return img[:, :, :3]


def _prepare(sr: np.ndarray, hr: np.ndarray, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape[:2] != hr.shape[:2]:
        raise ValueError(f"image sizes differ: {sr.shape[:2]} vs {hr.shape[:2]}")
    sr, hr = _as_rgb(sr), _as_rgb(hr)
    if crop_border:
        sr = sr[crop_border:-crop_border, crop_border:-crop_border]
        hr = hr[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        return rgb_to_y(sr).astype(np.float64), rgb_to_y(hr).astype(np.float64)
    return sr.astype(np.float64), hr.astype(np.float64)


def psnr(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB; identical images give +inf."""
    a, b = _prepare(sr, hr, crop_border, y_channel)
    mse = np.mean((a - b) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(ax**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(t: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Valid-region filtering of the last two dims by outer(g, g) (11 taps lose 5 pixels on every side).

    Done as two 1-D passes of float64 dot products: equal to the 2-D window to ~1e-16 and ~50x faster
    than a float64 ``conv2d`` on the CPU (which has no fast kernel for that dtype).
    """
    t = sliding_window_view(t, g.size, axis=-2) @ g
    return sliding_window_view(t, g.size, axis=-1) @ g


def _ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y, xx, yy, xy = _filter_valid(np.stack([a, b, a * a, b * b, a * b]), _gaussian_1d())
    sxx = xx - mu_x**2
    syy = yy - mu_y**2
    sxy = xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return float((num / den).mean())


def ssim(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """SSIM (11x11 Gaussian window, sigma 1.5, valid region), mean over channels when not Y."""
    a, b = _prepare(sr, hr, crop_border, y_channel)
    if a.ndim == 2:
        return _ssim_plane(a, b)
    return float(np.mean([_ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[2])]))


_OWN: dict[str, tuple[Callable[..., float], bool]] = {
    "psnr_y": (psnr, True), "ssim_y": (ssim, True), "psnr_rgb": (psnr, False), "ssim_rgb": (ssim, False)}


def measure(sr_u8: np.ndarray, hr_u8: np.ndarray | None, crop_border: int, names: Iterable[str] = DEFAULT_METRICS,
            scorers: Mapping[str, Scorer] | None = None) -> dict[str, float]:
    """The requested metrics of one quantised SR image: against its (mod-cropped) HR for the full-reference
    ones, alone for the no-reference ones (``hr_u8`` may be None when only those are asked for).

    sst's own metrics see the image after ``crop_border`` (BasicSR's convention: PSNR, SSIM, NIQE); pyiqa's
    come from ``scorers`` (:func:`load_scorers`, once per run) and see the whole image, as pyiqa scores it.
    """
    out: dict[str, float] = {}
    for name in names:
        metric = METRICS[name]
        if name == "niqe":
            from .niqe import niqe  # numpy only, but nothing of it is needed before a NIQE is asked for

            out[name] = niqe(sr_u8, crop_border)
        elif name in _OWN:
            if hr_u8 is None:
                raise ValueError(f"{name} needs the ground truth image")
            fn, y_channel = _OWN[name]
            out[name] = fn(sr_u8, hr_u8, crop_border, y_channel)
        else:
            scorer = (scorers or {}).get(name)
            if scorer is None:
                raise ValueError(f"{name} is computed by pyiqa: pass its scorer (load_scorers)")
            if metric.full_reference and hr_u8 is None:
                raise ValueError(f"{name} needs the ground truth image")
            out[name] = float(scorer(sr_u8, hr_u8 if metric.full_reference else None))
    return out


def load_scorers(names: Iterable[str], device: torch.device | str) -> dict[str, Scorer]:
    """pyiqa's scorer of every pyiqa metric among ``names``, loaded once on ``device`` ("auto" resolved as for
    the model). Raises SSTError in one sentence when pyiqa is missing or a metric's weights are not cached
    (``iqa.load_scorer``). Nothing is resolved or imported when no pyiqa metric is asked for."""
    wanted = pyiqa_metrics(names)
    if not wanted:
        return {}
    from ..runtime import resolve_device
    from . import iqa

    dev = resolve_device(device) if isinstance(device, str) else device
    return {name: iqa.load_scorer(name, dev) for name in wanted}
