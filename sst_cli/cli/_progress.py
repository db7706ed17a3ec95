"""Progress for every command: rich's live bars on a terminal, plain lines in a log, nothing with --quiet.

A live bar written to a file is either nothing (until the end) or a flood of redraws, so when stderr is
not a terminal (a cluster job's log, CI, ``2>log``) commands get :class:`LogProgress` instead: the same
calls as ``rich.progress.Progress``, and a line such as ``3/13 images in 31s, 0.10/s, ETA 1m40s: a.png``
at most every ``SST_PROGRESS_INTERVAL`` seconds (default 10).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import Progress, ProgressColumn

INTERVAL_ENV = "SST_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 10.0


def duration(seconds: float) -> str:
    """'42s', '12m05s', '3h07m': seconds are shown below an hour, so short runs never read '0h00m'."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


class LogProgress:
    """``rich.progress.Progress``'s calls, printed as plain lines at most every ``interval`` seconds: the first
    task (the command's main count), and the visible second-level task (tiles of an image, frames of a
    video) when it moves, so a long single item still shows progress in a log."""

    def __init__(self, console: Console, unit: str, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.unit, self.clock = console, unit, clock
        self.interval = _interval() if interval is None else interval
        self.tasks: list[dict[str, Any]] = []
        self.sub: int | None = None  # the second-level task shown with the main one
        self.started = self.last = clock()

    def __enter__(self) -> LogProgress:
        self.started = self.last = self.clock()
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        self.tasks.append({"description": description, "total": total, "completed": 0})
        return len(self.tasks) - 1

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, visible: bool | None = None,
               **_: Any) -> None:
        task = self.tasks[task_id]
        if task_id and visible is not None:
            self.sub = task_id if visible else (None if self.sub == task_id else self.sub)
        if total is not None:
            task["total"] = total
        if completed is not None:
            task["completed"] = completed
        if advance:
            task["completed"] += advance
        if description is not None:
            task["description"] = description
        if (task_id == 0 or task_id == self.sub) and (completed is not None or advance):
            self._maybe_print()

    def reset(self, task_id: int, **fields: Any) -> None:
        """As rich's: the task starts over (its counts as given)."""
        self.tasks[task_id]["completed"] = 0
        self.update(task_id, **fields)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def line(self) -> str:
        """'3/13 images in 31s, 0.10/s, ETA 1m40s: photos/a.png' for the main task."""
        task = self.tasks[0]
        done, total = int(task["completed"]), task["total"]
        elapsed = self.clock() - self.started
        text = f"{done}/{int(total)} {self.unit}" if total else f"{done} {self.unit}"
        text += f" in {duration(elapsed)}"
        if done and elapsed > 0:
            rate = done / elapsed
            text += f", {rate:.2g}/s"
            if total:
                text += f", ETA {duration((total - done) / rate)}"
        text = f"{text}: {task['description']}" if task["description"] else text
        if self.sub is not None:
            sub = self.tasks[self.sub]
            of = f"/{int(sub['total'])}" if sub["total"] else ""
            text += f" ({sub['description'].strip()}, {int(sub['completed'])}{of})"
        return text

    def _maybe_print(self) -> None:
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self.console.print(self.line(), markup=False, highlight=False, soft_wrap=True)


def progress(*columns: str | ProgressColumn, console: Console, unit: str, quiet: bool = False
             ) -> Progress | LogProgress:
    """The progress display for a command: rich bars on a terminal, :class:`LogProgress` lines otherwise,
    none with ``quiet`` (messages printed through ``.console`` still show)."""
    if quiet:
        return Progress(console=console, disable=True)
    if console.is_terminal:
        return Progress(*columns, console=console, transient=True)
    return LogProgress(console, unit)
