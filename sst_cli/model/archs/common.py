"""What every architecture shares: the shape of its cost model (``Cost``), keyword checking, and reading
the tensors that all of them lay out alike (the upsampler).

Plain Python (no torch), so the variant registry and the CLI can use it before PyTorch loads.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# --bias names -> the official attn_type spelling, shared by every architecture built on WindowAttention
BIASES = {"rib": "RIB", "rpb": "RPB", "none": "none"}


@dataclass(frozen=True)
class Cost:
    """What one forward pass of a network costs per input (LR) pixel, and the geometry tiling must keep.

    Element counts are multiplied by the dtype's size by the caller. The memory figures are estimates that
    bound the measured peaks (tests/test_archs.py checks them on small networks); the FLOPs are exact for
    inputs that are multiples of ``align`` (convolutions and matrix products, as torch's flop counter counts
    them; per-image constants such as the RIB position vectors excluded).
    """

    align: int  # tile starts on multiples of this (the windows' lcm: the largest window of every published net)
    window: int  # the largest attention window (1: none)
    receptive_field: int | None  # input pixels either side that can reach an output pixel; None: the whole image
    flops: float  # FLOPs of one forward per input pixel (2 per multiply-add)
    activation_elems: float  # peak activation elements alive at once, per input pixel (the free-memory ceiling)
    attention_elems: float  # more, per input pixel, where a backend materialises the logits (naive, sdpa-math)
    widest_elems: int  # elements per input pixel of the widest single activation (sizes CPU tiles)
    max_batch: int | None = None  # images one forward takes (None: any number)


def check_keywords(kind: str, given: Iterable[str], known: Iterable[str]) -> None:
    """ValueError naming every keyword of ``given`` not in ``known``, with "did you mean" where one is close."""
    names = list(known)
    unknown = sorted(set(given) - set(names))
    if unknown:
        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, names, 1)) else k
                 for k in unknown]
        raise ValueError(f"unknown {kind} keyword(s): {', '.join(hints)}")


def canonical_bias(attn_type: str, kind: str) -> str:
    """The official spelling (RIB, RPB, none) of an ``attn_type`` given in any case; ValueError otherwise."""
    found = BIASES.get(str(attn_type).lower())
    if found is None:
        raise ValueError(f"{kind} attn_type must be one of RIB, RPB, none (got {attn_type!r})")
    return found


# ------------------------------------------------------------------------------ state-dict detection
def count_indices(sd: Mapping[str, Any], pattern: str) -> int:
    """How many distinct values the one group of ``pattern`` takes over the keys of ``sd`` (blocks, layers)."""
    return len({m.group(1) for k in sd if (m := re.match(pattern, k))})


def detect_upsampler(sd: Mapping[str, Any]) -> dict[str, Any]:
    """The upsampler keywords (type, intermediate width, scale) of the shared ``upsampler.*`` tensors."""
    up_out = sd["upsampler.up_conv.weight"].shape[0]
    if "upsampler.feature_conv.weight" in sd:
        inter = sd["upsampler.feature_conv.weight"].shape[0]
        return {"upsampler_type": "pixelshuffle", "intermediate_dim": inter,
                "upscaling_factor": math.isqrt(up_out // inter)}
    return {"upsampler_type": "pixelshuffle_direct", "upscaling_factor": math.isqrt(up_out // 3)}


def whole_ratio(hidden: int, dim: int) -> float:
    """``hidden / dim`` as the official configs write it (2, not 2.0)."""
    ratio = hidden / dim
    return int(ratio) if ratio.is_integer() else ratio
