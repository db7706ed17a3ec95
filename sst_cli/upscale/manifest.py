"""What made each output: a small record per output file, so a rerun skips only what is truly done.

Each output ``<folder>/<name>`` has a record ``<folder>/.sst-manifest/<name>.json`` holding the recipe
(model, weights fingerprint, scale, outscale, TTA, alpha mode, dtype, format, quality), the input's size
and modification time, and the output's size and modification time. One file per output, each written
atomically, so any number of processes can fill one folder without a lock and a crash never leaves a
half-written record. The record is marked pending before its image is written and completed after (see
:func:`recording`), so an output is trusted only when its record says that this very file (same size and
time) was finished.

What a rerun does with an existing output (:func:`judge`), unless ``--overwrite``:

- made by this recipe from the input as it is now: skipped (the work is done);
- unfinished (its record was still pending when sst stopped) or made by this recipe from an input that
  has changed since: redone, as sst's own stale work;
- made with other settings, or changed since sst wrote it (edited by hand): kept, and the run reports it
  by name and exits 1, since replacing it would lose something sst cannot make again;
- no record at all (not made by this version of sst, or by sst at all): kept, and reported by name.
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

# the reasons an existing output is redone, kept, or skipped unverified, as the summary words them
OTHER_SETTINGS = "made with other settings"
CHANGED = "changed since sst wrote it"
INPUT_CHANGED = "input changed"
UNFINISHED = "unfinished"
NO_RECORD = "made with unknown settings (no record)"
UNREADABLE = "made with unknown settings (unreadable record)"

# what a kept output's owner can do about it
WAY_OUT = "pass --overwrite to replace them, or choose another output folder or a --suffix"


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


SKIP, REDO, KEEP = "skip", "redo", "keep"


@dataclass(frozen=True)
class Verdict:
    action: str  # SKIP (done, or not ours and unverifiable), REDO (ours and stale) or KEEP (not ours to replace)
    reason: str  # why, as the summary words it ("" when the output is exactly what this run would make)


def judge(src: Path, dst: Path, recipe: dict[str, Any]) -> Verdict:
    """What to do with the existing output ``dst`` of ``src`` for a run with ``recipe`` (see the module doc)."""
    try:
        record = json.loads(record_path(dst).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Verdict(SKIP, NO_RECORD)
    except (OSError, ValueError):
        return Verdict(SKIP, UNREADABLE)
    if not isinstance(record, dict) or not isinstance(record.get("recipe"), dict):
        return Verdict(SKIP, UNREADABLE)
    if record.get("output") is None:  # pending: sst stopped between starting and finishing this output
        return Verdict(REDO, UNFINISHED)
    if record["output"] != _stat(dst):
        return Verdict(KEEP, CHANGED)
    if record["recipe"] != recipe:
        return Verdict(KEEP, f"{OTHER_SETTINGS} ({differences(record['recipe'], recipe)})")
    if record.get("input") != _stat(src):
        return Verdict(REDO, INPUT_CHANGED)
    return Verdict(SKIP, "")


def differences(before: dict[str, Any], now: dict[str, Any]) -> str:
    """'scale 4, now 2; tta on, now off': the recipe entries that differ, as a user would name them."""

    def show(key: str, value: Any) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        if value is None:
            return "none"
        return str(value)[:12] if key == "weights_sha256" else str(value)

    keys = [k for k in (*now, *(k for k in before if k not in now)) if before.get(k) != now.get(k)]
    names = {"weights_sha256": "weights"}
    return "; ".join(f"{names.get(k, k)} {show(k, before.get(k))}, now {show(k, now.get(k))}" for k in keys)


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
    the image is not redone; a failure that leaves the old file (or none) leaves its old record (or none).
    """
    before = _identity(dst)
    try:
        previous: str | None = record_path(dst).read_text(encoding="utf-8")
    except (OSError, ValueError):
        previous = None
    _write(src, dst, recipe, finished=False)
    try:
        yield
    except BaseException as exc:
        if _identity(dst) == before:
            _restore(dst, previous)
        elif isinstance(exc, KeyboardInterrupt) and _identity(dst) is not None:
            _finish(src, dst, recipe)
        raise
    _finish(src, dst, recipe)


def _restore(dst: Path, previous: str | None) -> None:
    """Put back the record an untouched ``dst`` had before this run began (none: remove the pending one)."""
    if previous is not None and dst.exists():
        with contextlib.suppress(OSError):
            files.atomic_write_text(record_path(dst), previous)
        return
    with contextlib.suppress(OSError):
        record_path(dst).unlink()
    forget_if_absent(dst)  # and its folder, when that is now empty


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
