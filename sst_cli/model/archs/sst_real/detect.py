"""Recognising an SSTReal (EDMUNet) state dict from its keys and shapes, without building anything.

Its parameters all live under ``model.`` (the official EDMUNet wraps SSTReal), with blocks under
``model.proj_body`` and two upsamplers ``model.up_i``/``model.up_f``: neither SST nor ESC-RIB has these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..common import count_indices, whole_ratio

NEEDED = ("model.proj_in.weight", "model.proj_lr.weight", "model.map_noise.mlp.0.weight", "model.up_i.0.weight",
          "model.up_f.0.weight", "model.proj_body.0.out_conv.weight", "model.proj_body.0.blocks.0.ffn.w3.weight")


def exp_ratio_of(hidden: int, dim: int) -> float:
    """The ``exp_ratio`` whose SwiGLU width ``int(int(dim * r) * 2 / 3)`` is ``hidden``: the smallest whole
    multiple of ``dim`` that gives it where one does (every published config), else the smallest width."""
    widths = [w for w in range(hidden * 3 // 2, hidden * 3 // 2 + 3) if int(w * 2 / 3) == hidden]
    whole = [w for w in widths if w % dim == 0]
    return whole_ratio((whole or widths)[0], dim)


def detect(sd: Mapping[str, Any]) -> dict[str, Any] | None:
    """The official ``network_g`` the tensors of ``sd`` imply, or None when ``sd`` is no SSTReal.

    RIB weights record neither the windows nor which block feeds the intermediate upsampler (``ig_idx``), nor
    the preconditioning constants and the guidance (``sigma_data``, ``use_skip``, ``sampling_ig_lambda``): those
    are absent, as are the unused ``img_resolution``/``img_channels``.
    """
    if any(k not in sd for k in NEEDED):
        return None
    dim = sd["model.proj_in.weight"].shape[0]
    embed = sd["model.map_noise.mlp.0.weight"]
    fused = [int(m.group(1)) for k in sd if (m := re.match(r"model\.proj_body\.(\d+)\.fuse_lr\.weight$", k))]
    pre = "model.proj_body.0.blocks."
    n_layers = count_indices(sd, r"model\.proj_body\.0\.blocks\.(\d+)\.ffn\.w3\.weight$")
    cfg: dict[str, Any] = {
        "type": "EDMUNet", "scale": 4, "dim": dim, "intermediate_dim": sd["model.up_i.0.weight"].shape[0],
        "emb_channels": embed.shape[0], "noise_channels": embed.shape[1],
        "num_blocks": count_indices(sd, r"model\.proj_body\.(\d+)\.out_conv\.weight$"),
        "fuse_lr_till": max(fused, default=-1),
        "exp_ratio": exp_ratio_of(sd[pre + "0.ffn.w3.weight"].shape[1], dim),
        "gate_type": "DWC" if pre + "0.attn.gate.0.weight" in sd else None,
    }
    if pre + "0.attn.to_q" in sd:
        to_hidden = sd[pre + "0.attn.to_hidden"]
        cfg.update(attn_type="RIB", rib_hidden_dim=to_hidden.shape[1], rib_n_freqs=(to_hidden.shape[0] - 2) // 4,
                   num_heads=[sd[f"{pre}{j}.attn.to_q"].shape[0] for j in range(n_layers)],
                   ranks=[sd[f"{pre}{j}.attn.to_q"].shape[2] for j in range(n_layers)])
    else:
        cfg["attn_type"] = "not RIB"  # another official attention (NoPE, RPB, ...): no sst network fits it
    return cfg
