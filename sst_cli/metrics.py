"""Y-channel PSNR and SSIM exactly as BasicSR computes them (see shared/design/METRICS.md).

Inputs are uint8 HWC RGB arrays (quantise SR output first with ``resize.quantize_uint8``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 "MATLAB" luma on [0, 255], not rounded. uint8 (H, W, 3) RGB -> float (H, W)."""
    x = img.astype(np.float32) / 255.0
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


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def _ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    win = _gaussian_window()[None, None]
    x = torch.from_numpy(a)[None, None]
    y = torch.from_numpy(b)[None, None]

    def filt(t: torch.Tensor) -> torch.Tensor:  # "valid" filtering: 5 pixels lost on every side
        return F.conv2d(t, win)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x**2
    syy = filt(y * y) - mu_y**2
    sxy = filt(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return float((num / den).mean())


def ssim(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """SSIM (11x11 Gaussian window, sigma 1.5, valid region), mean over channels when not Y."""
    a, b = _prepare(sr, hr, crop_border, y_channel)
    if a.ndim == 2:
        return _ssim_plane(a, b)
    return float(np.mean([_ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[2])]))
