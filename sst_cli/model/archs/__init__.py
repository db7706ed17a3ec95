"""One folder per network architecture, and the one table (``ARCHS``) that names them by official ``type``.

Each folder holds the network's modules (``network.py``, official parameter names), the dataclass that is
the only home of its keywords (``config.py``: read from and written to an official ``network_g``), how to
recognise its state dict (``detect.py``) and what it costs per input pixel (``cost.py``). Everything else
asks through the functions here and never reads a keyword name itself. A new network is a new folder
and one line in ``ARCHS`` (and its variants in ``model/registry.py``).

Torch-free at import (configs, detection and costs are plain Python); a network module loads on first build.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import esc_rib, sst, sst_real
from .common import Cost
from .esc_rib import cost as esc_rib_cost
from .esc_rib import detect as esc_rib_detect
from .sst import cost as sst_cost
from .sst import detect as sst_detect
from .sst_real import cost as sst_real_cost
from .sst_real import detect as sst_real_detect

if TYPE_CHECKING:
    from torch import nn

DEFAULT_TYPE = "SST"  # a network_g without ``type`` (older sst files, the paper's configs)


@dataclass(frozen=True)
class Arch:
    type: str  # the official ``type`` of network_g, e.g. "ESCRIB"
    label: str  # how tables and messages name it, e.g. "ESC-RIB"
    config: Any  # its keywords dataclass (SSTConfig, ESCRIBConfig)
    network: str  # "module:Class", imported on first build
    detect: Callable[[Mapping[str, Any]], dict[str, Any] | None]  # state dict -> partial network_g, or None
    cost: Callable[[Any], Cost]  # config -> cost model

    def network_class(self) -> type[nn.Module]:
        module, name = self.network.split(":")
        return getattr(importlib.import_module(module), name)


ARCHS: dict[str, Arch] = {a.type: a for a in (
    Arch("SST", "SST", sst.SSTConfig, f"{__name__}.sst.network:SST", sst_detect.detect, sst_cost.cost),
    Arch("ESCRIB", "ESC-RIB", esc_rib.ESCRIBConfig, f"{__name__}.esc_rib.network:ESCRIB", esc_rib_detect.detect,
         esc_rib_cost.cost),
    Arch("EDMUNet", "SSTReal", sst_real.SSTRealConfig, f"{__name__}.sst_real.network:EDMUNet", sst_real_detect.detect,
         sst_real_cost.cost),
)}


def arch_of(network_g: Mapping[str, Any]) -> Arch:
    """The architecture an official ``network_g`` names (no ``type``: SST); ValueError for any other type."""
    kind = network_g.get("type") or DEFAULT_TYPE
    if kind not in ARCHS:
        raise ValueError(f"unknown network type {kind!r} (sst builds: {', '.join(ARCHS)})")
    return ARCHS[kind]


def config_of(network_g: Mapping[str, Any]) -> Any:
    """The checked config dataclass of ``network_g`` (ValueError naming the bad keyword)."""
    return arch_of(network_g).config.from_network_g(dict(network_g))


def build_model(network_g: Mapping[str, Any]) -> nn.Module:
    """The network an official ``network_g`` describes (BasicSR's options), randomly initialised, with the
    official state-dict layout and forward signature; dispatched on ``type`` (missing: SST)."""
    arch = arch_of(network_g)
    return arch.network_class()(**{k: v for k, v in network_g.items() if k != "type"})


def cost_of(model: Any) -> Cost | None:
    """The cost model of a built network (None for models sst has no architecture for, e.g. bicubic)."""
    cfg = getattr(model, "cfg", None)
    arch = ARCHS.get(getattr(cfg, "TYPE", ""))
    return arch.cost(cfg) if arch is not None else None


def network_cost(network_g: Mapping[str, Any]) -> Cost:
    """The cost model of the network an official ``network_g`` describes, without building it."""
    return arch_of(network_g).cost(config_of(network_g))


# ---------------------------------------------------------------------------------- state dicts
def detect(sd: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the tensors of ``sd`` say about their network: a partial official ``network_g`` (the keywords the
    tensors do not record, such as RIB window sizes, absent), or None when no architecture recognises them."""
    for arch in ARCHS.values():
        found = arch.detect(sd)
        if found is not None:
            return found
    return None


def unrecorded(network_g: Mapping[str, Any]) -> list[str]:
    """The window keywords ``network_g`` lacks (what RIB weights do not record)."""
    return [k for k in arch_of(network_g).config.WINDOW_KEYS if k not in network_g]


def fits(detected: Mapping[str, Any], network_g: Mapping[str, Any]) -> bool:
    """Whether ``network_g`` (complete) builds tensors ``detected`` describes: the same architecture, and the
    same value for every keyword ``detected`` records."""
    if arch_of(detected) is not arch_of(network_g):
        return False
    full = config_of(network_g).to_network_g()
    return all(k in full and full[k] == v for k, v in detected.items())


def scale_of(network_g: Mapping[str, Any]) -> int:
    """The upscaling factor of a (possibly partial) ``network_g``: every architecture calls it the same."""
    return int(network_g.get("upscaling_factor", 4))


def describe_custom(network_g: Mapping[str, Any]) -> str:
    """"a custom SST (dim 8, 2 blocks)": a network that is no registry variant, from a (partial) network_g."""
    arch = arch_of(network_g)
    return f"a custom {arch.label} ({arch.config.summary(network_g)})"


__all__ = ["ARCHS", "Arch", "Cost", "arch_of", "build_model", "config_of", "cost_of", "describe_custom", "detect",
           "fits", "network_cost", "scale_of", "unrecorded"]
