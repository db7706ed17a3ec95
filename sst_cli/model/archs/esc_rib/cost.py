"""ESC-RIB's cost model: FLOPs and activation memory per input pixel, window alignment, receptive field."""

from __future__ import annotations

import functools

from ..common import Cost
from ..sst.cost import attention_layer_flops, ffn_flops, upsampler_flops
from .config import ESCRIBConfig

PROJ_EXPANSION = 4  # each block opens with a ConvFFN four times as wide as the features (official)


@functools.cache
def cost(cfg: ESCRIBConfig) -> Cost:
    c, s, p, k = cfg.dim, cfg.scale, cfg.pdim, cfg.kernel_size
    hidden = int(c * cfg.exp_ratio)
    wide = PROJ_EXPANSION * c
    conv_block = ffn_flops(c, hidden) + 2 * (p * 9 + p * p * k * k) + 2 * c * c  # FFN, dynamic + large kernel, 1x1
    block = ffn_flops(c, wide) + attention_layer_flops(c, cfg.window_size, cfg.num_heads, cfg.rank, cfg.bias) \
        + cfg.conv_blocks * conv_block + 2 * 9 * c * c
    flops = 2 * 9 * 3 * c + cfg.n_blocks * block + 2 * 9 * c * c \
        + upsampler_flops(c, s, cfg.upsampler_type, cfg.intermediate_dim)
    pixelshuffle = cfg.upsampler_type == "pixelshuffle"
    up = (cfg.intermediate_dim if pixelshuffle else c) * s * s * 2
    # SST's estimate with the widest FFN (the block's 4x one): its input, its two hidden tensors and their
    # sum alive at once, beside the block's skip and a few C-channel tensors.
    activation = 8 * c + 3 * wide + up
    return Cost(
        align=cfg.window_size, window=cfg.window_size,
        receptive_field=None,  # the dynamic 3x3 kernels are predicted from the mean of the whole image
        flops=float(flops), activation_elems=float(activation),
        attention_elems=float(cfg.num_heads * cfg.window_size**2 * 2),
        widest_elems=max(wide, hidden, c, cfg.intermediate_dim * s * s if pixelshuffle else 3 * s * s, 3 * s * s),
    )
