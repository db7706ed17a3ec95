"""Recognising an SST state dict from its keys and shapes (as spandrel does), without building anything."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..common import count_indices, detect_upsampler, whole_ratio


def detect(sd: Mapping[str, Any]) -> dict[str, Any] | None:
    """The official ``network_g`` the tensors of ``sd`` imply, or None when ``sd`` is no SST.

    Only what the tensors record is returned: RIB weights leave no trace of the window sizes, so
    ``window_sizes`` is present only for RPB attention, whose bias tables record their window (and
    ``num_heads``/``ranks`` only where per-head tensors exist).
    """
    if "proj.weight" not in sd or "body.0.0.norm_attn.weight" not in sd or "upsampler.up_conv.weight" not in sd:
        return None
    dim = sd["proj.weight"].shape[0]
    n_blocks = count_indices(sd, r"body\.(\d+)\.0\.norm_attn\.weight$")
    n_layers = count_indices(sd, r"body\.0\.(\d+)\.norm_attn\.weight$")
    heads, ranks, windows = [], [], []
    attn_type = "RIB"
    for j in range(n_layers):
        pre = f"body.0.{j}.attn."
        if pre + "to_q" in sd:
            heads.append(sd[pre + "to_q"].shape[0])
            ranks.append(sd[pre + "to_q"].shape[2])
        elif pre + "rpb_table" in sd:
            attn_type = "RPB"
            t = sd[pre + "rpb_table"]
            heads.append(t.shape[1])
            windows.append((math.isqrt(t.shape[0]) + 1) // 2)
        else:
            attn_type = "none"
    if "body.0.0.ffn.proj.weight" not in sd:
        return None
    cfg: dict[str, Any] = {
        "type": "SST", "dim": dim, "n_blocks": n_blocks,
        "exp_ratio": whole_ratio(sd["body.0.0.ffn.proj.weight"].shape[0], dim), "attn_type": attn_type,
        "gate_type": "DWC",
    }
    if attn_type != "none":
        cfg["num_heads"] = heads
    if attn_type == "RIB":
        to_hidden = sd["body.0.0.attn.to_hidden"]
        cfg.update(ranks=ranks, rib_hidden_dim=to_hidden.shape[1], rib_n_freqs=(to_hidden.shape[0] - 2) // 4)
    if windows and len(windows) == n_layers:
        cfg["window_sizes"] = windows
    return {**cfg, **detect_upsampler(sd)}
