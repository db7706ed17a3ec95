"""MATLAB-style bicubic resize (``imresize``), as the SR field uses it to make LR images.

Cubic kernel a=-0.5; coordinate map u = x/s + 0.5(1 - 1/s); antialiasing when shrinking (kernel widened
to 4/s taps and scaled by s); weights normalised per output pixel; mirror edges; rows, then columns;
output size ceil(in * s). Float in, float out (no clipping or rounding): callers quantise.

Computed in float32 like BasicSR's ``imresize`` so that rounding matches it pixel for pixel. One function
serves ``eval`` (LR generation, the ``bicubic`` model), ``train`` (LR made on the fly) and ``upscale``
(``--outscale``). It lives beside the network because it is also a model: :class:`Bicubic`, the baseline
every SR table starts with.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor, nn


def _cubic(x: Tensor) -> Tensor:
    ax = x.abs()
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1).to(x.dtype)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)).to(x.dtype)
    return near + far


@functools.lru_cache(maxsize=256)
def _weights_indices(in_len: int, out_len: int, scale: float, antialias: bool) -> tuple[Tensor, list[int], int, int]:
    """Taps for every output pixel: weights (out, p), the first tap's row in the mirror-padded input,
    and the number of mirrored rows needed before and after the input."""
    kernel_width = 4.0
    shrink_aa = scale < 1 and antialias
    if shrink_aa:
        kernel_width = kernel_width / scale
    x = torch.linspace(1, out_len, out_len)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    p = int(math.ceil(kernel_width) + 2)
    indices = left.view(out_len, 1) + torch.linspace(0, p - 1, p).view(1, p)  # 1-based
    dist = u.view(out_len, 1) - indices
    weights = scale * _cubic(dist * scale) if shrink_aa else _cubic(dist)
    weights = weights / weights.sum(1, keepdim=True)
    # Drop a leading/trailing tap column that is zero for every output pixel (as MATLAB does).
    zeros = (weights == 0).sum(0)
    if not math.isclose(zeros[0].item(), 0, rel_tol=1e-6):
        indices, weights = indices[:, 1:], weights[:, 1:]
    if not math.isclose(zeros[-1].item(), 0, rel_tol=1e-6):
        indices, weights = indices[:, :-1], weights[:, :-1]
    pad_before = int(-indices.min().item() + 1)
    pad_after = int(indices.max().item() - in_len)
    starts = (indices[:, 0] + pad_before - 1).long().tolist()
    return weights.contiguous(), starts, pad_before, pad_after


@functools.lru_cache(maxsize=256)
def _taps(in_len: int, out_len: int, scale: float, antialias: bool, device: torch.device,
          dtype: torch.dtype) -> tuple[Tensor, list[int], int, int]:
    """:func:`_weights_indices` with the weights on ``device`` in ``dtype``: built once on the CPU (so every
    device gets the same float32 taps), copied once per device rather than on every call."""
    weights, starts, before, after = _weights_indices(in_len, out_len, scale, antialias)
    return weights.to(device, dtype), starts, before, after


def _mirror_pad(x: Tensor, before: int, after: int) -> Tensor:
    """Symmetric padding of the last dim (edge pixel repeated), any amount."""
    n = x.shape[-1]
    idx = torch.arange(-before, n + max(after, 0), device=x.device)  # an index on x's device: no hidden copy
    period = 2 * n
    idx = idx % period
    idx = torch.where(idx >= n, period - 1 - idx, idx)
    return x[..., idx]


def _resize_last(x: Tensor, out_len: int, scale: float, antialias: bool) -> Tensor:
    """Resize the last dim of (N, M, L). One matrix-vector product per output position and row of
    N, reading strided windows of the padded input: the same float32 operations, in the same order, as
    BasicSR's imresize, so results match it bit for bit (a batched matmul would round differently)."""
    weights, starts, before, after = _taps(x.shape[-1], out_len, scale, antialias, x.device, x.dtype)
    xp = _mirror_pad(x, before, after).contiguous()  # (N, M, L + before + after)
    p = weights.shape[1]
    out = x.new_empty(x.shape[0], x.shape[1], out_len)
    for i, start in enumerate(starts):
        w = weights[i]
        for n in range(x.shape[0]):
            out[n, :, i] = xp[n, :, start : start + p].mv(w)
    return out


def _resize_rows(x: Tensor, out_len: int, scale: float, antialias: bool) -> Tensor:
    """Resize dim -2 of (N, H, W), with BasicSR's operand layout for the row pass."""
    weights, starts, before, after = _taps(x.shape[-2], out_len, scale, antialias, x.device, x.dtype)
    xp = _mirror_pad(x.transpose(1, 2), before, after).transpose(1, 2).contiguous()  # (N, H', W)
    p = weights.shape[1]
    out = x.new_empty(x.shape[0], out_len, x.shape[2])
    for i, start in enumerate(starts):
        w = weights[i]
        for n in range(x.shape[0]):
            out[n, i, :] = xp[n, start : start + p, :].transpose(0, 1).mv(w)
    return out


def imresize(img: Tensor, scale: float, antialias: bool = True) -> Tensor:
    """Resize a float tensor (..., H, W) by ``scale`` with MATLAB's bicubic. Returns float32, unclipped."""
    x = img.float()
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    x = x.reshape(-1, h, w)
    out_h, out_w = math.ceil(h * scale), math.ceil(w * scale)
    x = _resize_rows(x, out_h, scale, antialias)
    x = _resize_last(x, out_w, scale, antialias)
    return x.reshape(*lead, out_h, out_w)


def imresize_np(img: np.ndarray, scale: float, antialias: bool = True) -> np.ndarray:
    """``imresize`` for an (H, W) or (H, W, C) float array, returning the same layout as float32."""
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    if t.dim() == 3:
        return imresize(t.permute(2, 0, 1), scale, antialias).permute(1, 2, 0).numpy()
    return imresize(t, scale, antialias).numpy()


def quantize_uint8(x: np.ndarray | Tensor) -> np.ndarray:
    """[0, 1] float -> uint8 with clip and round-half-to-even, as the field does before measuring."""
    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    return np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)


class Bicubic(nn.Module):
    """The MATLAB-style bicubic baseline as a model: the same function ``eval`` and ``train`` use."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.config: dict = {"type": "bicubic", "upscaling_factor": scale}

    def forward(self, x: Tensor) -> Tensor:
        return imresize(x, self.scale).to(x.dtype)
