"""The degradation mix: how a training LR patch is made from its HR crop when plain MATLAB bicubic is not enough.

Users' images were not all shrunk by MATLAB's ``imresize``: scripts use OpenCV's resizes (no antialiasing),
Pillow's (antialiased), photos carry a little blur, sensor noise and JPEG. A model trained on one kernel
sharpens the others' aliasing into artefacts, so ``degradation: mixed`` draws, per sample:

1. Gaussian blur of the HR crop (probability ``blur``, sigma uniform in ``blur_sigma`` HR pixels);
2. one resize, by the weights in ``resize`` (``matlab`` = MATLAB bicubic with antialiasing as the benchmarks;
   ``cubic``/``linear``/``lanczos`` = OpenCV's, no antialiasing; ``area`` = OpenCV's INTER_AREA;
   ``*_aa`` = Pillow's filters, which widen the kernel when shrinking);
3. noise (probability ``noise``): Gaussian, or Poisson with probability ``poisson``, its standard deviation at
   mid-grey uniform in ``noise_sigma`` 8-bit levels;
4. rounding to 8 bits, then JPEG as sst saves it (probability ``jpeg``, quality uniform in ``jpeg_quality``).

Every draw comes from the sample's own generator (seeded by the run's ``seed`` and the sample counter), so a
run repeats exactly, whatever the number of workers or processes.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass

from ..io.resample import CV2_FILTERS, gaussian_blur, jpeg_roundtrip, resize_cv2, resize_pil

Kernel = Literal["matlab", "cubic", "linear", "lanczos", "area", "cubic_aa", "linear_aa", "lanczos_aa"]
KERNELS: tuple[str, ...] = Kernel.__args__  # type: ignore[attr-defined]
Prob = Annotated[float, Field(ge=0, le=1)]


Pair = Annotated[list[float], Field(min_length=2, max_length=2)]  # [low, high]


@dataclass(config=ConfigDict(extra="forbid"))
class DegradationMix:
    """``degradation:`` in a training config (``mixed`` = these defaults; a mapping overrides some of them)."""

    resize: dict[Kernel, Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: {
        "matlab": 0.4, "cubic": 0.1, "cubic_aa": 0.08, "linear": 0.06, "linear_aa": 0.06, "area": 0.1,
        "lanczos": 0.1, "lanczos_aa": 0.1})
    blur: Prob = 0.15
    blur_sigma: Pair = Field(default_factory=lambda: [0.2, 1.2])  # HR pixels
    noise: Prob = 0.2
    poisson: Prob = 0.5
    noise_sigma: Pair = Field(default_factory=lambda: [1.0, 6.0])  # 8-bit levels
    jpeg: Prob = 0.2
    jpeg_quality: Annotated[list[int], Field(min_length=2, max_length=2)] = Field(
        default_factory=lambda: [60, 95])

    @field_validator("resize")
    @classmethod
    def _some_weight(cls, v: dict[str, float]) -> dict[str, float]:
        if not v or sum(v.values()) <= 0:
            raise ValueError("resize needs at least one kernel with a positive weight")
        return v

    @field_validator("blur_sigma", "noise_sigma", "jpeg_quality")
    @classmethod
    def _ordered(cls, v: list) -> list:
        if v[0] > v[1] or v[0] < 0:
            raise ValueError("must be [low, high] with 0 <= low <= high")
        return v

    @field_validator("jpeg_quality")
    @classmethod
    def _quality(cls, v: list[int]) -> list[int]:
        if v[1] > 100:
            raise ValueError("JPEG quality is at most 100")
        return v


def resize(hr: np.ndarray, size: tuple[int, int], kernel: str) -> np.ndarray:
    """(H, W, C) float32 -> (h, w, C) float32 with one of ``KERNELS``; ``size`` is (h, w)."""
    if kernel == "matlab":
        from ..model.bicubic import imresize_np  # torch: loaded by the data workers, not by config checks

        return imresize_np(hr, size[0] / hr.shape[0])
    return resize_cv2(hr, size, kernel) if kernel in CV2_FILTERS else resize_pil(hr, size, kernel)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_blur(img, sigma)


def add_noise(img: np.ndarray, sigma_levels: float, poisson: bool, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of std ``sigma_levels``/255, or Poisson noise with that std at mid-grey."""
    sigma = sigma_levels / 255.0
    if not poisson:
        return img + rng.normal(0.0, sigma, img.shape).astype(np.float32)
    peak = 0.5 / max(sigma, 1e-6) ** 2  # photons at full scale: std at 0.5 is sqrt(0.5 * peak) / peak = sigma
    return (rng.poisson(np.clip(img, 0, 1) * peak) / peak).astype(np.float32)


def jpeg(img8: np.ndarray, quality: int) -> np.ndarray:
    return jpeg_roundtrip(img8, quality)


def degrade(hr: np.ndarray, scale: int, mix: DegradationMix, rng: np.random.Generator) -> np.ndarray:
    """HR crop (H, W, 3) float32 in [0, 1] -> LR (H/scale, W/scale, 3) float32 on the 8-bit grid."""
    img = hr
    if rng.random() < mix.blur:
        img = blur(img, rng.uniform(*mix.blur_sigma))
    names = list(mix.resize)
    weights = np.array([mix.resize[n] for n in names], dtype=np.float64)
    kernel = names[rng.choice(len(names), p=weights / weights.sum())]
    img = resize(img, (hr.shape[0] // scale, hr.shape[1] // scale), kernel)
    if rng.random() < mix.noise:
        img = add_noise(img, rng.uniform(*mix.noise_sigma), rng.random() < mix.poisson, rng)
    img8 = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    if rng.random() < mix.jpeg:
        img8 = jpeg(img8, int(rng.integers(mix.jpeg_quality[0], mix.jpeg_quality[1] + 1)))
    return img8.astype(np.float32) / 255.0
