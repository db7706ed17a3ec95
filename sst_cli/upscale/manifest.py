"""What made each output: a small record per output file, so a rerun skips only what is truly done.

Each output ``<folder>/<name>`` has a record ``<folder>/.sst-manifest/<name>.json`` holding the recipe
(model, weights fingerprint, scale, outscale, TTA, alpha mode, dtype, format, quality), the input's size
and modification time, and the output's size and modification time. One file per output, each written
atomically, so any number of processes can fill one folder without a lock and a crash never leaves a
half-written record. The record is marked pending before its image is written and completed after (see
:func:`recording`), so an output is trusted only when its record says that this very file (same size and
time) was finished.

An existing output with no record at all was not made by this version of sst (or by sst at all): it is
kept, and reported, unless ``--overwrite``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SSTError
from ..io import files
from ..model.weights import fingerprint

RECORD_DIR = ".sst-manifest"

# the reasons an existing output is not kept, or kept unverified, as the summary words them
OTHER_SETTINGS = "made with other settings"
INPUT_CHANGED = "input changed"
UNFINISHED = "unfinished or changed afterwards"
NO_RECORD = "made with unknown settings (no record); --overwrite to redo"


def record_path(dst: Path) -> Path:
    return dst.parent / RECORD_DIR / f"{dst.name}.json"


def weights_fingerprint(upscaler: Any) -> str:
    """:func:`sst_cli.model.weights.fingerprint` of the upscaler's model, computed once per upscaler."""
    info = getattr(upscaler, "info", None)
    if isinstance(info, dict) and "weights_sha256" in info:
        return str(info["weights_sha256"])
    model = getattr(upscaler, "model", None)
    digest = fingerprint(model) if model is not None else hashlib.sha256().hexdigest()
    if isinstance(info, dict):
        info["weights_sha256"] = digest
    return digest


def _stat(path: Path) -> dict[str, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass(frozen=True)
class Verdict:
    keep: bool  # the existing output is what this run would make
    reason: str  # why it is redone or kept unverified ("" when there is nothing to say)


def judge(src: Path, dst: Path, recipe: dict[str, Any]) -> Verdict:
    """Whether the existing output ``dst`` was made from ``src`` as it is now with ``recipe``."""
    try:
        record = json.loads(record_path(dst).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Verdict(True, NO_RECORD)
    except (OSError, ValueError):
        return Verdict(False, UNFINISHED)
    if not isinstance(record, dict) or record.get("output") is None or record["output"] != _stat(dst):
        return Verdict(False, UNFINISHED)
    if record.get("recipe") != recipe:
        return Verdict(False, OTHER_SETTINGS)
    if record.get("input") != _stat(src):
        return Verdict(False, INPUT_CHANGED)
    return Verdict(True, "")


def _write(src: Path, dst: Path, recipe: dict[str, Any], finished: bool) -> None:
    from .. import __version__

    record = {"sst_version": __version__, "recipe": recipe, "source": str(src), "input": _stat(src),
              "output": _stat(dst) if finished else None}
    path = record_path(dst)
    try:
        files.atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    except OSError as exc:
        raise SSTError(f"cannot write {path}, the record of how {dst.name} is made ({files.reason(exc)}).") from None


@contextlib.contextmanager
def recording(src: Path, dst: Path, recipe: dict[str, Any]) -> Iterator[None]:
    """Around writing ``dst``: its record is pending while the image is written, and done after.

    Ctrl-C that lands once the image is in place (it is renamed in whole) still completes the record, so
    the image is not redone; a failure that leaves no image leaves no record either.
    """
    before = _identity(dst)
    _write(src, dst, recipe, finished=False)
    try:
        yield
    except KeyboardInterrupt:
        if _identity(dst) not in (None, before):
            _finish(src, dst, recipe)
        raise
    except BaseException:
        forget_if_absent(dst)
        raise
    _finish(src, dst, recipe)


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _finish(src: Path, dst: Path, recipe: dict[str, Any]) -> None:
    try:
        _write(src, dst, recipe, finished=True)
    except KeyboardInterrupt:  # a second try: the image is complete, its record should say so
        _write(src, dst, recipe, finished=True)
        raise


def forget_if_absent(dst: Path) -> None:
    """After a failure: a pending record of an output that does not exist says nothing worth keeping."""
    if not dst.exists():
        with contextlib.suppress(OSError):
            record_path(dst).unlink()
        with contextlib.suppress(OSError):  # only when empty: other outputs' records stay
            record_path(dst).parent.rmdir()


def clean_stale_temps(folder: Path) -> int:
    """Temporaries left by killed runs, in ``folder`` and its record folder."""
    return len(files.clean_stale_temps(folder)) + len(files.clean_stale_temps(folder / RECORD_DIR))
