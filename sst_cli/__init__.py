"""sst: the SST super-resolution transformer as a command-line tool and a small typed Python API.

    import numpy as np, sst_cli
    up = sst_cli.load_upscaler(scale=4)          # the bundled model; or load_upscaler("sst-l+", 4)
    big = up(np.zeros((20, 24, 3), np.uint8))    # (80, 96, 3) uint8

Package map (dependencies point down): ``cli`` -> ``upscale``, ``evaluation``, ``profiling``, ``training``
-> ``model``, ``io`` -> ``runtime``, ``errors``. Names are imported lazily, so ``import sst_cli`` (and
``sst --help``) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.6.0"

# public name -> module that defines it
_API = {
    "SST": "sst_cli.model.archs.sst.network",
    "build_model": "sst_cli.model.archs",
    "create_model": "sst_cli.model.registry",
    "VARIANTS": "sst_cli.model.registry",
    "load_checkpoint": "sst_cli.model.weights",
    "save_checkpoint": "sst_cli.model.weights",
    "Upscaler": "sst_cli.upscale.upscaler",
    "load_upscaler": "sst_cli.upscale.upscaler",
    "upscale_array": "sst_cli.upscale.array",
    "evaluate": "sst_cli.evaluation.runner",
    "profile": "sst_cli.profiling.runner",
    "SSTError": "sst_cli.errors",
}

if TYPE_CHECKING:
    from .errors import SSTError
    from .evaluation.runner import evaluate
    from .model.archs import build_model
    from .model.archs.sst.network import SST
    from .model.registry import VARIANTS, create_model
    from .model.weights import load_checkpoint, save_checkpoint
    from .profiling.runner import profile
    from .upscale.array import upscale_array
    from .upscale.upscaler import Upscaler, load_upscaler


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sst_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = [
    "SST", "VARIANTS", "SSTError", "Upscaler", "build_model", "create_model", "evaluate", "load_checkpoint",
    "load_upscaler", "profile", "save_checkpoint", "upscale_array", "__version__",
]
