"""NIQE (Mittal et al. 2013, "Making a completely blind image quality analyzer"), as BasicSR computes it.

The computation of BasicSR's ``calculate_niqe`` (``basicsr/metrics/niqe.py``), written for sst with numpy only
(scipy is not a dependency of sst), so that NIQE works in every install and gives BasicSR's values: the tests
compare the two to 1e-6 on Set5/Set14 images, odd sizes, grey images and crop borders 0, 3 and 4.

The steps and where their rounding matters:

1. Y: BT.601 "MATLAB" luma of the uint8 image as BasicSR's ``to_y_channel`` makes it: the image in float32 on
   [0, 1], a float64 dot product with the weights in **BGR** order (BasicSR's images come from cv2), divided by
   255 and cast to float32, times 255. A (H, W) grey image is its own Y. sst's images are RGB: they are
   reversed to BGR first, so the sum runs in BasicSR's order.
2. The crop border, then Y rounded to integers (half to even, in float32) "to be consistent with MATLAB".
3. The image cut to whole 96x96 blocks; two scales (the second a MATLAB-style bicubic halving with
   antialiasing, sst's :func:`sst_cli.model.bicubic.imresize_np`, bit-exact with BasicSR's ``imresize``).
   At each: local mean and deviation by a 7x7 Gaussian window (sigma 7/6) with edge replication, summed in
   float64 in the order of ``scipy.ndimage.convolve`` and cast to float32 as it does; the normalised
   coefficients (MSCN) in float32.
4. Per block (columns of blocks outer, rows inner, as BasicSR): 18 features from asymmetric generalised
   Gaussian fits (the shape by a table look-up over 0.2..10 in steps of 0.001) of the coefficients and of
   their products with 4 neighbours. float32 means as numpy computes them on the flattened block; the gamma
   function from ``math`` (equal to scipy's to ~1e-15).
5. A Gaussian fitted to the blocks' 36 features (blocks with a NaN feature, e.g. flat ones, left out of the
   covariance) against the pristine model's (``sst_cli/data/niqe/niqe_pristine.npz``, the NIQE authors'
   parameters as BasicSR distributes them): NIQE = sqrt((mu_p - mu) pinv((S_p + S) / 2) (mu_p - mu)^T).
   Lower is better.

An image with fewer than two 96x96 blocks after the crop, or fewer than two blocks with texture, has no NIQE
(BasicSR fails inside numpy there): :class:`NiqeUndefined` says so in one sentence.
"""

from __future__ import annotations

import functools
import io
import math
import warnings
from importlib import resources

import numpy as np

from ..errors import SSTError

BLOCK = 96  # block side in pixels at the first scale (the NIQE authors' recommended size, no overlap)
WINDOW_SIZE, WINDOW_SIGMA = 7, 7 / 6
_BGR_Y = (24.966, 128.553, 65.481)  # BT.601 Y weights for B, G, R on [0, 1] (then + 16)
_NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical and the two diagonal products


class NiqeUndefined(SSTError):
    """NIQE cannot score this image: too few (textured) 96x96 blocks."""


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = WINDOW_SIGMA) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', size, sigma)``: exp(-(x^2 + y^2) / (2 sigma^2)), normalised to sum 1."""
    half = (size - 1) / 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    w = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    return w / w.sum()


@functools.cache
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """The pristine images' feature mean (1, 36) and covariance (36, 36), float64, shipped with the package."""
    raw = resources.files("sst_cli.data.niqe").joinpath("niqe_pristine.npz").read_bytes()
    with np.load(io.BytesIO(raw)) as data:
        return data["mu_pris_param"], data["cov_pris_param"]


@functools.cache
def _shape_table() -> tuple[np.ndarray, np.ndarray]:
    """The AGGD shape grid (0.2 to 10 by 0.001) and, for each shape a, r(a) = G(2/a)^2 / (G(1/a) G(3/a))."""
    shapes = np.arange(0.2, 10.001, 0.001)  # BasicSR's grid, value for value
    inv = np.reciprocal(shapes)
    g1 = np.array([math.gamma(v) for v in inv])
    g2 = np.array([math.gamma(v) for v in inv * 2])
    g3 = np.array([math.gamma(v) for v in inv * 3])
    return shapes, np.square(g2) / (g1 * g3)


def y_channel(img: np.ndarray) -> np.ndarray:
    """float32 (H, W) Y on [0, 255], not rounded, of a uint8 (H, W, 3) RGB image or a (H, W) grey one."""
    if img.ndim == 2:
        return img.astype(np.float32)
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"NIQE takes an (H, W) or (H, W, 3) image, not one of shape {img.shape}")
    if img.shape[2] == 1:
        return img[..., 0].astype(np.float32)
    bgr = np.ascontiguousarray(img[..., 2::-1]).astype(np.float32) / 255.0
    y = (np.dot(bgr, np.array(_BGR_Y)) + 16.0) / 255.0  # float64, as BasicSR's bgr2ycbcr
    return y.astype(np.float32) * 255.0


def _smooth(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.convolve(img, window, mode='nearest')`` for float32 ``img``: each output pixel sums
    window x pixel in float64 over the flipped window in C order (scipy's order), then is cast to float32."""
    k = window.shape[0]
    r = k // 2
    h, w = img.shape
    padded = np.pad(img, r, mode="edge").astype(np.float64)
    flipped = window[::-1, ::-1]
    acc = np.zeros((h, w), np.float64)
    for i in range(k):
        for j in range(k):
            acc += padded[i : i + h, j : j + w] * flipped[i, j]
    return acc.astype(np.float32)


def _aggd(values: np.ndarray) -> tuple[float, float, float]:
    """Shape and left/right scales of an asymmetric generalised Gaussian fitted to ``values`` (1-D float32)."""
    shapes, ratios = _shape_table()
    left = np.sqrt(np.mean(values[values < 0] ** 2))
    right = np.sqrt(np.mean(values[values > 0] ** 2))
    g = left / right
    r = np.mean(np.abs(values)) ** 2 / np.mean(values**2)
    r_norm = (r * (g**3 + 1) * (g + 1)) / ((g**2 + 1) ** 2)
    shape = shapes[np.argmin((ratios - r_norm) ** 2)]
    spread = np.sqrt(math.gamma(1 / shape) / math.gamma(3 / shape))
    return shape, left * spread, right * spread


def _block_features(block: np.ndarray) -> list[float]:
    """The 18 NIQE features of one block of normalised coefficients."""
    flat = block.flatten()
    shape, left, right = _aggd(flat)
    feats = [shape, (left + right) / 2]
    for shift in _NEIGHBOURS:
        pairs = (block * np.roll(block, shift, axis=(0, 1))).flatten()
        shape, left, right = _aggd(pairs)
        mean = (right - left) * (math.gamma(2 / shape) / math.gamma(1 / shape))
        feats += [shape, mean, left, right]
    return feats


def _features(y: np.ndarray) -> np.ndarray:
    """(blocks, 36) features of a rounded float32 Y plane already cut to whole blocks."""
    from ..model.bicubic import imresize_np

    window = gaussian_window()
    rows, cols = y.shape[0] // BLOCK, y.shape[1] // BLOCK
    per_scale = []
    img = y
    for scale in (1, 2):
        mu = _smooth(img, window)
        sigma = np.sqrt(np.abs(_smooth(np.square(img), window) - np.square(mu)))
        mscn = (img - mu) / (sigma + 1)
        b = BLOCK // scale
        per_scale.append(np.array([_block_features(mscn[i * b : (i + 1) * b, j * b : (j + 1) * b])
                                   for j in range(cols) for i in range(rows)]))
        if scale == 1:
            img = imresize_np(img / 255.0, 0.5, antialias=True) * 255.0
    return np.concatenate(per_scale, axis=1)


def check_size(height: int, width: int, crop_border: int = 0) -> None:
    """Raise :class:`NiqeUndefined` when an image of this size has fewer than two 96x96 blocks after the crop."""
    h, w = height - 2 * crop_border, width - 2 * crop_border
    if h < BLOCK or w < BLOCK or (h // BLOCK) * (w // BLOCK) < 2:
        raise NiqeUndefined(f"NIQE needs at least two {BLOCK}x{BLOCK} blocks and this image is {max(w, 0)}x{max(h, 0)} "
                            f"after a crop border of {crop_border}.")


def niqe_of_y(y: np.ndarray) -> float:
    """NIQE of a Y plane on [0, 255] that is already cropped and rounded (float32, as BasicSR's ``niqe``)."""
    check_size(*y.shape)
    rows, cols = y.shape[0] // BLOCK, y.shape[1] // BLOCK
    feats = _features(np.ascontiguousarray(y[: rows * BLOCK, : cols * BLOCK], dtype=np.float32))
    complete = feats[~np.isnan(feats).any(axis=1)]
    if len(complete) < 2:
        raise NiqeUndefined(f"NIQE is undefined for this image: {len(complete)} of its {len(feats)} {BLOCK}x{BLOCK} "
                            "blocks have texture and at least two are needed.")
    mu = np.nanmean(feats, axis=0)
    cov = np.cov(complete, rowvar=False)
    mu_p, cov_p = pristine_model()
    d = mu_p - mu
    inv = np.linalg.pinv((cov_p + cov) / 2)
    return float(np.squeeze(np.sqrt(np.matmul(np.matmul(d, inv), np.transpose(d)))))


def niqe(img: np.ndarray, crop_border: int = 0) -> float:
    """NIQE of a uint8 image ((H, W, 3) RGB or (H, W) grey) after ``crop_border`` pixels off every edge, as
    BasicSR's ``calculate_niqe(img_bgr, crop_border)``. Lower is better."""
    check_size(img.shape[0], img.shape[1], crop_border)
    y = y_channel(img)
    if crop_border:
        y = y[crop_border:-crop_border, crop_border:-crop_border]
    # flat blocks: means of empty selections and 0/0 in the fits, NaN features (left out, as BasicSR does)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return niqe_of_y(y.round())
