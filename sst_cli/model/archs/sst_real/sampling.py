"""SSTReal as an image-to-image network: the authors' one-step sampling (``EdmUNetRealModel.test`` in
``sst/models/edm_real_unet_model.py``) around the official ``EDMUNet``.

An image x (B, 3, H, W) in [0, 1] is scaled to [-1, 1] (the options' mean 0.5, std 0.5), reflect-padded on
the bottom/right to a multiple of 64, upscaled x4 by bicubic (``F.interpolate``), given Gaussian noise at
sigma 1 (the options' ``sigma_max``), denoised once with guidance ``D_i + lambda * (D_f - D_i)``, cropped
and mapped back to [0, 1] (B, 3, 4H, 4W), not clamped: what ``Upscaler`` and the tiler call.

The noise is seeded and drawn by output pixel: each value is a hash of (seed, channel, row, column) in the
whole image's output grid, so the same seed gives the same image, and a tile (or a TTA pass) sees the noise
the untiled image has at its pixels (``sst_cli.model.placement`` says where a tile lies).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ... import placement
from ..sst.network import pad_to_multiple
from .config import SCALE
from .network import EDMUNet

SIGMA = 1.0  # train.consistency_opt.sigma_max of options/test/SSTReal_X4.yaml: the one noise level sampled
PAD = 64  # the official val.min_size: the LR image is padded to a multiple of it
DEFAULT_SEED = 0


# ------------------------------------------------------------------------------------------ the noise
def _signed(c: int) -> int:
    """An integer modulo 2^64 as the int64 torch holds it."""
    return (c + (1 << 63)) % (1 << 64) - (1 << 63)


GOLDEN = _signed(0x9E3779B97F4A7C15)
U1, U2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # SplitMix64's multipliers
M1, M2 = _signed(U1), _signed(U2)
ROW, COL, CHANNEL = _signed(0xD6E8FEB86659FD93), _signed(0xA0761D6478BD642F), _signed(0xE7037ED1A0B428DB)


def _shr(x: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix(x: Tensor) -> Tensor:
    """SplitMix64's finaliser: every input bit reaches every output bit (int64 products wrap around)."""
    x = (x ^ _shr(x, 30)) * M1
    x = (x ^ _shr(x, 27)) * M2
    return x ^ _shr(x, 31)


def _mix_int(v: int) -> int:
    """:func:`_mix` of one Python integer (no tensor: on the meta device a tensor has no value to read)."""
    x = v % (1 << 64)
    x = ((x ^ (x >> 30)) * U1) % (1 << 64)
    x = ((x ^ (x >> 27)) * U2) % (1 << 64)
    return _signed(x ^ (x >> 31))


def hashed_normal(seed: int, channel: int, rows: Tensor, cols: Tensor) -> Tensor:
    """Standard normal values, one per (row, column) of the broadcast of ``rows`` and ``cols`` (int64,
    output-pixel coordinates of the whole image, any sign), a function of (seed, channel, row, column) only:
    Box-Muller on two 24-bit uniforms from SplitMix64 (float32; tails cut at 5.8 sigma)."""
    stream = _signed(channel * CHANNEL + _mix_int(seed))
    base = rows * ROW + cols * COL + stream
    a = _mix(base)
    b = _mix(a + GOLDEN)
    u1 = (_shr(a, 40) + 1).float() / (1 << 24)  # (0, 1]
    u2 = _shr(b, 40).float() / (1 << 24)  # [0, 1)
    return torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)


def placed_noise(seed: int, batch: int, tile_hw: tuple[int, int], padded_hw: tuple[int, int],
                 device: torch.device) -> Tensor:
    """The noise (batch, 3, 4 * padded H, 4 * padded W) for tiles of ``tile_hw`` LR pixels (as the network sees
    them) padded to ``padded_hw``: each output pixel gets the noise of the whole-image pixel it stands for,
    through the tile's origin and the TTA transform of the current placement. Padding pixels map past the
    tile's edge, to pixels no other pixel of this pass stands for."""
    where = placement.current()
    h, w = tile_hw
    i = torch.arange(SCALE * padded_hw[0], dtype=torch.int64, device=device)  # output rows as the network sees them
    j = torch.arange(SCALE * padded_hw[1], dtype=torch.int64, device=device)
    if where.flips & 2:  # undo the TTA flips, then the transpose
        i = SCALE * h - 1 - i
    if where.flips & 1:
        j = SCALE * w - 1 - j
    rows, cols = (j[None, :], i[:, None]) if where.transpose else (i[:, None], j[None, :])
    out = torch.empty(batch, 3, i.numel(), j.numel(), device=device)
    for n in range(batch):
        y0, x0 = where.origin(n)
        for c in range(3):  # a channel at a time: the int64 temporaries are 2x a float32 plane each
            out[n, c] = hashed_normal(seed, c, rows + SCALE * y0, cols + SCALE * x0)
    return out


# ---------------------------------------------------------------------------------------- the sampler
class Sampler(nn.Module):
    """``EDMUNet`` sampled in one step: (B, 3, H, W) in [0, 1] -> (B, 3, 4H, 4W) around [0, 1], not clamped.

    ``guidance`` is the official ``sampling_ig_lambda`` (default: the network config's, 2.0 for the released
    model); ``seed`` picks the noise. Holds no parameters of its own (the network's are under ``net.``).
    """

    def __init__(self, net: EDMUNet, seed: int = DEFAULT_SEED, guidance: float | None = None) -> None:
        super().__init__()
        self.net = net
        self.seed = int(seed)
        self.guidance = float(net.cfg.sampling_ig_lambda if guidance is None else guidance)
        self.cfg, self.scale, self.config = net.cfg, net.scale, net.config  # what sizing and records ask

    @property
    def recipe(self) -> dict[str, float | int]:
        """What, beside the weights, decides the output: part of an output's record (the skip rule)."""
        return {"seed": self.seed, "guidance": self.guidance}

    def set_backend(self, backend: str) -> Sampler:
        self.net.set_backend(backend)
        return self

    @property
    def backend(self) -> str:
        return self.net.backend

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        """``noise`` (B, 3, 4 * padded H, 4 * padded W), standard normal, replaces the seeded noise (tests)."""
        _, _, h, w = x.shape
        lq = pad_to_multiple(x.float() * 2 - 1, PAD)  # the official reflect pad where it works (see there)
        lq_up = F.interpolate(lq, scale_factor=SCALE, mode="bicubic")
        if noise is None:
            noise = placed_noise(self.seed, x.shape[0], (h, w), lq.shape[-2:], x.device)
        d_i, d_f = self.net(lq_up + SIGMA * noise, SIGMA, lq, lq_up, return_pair=True)
        out = d_i + self.guidance * (d_f - d_i)
        return (out[:, :, : SCALE * h, : SCALE * w] + 1) / 2
