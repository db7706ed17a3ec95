"""ONNX export of any model sst loads, checked in ONNX Runtime against PyTorch before it is written.

The graph is traced by ``torch.onnx.export`` (the TorchScript exporter, which needs only ``onnx``) from a copy
of the network in its plainest form:

- attention through ``sdpa-math``: RIB's position vectors concatenated to q and k, then MatMul, Softmax and
  MatMul, plain ops that every runtime runs (and may fuse);
- the training-path forward (gradients on, parameters requiring them): no oneDNN fused convolutions, in-place
  or ``out=`` writes, or cached tensors, none of which has an ONNX form.

Input (1, 3, H, W), RGB in [0, 1]; output (1, 3, sH, sW), not clamped, as ``Upscaler.forward``. A fixed
export holds one tile size, a multiple of the model's window alignment (``archs.cost_of``). A dynamic one
takes any H and W above half the largest window: below that sst mirror-tiles its padding, which has no ONNX
form, and ONNX Runtime refuses such inputs rather than computing something else. Batch is 1: ESC-RIB's
per-image dynamic kernels have no batch-independent ONNX form.
"""

from __future__ import annotations

import copy
import importlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import SSTError, UsageError
from ..io.files import atomic_write, reason
from ..model.archs import cost_of
from ..runtime import torch_dtype
from ..upscale.upscaler import Upscaler

OPSET = 17  # the first with LayerNormalization
EXPORT_BACKEND = "sdpa-math"
# Largest |ONNX Runtime - PyTorch float32| allowed on random input. fp16 graphs keep about three significant
# digits: measured 7e-4 (bundled x4), 1.7e-3 (sst-light x4) and 1.6e-3 (esc-rib x4) at 64x64.
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2}
DEFAULT_TILE = 64  # rounded up to the model's alignment
INSTALL_HINT = "pip install 'sst-cli[onnx]'"


@dataclass(frozen=True)
class Check:
    """One comparison of the exported graph in ONNX Runtime with PyTorch float32 on a random input."""

    input_shape: tuple[int, ...]  # (1, 3, H, W)
    output_shape: tuple[int, ...]  # what ONNX Runtime returned
    max_abs_diff: float  # inf when the shapes differ
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance  # False for NaN


@dataclass(frozen=True)
class OnnxExport:
    """What ``export_onnx`` wrote and how it was checked."""

    path: Path
    name: str  # the network that ran, e.g. "sst-tiny x4"
    source: str  # where its weights came from
    dtype: str  # "fp32" | "fp16": the graph's inputs, weights and outputs
    opset: int
    tile: int  # fixed: the input's height and width; dynamic: the size the first check ran at
    min_side: int | None  # dynamic: the smallest height or width the graph takes; None: fixed size
    checks: tuple[Check, ...]
    runtime: str  # "onnxruntime 1.32.0"
    size_bytes: int

    @property
    def input_shape(self) -> str:
        return f"1x3x{self.tile}x{self.tile}" if self.min_side is None else "1x3xHxW"


def require_modules(modules: tuple[str, ...], purpose: str, hint: str) -> None:
    """SSTError, one sentence naming what is missing and ``hint`` (the extra to install), unless every one of
    ``modules`` imports."""
    missing = [name for name in modules if not importable(name)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise SSTError(f"{purpose} needs {' and '.join(missing)}, which {verb} not installed: {hint}.")


def require_runtime() -> None:
    """SSTError naming the extra to install unless ``onnx`` and ``onnxruntime`` import."""
    require_modules(("onnx", "onnxruntime"), "exporting to ONNX", INSTALL_HINT)


def importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def export_tile(up: Upscaler, tile: int | None) -> int:
    """``tile`` checked against the model's window alignment (UsageError naming the nearest that fit);
    None: the smallest aligned tile from ``DEFAULT_TILE`` up."""
    cost = cost_of(up.model)
    if cost is None:
        raise UsageError(f"{up.name} is built into sst and has no network to export; pass --model or --weights.")
    align = cost.align
    if tile is None:
        return -(-DEFAULT_TILE // align) * align
    if tile < 1 or tile % align:
        below = tile // align * align
        fits = f"{below} or {below + align}" if below > 0 else f"{align}"
        raise UsageError(f"--tile {tile} does not fit the windows of {up.name} x{up.scale}: use a multiple of "
                         f"{align} (e.g. {fits}).")
    return tile


def smallest_side(up: Upscaler) -> int:
    """The smallest height or width a dynamic graph takes: where the official reflect padding still works
    (every side larger than half the largest window)."""
    cost = cost_of(up.model)
    assert cost is not None  # export_tile refused models without a network
    return cost.window // 2 + 1


def check_sizes(tile: int, min_side: int | None) -> list[tuple[int, int]]:
    """(H, W) of the random inputs a graph is checked at: the tile; for a dynamic graph also the smallest side
    beside a side the tile does not divide, and the other way round."""
    if min_side is None:
        return [(tile, tile)]
    return [(tile, tile), (min_side, tile + 5), (tile + 3, max(min_side, tile // 2) + 2)]


def export_onnx(
    up: Upscaler, path: str | Path, *, tile: int | None = None, dtype: str = "fp32", dynamic: bool = False,
    opset: int = OPSET, seed: int = 0,
) -> OnnxExport:
    """Export ``up``'s network to ONNX at ``path``, e.g. ``export_onnx(load_upscaler(device="cpu", dtype="fp32"),
    "x4.onnx", tile=64)``.

    ``dtype`` "fp32" or "fp16" (the graph's input, weights and output); ``tile`` the input's side (a multiple of
    the model's window alignment; None: 64 rounded up to it); ``dynamic``: any height and width from
    :func:`smallest_side` up. The graph is run in ONNX Runtime on random inputs (``seed``) and compared with
    ``up.forward``; a difference over ``TOLERANCES[dtype]`` is an SSTError and nothing is written. The file is
    written atomically. ``up`` must be on the CPU in float32 (its output is the reference).
    """
    require_runtime()
    if up.device.type != "cpu" or up.dtype != torch.float32:
        raise ValueError("export_onnx needs the reference on the CPU in float32: load_upscaler(..., device='cpu', "
                         "dtype='fp32').")
    if dtype not in TOLERANCES:
        raise UsageError(f"ONNX exports are fp32 or fp16, not {dtype}.")
    if opset < OPSET:
        raise UsageError(f"--opset {opset} is too old: sst exports opset {OPSET} or newer (LayerNormalization).")
    tile = export_tile(up, tile)
    min_side = smallest_side(up) if dynamic else None
    name = f"{up.name} x{up.scale}"
    graph = trace(up.model, tile, dtype, dynamic, opset, name)
    checks = verify(graph, up, check_sizes(tile, min_side), dtype, seed, name)
    failed = next((c for c in checks if not c.passed), None)
    if failed is not None:
        raise SSTError(f"the ONNX graph of {name} does not match PyTorch at {_shape(failed.input_shape)}: max "
                       f"|difference| {failed.max_abs_diff:.3g}, allowed {failed.tolerance:.0e}; nothing was written.")
    import onnxruntime

    runtime = f"onnxruntime {onnxruntime.__version__}"
    graph = with_metadata(graph, {
        "sst_version": __version__, "model": name, "weights": up.source, "dtype": dtype,
        "input": f"1x3x{tile}x{tile}" if min_side is None else f"1x3xHxW, H and W from {min_side}",
        "range": "RGB in [0, 1], output not clamped",
        "verified": "; ".join(f"{_shape(c.input_shape)}: max |{runtime} - PyTorch fp32| {c.max_abs_diff:.3g}"
                              for c in checks),
    })
    out = atomic_write(path, lambda tmp: tmp.write_bytes(graph))
    return OnnxExport(out, name, up.source, dtype, opset, tile, min_side, checks, runtime, len(graph))


def trace(model: torch.nn.Module, tile: int | tuple[int, int], dtype: str, dynamic: bool, opset: int,
          name: str = "the model") -> bytes:
    """The ONNX graph of ``model`` (input "input", output "output") as bytes; ``model`` is left unchanged.
    ``tile``: the side, or (height, width) of a fixed graph of any size (``sst upscale --runtime`` runs tiles
    whose sides the windows need not divide: each layer's padding is then recorded as constants).
    SSTError when the exporter refuses it."""
    net = copy.deepcopy(model).to(torch_dtype(dtype)).set_backend(EXPORT_BACKEND)
    for p in net.parameters():
        p.requires_grad_(True)  # the training-path forward (see the module's docstring)
    # A dynamic graph is traced at a side no window divides, so every layer's padding is recorded as a
    # function of H and W; a fixed one at its own size.
    h, w = (tile, tile) if isinstance(tile, int) else tile
    more = 1 if dynamic else 0
    x = torch.rand(1, 3, h + more, w + more, dtype=torch_dtype(dtype))
    axes = {"input": {2: "height", 3: "width"}, "output": {2: "out_height", 3: "out_width"}} if dynamic else None
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.enable_grad():
        # The tracer warns wherever a shape becomes a Python value; the checks in verify() are what tell.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(net, (x,), buf, opset_version=opset, dynamo=False, input_names=["input"],
                              output_names=["output"], dynamic_axes=axes)
        except RuntimeError as exc:  # the exporter's errors (unsupported op, unknown shape) are RuntimeErrors
            raise SSTError(f"{name} cannot be exported to ONNX opset {opset} ({reason(exc)}).") from None
    return buf.getvalue()


def verify(graph: bytes, up: Upscaler, sizes: list[tuple[int, int]], dtype: str, seed: int,
           name: str) -> tuple[Check, ...]:
    """Run ``graph`` in ONNX Runtime (CPU) and ``up`` in PyTorch on the same random inputs of ``sizes``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only: its notes on graph optimisation are not the user's concern
    try:
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own refusal is the reason we report
        raise SSTError(f"ONNX Runtime cannot load the ONNX graph of {name} ({reason(exc)}); nothing was "
                       "written.") from None
    return compare(lambda x: session.run(None, {"input": x})[0], up, sizes, dtype, seed, name, "ONNX Runtime")


def compare(run: Callable[[np.ndarray], np.ndarray], up: Upscaler, sizes: list[tuple[int, int]], dtype: str,
            seed: int, name: str, runtime: str) -> tuple[Check, ...]:
    """``run`` (a graph in some runtime: float array (1, 3, H, W) in ``dtype`` -> its output) against
    ``up.forward`` in PyTorch on the same random inputs of ``sizes``; SSTError when ``run`` raises."""
    gen = torch.Generator().manual_seed(seed)
    checks = []
    for h, w in sizes:
        x = torch.rand(1, 3, h, w, generator=gen)
        want = up.forward(x)
        try:
            got = torch.from_numpy(np.asarray(run(x.to(torch_dtype(dtype)).numpy()))).float()
        except Exception as exc:  # noqa: BLE001 - as above
            raise SSTError(f"{runtime} cannot run the ONNX graph of {name} at {_shape(x.shape)} "
                           f"({reason(exc)}); nothing was written.") from None
        diff = (got - want).abs().max().item() if got.shape == want.shape else float("inf")
        checks.append(Check(tuple(x.shape), tuple(got.shape), diff, TOLERANCES[dtype]))
    return tuple(checks)


def with_metadata(graph: bytes, props: dict[str, str]) -> bytes:
    """``graph`` with ``props`` as its metadata (what made it, what it takes, how it was checked); checked by
    the onnx checker."""
    import onnx

    proto = onnx.load_from_string(graph)
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _shape(shape: tuple[int, ...] | torch.Size) -> str:
    return "x".join(map(str, shape))
