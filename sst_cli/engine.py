"""Turning "which model, which weights, which device" into a ready ``Upscaler``.

Shared by ``upscale``, ``eval`` and ``profile``: the model is resolved and loaded once, moved to the
device and dtype, and routed through an attention backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .attention import BackendUnavailable, resolve_backend
from .checkpoint import (
    Checkpoint,
    fetch,
    find_official,
    load_checkpoint,
    missing_weights_message,
    model_from_checkpoint,
)
from .errors import SSTError
from .resize import imresize
from .zoo import get_variant

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
BUNDLED_NAME = "sst-tiny"  # the small model sst ships, trained by `sst train` (checkpoints/README.md)


def bundled_path(scale: int) -> Path:
    return BUNDLED_DIR / f"{BUNDLED_NAME}_x{scale}.safetensors"


class Bicubic(nn.Module):
    """The MATLAB-style bicubic baseline as a model: the same function ``eval`` and ``train`` use."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.config: dict[str, Any] = {"type": "bicubic", "upscaling_factor": scale}

    def forward(self, x: Tensor) -> Tensor:
        return imresize(x, self.scale).to(x.dtype)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SSTError(f"'{device}' is not a device (use auto, cpu, cuda or cuda:N).") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SSTError(f"device {device} was requested but no CUDA GPU is visible to PyTorch.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SSTError(f"device {device} does not exist ({torch.cuda.device_count()} CUDA GPU(s) visible).")
    return dev


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise SSTError(f"unknown dtype '{dtype}' (use auto, fp32, bf16 or fp16).")
    if device.type == "cpu" and dtype == "fp16":
        raise SSTError("fp16 inference is not supported on CPU; use fp32 or bf16.")
    return DTYPES[dtype]


@dataclass
class Upscaler:
    """A loaded model on its device. ``__call__`` maps float (B, 3, H, W) in [0, 1] to (B, 3, sH, sW)."""

    model: nn.Module
    name: str
    scale: int
    device: torch.device
    dtype: torch.dtype
    backend: str
    source: str  # where the weights came from
    info: dict[str, Any] = field(default_factory=dict)

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> Tensor:
        """Whole-image forward (no tiling); returns float32 on the CPU, not clamped."""
        x = x.to(self.device, self.dtype)
        return self.model(x).float().cpu()

    @property
    def window_max(self) -> int:
        return max(getattr(self.model, "window_sizes", (1,)))


def _checkpoint_for(model: str | None, weights: str | None, scale: int | None, sha256: str | None) -> tuple[Checkpoint, str]:
    if weights:
        if weights.startswith(("http://", "https://")):
            return load_checkpoint(fetch(weights, sha256=sha256)), weights
        return load_checkpoint(weights), weights
    if model is None:
        s = scale or 4
        path = bundled_path(s)
        if not path.is_file():
            raise SSTError(f"the bundled model for x{s} is missing ({path}); pass --model or --weights.")
        return load_checkpoint(path), f"bundled {BUNDLED_NAME} x{s}"
    try:
        variant = get_variant(model)
    except KeyError as exc:
        raise SSTError(str(exc.args[0]) + ".") from None
    s = scale or 4
    path = find_official(variant, s)
    if path is None:
        raise SSTError(missing_weights_message(variant, s))
    return load_checkpoint(path), str(path)


def load_upscaler(
    model: str | None = None,
    weights: str | None = None,
    scale: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    backend: str = "auto",
    sha256: str | None = None,
    random_weights: bool = False,
) -> Upscaler:
    """Resolve, load and place a model. ``model=None`` and no weights means the bundled model;
    ``model="bicubic"`` the baseline; ``random_weights`` builds a variant untrained (timing only)."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if model == "bicubic":
        s = scale or 4
        return Upscaler(Bicubic(s), "bicubic", s, dev, dt, "none", "built-in")
    if random_weights:
        from .zoo import create_model

        if model is None:
            raise SSTError("--random-weights needs --model.")
        try:
            net = create_model(model, scale or 4)
        except KeyError as exc:
            raise SSTError(str(exc.args[0]) + ".") from None
        name, source = get_variant(model).name, "random weights"
    else:
        ckpt, source = _checkpoint_for(model, weights, scale, sha256)
        net = model_from_checkpoint(ckpt, scale=scale if weights is None or scale else None)
        name = ckpt.meta.get("name") or (model or Path(ckpt.path).stem)
    try:
        with_bias = str(getattr(net, "config", {}).get("attn_type", "RIB")).lower() == "rpb"
        chosen = resolve_backend(backend, dev, dt, with_bias=with_bias)
    except BackendUnavailable as exc:
        raise SSTError(str(exc)) from None
    net = net.eval().to(dev, dt).set_backend(chosen)
    for p in net.parameters():
        p.requires_grad_(False)
    return Upscaler(net, name, net.scale, dev, dt, chosen, source, {"params": sum(p.numel() for p in net.parameters())})


def output_size(h: int, w: int, scale: int) -> tuple[int, int]:
    return h * scale, w * scale


def round_up(n: int, m: int) -> int:
    return int(math.ceil(n / m) * m)
