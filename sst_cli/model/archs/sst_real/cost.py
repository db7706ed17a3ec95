"""SSTReal's cost model: FLOPs and activation memory per input (LR) pixel, window alignment, receptive field.

Counted for one sampling step (``sampling.py``): one forward of the network at the LR resolution, its two
upsamplers at 2x and 4x, and the HR tensors of the sampler (the bicubic input, the noise, the outputs).
"""

from __future__ import annotations

import functools
import math

from ..common import Cost
from ..sst.cost import attention_layer_flops
from .config import SSTRealConfig

HR = 3 * 16  # elements per LR pixel of one HR RGB tensor (x4)


def upsampler_flops(dim: int, inter: int) -> int:
    """FLOPs per LR pixel of one NNx4Upsampler: 3x3 convs at 1x, 2x (4 pixels), 4x (16) and to RGB at 4x."""
    return 2 * 9 * (dim * inter + 4 * inter * inter + 16 * inter * inter + 16 * inter * 3)


def swiglu_flops(dim: int, hidden: int) -> int:
    """FLOPs per pixel of a ConvSwiGLUFFN of gated width ``hidden``: 1x1 to 2h, 3x3 depthwise, 1x1 back."""
    return 2 * (dim * 2 * hidden + 2 * hidden * 9 + hidden * dim)


@functools.cache
def cost(cfg: SSTRealConfig) -> Cost:
    c, h, i = cfg.dim, cfg.ffn_hidden, cfg.intermediate_dim
    layers = sum(attention_layer_flops(c, w, n, r, "rib") + swiglu_flops(c, h)
                 for w, n, r in zip(cfg.window_sizes, cfg.num_heads, cfg.ranks, strict=True))
    fused = min(max(cfg.fuse_lr_till + 1, 0), cfg.num_blocks)
    flops = 2 * 9 * (HR + 3) * c + cfg.num_blocks * (layers + 2 * 9 * c * c) + fused * 2 * 2 * c * c \
        + 2 * upsampler_flops(c, i)
    # Memory: beside the block's input, its residual, the skip and the LR features, either the attention's
    # few C-wide tensors, the FFN's two 2h-wide ones and its gated product, or an upsampler's two 4x tensors;
    # and the sampler's HR tensors. Checked against measured peaks in tests/test_sstreal.py.
    activation = 5 * c + max(7 * c, 5 * h, 2 * 16 * i + c) + 8 * HR
    window = max(cfg.window_sizes)
    # each layer: the gate's 3x3, a window's span and the FFN's 3x3; each block ends in a 3x3; proj_in and the
    # upsamplers' first 3x3s at 1x and their later ones (under an LR pixel); the sampler's bicubic (2 pixels)
    reach = cfg.num_blocks * (sum(w + 1 for w in cfg.window_sizes) + 1) + 1 + 2 + 2
    return Cost(
        align=math.lcm(*cfg.window_sizes), window=window, receptive_field=reach, flops=float(flops),
        activation_elems=float(activation), attention_elems=float(max(cfg.num_heads) * window**2 * 2),
        widest_elems=max(2 * h, 16 * i, c, HR),
    )
