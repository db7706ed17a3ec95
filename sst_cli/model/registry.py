"""The variant registry: every SST variant as a plain dataclass config, in one place.

Plain data (no torch import), so the CLI can list and validate names without loading PyTorch. Each
variant knows its network, its window sizes, the official checkpoint file names and where its weights
come from. ``sst-tiny`` is the small model sst ships inside the package.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .network import SST

SCALES = (2, 3, 4)
# Attention backends by name; their kernels are in attention.py (which imports torch).
BACKENDS = ("naive", "sdpa", "sdpa-math", "sdpa-efficient", "sdpa-flash", "sdpa-cudnn", "flex", "fa2", "fa3", "fa4")
# The kernels' distribution names (pip names, for version records): flash-attn 2, FlashAttention 3 (Hopper
# build), FlashAttention 4 (CuTe DSL: its module is flash_attn.cute but its distribution `flash-attn-4`), Triton.
KERNEL_DISTRIBUTIONS = ("flash-attn", "flash_attn_3", "flash-attn-4", "triton")
# Where the authors publish the official weights. Only the owner and the collection are known here; the
# repository holding each file is looked up on the Hub at run time (sst_cli.model.hub), never assumed.
HUB_AUTHOR = "dslisleedh"
HUB_COLLECTION = "dslisleedh/sst"
HUB_COLLECTION_URL = f"https://huggingface.co/collections/{HUB_COLLECTION}"
WEIGHT_SUFFIXES = (".pth", ".safetensors")  # an official file name, or its safetensors conversion
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
        """Official file names at ``scale``, one per training set (none for our own models)."""
        return [OfficialFile(self, t, scale).name for t in self.checkpoint_sets]

    @property
    def bundled(self) -> bool:
        """Shipped inside the package (sst_cli/data/weights/), needing no download."""
        return self.name == BUNDLED

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
BUNDLED = "sst-tiny"  # the small model sst ships, trained by `sst train` (checkpoints/README.md)
# Trained on a 2-core CPU for the default path: 32 channels, 2 blocks of two layers with windows 8 and 16
# (four layers: half the cost per pixel of the first bundled model's eight, at higher PSNR; checkpoints/README.md).
VARIANTS[BUNDLED] = Variant(BUNDLED, "", 32, 2, (8, 16), 2, (8, 8), 2, "pixelshuffle_direct",
                            None, (), "", "bundled with sst; trained here (checkpoints/README.md)")
BY_OFFICIAL = {v.official: v for v in VARIANTS.values() if v.official}


@dataclass(frozen=True)
class OfficialFile:
    """One published checkpoint: variant x training set x scale, e.g. SSTLarge_Plus_DF2K_X4.pth."""

    variant: Variant
    training_set: str
    scale: int

    @property
    def name(self) -> str:
        return f"{self.variant.official}_{self.training_set}_X{self.scale}.pth"


OFFICIAL_FILES: dict[str, OfficialFile] = {
    f.name: f
    for v in VARIANTS.values()
    for s in SCALES
    for f in (OfficialFile(v, t, s) for t in v.checkpoint_sets)
}


def official_file(path: str) -> OfficialFile | None:
    """The published checkpoint a file name stands for, or None: the name must be an official one exactly
    (``SSTlight_Plus_DIV2K_X4.pth``, or the same stem as ``.safetensors``); nothing else is guessed."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    if not dot or f".{suffix}" not in WEIGHT_SUFFIXES:
        return None
    return OFFICIAL_FILES.get(f"{stem}.pth")


def official_file_for(variant: Variant, scale: int, training_set: str | None = None) -> OfficialFile:
    """The published file of ``variant`` at ``scale``: ``training_set`` (case-insensitive), else the first
    listed (the set the paper's tables report). KeyError with the choices when there is none."""
    sets = variant.checkpoint_sets
    if not sets:
        raise KeyError(f"{variant.name} has no official weights")
    if training_set is None:
        return OfficialFile(variant, sets[0], scale)
    for t in sets:
        if t.lower() == training_set.lower():
            return OfficialFile(variant, t, scale)
    raise KeyError(f"{variant.name} was not published trained on {training_set} (choose from: {', '.join(sets)})")


def get_variant(name: str) -> Variant:
    key = name.strip().lower()
    if key in VARIANTS:
        return VARIANTS[key]
    if name in BY_OFFICIAL:
        return BY_OFFICIAL[name]
    raise KeyError(f"unknown model '{name}' (choose from: {', '.join(VARIANTS)}, bicubic)")


def create_model(name: str, scale: int) -> SST:
    """A randomly initialised SST variant, e.g. ``create_model("sst-l+", 4)``."""
    from .network import build_model

    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES} (got {scale})")
    return build_model(get_variant(name).network_g(scale))
