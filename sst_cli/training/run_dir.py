"""A run folder: its checkpoints, what counts as a run in it, and stopping on a signal with a checkpoint.

A run folder holds ``ckpt_<iter>.pt`` (resumable state, newest ``keep_last`` kept), ``metrics.jsonl``,
``best.safetensors``, ``final.safetensors``, ``final_basicsr.pth`` and ``tb/`` (and ``config.yaml``, the
settings of the latest start, which alone does not make a run). Starting a new run into
a folder that holds one would interleave two runs' checkpoints and logs, so it is refused unless the
caller resumes it or asks to start over (which removes only those files).
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch

from ..errors import SSTError, UsageError

CKPT_RE = re.compile(r"^ckpt_(\d{8})\.pt$")
RUN_FILES = ("metrics.jsonl", "best.safetensors", "final.safetensors", "final_basicsr.pth", "tb")


# ------------------------------------------------------------------------------------- checkpoints
def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuplify(state["python"]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The folder's training checkpoints, newest first."""
    return sorted((p for p in run_dir.glob("ckpt_*.pt") if CKPT_RE.match(p.name)), reverse=True)


def load_latest(run_dir: Path, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The newest checkpoint that loads; a truncated or corrupt one is reported and skipped."""
    for path in list_checkpoints(run_dir):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or "iter" not in state:
                raise ValueError("not a training checkpoint")
            state["path"] = str(path)
            return state
        except Exception as exc:  # noqa: BLE001 - any failure means "use the previous one"
            log(f"[yellow]checkpoint {path.name} is unreadable ({type(exc).__name__}); trying the previous one[/]")
    return None


# ------------------------------------------------------------------------------------- run folder
def run_files(run_dir: Path) -> list[Path]:
    """The files of a previous run in ``run_dir`` (empty for a new or unrelated folder)."""
    found = list_checkpoints(run_dir) if run_dir.is_dir() else []
    return found + [run_dir / n for n in RUN_FILES if (run_dir / n).exists()]


def prepare(run_dir: Path, resume: bool, overwrite: bool, remove: bool = True) -> None:
    """Refuse to start a new run over an old one; with ``overwrite``, remove the old run's files first
    (only where ``remove``: under DDP every rank checks, the main one removes)."""
    if resume and overwrite:
        raise UsageError("--resume continues the run in --run-dir and --overwrite starts it over; choose one.")
    old = run_files(run_dir)
    if resume or not old:
        return
    if not overwrite:
        ckpts = list_checkpoints(run_dir)
        last = f", last checkpoint at iteration {int(CKPT_RE.match(ckpts[0].name)[1])}" if ckpts else ""
        raise SSTError(f"{run_dir} already holds a run ({len(old)} file(s){last}); continue it with --resume, "
                       "choose another --run-dir, or start over with --overwrite.")
    for path in old if remove else []:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ signals
class TrainingStopped(SSTError):
    """SIGINT/SIGTERM arrived: the run saved a checkpoint and stopped; ``--resume`` continues it."""

    def __init__(self, signum: int, it: int, checkpoint: Path | None) -> None:
        name = signal.Signals(signum).name
        where = f"saved {checkpoint}" if checkpoint else "no checkpoint written on this rank"
        super().__init__(f"stopped by {name} at iteration {it} ({where}); continue with --resume.")
        self.exit_code = 128 + signum  # the shell's convention: 130 for Ctrl-C, 143 for SIGTERM
        self.it, self.checkpoint = it, checkpoint


class StopSignals:
    """While active, SIGINT and SIGTERM only set ``signum``, so the loop can save and stop between steps.

    A second signal of the same kind acts at once (the previous handler is back), for a user who does not
    want to wait. Outside the main thread signals cannot be caught, and nothing changes.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum
        signal.signal(signum, self._previous[signum])

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *_exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def worker_ignores_stop_signals(_worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: Ctrl-C in a terminal signals the whole process group, and a worker
    that dies of it would leave the main process waiting on a dead worker instead of saving. The workers
    ignore SIGINT/SIGTERM; the main process stops them, and they exit by themselves if it dies."""
    for s in StopSignals.SIGNALS:
        signal.signal(s, signal.SIG_IGN)
