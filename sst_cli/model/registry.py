"""The variant registry: every published network (and the bundled one) as plain data, in one place.

Plain data (no torch import), so the CLI can list and validate names without loading PyTorch. Each
variant is its official ``network_g`` (the authors' options file, less the scale), the training sets of its
published files and its paper row; ``sst-tiny`` is the small model sst ships inside the package. The
keywords mean what their architecture's config says (``sst_cli.model.archs``); this file only lists values.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

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


@dataclass(frozen=True, eq=False)  # one object per variant: compared and hashed by identity
class Variant:
    name: str  # our name, e.g. "sst-l+"
    official: str  # official config name, e.g. "SSTLarge_Plus" (file names: <official>_<set>_X<scale>.pth)
    network: dict[str, Any]  # the official network_g without upscaling_factor ("type" included)
    checkpoint_sets: tuple[str, ...] = ()  # training sets of the published .pth files, the paper's first
    paper_name: str = ""  # row name in shared/paper/tables
    notes: str = ""
    scales: tuple[int, ...] = SCALES  # the scales it is built and published at

    def network_g(self, scale: int) -> dict[str, Any]:
        """The official constructor keywords for this variant at ``scale``."""
        return {**copy.deepcopy(self.network), "upscaling_factor": scale}  # callers may edit their copy

    @property
    def type(self) -> str:
        """The official architecture type: "SST", "ESCRIB"."""
        return str(self.network["type"])

    def checkpoint_names(self, scale: int) -> list[str]:
        """Official file names at ``scale``, one per training set (none for our own models)."""
        return [OfficialFile(self, t, scale).name for t in self.checkpoint_sets] if scale in self.scales else []

    @property
    def bundled(self) -> bool:
        """Shipped inside the package (sst_cli/data/weights/), needing no download."""
        return self.name == BUNDLED


def _sst(dim: int, n_blocks: int, windows: tuple[int, ...], heads: int, ranks: tuple[int, ...], exp_ratio: float,
         upsampler: str, intermediate_dim: int | None = None) -> dict[str, Any]:
    """An SST network_g as the official options files write it (heads per layer; intermediate_dim only
    where the file gives one: the official default is 64)."""
    cfg: dict[str, Any] = {
        "type": "SST", "dim": dim, "window_sizes": list(windows), "num_heads": [heads] * len(windows),
        "ranks": list(ranks), "n_blocks": n_blocks, "exp_ratio": exp_ratio, "attn_type": "RIB",
        "rib_hidden_dim": 32, "rib_n_freqs": 10, "upsampler_type": upsampler, "gate_type": "DWC",
    }
    if intermediate_dim is not None:
        cfg["intermediate_dim"] = intermediate_dim
    return cfg


_LIGHT_RANKS = (16, 16, 16, 24, 24, 24)
_SST_RANKS = (18, 18, 18, 34, 34, 34)
_L_RANKS = (16, 16, 16, 32, 32, 32)
# ESC-RIB: options/test/ESCRIB_X{2,3,4}.yaml of the official repository (commit bcd6132)
# SSTReal: network_g of options/test/SSTReal_X4.yaml (commit bcd6132), its x4 given by upscaling_factor
_SSTREAL = {"type": "EDMUNet", "img_resolution": 192, "img_channels": 3, "sigma_data": 0.5, "sigma_min": 0,
            "use_skip": True, "sampling_ig_lambda": 2.0, "dim": 192, "intermediate_dim": 96, "emb_channels": 768,
            "noise_channels": 192, "num_blocks": 14, "fuse_lr_till": 6, "ig_idx": 6, "attn_type": "RIB",
            "window_sizes": list(CLASSIC_WINDOWS), "num_heads": [6] * 6, "ranks": list(_L_RANKS), "rib_hidden_dim": 32,
            "rib_n_freqs": 10, "exp_ratio": 3, "gate_type": "DWC", "drop_p": 0.05}
_ESCRIB = {"type": "ESCRIB", "dim": 64, "pdim": 16, "kernel_size": 13, "n_blocks": 5, "conv_blocks": 5,
           "window_size": 64, "num_heads": 4, "exp_ratio": 1.25, "attn_type": "RIB", "rank": 16,
           "rib_hidden_dim": 32, "rib_n_freqs": 10, "gate_type": "DWC"}

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("sst-light", "SSTlight", _sst(48, 5, (8, 16, 32, 16, 32, 64), 3, _LIGHT_RANKS, 1.5, "pixelshuffle_direct"),
                ("DIV2K", "DFLIP"), "sst-light"),
        Variant("sst-light+", "SSTlight_Plus", _sst(48, 5, PLUS_WINDOWS, 3, _LIGHT_RANKS, 1.5, "pixelshuffle_direct"),
                ("DIV2K", "DFLIP"), "sst-light+"),
        Variant("sst", "SST", _sst(180, 6, CLASSIC_WINDOWS, 6, _SST_RANKS, 1.25, "pixelshuffle"), ("DF2K",), "sst"),
        Variant("sst+", "SST_Plus", _sst(180, 6, PLUS_WINDOWS, 6, _SST_RANKS, 1.25, "pixelshuffle"), ("DF2K",), "sst+"),
        Variant("sst-l", "SSTLarge", _sst(192, 8, CLASSIC_WINDOWS, 6, _L_RANKS, 2, "pixelshuffle", 96),
                ("DF2K", "DFLIP"), "sst-l"),
        Variant("sst-l+", "SSTLarge_Plus", _sst(192, 8, PLUS_WINDOWS, 6, _L_RANKS, 2, "pixelshuffle", 96),
                ("DF2K", "DFLIP"), "sst-l+"),
        Variant("sst-xl+", "SSTXL_Plus", _sst(224, 10, PLUS_WINDOWS, 7, _L_RANKS, 2, "pixelshuffle", 96),
                ("DFLIP",), "sst-xl+"),
        # Released 2026-05; only DFLIP files are named by the official options. Another training set is one
        # more word in the tuple.
        Variant("esc-rib", "ESCRIB", _ESCRIB, ("DFLIP",), "", "ESC-RIB: large-kernel convolutions beside one "
                "64x64-window RIB attention per block (authors' repository, after the paper)"),
        # Released 2026-06 as one file, its name without a training set (""): SSTReal_X4.pth.
        Variant("sst-real", "SSTReal", _SSTREAL, ("",), "", "SSTReal: real-world photos (noise, JPEG, blur), "
                "an EDM-style network sampled in one seeded step (authors' repository, after the paper)", (4,)),
    )
}
BUNDLED = "sst-tiny"  # the small model sst ships, trained by `sst train` (checkpoints/README.md)
# Trained on a 2-core CPU for the default path: 32 channels, 2 blocks of one layer with 8x8 windows (sst 0.7: the
# 0.3-0.6 model's w=16 layers dropped, then fine-tuned; 0.55x the FLOPs at its x4 PSNR; checkpoints/README.md).
VARIANTS[BUNDLED] = Variant(BUNDLED, "", _sst(32, 2, (8,), 2, (8,), 2, "pixelshuffle_direct"), (), "",
                            "bundled with sst; trained here (checkpoints/README.md)")
BY_OFFICIAL = {v.official: v for v in VARIANTS.values() if v.official}


@dataclass(frozen=True)
class OfficialFile:
    """One published checkpoint: variant x training set x scale, e.g. SSTLarge_Plus_DF2K_X4.pth."""

    variant: Variant
    training_set: str
    scale: int

    @property
    def name(self) -> str:
        return "_".join(p for p in (self.variant.official, self.training_set, f"X{self.scale}") if p) + ".pth"

    @property
    def described(self) -> str:
        """'sst-l x4, trained on DF2K' ('sst-real x4' for a file named without a training set)."""
        return f"{self.variant.name} x{self.scale}" + (f", trained on {self.training_set}" if self.training_set else "")


OFFICIAL_FILES: dict[str, OfficialFile] = {
    f.name: f
    for v in VARIANTS.values()
    for s in v.scales
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
    if scale not in variant.scales:
        raise KeyError(f"{variant.name} is published at {', '.join(f'x{s}' for s in variant.scales)} only")
    if training_set is None:
        return OfficialFile(variant, sets[0], scale)
    for t in sets:
        if t.lower() == training_set.lower():
            return OfficialFile(variant, t, scale)
    if sets == ("",):
        raise KeyError(f"{variant.name} is published as one file, named without a training set: drop --trained-on")
    raise KeyError(f"{variant.name} was not published trained on {training_set} (choose from: {', '.join(sets)})")


def get_variant(name: str) -> Variant:
    key = name.strip().lower()
    if key in VARIANTS:
        return VARIANTS[key]
    if name in BY_OFFICIAL:
        return BY_OFFICIAL[name]
    raise KeyError(f"unknown model '{name}' (choose from: {', '.join(VARIANTS)}, bicubic)")


def create_model(name: str, scale: int) -> nn.Module:
    """A randomly initialised variant, e.g. ``create_model("sst-l+", 4)`` or ``create_model("esc-rib", 2)``."""
    from .archs import build_model

    variant = get_variant(name)
    if scale not in variant.scales:
        raise ValueError(f"{variant.name} scale must be one of {variant.scales} (got {scale})")
    return build_model(variant.network_g(scale))
