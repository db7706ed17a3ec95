"""Running an exported ONNX graph on the CPU in ONNX Runtime or OpenVINO: one session per graph.

Both runtimes get sst's thread count (``torch.get_num_threads()``, which ``--threads`` sets) and their
fastest settings for one image at a time: ONNX Runtime with every graph optimisation, OpenVINO with the
latency hint. OpenVINO's CPU plugin would run in bf16 on CPUs that have it (its default inference precision
there), so float32 is asked for and checked after compiling: a graph verified in float32 never silently runs
in another precision.

The runtimes are optional extras, imported only here and only inside the functions that need them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SSTError
from ..io.files import reason
from .onnx import require_modules

# runtime -> (the Python module, the extra that installs it with onnx, which export needs)
EXTRAS = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}


def require(runtime: str) -> None:
    """SSTError naming the extra to install unless ``runtime`` and ``onnx`` (for the export) import."""
    module, extra = EXTRAS[runtime]
    require_modules((module, "onnx"), f"--runtime {runtime}", f"pip install 'sst-cli[{extra}]'")


def version(runtime: str) -> str:
    """'onnxruntime 1.32.0', 'openvino 2026.4.1': what a graph is checked and run in."""
    module = importlib.import_module(EXTRAS[runtime][0])
    text = str(getattr(module, "__version__", "?"))
    return f"{runtime} {text.split('-')[0]}"  # openvino's version carries its build: 2026.4.1-22982-...


@dataclass
class Session:
    """A graph compiled for the CPU; ``run`` maps a float32 array (1, 3, H, W) to the graph's output."""

    runtime: str
    handle: Any  # onnxruntime.InferenceSession | openvino.InferRequest

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.runtime == "onnxruntime":
            return self.handle.run(None, {"input": x})[0]
        self.handle.infer({0: x})
        return self.handle.get_output_tensor(0).data.copy()  # the request reuses its buffer on the next call


def open_session(runtime: str, path: Path, threads: int) -> Session:
    """``path`` (an ONNX file) compiled for the CPU in ``runtime`` with ``threads`` threads; SSTError when the
    runtime refuses it (a damaged file, an op it lacks)."""
    try:
        handle = _onnxruntime(path, threads) if runtime == "onnxruntime" else _openvino(path, threads)
    except SSTError:
        raise
    except Exception as exc:  # noqa: BLE001 - the runtime's own refusal is the reason we report
        raise SSTError(f"{runtime} cannot load the ONNX graph {path.name} ({reason(exc)}).") from None
    return Session(runtime, handle)


def _onnxruntime(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # one image at a time: the parallelism is inside the ops
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: its notes on graph optimisation are not the user's concern
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


OPENVINO_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


def _openvino(path: Path, threads: int) -> Any:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {**OPENVINO_CONFIG, "INFERENCE_NUM_THREADS": threads})
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")
    if precision != ov.Type.f32:
        raise SSTError(f"OpenVINO compiled the graph for {precision} although float32 was asked for; use "
                       "--runtime torch or onnxruntime.")
    return compiled.create_infer_request()
