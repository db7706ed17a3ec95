"""Progress in logs: plain lines at most every SST_PROGRESS_INTERVAL seconds when stderr is not a terminal."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from sst_cli.cli._progress import LogProgress, duration, progress

REPO = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _log() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=80), out


def test_durations_show_seconds_for_short_work() -> None:
    assert [duration(s) for s in (0, 4.6, 59, 61, 3599, 3600, 7380)] == \
        ["0s", "5s", "59s", "1m01s", "59m59s", "1h00m", "2h03m"]


def test_a_line_at_most_every_interval_with_done_total_rate_and_eta() -> None:
    console, out = _log()
    clock = Clock()
    with LogProgress(console, "images", interval=10, clock=clock) as bars:
        task = bars.add_task("", total=5)
        tiles = bars.add_task("tiles", total=9)
        clock.now += 4
        bars.update(task, advance=1, description="a.png")
        assert out.getvalue() == ""  # 4 s: too soon
        bars.update(tiles, completed=3)  # another task: never a line of its own
        clock.now += 6
        bars.advance(task)
        assert out.getvalue() == "2/5 images in 10s, 0.2/s, ETA 15s: a.png\n"
        clock.now += 9
        bars.advance(task)
        assert out.getvalue().count("\n") == 1  # 9 s after the last line
        clock.now += 1
        bars.advance(task)
        assert out.getvalue().splitlines()[-1] == "4/5 images in 20s, 0.2/s, ETA 5s: a.png"


def test_terminal_gets_rich_bars_and_quiet_gets_none() -> None:
    console, out = _log()
    assert isinstance(progress(console=console, unit="images"), LogProgress)
    quiet = progress(console=console, unit="images", quiet=True)
    with quiet as bars:
        bars.advance(bars.add_task("x", total=2))
    assert out.getvalue() == ""
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert not isinstance(progress(console=terminal, unit="images"), LogProgress)


def _profile(tmp_path: Path, *extra: str) -> str:
    """`sst profile ... 2>log`: two configurations that need no worker (fa3/fa2 do not run on a CPU)."""
    log = tmp_path / "log"
    with log.open("w") as fh:
        proc = subprocess.run([sys.executable, "-m", "sst_cli", "profile", "--backend", "fa3,fa2", "--device", "cpu",
                               "--size", "32x32", *extra], stdout=subprocess.DEVNULL, stderr=fh, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(REPO), "SST_PROGRESS_INTERVAL": "0"}, timeout=120)
    assert proc.returncode == 1  # nothing measurable here, which is not the point
    return log.read_text()


def test_profile_writes_progress_lines_to_a_log_and_quiet_silences_them(tmp_path: Path) -> None:
    lines = [line for line in _profile(tmp_path).splitlines() if "configurations" in line]
    assert [line.split(" in ")[0] for line in lines] == ["1/2 configurations", "2/2 configurations"], lines
    assert "ETA" in lines[0] and "sst-light x4" in lines[0]
    assert "configurations" not in _profile(tmp_path, "--quiet")


def test_a_long_video_shows_its_frames_in_a_log() -> None:
    """One video is one item of the main count: its frames (the visible second-level task) keep the log
    moving, and rich's reset() (a new video) works on the plain-line display too."""
    console, out = _log()
    clock = Clock()
    with LogProgress(console, "images", interval=10, clock=clock) as bars:
        task = bars.add_task("", total=1)
        frames = bars.add_task("frames", total=1, visible=False)
        bars.update(task, description="clip.mp4")
        bars.reset(frames, total=500, completed=1, visible=True)
        clock.now += 11
        bars.update(frames, completed=120, description="  frames, 11.0/s")
        assert out.getvalue() == "0/1 images in 11s: clip.mp4 (frames, 11.0/s, 120/500)\n"
        bars.update(frames, visible=False)
        clock.now += 11
        bars.advance(task)
        assert out.getvalue().splitlines()[-1] == "1/1 images in 22s, 0.045/s, ETA 0s: clip.mp4"
