"""Building the network a checkpoint holds and loading its weights strictly; another scale's upsampler
re-sampled for fine-tuning."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import SSTError
from . import archs
from .identify import describe_network, detect_network, identify
from .weights import Checkpoint


def mismatch_summary(model: nn.Module, sd: dict[str, Tensor], path: str) -> str | None:
    """None when ``sd`` fits ``model`` exactly; else one readable paragraph."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in sd.items()}
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    shaped = [f"{k} (file {list(have[k])}, model {list(want[k])})" for k in want if k in have and have[k] != want[k]]
    if not (missing or unexpected or shaped):
        return None
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{len(items)} {label} key(s): {', '.join(items[:3])}{more}")
    try:
        looks = f"; the file looks like {describe_network(detect_network(sd))}"
    except SSTError:
        looks = "; the file does not look like any network sst knows"
    target = describe_network(model.config)
    return f"{path} does not fit {target}: " + "; ".join(parts) + looks + "."


def resample_upsampler(sd: dict[str, Tensor], scale_out: int) -> dict[str, Tensor]:
    """Re-sample ``upsampler.up_conv`` for another scale, as the official fine-tuning loader does:
    view the output channels as (c, s_in, s_in), resize that grid bilinearly to s_out, flatten.
    Every architecture shares the upsampler's layout (SST's ``PixelShuffleDirect``/``PixelShuffleUpsampler``)."""
    w, b = sd["upsampler.up_conv.weight"], sd["upsampler.up_conv.bias"]
    c = 3 if "upsampler.feature_conv.weight" not in sd else sd["upsampler.feature_conv.weight"].shape[0]
    s_in = math.isqrt(w.shape[0] // c)
    if s_in == scale_out:
        return sd
    out_ch, in_ch, kh, kw = w.shape
    grid = w.float().reshape(c, s_in, s_in, in_ch * kh * kw).permute(0, 3, 1, 2)  # (c, in*k*k, s, s)
    grid = F.interpolate(grid, size=(scale_out, scale_out), mode="bilinear", align_corners=False)
    new_w = grid.permute(0, 2, 3, 1).reshape(c * scale_out**2, in_ch, kh, kw).to(w.dtype)
    bgrid = F.interpolate(b.float().reshape(1, c, s_in, s_in), size=(scale_out, scale_out), mode="bilinear",
                          align_corners=False)
    new_b = bgrid.reshape(-1).to(b.dtype)
    return {**sd, "upsampler.up_conv.weight": new_w, "upsampler.up_conv.bias": new_b}


def load_into(model: nn.Module, ckpt: Checkpoint, resample_scale: bool = False) -> nn.Module:
    """Load ``ckpt`` strictly into ``model``; with ``resample_scale`` adapt another scale's upsampler."""
    sd = ckpt.state_dict
    if resample_scale and "upsampler.up_conv.weight" in sd:
        sd = resample_upsampler(sd, model.scale)
    problem = mismatch_summary(model, sd, ckpt.path)
    if problem:
        raise SSTError(problem)
    model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in sd.items()})
    return model


def model_from_checkpoint(ckpt: Checkpoint, scale: int | None = None, network_g: dict[str, Any] | None = None,
                          resample_scale: bool = False, model: str | None = None) -> nn.Module:
    """Build the network the checkpoint holds (see :func:`identify`; ``network_g`` overrides) and load it."""
    cfg = archs.config_of(network_g or identify(ckpt, model).network_g)
    if scale is not None and scale != cfg.scale:
        if not resample_scale:
            raise SSTError(
                f"{ckpt.path} is a x{cfg.scale} model, not x{scale}; drop --scale or ask for "
                "upsampler re-sampling (fine-tuning only: the result needs training)."
            )
        cfg = cfg.at_scale(scale)
    return load_into(archs.build_model(cfg.to_network_g()), ckpt, resample_scale=resample_scale)
