"""Resizes, blur and a JPEG round trip as other tools do them: how users' images were made smaller.

OpenCV's and Pillow's filters live here because ``io`` is the one package that touches cv2 and Pillow. The
training degradation mix (``training/degrade.py``) and ``benchmarks/degradations.py`` use them. Arrays are
(H, W, C) float32 in [0, 1] unless said otherwise.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from . import opencv

cv2 = opencv.cv2
CV2_FILTERS = {"cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR, "lanczos": cv2.INTER_LANCZOS4,
               "area": cv2.INTER_AREA}  # no antialiasing, except the box of INTER_AREA
PIL_FILTERS = {"cubic_aa": Image.Resampling.BICUBIC, "linear_aa": Image.Resampling.BILINEAR,
               "lanczos_aa": Image.Resampling.LANCZOS}  # Pillow widens its kernel when shrinking


def resize_cv2(img: np.ndarray, size: tuple[int, int], name: str) -> np.ndarray:
    """``img`` resized to ``size`` (h, w) by OpenCV's filter ``name`` (a key of CV2_FILTERS)."""
    h, w = size
    out = cv2.resize(np.ascontiguousarray(img, dtype=np.float32), (w, h), interpolation=CV2_FILTERS[name])
    return out[..., None] if out.ndim == 2 else out


def resize_pil(img: np.ndarray, size: tuple[int, int], name: str) -> np.ndarray:
    """``img`` resized to ``size`` (h, w) by Pillow's filter ``name`` (a key of PIL_FILTERS), a channel at a
    time in Pillow's float mode (no 8-bit rounding in between)."""
    h, w = size
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c], dtype=np.float32)).resize((w, h), PIL_FILTERS[name]))
              for c in range(img.shape[2])]
    return np.stack(planes, axis=2)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` pixels (kernel to 3 sigma, mirrored edges)."""
    k = 2 * int(np.ceil(3 * sigma)) + 1
    out = cv2.GaussianBlur(np.ascontiguousarray(img, dtype=np.float32), (k, k), sigmaX=sigma, sigmaY=sigma,
                           borderType=cv2.BORDER_REFLECT_101)
    return out[..., None] if out.ndim == 2 else out


def jpeg_roundtrip(img8: np.ndarray, quality: int) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array saved as JPEG at ``quality`` the way sst saves JPEGs (4:2:0 chroma below
    quality 90, 4:4:4 from 90), then decoded."""
    out = opencv.decode(opencv.encode(img8, "jpg", int(quality)))
    assert out is not None  # cv2 decodes what it has just encoded
    return out
