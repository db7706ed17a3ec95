"""ESC-RIB's keywords: the one home of their names, defaults and checks (official ``network_g``, type ESCRIB).

Plain Python (no torch): the variant registry and the CLI read it before PyTorch loads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..common import BIASES, canonical_bias, check_keywords


@dataclass(frozen=True)
class ESCRIBConfig:
    dim: int = 64
    pdim: int = 16
    kernel_size: int = 13
    n_blocks: int = 5
    conv_blocks: int = 5
    window_size: int = 64
    num_heads: int = 4
    upscaling_factor: int = 4
    exp_ratio: float = 1.25
    attn_type: str = "RIB"
    use_ln: bool = False
    rank: int = 16
    rib_hidden_dim: int = 32
    rib_n_freqs: int = 10
    gate_type: str = "DWC"
    upsampler_type: str = "pixelshuffle_direct"
    intermediate_dim: int = 64

    TYPE = "ESCRIB"  # the official ``type`` (a class attribute, not a keyword)
    WINDOW_KEYS = ("window_size",)  # what RIB weights do not record

    def __post_init__(self) -> None:
        object.__setattr__(self, "attn_type", canonical_bias(self.attn_type, "ESCRIB"))
        if self.gate_type != "DWC":
            raise ValueError(f"only gate_type='DWC' is supported (got {self.gate_type!r})")
        if self.upsampler_type not in ("pixelshuffle_direct", "pixelshuffle"):
            raise ValueError(f"upsampler_type must be pixelshuffle or pixelshuffle_direct (got {self.upsampler_type!r})")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by {self.num_heads} heads")
        if not 0 < self.pdim <= self.dim or self.pdim % 2:
            raise ValueError(f"pdim must be even and at most dim (got {self.pdim})")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (got {self.kernel_size})")

    @classmethod
    def from_network_g(cls, network_g: dict[str, Any]) -> ESCRIBConfig:
        """From an official ``network_g`` (``type`` optional; unknown keys get "did you mean")."""
        kw = {k: v for k, v in network_g.items() if k != "type"}
        if kw.get("flashbias_rank") is not None and kw.get("rank") is None:
            kw["rank"] = kw["flashbias_rank"]  # the official alias
        kw.pop("flashbias_rank", None)
        check_keywords("ESCRIB", kw, [f.name for f in dataclasses.fields(cls)])
        return cls(**kw)

    def to_network_g(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.TYPE, **dataclasses.asdict(self)}
        if self.upsampler_type != "pixelshuffle":
            out.pop("intermediate_dim")
        return out

    # -- what other modules ask, without knowing the keyword names ---------------------------------
    @property
    def scale(self) -> int:
        return self.upscaling_factor

    @property
    def bias(self) -> str:
        """The positional bias: "rib", "rpb" or "none"."""
        return self.attn_type.lower()

    @property
    def windows(self) -> tuple[int, ...]:
        return (self.window_size,)

    def at_scale(self, scale: int) -> ESCRIBConfig:
        return dataclasses.replace(self, upscaling_factor=scale)

    def with_bias(self, bias: str) -> ESCRIBConfig:
        return dataclasses.replace(self, attn_type=BIASES[bias])

    @staticmethod
    def summary(network_g: dict[str, Any]) -> str:
        """A few words for a network that is no registry variant (any partial network_g)."""
        return f"dim {network_g.get('dim')}, {network_g.get('n_blocks')} blocks"
