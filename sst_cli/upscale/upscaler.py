"""The ``Upscaler``: which model, which weights, which device -> a ready model on its device.

Shared by ``upscale``, ``eval`` and ``profile``: the model is resolved and loaded once, moved to the
device and dtype, and routed through an attention backend.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import SSTError, UsageError
from ..io.images import PillowImage, from_pil, to_pil
from ..model.archs import cost_of
from ..model.attention import BackendUnavailable, resolve_backend
from ..model.bicubic import Bicubic
from ..model.identify import identify
from ..model.loading import model_from_checkpoint
from ..model.registry import BUNDLED, VARIANTS, get_variant, official_file_for
from ..model.weights import Checkpoint, bundled_path, load_checkpoint
from ..runtime import resolve_device, resolve_dtype


@dataclass
class Upscaler:
    """A loaded model on its device.

    Called on a numpy image (H, W) or (H, W, C), uint8/uint16/float, RGB order, it returns the same kind
    ``scale`` times larger, tiled by ``tile`` (see :func:`sst_cli.upscale.array.upscale_array`); a PIL
    image gives a PIL image, read as a file of it would be (:func:`sst_cli.io.images.from_pil`: upright by
    EXIF orientation; L, LA, RGB, RGBA and 16-bit grey kept, other modes converted), ICC profile kept. Called
    on a float tensor (B, 3, H, W) in [0, 1] it runs one whole-input forward and returns float32
    (B, 3, sH, sW) on the CPU, not clamped.
    """

    model: nn.Module
    name: str
    scale: int
    device: torch.device
    dtype: torch.dtype
    backend: str
    source: str  # where the weights came from
    info: dict[str, Any] = field(default_factory=dict)
    tile: int | str = "auto"  # for numpy input: tile side in input pixels, 0 = whole image, "auto"
    auto_dtype: bool = False  # the dtype was left to auto (see for_pixels)
    requested_backend: str = "auto"
    # The float32 weights as loaded (on the CPU), kept by load_upscaler for for_pixels when auto picked a half dtype.
    fp32_weights: nn.Module | None = field(default=None, repr=False, compare=False)
    runtime: str = "torch"  # what runs the forward: torch, or a graph runtime (sst_cli.export.runner)
    # A graph runtime's forward: float (B, 3, H, W) -> float32 (B, 3, sH, sW); None: the model in PyTorch.
    runner: Callable[[Tensor], Tensor] | None = field(default=None, repr=False, compare=False)
    _full: Upscaler | None = field(default=None, repr=False, compare=False)

    @property
    def widens_16bit(self) -> bool:
        """Whether 16-bit images run in fp32 rather than this upscaler's own half dtype (:meth:`for_pixels`)."""
        return self.auto_dtype and self.dtype in (torch.bfloat16, torch.float16) and self.fp32_weights is not None

    def for_pixels(self, pixel_dtype: np.dtype) -> Upscaler:
        """The upscaler for images of ``pixel_dtype``. With the dtype left to auto on a GPU (bf16), 16-bit and
        float images run in fp32, so they keep 16-bit precision (bf16 has 8 bits of mantissa): the model
        from its float32 weights, made once, with the backend re-chosen for fp32. An explicitly named fp16/bf16-only
        backend stays in its half dtype (naming it asks for that); so does everything asked for by name."""
        if pixel_dtype == np.uint8 or not self.widens_16bit:
            return self
        if self._full is None:
            with_bias = str(getattr(self.model, "config", {}).get("attn_type", "RIB")).lower() == "rpb"
            try:
                backend = resolve_backend(self.requested_backend, self.device, torch.float32, with_bias=with_bias)
            except BackendUnavailable:
                return self
            assert self.fp32_weights is not None  # widens_16bit
            model = copy.deepcopy(self.fp32_weights).to(self.device).set_backend(backend)
            self._full = replace(self, model=model, dtype=torch.float32, backend=backend, auto_dtype=False,
                                 fp32_weights=None)
        return self._full

    @overload
    def __call__(self, x: Tensor) -> Tensor: ...
    @overload
    def __call__(self, x: np.ndarray) -> np.ndarray: ...
    @overload
    def __call__(self, x: PillowImage) -> PillowImage: ...

    def __call__(self, x: Tensor | np.ndarray | PillowImage) -> Tensor | np.ndarray | PillowImage:
        from .array import upscale_array

        if isinstance(x, np.ndarray):
            return upscale_array(x, self, tile=self.tile)
        if isinstance(x, Tensor):
            return self.forward(x)
        if isinstance(x, PillowImage):
            img = from_pil(x)
            pixels = img.pixels[..., 0] if img.pixels.shape[2] == 1 else img.pixels
            return to_pil(upscale_array(pixels, self, tile=self.tile), img.icc_profile)
        raise TypeError(f"an Upscaler takes a numpy array, a PIL image or a torch tensor, not {type(x).__name__}.")

    @torch.inference_mode()
    def forward(self, x: Tensor) -> Tensor:
        """Whole-input forward (no tiling): float (B, 3, H, W) -> float32 (B, 3, sH, sW) on the CPU."""
        if self.runner is not None:
            return self.runner(x)
        x = x.to(self.device, self.dtype)
        return self.model(x).float().cpu()

    def __repr__(self) -> str:
        # one line, as a notebook or a log shows it: the network itself is `up.model`
        dtype = str(self.dtype).replace("torch.", "")
        run = f"runtime={self.runtime!r}" if self.runner is not None else f"backend={self.backend!r}"
        return (f"Upscaler(model={self.name!r}, scale={self.scale}, device={str(self.device)!r}, dtype={dtype!r}, "
                f"{run}, weights={self.source!r})")

    @property
    def window_max(self) -> int:
        """The largest attention window of the model (1: none)."""
        cost = cost_of(self.model)
        return cost.window if cost is not None else 1


def _bundled(scale: int) -> tuple[Checkpoint, str]:
    path = bundled_path(scale)
    if not path.is_file():
        raise SSTError(f"the bundled model for x{scale} is missing ({path}); pass --model or --weights.")
    return load_checkpoint(path), f"bundled {BUNDLED} x{scale}"


def _checkpoint_for(model: str | None, weights: str | None, scale: int | None, sha256: str | None) -> tuple[Checkpoint, str]:
    """The weights to load and where they came from: ``weights`` (path, URL, hf://, official file name),
    else the official file of ``model`` (downloaded once), else the bundled model."""
    from ..model import hub

    if weights:
        path = hub.fetch(weights, sha256=sha256)
        return load_checkpoint(path), weights if str(path) == weights else f"{weights} ({path})"
    if model is None:
        return _bundled(scale or 4)
    try:
        variant = get_variant(model)
    except KeyError as exc:
        raise SSTError(str(exc.args[0]) + ".") from None
    if variant.bundled:
        return _bundled(scale or 4)
    try:
        file = official_file_for(variant, scale or 4)
    except KeyError as exc:  # a scale it was not published at (sst-real: x4 only)
        raise SSTError(str(exc.args[0]) + ".") from None
    path = hub.fetch_official(file, sha256=sha256)
    return load_checkpoint(path), str(path)


def load_upscaler(
    model: str | None = None,
    scale: int | None = None,
    weights: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    backend: str = "auto",
    tile: int | str = "auto",
    *,
    sha256: str | None = None,
    random_weights: bool = False,
    seed: int = 0,
    noise_seed: int | None = None,
    guidance: float | None = None,
    runtime: str = "torch",
) -> Upscaler:
    """Resolve, load and place a model, e.g. ``load_upscaler("sst-l+", 4)`` or ``load_upscaler(weights=FILE)``.

    ``model=None`` and no weights means the bundled model; ``model="bicubic"`` the baseline; a variant
    name alone loads its official weights (first training set listed), from the search folders or the
    Hugging Face cache, downloading them once (:mod:`sst_cli.model.hub`). ``weights`` is a path, URL,
    ``hf://owner/repo/file[@rev]`` or official file name, checked against ``sha256`` when given. The network
    is decided by the file (its stored config, else its official name) and ``model`` only where the file
    cannot tell; a ``model`` contradicting the file is an SSTError, and ``Upscaler.name`` names what ran.
    ``scale=None`` means the weights' own scale (4 for the bundled model or a variant name);
    ``random_weights`` builds a variant untrained (timing only), initialised from ``seed`` so two runs get
    the same weights (the global RNG is left as it was); ``tile`` is used when the upscaler is called on
    numpy images. A network sampled from noise (sst-real) runs through its sampler, with ``noise_seed`` and
    ``guidance`` (default: its own); other networks refuse them.

    ``runtime`` "onnxruntime" or "openvino" runs the network's exported ONNX graphs instead of PyTorch, on the
    CPU in float32, through the same tiling (each tile size exported and checked once, then cached:
    :mod:`sst_cli.export.runner`); "auto" is what ``sst upscale`` uses by default (torch, until a graph
    runtime is measured faster: ``runner.CPU_DEFAULT``).
    """
    named, graph_runtime = runtime not in ("auto", "torch"), False
    if runtime != "torch":  # the options a graph cannot honour are refused before any weights load
        from ..export import runner

        runtime, device = runner.resolve(runtime, device, dtype, backend)
        graph_runtime = runtime != "torch"
        if graph_runtime and named and model not in (None, "bicubic"):
            if get_variant(model).type == "EDMUNet":  # before its weights are looked for (attach says it too)
                raise UsageError(f"--runtime {runtime}: {model} draws its noise by pixel position, which a fixed "
                                 "graph cannot do; use --runtime torch.")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if model == "bicubic":
        if weights:
            raise UsageError("--model bicubic is the built-in baseline and takes no --weights; drop one of them.")
        if noise_seed is not None or guidance is not None:
            raise UsageError("--seed and --guidance apply to networks sampled from noise (sst-real), not bicubic; "
                             "drop them.")
        s = scale or 4
        if graph_runtime and named:
            raise UsageError(f"--model bicubic is built into sst and has no graph to run in {runtime}; use "
                             "--runtime torch.")
        return Upscaler(Bicubic(s), "bicubic", s, dev, dt, "none", "built-in", tile=tile)
    if random_weights:
        from ..model.registry import create_model

        if model is None:
            raise SSTError("--random-weights needs --model.")
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = create_model(model, scale or 4)
        except KeyError as exc:
            raise SSTError(str(exc.args[0]) + ".") from None
        name, source = get_variant(model).name, "random weights"
    else:
        ckpt, source = _checkpoint_for(model, weights, scale, sha256)
        network = identify(ckpt, model)  # the file decides; --model only where the file cannot tell
        net = model_from_checkpoint(ckpt, scale=scale, network_g=network.network_g)
        own = str(ckpt.meta.get("name") or Path(ckpt.path).stem)
        # A custom network never borrows a registry name (its windows or shapes differ from that variant's).
        name = network.name or (f"custom {own}" if own in VARIANTS else own)
        if network.assumed:
            source += f"; {network.assumed}"
    if hasattr(net, "sampler"):  # image-to-image through the authors' sampling (archs/sst_real/sampling.py)
        net = net.sampler(noise_seed, guidance)
    elif noise_seed is not None or guidance is not None:
        raise UsageError(f"--seed and --guidance apply to networks sampled from noise (sst-real), not {name}; "
                         "drop them.")
    try:
        with_bias = getattr(getattr(net, "cfg", None), "bias", None) == "rpb"
        chosen = resolve_backend(backend, dev, dt, with_bias=with_bias)
    except BackendUnavailable as exc:
        raise SSTError(str(exc)) from None
    net = net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    # Auto's half dtype is for 8-bit images; 16-bit ones will want the float32 weights (Upscaler.for_pixels).
    fp32_weights = copy.deepcopy(net).float() if dtype == "auto" and dt != torch.float32 else None
    net = net.to(dev, dt).set_backend(chosen)
    up = Upscaler(net, name, net.scale, dev, dt, chosen, source, {"params": sum(p.numel() for p in net.parameters())},
                  tile=tile, auto_dtype=dtype == "auto", requested_backend=backend, fp32_weights=fp32_weights)
    return runner.attach(up, runtime, named) if graph_runtime else up
