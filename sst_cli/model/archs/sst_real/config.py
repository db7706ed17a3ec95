"""SSTReal's keywords: the one home of their names, defaults and checks (official ``network_g``, type EDMUNet).

The official ``EDMUNet`` takes its preconditioning keywords and passes every other one to ``SSTReal``; the
keywords the official constructors require have no default here either, and the optional ones have the
official defaults (``sampling_ig_lambda`` 1.0: the released options file says 2.0).

Plain Python (no torch): the variant registry and the CLI read it before PyTorch loads.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..common import check_keywords

SCALE = 4  # the network is x4 by construction (pixel_unshuffle by 4, two x2 nearest upsamplings)


@dataclass(frozen=True)
class SSTRealConfig:
    # -- required by the official constructors -------------------------------------------------
    img_resolution: int  # recorded by the options file; the network does not use it
    img_channels: int  # likewise (always 3)
    dim: int
    intermediate_dim: int  # width of the two x4 upsamplers
    emb_channels: int  # noise-level embedding width
    noise_channels: int  # sinusoidal features of the noise level
    num_blocks: int
    fuse_lr_till: int  # blocks 0..fuse_lr_till fuse the LR image's features in
    ig_idx: int  # the block after which the intermediate ("i") output branches off
    attn_type: str
    window_sizes: tuple[int, ...]  # one per layer of a block
    num_heads: tuple[int, ...]
    ranks: tuple[int, ...]
    # Optional officially, but its default (None) builds no attention gate, which sst does not build: required here.
    gate_type: str
    # -- optional, official defaults ---------------------------------------------------------------
    scale: int = SCALE  # read by the official sampling (the bicubic upscaling of the input), not by the network
    sigma_min: float = 0
    sigma_max: float = math.inf
    sigma_data: float = 0.5
    up_list: Any = None  # accepted and unused by the official EDMUNet
    down_list: Any = None
    use_skip: bool = True
    sampling_ig_lambda: float = 1.0  # guidance: output = D_i + lambda * (D_f - D_i)
    rib_hidden_dim: int = 32
    rib_n_freqs: int = 10
    exp_ratio: float = 2
    drop_p: float = 0.0  # dropout inside the FFNs: training only

    TYPE = "EDMUNet"  # the official ``type`` (a class attribute, not a keyword)
    # Why ``sst train`` refuses it (training reads this; the other architectures have none).
    NOT_TRAINABLE = ("sst train cannot train SSTReal (type EDMUNet): fine-tuning it needs the Real-ESRGAN "
                     "degradations and the consistency loss of the authors' training, which sst does not build.")
    # What the tensors do not record: the windows (RIB weights) and where the intermediate output branches off.
    WINDOW_KEYS = ("window_sizes", "ig_idx")

    def __post_init__(self) -> None:
        for name in ("window_sizes", "num_heads", "ranks"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        n = len(self.window_sizes)
        if str(self.attn_type).upper() != "RIB":
            raise ValueError(f"EDMUNet attn_type must be RIB, the released model's (got {self.attn_type!r})")
        object.__setattr__(self, "attn_type", "RIB")
        if self.gate_type != "DWC":
            raise ValueError(f"EDMUNet gate_type must be DWC, the released model's (got {self.gate_type!r})")
        if int(self.scale) != SCALE:
            raise ValueError(f"EDMUNet is a x{SCALE} network (got scale {self.scale})")
        if len(self.num_heads) != n or len(self.ranks) != n or n == 0:
            raise ValueError("window_sizes, num_heads and ranks must have one entry per layer")
        if n > 1 and len(set(self.window_sizes)) == 1:
            # The official blocks then shift every other layer's windows, which sst does not build.
            raise ValueError("EDMUNet with equal window sizes (shifted windows) is not supported")
        for heads in self.num_heads:
            if heads < 1 or self.dim % heads:
                raise ValueError(f"dim {self.dim} is not divisible by {heads} heads")
        if not 0 <= self.ig_idx < self.num_blocks:
            raise ValueError(f"ig_idx must name one of the {self.num_blocks} blocks (got {self.ig_idx})")

    # -- the official network_g ------------------------------------------------------------------
    @classmethod
    def from_network_g(cls, network_g: dict[str, Any]) -> SSTRealConfig:
        """From an official ``network_g`` (``type`` optional; unknown keys get "did you mean"). ``upscaling_factor``,
        sst's name for the scale everywhere else, is read as ``scale``."""
        kw = {k: v for k, v in network_g.items() if k != "type"}
        if "upscaling_factor" in kw:
            alias = kw.pop("upscaling_factor")
            if kw.setdefault("scale", alias) != alias:
                raise ValueError(f"scale {kw['scale']} and upscaling_factor {alias} disagree")
        fields = dataclasses.fields(cls)
        check_keywords("EDMUNet", kw, [f.name for f in fields])
        required = [f.name for f in fields if f.default is dataclasses.MISSING and f.name not in kw]
        if required:
            raise ValueError(f"EDMUNet needs the keyword(s) {', '.join(required)}")
        return cls(**kw)

    def to_network_g(self) -> dict[str, Any]:
        """The official keywords, per-layer values as lists."""
        out: dict[str, Any] = {"type": self.TYPE}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    # -- what other modules ask, without knowing the keyword names ---------------------------------
    @property
    def bias(self) -> str:
        return "rib"

    @property
    def windows(self) -> tuple[int, ...]:
        return self.window_sizes

    @property
    def ffn_hidden(self) -> int:
        """Channels of the SwiGLU FFN's gated product (its first convolution makes twice as many)."""
        return int(int(self.dim * self.exp_ratio) * 2 / 3)

    def at_scale(self, scale: int) -> SSTRealConfig:
        if scale != SCALE:
            raise ValueError(f"EDMUNet is a x{SCALE} network (asked for x{scale})")
        return self

    def with_bias(self, bias: str) -> SSTRealConfig:
        if bias != "rib":
            raise ValueError(f"EDMUNet is built with RIB attention only (asked for {bias})")
        return self

    @staticmethod
    def summary(network_g: dict[str, Any]) -> str:
        """A few words for a network that is no registry variant (any partial network_g)."""
        return f"dim {network_g.get('dim')}, {network_g.get('num_blocks')} blocks"
