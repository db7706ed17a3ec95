"""SST's keywords: the one home of their names, defaults and checks (official ``network_g``, type SST).

Plain Python (no torch): the variant registry and the CLI read it before PyTorch loads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..common import BIASES, canonical_bias, check_keywords


@dataclass(frozen=True)
class SSTConfig:
    """The official SST constructor keywords. ``num_heads`` and ``ranks`` may be one value for every layer;
    they are kept per layer (tuples), so two configs that build the same network compare equal."""

    dim: int = 48
    window_sizes: tuple[int, ...] = (8, 16, 32, 16, 32, 64)  # one per layer of a block
    num_heads: int | tuple[int, ...] = 3
    ranks: int | tuple[int, ...] = 16
    n_blocks: int = 5
    exp_ratio: float = 1.5
    attn_type: str = "RIB"
    rib_hidden_dim: int = 32
    rib_n_freqs: int = 10
    upscaling_factor: int = 4
    upsampler_type: str = "pixelshuffle_direct"
    gate_type: str = "DWC"
    intermediate_dim: int = 64  # pixelshuffle upsampler only

    TYPE = "SST"  # the official ``type`` (a class attribute, not a keyword)
    WINDOW_KEYS = ("window_sizes",)  # what RIB weights do not record

    def __post_init__(self) -> None:
        windows = tuple(int(w) for w in self.window_sizes)
        n = len(windows)

        def per_layer(value: int | tuple[int, ...]) -> tuple[int, ...]:
            return tuple(int(v) for v in value) if isinstance(value, list | tuple) else (int(value),) * n

        for name, value in (("window_sizes", windows), ("num_heads", per_layer(self.num_heads)),
                            ("ranks", per_layer(self.ranks)), ("upscaling_factor", int(self.upscaling_factor)),
                            ("attn_type", canonical_bias(self.attn_type, "SST"))):
            object.__setattr__(self, name, value)
        if self.gate_type != "DWC":
            raise ValueError(f"only gate_type='DWC' exists in the official code (got {self.gate_type!r})")
        if self.upsampler_type not in ("pixelshuffle", "pixelshuffle_direct"):
            raise ValueError(f"upsampler_type must be pixelshuffle or pixelshuffle_direct (got {self.upsampler_type!r})")
        if len(self.num_heads) != n or len(self.ranks) != n:
            raise ValueError("window_sizes, num_heads and ranks must have one entry per layer")
        for heads in self.num_heads:
            if heads < 1 or self.dim % heads:
                raise ValueError(f"dim {self.dim} is not divisible by {heads} heads")

    # -- the official network_g ------------------------------------------------------------------
    @classmethod
    def from_network_g(cls, network_g: dict[str, Any]) -> SSTConfig:
        """From an official ``network_g`` (``type`` optional; unknown keys get "did you mean")."""
        kw = {k: v for k, v in network_g.items() if k != "type"}
        check_keywords("SST", kw, [f.name for f in dataclasses.fields(cls)])
        return cls(**kw)

    def to_network_g(self) -> dict[str, Any]:
        """The official keywords, per-layer values as lists; ``intermediate_dim`` only where it is used."""
        out: dict[str, Any] = {"type": self.TYPE}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        if self.upsampler_type != "pixelshuffle":
            del out["intermediate_dim"]
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
        return self.window_sizes

    def at_scale(self, scale: int) -> SSTConfig:
        return dataclasses.replace(self, upscaling_factor=scale)

    def with_bias(self, bias: str) -> SSTConfig:
        return dataclasses.replace(self, attn_type=BIASES[bias])

    @staticmethod
    def summary(network_g: dict[str, Any]) -> str:
        """A few words for a network that is no registry variant: "dim 8, 2 blocks" (any partial network_g)."""
        return f"dim {network_g.get('dim')}, {network_g.get('n_blocks')} blocks"
