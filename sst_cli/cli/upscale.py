"""`sst upscale`: batch upscaling of image and video files and folders."""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import UsageError
from ..upscale.limits import DEFAULT_MAX_PIXELS
from . import app
from ._common import (
    RANK_THREADS_HELP,
    BackendName,
    Command,
    DtypeName,
    backend_option,
    console,
    device_option,
    dtype_option,
    err_console,
    flag,
    json_option,
    model_option,
    scale_option,
    threads_option,
    tile_option,
    tile_overlap_option,
    weights_option,
)

if TYPE_CHECKING:
    from ..distributed import Dist
    from ..upscale.batch import Result, Summary
    from ..upscale.jobs import Job, Settings
    from ..upscale.upscaler import Upscaler

MAX_ROWS = 40  # longer batches list only their failures


class _ProgressEvents:
    """Feeds run_batch's events to a rich progress bar over images and one over the current image's tiles."""

    def __init__(self, progress: Progress, header: str) -> None:
        self.progress = progress
        self.header = header
        self.images = progress.add_task("images", total=0)
        self.tile_task = progress.add_task("tiles", total=1, visible=False)

    def planned(self, todo: list[Job], kept: list[Result]) -> None:
        self.progress.update(self.images, total=len(todo))
        line = f"{self.header}; {len(todo)} to do"
        redo = sum(bool(j.redo) for j in todo)
        if redo:
            line += f" ({redo} made before with other settings or unfinished)"
        if kept:
            line += f", {len(kept)} kept"
        self.progress.console.print(line)

    def start(self, index: int, job: Job) -> None:
        self.progress.update(self.images, description=f"{job.rel}")
        self.progress.update(self.tile_task, completed=0, total=1, visible=False)

    def tiles(self, done: int, total: int) -> None:
        if total > 1:
            self.progress.update(self.tile_task, completed=done, total=total, visible=True,
                                 description=f"  tiles {done}/{total}")

    def frames(self, done: int, total: int, fps: float) -> None:
        if done == 1:  # a new video: speed and time left start from its first frame
            self.progress.reset(self.tile_task, total=total, completed=done, visible=True)
        self.progress.update(self.tile_task, completed=done, total=total, visible=True,
                             description=f"  frames, {fps:.1f}/s")

    def retry(self, job: Job, old: int, new: int) -> None:
        self.progress.console.print(f"[yellow]{job.rel}: out of memory with {old}px tiles; retrying with {new}px[/]")

    def finish(self, index: int, result: Result) -> None:
        self.progress.update(self.tile_task, visible=False)
        self.progress.advance(self.images)
        if result.status == "failed":
            self.progress.console.print(f"[red]failed[/] {result.job.rel}: {result.reason}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`kill` (SIGTERM) stops like Ctrl-C: the image in progress is dropped cleanly, the summary shown."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a worker): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _size(wh: tuple[int, int] | None) -> str:
    return f"{wh[0]}x{wh[1]}" if wh else ""


def _table(summary: Summary) -> Table:
    rows = [r for r in summary.results if r.status != "skipped"]
    if len(rows) > MAX_ROWS:
        rows = [r for r in rows if r.status == "failed"]
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col, justify in (("image", "left"), ("status", "left"), ("size", "right"), ("seconds", "right"),
                         ("notes / reason", "left")):
        t.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    style = {"done": "[green]done[/]", "failed": "[red]failed[/]"}
    for r in rows:
        size = f"{_size(r.in_size)} → {_size(r.out_size)}" if r.out_size else _size(r.in_size)
        why = f"redone: {r.reason}" if r.redone else r.reason
        t.add_row(str(r.job.rel), style[r.status], size, f"{r.seconds:.2f}", "; ".join([why, *r.notes] if why else r.notes))
    return t


def summary_line(summary: Summary) -> str:
    """'5 done (3 redone: made with other settings), 2 skipped, 0 failed in 1.2s'."""
    done, skipped, failed = summary.count("done"), summary.count("skipped"), summary.count("failed")
    line = f"[green]{done} done[/]"
    redone = summary.reasons("done")
    if redone:
        line += " (" + "; ".join(f"{n} redone: {why}" for why, n in redone.items()) + ")"
    line += f", {skipped} skipped"
    kept = summary.reasons("skipped")
    if kept:
        line += " (" + "; ".join(f"{n} kept: {why}" for why, n in kept.items()) + ")"
    line += f", [{'red' if failed else 'green'}]{failed} failed[/] in {summary.seconds:.1f}s"
    if summary.removed_temps:
        line += f"; removed {summary.removed_temps} partial file(s) left by an interrupted run"
    return line


def _run(paths: list[str], settings: Settings, ranks: Dist, **load: Any) -> tuple[Summary, Upscaler, list[Job]]:
    """Plan, load the model, run this process's share; rank 0 shows progress for its share."""
    from ..upscale.batch import NoEvents, run_ranks
    from ..upscale.jobs import plan_jobs
    from ..upscale.upscaler import load_upscaler

    jobs = plan_jobs(paths[:-1], paths[-1], settings)
    up = load_upscaler(**load)
    dt = str(up.dtype).replace("torch.", "")
    header = f"[bold]{up.name}[/] x{up.scale} ({up.source}) on {up.device}, {dt}, attention {up.backend}"
    if ranks.active:
        header += f"; {ranks.world} processes, rank 0 shown"
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True, disable=not ranks.main) as progress, \
            _sigterm_as_interrupt():
        events = _ProgressEvents(progress, header) if ranks.main else NoEvents()
        return run_ranks(jobs, up, settings, ranks, events), up, jobs


@app.command("upscale", cls=Command)
def upscale_cmd(
    paths: list[str] = typer.Argument(..., metavar="INPUT... OUTPUT",
                                      help="Image or video files, folders or globs, then the output folder."),
    model: str | None = model_option(),
    weights: str | None = weights_option(),
    sha256: str | None = typer.Option(None, "--sha256", metavar="HEX", help="Expected SHA-256 of the weights (--weights file or download, or --model's official file)."),
    scale: int | None = scale_option(),
    outscale: float | None = typer.Option(None, "--outscale", min=0.01, metavar="FACTOR", help="Final scale if not the model's "
                                          "(model, then MATLAB-style bicubic)."),
    tile: str = tile_option("Tile side in input pixels, 0 = whole image, auto = from free memory "
                            "(retried smaller on out-of-memory)."),
    tile_overlap: int | None = tile_overlap_option(),
    tile_batch: int = typer.Option(1, "--tile-batch", metavar="N", min=1, help="Tiles run through the model together "
                                   "(helps a GPU with small tiles; auto tiles shrink to fit)."),
    tta: bool = flag("--tta", help="x8 self-ensemble (flips and transposes), averaged."),
    alpha: Literal["model", "bicubic"] = typer.Option("model", "--alpha", help="Upscale an alpha channel with "
                                                      "the model or with bicubic."),
    fmt: Literal["same", "png", "jpg", "jpeg", "webp", "tiff", "tif", "bmp"] = typer.Option(
        "same", "--format", "-f", help="Output format; same = the input's where it can be written, else png."),
    quality: int = typer.Option(95, "--quality", "-q", metavar="N", min=1, max=100, help="JPEG/WebP quality (100 = "
                                "lossless WebP)."),
    suffix: str = typer.Option("", "--suffix", metavar="TEXT", help="Added to output file stems, e.g. _x4."),
    recursive: bool = flag("--recursive", "-r", help="Read subfolders of folder inputs."),
    overwrite: bool = flag("--overwrite", help="Redo every output that exists, whatever made it (by default "
                           "only those made with other settings, or whose input changed, are redone)."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=0, metavar="N", help="Refuse, from "
                                   "the header and before decoding, input images with more pixels (0: no limit)."),
    threads: int | None = threads_option(RANK_THREADS_HELP),
    device: str = device_option(),
    dtype: DtypeName = dtype_option(),
    backend: BackendName = backend_option(),
    json_path: str | None = json_option("Also write the summary as JSON to FILE ('-' prints JSON instead "
                                        "of the table)."),
    codec: str | None = typer.Option(None, "--codec", metavar="NAME", help="Video encoder, e.g. libx264, libx265, "
                                     "libvpx-vp9, libsvtav1 (default: the first of these the installed PyAV has and "
                                     "the container holds)."),
    crf: int | None = typer.Option(None, "--crf", min=0, max=63, metavar="N", help="Video quality, lower is "
                                   "better (default 18 for libx264, 20 libx265, 24 vp9/av1)."),
    pix_fmt: str | None = typer.Option(None, "--pix-fmt", metavar="NAME", help="Video pixel format (default: the "
                                       "source's, e.g. yuv420p or yuv420p10le)."),
    audio: Literal["copy", "drop"] = typer.Option("copy", "--audio", help="Copy a video's audio streams unchanged, "
                                                  "or drop them (subtitles are always copied)."),
    segment_frames: int = typer.Option(300, "--segment-frames", min=1, metavar="N", help="A video is encoded in "
                                       "segments of N frames; an interrupted run resumes at the last whole one."),
    frames_dir: str | None = typer.Option(None, "--frames-dir", metavar="DIR", help="Also write every upscaled "
                                          "video frame as DIR/<video>/<index>.png."),
) -> None:
    """sst upscale INPUT... OUTPUT: write OUTPUT/<relative path>/<stem><suffix>.<ext>, or, for one input image and
    an OUTPUT with an image extension, that file. Outputs made before with the same settings are kept.

    Videos (pip install 'sst-cli[video]') keep their frame rate, colour tags, audio and subtitles.

    Under torchrun every process upscales its share of the files, and rank 0 reports for all.

    Exit code 0 when every image succeeded, 1 when some failed (the rest are still done), 2 for usage errors.
    """
    if len(paths) < 2:
        raise UsageError("give at least one input and the output (a folder, or a file name for one image): "
                         "sst upscale INPUT... OUTPUT.")
    from .. import distributed
    from ..upscale.batch import describe
    from ..upscale.jobs import Settings, VideoSettings

    settings = Settings(tile=tile, overlap=tile_overlap, tile_batch=tile_batch, tta=tta, outscale=outscale, alpha=alpha,
                        format=fmt.lower(), quality=quality, suffix=suffix, overwrite=overwrite, recursive=recursive,
                        max_pixels=max_pixels or None,
                        video=VideoSettings(codec, crf, pix_fmt, audio, segment_frames,
                                            Path(frames_dir) if frames_dir else None))
    ranks = distributed.setup()  # one process, or this rank's share of the files under torchrun
    try:
        distributed.set_threads(threads, ranks)
        summary, up, jobs = _run(paths, settings, ranks, model=model, weights=weights, scale=scale,
                                 device=ranks.device(device), dtype=dtype, backend=backend, sha256=sha256)
    finally:
        distributed.teardown(ranks)
    if not ranks.main:  # rank 0 speaks for all
        raise typer.Exit(130 if summary.interrupted else summary.exit_code)
    if json_path:
        report = {**describe(up, settings), "processes": ranks.world, **summary.to_dict()}
        text = json.dumps(report, indent=1)
        if json_path == "-":
            print(text)
        else:
            from ..io.files import atomic_write_text

            atomic_write_text(json_path, text + "\n")
    if json_path != "-":
        if any(r.status != "skipped" for r in summary.results):
            console.print(_table(summary))
        console.print(summary_line(summary), soft_wrap=True)
    if summary.interrupted:
        left = len(jobs) - len(summary.results)
        err_console.print(f"[yellow]interrupted[/]: {left} image(s) not done; run the same command again to resume.")
        raise typer.Exit(130)
    raise typer.Exit(summary.exit_code)
