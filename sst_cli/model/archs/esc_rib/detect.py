"""Recognising an ESC-RIB state dict from its keys and shapes, without building anything.

ESC-RIB is told from SST by its shared large kernel (``plk_filter``) and its blocks' convolutional
attention (``blocks.N.pconvs``); SST has neither (its blocks live under ``body``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..common import count_indices, detect_upsampler, whole_ratio


def detect(sd: Mapping[str, Any]) -> dict[str, Any] | None:
    """The official ``network_g`` the tensors of ``sd`` imply, or None when ``sd`` is no ESC-RIB.

    RIB weights do not record the window, so ``window_size`` is present only with RPB tables (and
    ``num_heads``/``rank`` only where per-head tensors exist).
    """
    needed = ("plk_filter", "proj.weight", "blocks.0.pconvs.0.aggr.weight", "blocks.0.convffns.0.proj.weight",
              "upsampler.up_conv.weight")
    if any(k not in sd for k in needed):
        return None
    dim = sd["proj.weight"].shape[0]
    plk = sd["plk_filter"]
    cfg: dict[str, Any] = {
        "type": "ESCRIB", "dim": dim, "pdim": plk.shape[0], "kernel_size": plk.shape[-1],
        "n_blocks": count_indices(sd, r"blocks\.(\d+)\.ln_proj\.weight$"),
        "conv_blocks": count_indices(sd, r"blocks\.0\.pconvs\.(\d+)\.aggr\.weight$"),
        "exp_ratio": whole_ratio(sd["blocks.0.convffns.0.proj.weight"].shape[0], dim),
        "use_ln": "blocks.0.lns.0.weight" in sd, "gate_type": "DWC",
    }
    if "blocks.0.attn.to_q" in sd:
        to_q, to_hidden = sd["blocks.0.attn.to_q"], sd["blocks.0.attn.to_hidden"]
        cfg.update(attn_type="RIB", num_heads=to_q.shape[0], rank=to_q.shape[2], rib_hidden_dim=to_hidden.shape[1],
                   rib_n_freqs=(to_hidden.shape[0] - 2) // 4)
    elif "blocks.0.attn.rpb_table" in sd:
        t = sd["blocks.0.attn.rpb_table"]
        cfg.update(attn_type="RPB", num_heads=t.shape[1], window_size=(math.isqrt(t.shape[0]) + 1) // 2)
    else:
        cfg["attn_type"] = "none"
    return {**cfg, **detect_upsampler(sd)}
