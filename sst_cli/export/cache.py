"""The graph cache: each fixed-size ONNX graph ``sst upscale --runtime`` runs is exported and checked once,
then reused from ``~/.cache/sst/graphs/``.

A graph is keyed by everything that decides its numbers: the weights (their fingerprint, as the output
records name them), the input size, dtype, ONNX opset, sst's version (the network's code) and the runtime with
its version (the check ran there). The key is the file's name and is also stored in the graph's metadata,
where it is read back before use: a truncated or damaged file (its metadata are written last, so a cut file
loses them) or one that the runtime cannot load is exported again, never trusted and never a crash.

A new graph is traced, written to a temporary file beside its place, loaded in the runtime that will run it
and compared there with PyTorch on random input (``onnx.TOLERANCES``); only then is it renamed into place
(:func:`sst_cli.io.files.atomic_write`), so the cache holds only checked graphs. The session that checked it
is the one that runs it. The folder can be deleted at any time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..errors import SSTError
from ..io.files import atomic_write
from ..model import hub
from ..upscale.upscaler import Upscaler
from . import onnx as onnx_export
from .sessions import Session, open_session

KEY_PROP = "sst_cache_key"  # the metadata entry that holds the key


def cache_dir() -> Path:
    """Where checked graphs are kept: ``<sst cache>/graphs`` (``$XDG_CACHE_HOME`` moves it)."""
    return hub.user_cache_dir() / "graphs"


@dataclass(frozen=True)
class GraphKey:
    """What decides a cached graph's numbers."""

    model: str  # "sst-tiny x4": for people reading the folder; the weights decide
    weights: str  # sha256 fingerprint of the parameters (sst_cli.model.weights.fingerprint)
    height: int
    width: int
    runtime: str  # "onnxruntime"
    runtime_version: str  # "1.32.0"
    dtype: str = "fp32"
    opset: int = onnx_export.OPSET
    sst: str = __version__

    @property
    def text(self) -> str:
        return (f"weights sha256 {self.weights}; input 1x3x{self.height}x{self.width} {self.dtype}; opset "
                f"{self.opset}; sst {self.sst}; checked in {self.runtime} {self.runtime_version}")

    @property
    def file_name(self) -> str:
        model = re.sub(r"[^A-Za-z0-9.+-]+", "-", self.model).strip("-")
        return (f"{model}-{self.weights[:16]}-{self.width}x{self.height}-{self.dtype}-opset{self.opset}-"
                f"sst{self.sst}-{self.runtime}{self.runtime_version}.onnx")


@dataclass
class Graph:
    """A graph ready to run: its file, its session, and whether this run exported it (with its check)."""

    key: GraphKey
    path: Path
    session: Session
    exported: bool
    check: onnx_export.Check | None  # the comparison with PyTorch when exported now; None when cached


def holds(path: Path, key: GraphKey) -> bool:
    """Whether ``path`` is a whole ONNX file recorded under ``key`` (False for anything damaged or missing)."""
    import onnx

    try:
        proto = onnx.load_model(str(path))
    except Exception:  # noqa: BLE001 - any unreadable file is simply not a cached graph
        return False
    return any(p.key == KEY_PROP and p.value == key.text for p in proto.metadata_props)


def load_or_export(up: Upscaler, key: GraphKey, threads: int, seed: int = 0) -> Graph:
    """The graph of ``up`` (PyTorch, CPU, float32) for ``key``: from the cache when it holds it whole, else
    exported, checked in ``key.runtime`` against ``up`` and cached. SSTError when the check fails (nothing
    is cached then)."""
    path = cache_dir() / key.file_name
    if holds(path, key):
        try:
            return Graph(key, path, open_session(key.runtime, path, threads), exported=False, check=None)
        except SSTError:
            pass  # whole but unloadable (e.g. written by a runtime build that differs): export it again
    return export(up, key, path, threads, seed)


def export(up: Upscaler, key: GraphKey, path: Path, threads: int, seed: int = 0) -> Graph:
    """Trace ``up`` at ``key``'s size, check it in ``key.runtime`` and write it atomically to ``path``."""
    name = f"{up.name} x{up.scale}"
    with torch.inference_mode(False):  # tracing needs the training-path forward (see onnx.trace)
        graph = onnx_export.trace(up.model, (key.height, key.width), key.dtype, False, key.opset, name)
    graph = onnx_export.with_metadata(graph, {
        KEY_PROP: key.text, "sst_version": key.sst, "model": name, "weights": up.source,
        "input": f"1x3x{key.height}x{key.width}", "range": "RGB in [0, 1], output not clamped",
    })
    done: list[Graph] = []

    def fill(tmp: Path) -> None:
        tmp.write_bytes(graph)
        session = open_session(key.runtime, tmp, threads)
        runtime = f"{key.runtime} {key.runtime_version}"
        (check,) = onnx_export.compare(session.run, up, [(key.height, key.width)], key.dtype, seed, name, runtime)
        if not check.passed:
            raise SSTError(f"the {runtime} graph of {name} for {key.width}x{key.height} tiles does not match "
                           f"PyTorch: max |difference| {check.max_abs_diff:.3g}, allowed {check.tolerance:.0e}; "
                           "use --runtime torch.")
        done.append(Graph(key, path, session, exported=True, check=check))

    atomic_write(path, fill)
    return done[0]
