"""SSTReal: the authors' real-world x4 model, an EDM-preconditioned denoiser of RIB transformer blocks.

Written from the authors' ``sst_real_arch.py`` (commit bcd6132). Module and parameter names reproduce the
official state-dict layout (``EDMUNet`` holding ``model``, an ``SSTReal``), so the published
``SSTReal_X4.pth`` loads with ``strict=True``; the forward signature is the official ``(x, sigma, lq, lq_up)``.
The window attention is SST's own (``archs/sst/network.py``), as the official code shares ``arch_utils``.
How it is sampled (one step from the bicubic-upscaled input plus noise) is ``sampling.py``.

Shapes (B images, LR H x W, C = dim): the noisy HR estimate x (B, 3, 4H, 4W) is pixel-unshuffled to
(B, 48, H, W) and projected to C channels; the LR image lq (B, 3, H, W) is projected once and fused into the
first blocks; the noise level sets, per block, a shift, scale and gate of each layer's two sub-layers (adaLN,
as in DiT). Two upsamplers return (B, 3, 4H, 4W): one after block ``ig_idx`` ("i"), one at the end ("f").
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..sst.network import WindowAttention, init_position_bias
from .config import SSTRealConfig

EPS = 1e-6  # the official LayerNorm's


def layer_norm(x: Tensor) -> Tensor:
    """LayerNorm over the channels of (B, C, H, W), no affine parameters (the official ``use_affine=False``)."""
    return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], eps=EPS).permute(0, 3, 1, 2)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x (B, C, H, W) * (1 + scale) + shift, with shift and scale (B or 1, C)."""
    return x * (1 + scale[:, :, None, None]) + shift[:, :, None, None]


class TimestepEmbedder(nn.Module):
    """Noise level (N,) -> (N, emb_channels): cos/sin features of ``noise_channels`` frequencies, then an MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size))
        self.frequency_embedding_size = frequency_embedding_size

    def forward(self, t: Tensor) -> Tensor:
        dim, half = self.frequency_embedding_size, self.frequency_embedding_size // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        feats = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            feats = torch.cat([feats, torch.zeros_like(feats[:, :1])], dim=-1)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


class ConvSwiGLUFFN(nn.Module):
    """1x1 to 2h channels, 3x3 depthwise, SiLU(first half) * second half, 1x1 back (h = 2/3 of ``hidden``)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        hidden = int(hidden * 2 / 3)
        self.w12 = nn.Sequential(nn.Conv2d(dim, 2 * hidden, 1),
                                 nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden))
        self.w3 = nn.Conv2d(hidden, dim, 1)
        self.ffn_dropout = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=1)
        return self.w3(self.ffn_dropout(F.silu(x1) * x2))


class RealSTL(nn.Module):
    """One transformer layer: window attention and FFN, each on a modulated LayerNorm and gated."""

    def __init__(self, cfg: SSTRealConfig, window: int, heads: int, rank: int) -> None:
        super().__init__()
        self.attn = WindowAttention(cfg.dim, window, heads, rank, bias="rib", rib_hidden_dim=cfg.rib_hidden_dim,
                                    rib_n_freqs=cfg.rib_n_freqs)
        self.ffn = ConvSwiGLUFFN(cfg.dim, int(cfg.dim * cfg.exp_ratio), drop=cfg.drop_p)

    def forward(self, x: Tensor, mod: tuple[Tensor, ...]) -> Tensor:
        attn_shift, attn_scale, attn_gate, ffn_shift, ffn_scale, ffn_gate = mod  # each (B or 1, C)
        x = x + self.attn(modulate(layer_norm(x), attn_shift, attn_scale)) * attn_gate[:, :, None, None]
        return x + self.ffn(modulate(layer_norm(x), ffn_shift, ffn_scale)) * ffn_gate[:, :, None, None]


class NNx4Upsampler(nn.Sequential):
    """(B, C, H, W) -> (B, 3, 4H, 4W): conv, then twice (nearest x2, conv), LeakyReLU(0.2) between, conv to RGB."""

    def __init__(self, dim: int, inter: int) -> None:
        super().__init__(
            nn.Conv2d(dim, inter, 3, padding=1), nn.LeakyReLU(0.2, inplace=True), nn.Upsample(scale_factor=2),
            nn.Conv2d(inter, inter, 3, padding=1), nn.LeakyReLU(0.2, inplace=True), nn.Upsample(scale_factor=2),
            nn.Conv2d(inter, inter, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(inter, 3, 3, padding=1))


class RealSSTBlock(nn.Module):
    """Optional LR fusion, the layers (one modulation shared by all), a 3x3 conv scaled by ``gamma``, + input."""

    def __init__(self, cfg: SSTRealConfig, fuse_lr: bool) -> None:
        super().__init__()
        c = cfg.dim
        if fuse_lr:
            self.fuse_lr = nn.Conv2d(2 * c, c, 1)
        self.blocks = nn.ModuleList([RealSTL(cfg, w, h, r)
                                     for w, h, r in zip(cfg.window_sizes, cfg.num_heads, cfg.ranks, strict=True)])
        self.out_conv = nn.Conv2d(c, c, 3, padding=1)
        self.adaLN_modulation = nn.Linear(cfg.emb_channels, 6 * c)  # the official name
        nn.init.zeros_(self.adaLN_modulation.weight)  # the official init: every layer starts as the identity
        nn.init.zeros_(self.adaLN_modulation.bias)
        self.gamma = nn.Parameter(torch.full((1, c, 1, 1), 1e-3))

    def forward(self, x: Tensor, embed: Tensor, lr: Tensor | None = None) -> Tensor:
        residual = x
        mod = self.adaLN_modulation(embed).chunk(6, dim=-1)
        if lr is not None:
            x = self.fuse_lr(torch.cat([x, lr], dim=1))
        for layer in self.blocks:
            x = layer(x, mod)
        return residual + self.out_conv(x) * self.gamma


class SSTReal(nn.Module):
    """The denoiser: (noisy HR x, noise feature c_noise (N,), LR lq) -> the "i" and "f" outputs (B, 3, 4H, 4W)."""

    def __init__(self, cfg: SSTRealConfig) -> None:
        super().__init__()
        c = cfg.dim
        self.fuse_lr_till, self.ig_idx = cfg.fuse_lr_till, cfg.ig_idx
        self.map_noise = TimestepEmbedder(cfg.emb_channels, cfg.noise_channels)
        self.proj_in = nn.Conv2d(3 * 4 * 4, c, 3, padding=1)
        self.proj_lr = nn.Conv2d(3, c, 3, padding=1)
        self.proj_body = nn.ModuleList([RealSSTBlock(cfg, fuse_lr=i <= cfg.fuse_lr_till)
                                        for i in range(cfg.num_blocks)])
        self.up_i = NNx4Upsampler(c, cfg.intermediate_dim)
        self.up_f = NNx4Upsampler(c, cfg.intermediate_dim)

    def forward(self, x: Tensor, noise: Tensor, lq: Tensor) -> tuple[Tensor, Tensor]:
        embed = self.map_noise(noise)  # (N, emb)
        x = self.proj_in(F.pixel_unshuffle(x, 4))  # (B, C, H, W)
        skip = x
        lr = self.proj_lr(lq)
        x_i = None
        for idx, block in enumerate(self.proj_body):
            x = block(x, embed, lr if idx <= self.fuse_lr_till else None)
            if idx == self.ig_idx:
                x_i = self.up_i(x + skip)
        assert x_i is not None  # the config keeps ig_idx among the blocks
        return x_i, self.up_f(x + skip)


class EDMUNet(nn.Module):
    """The official EDMUNet: EDM preconditioning around ``SSTReal`` (its parameters under ``model.``).

    ``forward(x, sigma, lq, lq_up)``: x the noisy HR image (B, 3, 4H, 4W) and lq the LR image (B, 3, H, W),
    both in [-1, 1]; sigma the noise level (a scalar or one per image). Returns the denoised HR image, the
    guided mix ``D_i + sampling_ig_lambda * (D_f - D_i)``; in training mode, or with ``return_pair=True``, the
    pair (D_i, D_f). ``lq_up`` (the bicubic-upscaled lq) is accepted and unused, as in the official code.
    """

    def __init__(self, **network_g: Any) -> None:  # the official keywords (SSTRealConfig)
        super().__init__()
        cfg = SSTRealConfig.from_network_g(network_g)
        self.cfg = cfg
        self.scale = cfg.scale
        self.config = cfg.to_network_g()
        self.model = SSTReal(cfg)
        for m in self.modules():  # everything else keeps PyTorch's default init, as in the official code
            # (meta tensors hold no values: drawing them only costs time, seconds for the released network)
            if isinstance(m, WindowAttention) and m.to_q.device.type != "meta":
                init_position_bias(m)

    def sampler(self, seed: int | None = None, guidance: float | None = None) -> nn.Module:
        """This network as an image-to-image model, sampled as the authors do (``sampling.Sampler``): what
        ``Upscaler`` runs. ``seed`` picks the noise, ``guidance`` overrides ``sampling_ig_lambda``."""
        from .sampling import DEFAULT_SEED, Sampler

        return Sampler(self, DEFAULT_SEED if seed is None else seed, guidance)

    def set_backend(self, backend: str) -> EDMUNet:
        for m in self.modules():
            if isinstance(m, WindowAttention):
                m.backend = backend
        return self

    @property
    def backend(self) -> str:
        return next(m.backend for m in self.modules() if isinstance(m, WindowAttention))

    def forward(self, x: Tensor, sigma: Tensor | float, lq: Tensor, lq_up: Tensor | None = None,
                return_pair: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1, 1, 1, 1).to(torch.float32)
        # The official constants: sigma is measured against 0.1 (use_skip) or 0.001 as EDM's noise unit.
        unit = 0.1 if self.cfg.use_skip else 0.001
        sd2 = self.cfg.sigma_data**2
        c_skip = sd2 / ((sigma / unit) ** 2 + sd2)
        c_out = (sigma / unit) / ((sigma / unit) ** 2 + sd2).sqrt()
        c_noise = (sigma + 0.002).log() / 4
        dtype = self.model.proj_in.weight.dtype  # the official model_dtype: the body may run in half precision
        x_i, x_f = self.model(x.to(dtype), c_noise.flatten().to(dtype), lq.to(dtype))
        d_i = c_skip * x + c_out * x_i.to(torch.float32)
        d_f = c_skip * x + c_out * x_f.to(torch.float32)
        if self.training or return_pair:
            return d_i, d_f
        return d_i + self.cfg.sampling_ig_lambda * (d_f - d_i)
