"""The model zoo: every SST variant as a plain dataclass config, in one registry."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .model import SST, build_model

SCALES = (2, 3, 4)
CLASSIC_WINDOWS = (16, 32, 64, 16, 32, 64)
PLUS_WINDOWS = (16, 32, 48, 32, 48, 96)


@dataclass(frozen=True)
class Variant:
    name: str  # our name, e.g. "sst-l+"
    official: str  # official config name, e.g. "SSTLarge_Plus"
    dim: int
    n_blocks: int
    window_sizes: tuple[int, ...]
    num_heads: int
    ranks: tuple[int, ...]
    exp_ratio: float
    upsampler_type: str
    intermediate_dim: int | None = None
    checkpoint_sets: tuple[str, ...] = ()  # training sets of the published .pth files
    paper_name: str = ""  # row name in shared/paper/tables
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def network_g(self, scale: int) -> dict[str, Any]:
        """The official constructor keywords for this variant at ``scale``."""
        n = len(self.window_sizes)
        cfg: dict[str, Any] = {
            "type": "SST", "dim": self.dim, "window_sizes": list(self.window_sizes),
            "num_heads": [self.num_heads] * n, "ranks": list(self.ranks), "n_blocks": self.n_blocks,
            "exp_ratio": self.exp_ratio, "attn_type": "RIB", "rib_hidden_dim": 32, "rib_n_freqs": 10,
            "upscaling_factor": scale, "upsampler_type": self.upsampler_type, "gate_type": "DWC",
        }
        if self.intermediate_dim is not None:
            cfg["intermediate_dim"] = self.intermediate_dim
        return cfg

    def checkpoint_names(self, scale: int) -> list[str]:
        return [f"{self.official}_{s}_X{scale}.pth" for s in self.checkpoint_sets]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_LIGHT_RANKS = (16, 16, 16, 24, 24, 24)
_SST_RANKS = (18, 18, 18, 34, 34, 34)
_L_RANKS = (16, 16, 16, 32, 32, 32)

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("sst-light", "SSTlight", 48, 5, (8, 16, 32, 16, 32, 64), 3, _LIGHT_RANKS, 1.5,
                "pixelshuffle_direct", None, ("DIV2K", "DFLIP"), "sst-light"),
        Variant("sst-light+", "SSTlight_Plus", 48, 5, PLUS_WINDOWS, 3, _LIGHT_RANKS, 1.5,
                "pixelshuffle_direct", None, ("DIV2K", "DFLIP"), "sst-light+"),
        Variant("sst", "SST", 180, 6, CLASSIC_WINDOWS, 6, _SST_RANKS, 1.25, "pixelshuffle", None,
                ("DF2K",), "sst"),
        Variant("sst+", "SST_Plus", 180, 6, PLUS_WINDOWS, 6, _SST_RANKS, 1.25, "pixelshuffle", None,
                ("DF2K",), "sst+"),
        Variant("sst-l", "SSTLarge", 192, 8, CLASSIC_WINDOWS, 6, _L_RANKS, 2, "pixelshuffle", 96,
                ("DF2K", "DFLIP"), "sst-l"),
        Variant("sst-l+", "SSTLarge_Plus", 192, 8, PLUS_WINDOWS, 6, _L_RANKS, 2, "pixelshuffle", 96,
                ("DF2K", "DFLIP"), "sst-l+"),
        Variant("sst-xl+", "SSTXL_Plus", 224, 10, PLUS_WINDOWS, 7, _L_RANKS, 2, "pixelshuffle", 96,
                ("DFLIP",), "sst-xl+"),
    )
}
BY_OFFICIAL = {v.official: v for v in VARIANTS.values()}


def get_variant(name: str) -> Variant:
    key = name.strip().lower()
    if key in VARIANTS:
        return VARIANTS[key]
    if name in BY_OFFICIAL:
        return BY_OFFICIAL[name]
    raise KeyError(f"unknown model '{name}' (choose from: {', '.join(VARIANTS)}, bicubic)")


def create_model(name: str, scale: int) -> SST:
    """A randomly initialised SST variant, e.g. ``create_model("sst-l+", 4)``."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES} (got {scale})")
    return build_model(get_variant(name).network_g(scale))
