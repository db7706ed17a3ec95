"""ESC-RIB: large-kernel convolutional attention around one 64x64-window RIB attention per block.

Written from the authors' ``esc_rib_arch.py`` (commit bcd6132). Module and parameter names reproduce the
official state-dict layout, so the published ``ESCRIB_*_X{2,3,4}.pth`` load with ``strict=True``. The
attention, LayerNorm, fused convolutions and upsampler are SST's own (``archs/sst/network.py``; the official
code shares them too).

One block (C channels, P = ``pdim`` of them through the large kernel):

    x -> LN -> ConvFFN(x4, 3x3) -> + WindowAttention(LN(.)) -> [ + ConvAttn(ConvFFN(.)) ] x conv_blocks
      -> LN -> 3x3 conv -> + x

ConvAttn convolves the first P channels with a shared P x P x k x k filter (averaged over the 8 flips and
rotations of the square: the official "geometric re-parameterisation") plus a per-image dynamic 3x3
depthwise kernel predicted from their mean, then mixes all C channels with a 1x1 convolution.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..sst.network import LayerNorm2d, RoutedAttention, WindowAttention, conv, init_position_bias, make_upsampler
from .config import ESCRIBConfig


def geo_ensemble(k: Tensor) -> Tensor:
    """Mean of a (O, I, k, k) filter over the dihedral group of the square (4 rotations x flip)."""
    rot = [k]
    for _ in range(3):  # rot90 as a flip and a transpose: the same permutation, and ONNX has no rot90
        rot.append(rot[-1].flip(3).transpose(2, 3))
    return sum(rot + [r.flip(3) for r in rot]) / 8


class ConvFFN(nn.Module):
    """1x1 expand, GELU, residual k x k depthwise conv with GELU, 1x1 project (ESC names its last ``aggr``)."""

    def __init__(self, dim: int, kernel_size: int, exp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * exp_ratio)
        self.proj = nn.Conv2d(dim, hidden, 1)
        self.dwc = nn.Conv2d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden)
        self.aggr = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = conv(x, self.proj, "gelu")
        h = h + conv(h, self.dwc, "gelu")
        return conv(h, self.aggr)


class ConvolutionalAttention(nn.Module):
    """Large static kernel + dynamic 3x3 depthwise kernel on the first ``pdim`` channels; the rest pass."""

    def __init__(self, pdim: int) -> None:
        super().__init__()
        self.pdim = pdim
        self.dwc_proj = nn.Sequential(  # (B, P, H, W) -> (B, P*9, 1, 1): one 3x3 kernel per channel and image
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(pdim, pdim // 2, 1), nn.GELU(), nn.Conv2d(pdim // 2, pdim * 9, 1))
        nn.init.zeros_(self.dwc_proj[3].weight)  # as the official init: training starts with no dynamic kernel
        nn.init.zeros_(self.dwc_proj[3].bias)

    def forward(self, x: Tensor, lk_filter: Tensor) -> Tensor:  # (B, C, H, W), (P, P, k, k)
        b, p = x.shape[0], self.pdim
        x1, x2 = x[:, :p], x[:, p:]
        dyn = self.dwc_proj(x1)  # (B, P*9, 1, 1)
        if b == 1:  # the official inference path; its shapes stay static under ONNX export (sst export)
            local = F.conv2d(x1, dyn.reshape(p, 1, 3, 3), padding=1, groups=p)
        else:  # each image its own kernel: images folded into the channels of one grouped convolution
            local = F.conv2d(x1.reshape(1, b * p, *x1.shape[2:]), dyn.reshape(b * p, 1, 3, 3), padding=1,
                             groups=b * p).view_as(x1)
        x1 = F.conv2d(x1, lk_filter, padding=lk_filter.shape[-1] // 2) + local
        return torch.cat([x1, x2], dim=1)


class ConvAttnWrapper(nn.Module):
    def __init__(self, dim: int, pdim: int) -> None:
        super().__init__()
        self.plk = ConvolutionalAttention(pdim)
        self.aggr = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor, lk_filter: Tensor, residual: Tensor) -> Tensor:
        return conv(self.plk(x, lk_filter), self.aggr, add=residual)


class Block(nn.Module):
    def __init__(self, cfg: ESCRIBConfig) -> None:
        super().__init__()
        c = cfg.dim
        self.ln_proj = LayerNorm2d(c)
        self.proj = ConvFFN(c, 3, 4)
        self.ln_attn = LayerNorm2d(c)
        self.attn = WindowAttention(c, cfg.window_size, cfg.num_heads, cfg.rank, bias=cfg.attn_type.lower(),
                                    rib_hidden_dim=cfg.rib_hidden_dim, rib_n_freqs=cfg.rib_n_freqs)
        self.lns = nn.ModuleList([LayerNorm2d(c) if cfg.use_ln else nn.Identity() for _ in range(cfg.conv_blocks)])
        self.pconvs = nn.ModuleList([ConvAttnWrapper(c, cfg.pdim) for _ in range(cfg.conv_blocks)])
        self.convffns = nn.ModuleList([ConvFFN(c, 3, cfg.exp_ratio) for _ in range(cfg.conv_blocks)])
        self.ln_out = LayerNorm2d(c)
        self.conv_out = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: Tensor, lk_filter: Tensor) -> Tensor:
        skip = x
        x = self.proj(self.ln_proj(x))  # no residual here, as in the official block
        x = self.attn.forward(self.ln_attn(x), residual=x)
        for ln, pconv, ffn in zip(self.lns, self.pconvs, self.convffns, strict=True):
            x = pconv(ffn(ln(x)), lk_filter, residual=x)
        return conv(self.ln_out(x), self.conv_out, add=skip)


class ESCRIB(RoutedAttention):
    """ESC-RIB. Input (B, 3, H, W) in [0, 1] -> (B, 3, sH, sW), not clamped. Any batch size."""

    def __init__(self, **network_g: Any) -> None:  # the official keywords (ESCRIBConfig)
        super().__init__()
        cfg = ESCRIBConfig.from_network_g(network_g)
        self.cfg = cfg
        self.scale = cfg.upscaling_factor
        self.config = cfg.to_network_g()
        self.plk_filter = nn.Parameter(torch.empty(cfg.pdim, cfg.pdim, cfg.kernel_size, cfg.kernel_size))
        nn.init.orthogonal_(self.plk_filter)  # the official init: stabilises the first steps
        self.proj = nn.Conv2d(3, cfg.dim, 3, padding=1)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_blocks)])
        self.last = nn.Sequential(LayerNorm2d(cfg.dim), nn.Conv2d(cfg.dim, cfg.dim, 3, padding=1))
        self.upsampler = make_upsampler(cfg.upsampler_type, cfg.dim, self.scale, cfg.intermediate_dim)
        for m in self.modules():  # convolutions keep PyTorch's default init, as in the official code
            if isinstance(m, WindowAttention):
                init_position_bias(m)

    def forward(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        feat = self.proj(x)
        skip = feat
        # Idempotent, so a filter saved after the official convert() gives the same result.
        lk = geo_ensemble(self.plk_filter)
        for block in self.blocks:
            feat = block(feat, lk)
        feat = conv(self.last[0](feat), self.last[1], add=skip)
        return self.upsampler(feat, x).contiguous()
