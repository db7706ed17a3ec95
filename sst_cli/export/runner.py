"""``--runtime onnxruntime|openvino``: an ``Upscaler`` whose forward runs exported fixed-size graphs.

The graph runtime replaces only the network's forward (``Upscaler.runner``); tiling, blending, TTA, alpha,
grey images, videos and the skip rule are the same code as with PyTorch. Every tile of a plan has one size
(``tiling.plan_tiles``: edge tiles are pushed back inside the image, never cut short), so an image needs the
graph of that size, plus its transpose under TTA when the tile is not square; an image run whole needs a
graph of its own size. Each size is exported once (about 2 s for the bundled model) and cached
(:mod:`sst_cli.export.cache`); each graph gets one session per process, made on its first tile. A graph is
traced at the exact tile size, with the model's own per-layer padding recorded in it, so it computes what
PyTorch computes on that tile: padding the tile to another size would not (the convolutions see the image's
border, the attention layers pad to their windows).

Graphs are float32 on the CPU: another device or dtype, an explicit attention backend, the built-in bicubic
or a network sampled from noise (sst-real) are refused when the runtime is named, and run in PyTorch when it
was left to ``auto``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from ..errors import UsageError
from ..model.archs import cost_of
from ..runtime import RUNTIME_NAMES, resolve_device
from ..upscale.manifest import weights_fingerprint
from ..upscale.upscaler import Upscaler
from . import sessions
from .cache import Graph, GraphKey, load_or_export
from .onnx import importable

# The runtime `--runtime auto` (the default of `sst upscale`) runs on the CPU. A graph runtime becomes the default
# only once it is measured faster than torch and equal within 1/255 on the default path, side by side in one run:
# `python benchmarks/upscale_1080p.py --runtime torch --runtime onnxruntime --runtime openvino --format png`
# (benchmarks/RESULTS.md#default-path-1080p).
CPU_DEFAULT = "torch"


def resolve(runtime: str, device: str, dtype: str, backend: str) -> tuple[str, str]:
    """(runtime, device) from the options, before any weights load. A named graph runtime needs the CPU, fp32
    and no named attention backend (UsageError, one sentence) and its package (SSTError naming the extra);
    ``device="auto"`` then means the CPU. ``"auto"`` is :data:`CPU_DEFAULT` where all of that holds, else torch.
    The network itself is checked by :func:`attach`."""
    if runtime not in ("auto", *RUNTIME_NAMES):
        raise UsageError(f"--runtime must be auto, {', '.join(RUNTIME_NAMES)} (got '{runtime}').")
    if runtime == "auto":
        chosen = CPU_DEFAULT
        if chosen == "torch" or not _graph_options(device, dtype, backend):
            return "torch", device
        if not all(importable(m) for m in (sessions.EXTRAS[chosen][0], "onnx")):
            return "torch", device
        return (chosen, device) if resolve_device(device).type == "cpu" else ("torch", device)
    if runtime == "torch":
        return runtime, device
    if device not in ("auto", "cpu"):
        raise UsageError(f"--runtime {runtime} runs on the CPU; drop --device {device} or use --runtime torch.")
    if dtype not in ("auto", "fp32"):
        raise UsageError(f"--runtime {runtime} runs float32 graphs; drop --dtype {dtype} or use --runtime torch.")
    if backend != "auto":
        raise UsageError(f"--backend {backend} applies to --runtime torch (the {runtime} graph runs attention as "
                         "plain matrix products); drop one of them.")
    sessions.require(runtime)
    return runtime, "cpu"


def _graph_options(device: str, dtype: str, backend: str) -> bool:
    return device in ("auto", "cpu") and dtype in ("auto", "fp32") and backend == "auto"


def attach(up: Upscaler, runtime: str, named: bool = True) -> Upscaler:
    """``up`` with its forward run by ``runtime``'s graphs (a new Upscaler; ``up`` itself stays PyTorch).
    A network that has no graph (bicubic, sst-real) is a UsageError when the runtime was ``named``, else
    ``up`` unchanged."""
    why = None
    if cost_of(up.model) is None:
        why = f"{up.name} has no network to export"
    elif hasattr(up.model, "recipe"):  # sampled from noise drawn by pixel position (model/placement.py)
        why = f"{up.name} draws its noise by pixel position, which a fixed graph cannot do"
    elif up.device.type != "cpu" or up.dtype != torch.float32:
        why = f"{up.name} was loaded on {up.device} in {up.dtype}; graphs run float32 on the CPU"
    if why is not None:
        if named:
            raise UsageError(f"--runtime {runtime}: {why}; use --runtime torch.")
        return up
    return replace(up, runtime=runtime, runner=GraphRunner(up, runtime))


class GraphRunner:
    """Maps float tiles (B, 3, H, W) to float32 (B, 3, sH, sW) through the graph of each (H, W), one image at
    a time (graphs have batch 1: ESC-RIB's per-image kernels have no batch-independent form)."""

    def __init__(self, reference: Upscaler, runtime: str, seed: int = 0) -> None:
        self.reference = reference  # PyTorch: what every graph is traced from and checked against
        self.runtime = runtime
        self.version = sessions.version(runtime)  # "onnxruntime 1.32.0"
        self.seed = seed
        self.graphs: dict[tuple[int, int], Graph] = {}
        self.on_export: Callable[[Graph], None] | None = None  # told after each graph this run exports

    def graph(self, height: int, width: int) -> Graph:
        """The session for (height, width): made once per run, from the cache or exported into it."""
        found = self.graphs.get((height, width))
        if found is None:
            ref = self.reference
            key = GraphKey(f"{ref.name} x{ref.scale}", weights_fingerprint(ref), height, width, self.runtime,
                           self.version.split(" ", 1)[1])
            found = self.graphs[(height, width)] = load_or_export(ref, key, torch.get_num_threads(), self.seed)
            if found.exported and self.on_export is not None:
                self.on_export(found)
        return found

    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) tensor, got {tuple(x.shape)}")
        session = self.graph(int(x.shape[2]), int(x.shape[3])).session
        x = x.detach().to("cpu", torch.float32)
        return torch.cat([torch.from_numpy(session.run(x[i : i + 1].numpy())) for i in range(x.shape[0])])
