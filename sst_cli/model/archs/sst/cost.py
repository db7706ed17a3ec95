"""SST's cost model: FLOPs and activation memory per input pixel, window alignment, receptive field."""

from __future__ import annotations

import functools
import math

from ..common import Cost
from .config import SSTConfig


def upsampler_flops(dim: int, scale: int, upsampler_type: str, intermediate_dim: int) -> int:
    """FLOPs per LR pixel of the shared upsamplers (3x3 convolutions; the last one at HR resolution)."""
    s2 = scale * scale
    if upsampler_type == "pixelshuffle_direct":
        return 2 * 9 * dim * 3 * s2
    i = intermediate_dim
    return 2 * 9 * (dim * i + i * i * s2 + i * 3 * s2)


def attention_layer_flops(dim: int, window: int, heads: int, rank: int, bias: str) -> int:
    """FLOPs per pixel of one WindowAttention: CLA gate, q/k/v/out projections, logits and weighted sum
    (RIB adds its rank to the q.k product: the concatenated form every fused kernel runs)."""
    d, n = dim // heads, window * window
    qk = d + (rank if bias == "rib" else 0)
    return 2 * (dim * 9 + dim * dim) + 2 * 4 * dim * dim + 2 * heads * n * (qk + d)


def ffn_flops(dim: int, hidden: int, kernel: int = 3) -> int:
    """FLOPs per pixel of a ConvFFN: 1x1 expand, k x k depthwise, 1x1 project."""
    return 2 * (dim * hidden + hidden * kernel * kernel + hidden * dim)


@functools.cache
def cost(cfg: SSTConfig) -> Cost:
    c, s = cfg.dim, cfg.scale
    hidden = int(c * cfg.exp_ratio)
    layers = sum(attention_layer_flops(c, w, h, r, cfg.bias) + ffn_flops(c, hidden)
                 for w, h, r in zip(cfg.window_sizes, cfg.num_heads, cfg.ranks, strict=True))
    conv3 = 2 * 9 * c * c
    flops = 2 * 9 * 3 * c + cfg.n_blocks * (layers + conv3) + conv3 \
        + upsampler_flops(c, s, cfg.upsampler_type, cfg.intermediate_dim)
    pixelshuffle = cfg.upsampler_type == "pixelshuffle"
    # Memory: a handful of C-channel tensors and three FFN-wide ones alive at once, plus the upsampler's
    # widest output twice (the direct upsampler is charged as if C wide: a margin). The estimate sst has
    # sized tiles by since 0.3; tests/test_archs.py checks that it bounds measured peaks.
    up = (cfg.intermediate_dim if pixelshuffle else c) * s * s * 2
    activation = 8 * c + 3 * c * float(cfg.exp_ratio) + up
    window = max(cfg.window_sizes)
    # each layer: a window's span (attention and gate) plus the FFN's 3x3; each block and the body end in a 3x3
    reach = cfg.n_blocks * (sum(max(w - 1, 1) + 1 for w in cfg.window_sizes) + 1) + 1 + 1
    reach += 3 if pixelshuffle else 1  # upsampler
    return Cost(
        align=math.lcm(*cfg.window_sizes), window=window, receptive_field=reach, flops=float(flops),
        activation_elems=activation, attention_elems=float(max(cfg.num_heads) * window**2 * 2),
        widest_elems=max(c, hidden, cfg.intermediate_dim * s * s if pixelshuffle else 3 * s * s, 3 * s * s),
    )
