"""`sst env`: versions and hardware, for bug reports and for reading benchmark figures."""

from __future__ import annotations

import importlib.metadata
import platform

from ..model.registry import KERNEL_DISTRIBUTIONS
from . import app
from ._common import Command, console, json_option

PACKAGES = ("torch", "numpy", "opencv-python-headless", "pillow", "safetensors", "huggingface_hub",
            *KERNEL_DISTRIBUTIONS, "matplotlib")


def collect() -> dict[str, object]:
    """sst, Python, package versions, CUDA and GPUs (torch imported here, never at `--help`)."""
    import torch

    from .. import __version__

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    mps = getattr(torch.backends, "mps", None)
    return {
        "sst": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "packages": versions, "cuda": torch.version.cuda, "gpus": gpus,
        "mps": bool(mps is not None and mps.is_available()), "cpu_threads": torch.get_num_threads(),
    }


@app.command("env", cls=Command)
def env_cmd(json_path: str | None = json_option("Write the facts as JSON to FILE ('-' prints JSON).")) -> None:
    """Print sst, Python, torch, CUDA, GPU and kernel-package versions."""
    import json

    from ..io.files import atomic_write_text

    facts = collect()
    if json_path:
        text = json.dumps(facts, indent=1)
        if json_path == "-":
            print(text)
            return
        atomic_write_text(json_path, text + "\n")
    pk = facts["packages"]
    assert isinstance(pk, dict)
    console.print(f"sst {facts['sst']} · Python {facts['python']} · {facts['platform']}")
    console.print(" · ".join(f"{k} {v}" for k, v in pk.items()))
    gpus = facts["gpus"]
    console.print(f"CUDA {facts['cuda'] or '–'} · GPUs: {', '.join(gpus) if gpus else 'none'}"  # type: ignore[arg-type]
                  f" · mps {'yes' if facts['mps'] else 'no'} · CPU threads {facts['cpu_threads']}")
