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
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import UsageError
from ..runtime import RUNTIME_NAMES
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
from ._progress import LogProgress, progress

if TYPE_CHECKING:
    from rich.progress import Progress

    from ..distributed import Dist
    from ..export.cache import Graph
    from ..upscale.batch import Result, Summary
    from ..upscale.jobs import Job, Settings
    from ..upscale.upscaler import Upscaler

RuntimeName = Literal[("auto", *RUNTIME_NAMES)]  # type: ignore[valid-type]
MAX_ROWS = 40  # longer batches list only their failures


class _ProgressEvents:
    """Feeds run_batch's events to a rich progress bar over images and one over the current image's tiles."""

    def __init__(self, progress: Progress | LogProgress, header: str) -> None:
        self.progress = progress
        self.header = header
        self.images = progress.add_task("images", total=0)
        self.tile_task = progress.add_task("tiles", total=1, visible=False)

    def planned(self, todo: list[Job], kept: list[Result]) -> None:
        self.progress.update(self.images, total=len(todo))
        self.progress.console.print(plan_line(self.header, todo, kept))

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

    def exported(self, graph: Graph) -> None:
        self.progress.console.print(exported_line(graph), soft_wrap=True, highlight=False)

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


def _counts(items: list[str]) -> str:
    """'2 input changed, 1 unfinished': how many times each text occurs, in order of first occurrence."""
    return ", ".join(f"{items.count(x)} {x}" for x in dict.fromkeys(items))


def run_header(up: Upscaler, settings: Settings, processes: int = 1) -> str:
    """What runs: the model, its scale and any resize after it, TTA, device, dtype and attention, or the graph
    runtime and where its graphs are cached."""
    dt = str(up.dtype).replace("torch.", "")
    what = f"[bold]{up.name}[/] x{up.scale}"
    if settings.outscale is not None and settings.outscale != up.scale:
        what += f" then resized to x{settings.outscale:g}"
    line = f"{what} ({up.source}) on {up.device}, {dt}, "
    runner = up.runner
    if runner is not None:
        from ..export.cache import cache_dir

        line += f"runtime {getattr(runner, 'version', up.runtime)} (ONNX graphs cached in {cache_dir()})"
    else:
        line += f"attention {up.backend}"
    if settings.tta:
        line += ", TTA x8"
    if processes > 1:
        line += f"; {processes} processes, rank 0 shown"
    return line


def exported_line(graph: Graph) -> str:
    """'exported the 42x38 ONNX graph, checked in onnxruntime 1.32.0 against PyTorch (max |difference| 7.7e-07,
    allowed 1e-04), cached: PATH': said once per graph (a tile size, or an image's run whole), when exported."""
    key, check = graph.key, graph.check
    checked = f" (max |difference| {check.max_abs_diff:.2g}, allowed {check.tolerance:.0e})" if check else ""
    return (f"exported the {key.width}x{key.height} ONNX graph, checked in {key.runtime} "
            f"{key.runtime_version} against PyTorch{checked}, cached: {graph.path}")


def plan_line(header: str, todo: list[Job], kept: list[Result]) -> str:
    """'<header>; 3 to do (1 input changed), 2 skipped, 1 kept (not replaced)': the plan before any work."""
    line = f"{header}; {len(todo)} to do"
    redo = [j.redo for j in todo if j.redo]
    if redo:
        line += f" ({_counts(redo)})"
    skipped = sum(r.status == "skipped" for r in kept)
    if skipped:
        line += f", {skipped} skipped"
    refused = len(kept) - skipped
    if refused:
        line += f", {refused} kept (not replaced)"
    return line


def _output_name(r: Result) -> str:
    """The output's path under the output folder (the file name itself for a one-file output)."""
    return str(r.job.rel.parent / r.job.dst.name)


def _names(results: list[Result], most: int = 10) -> str:
    names = [_output_name(r) for r in results]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def kept_lines(summary: Summary) -> list[str]:
    """One sentence per reason for the existing outputs left alone, naming them and the way out."""
    from ..upscale.manifest import WAY_OUT

    return [f"[yellow]not replaced[/]: {_names(rs)}: {why}; {WAY_OUT}."
            for why, rs in summary.reasons("kept").items()]


def _table(summary: Summary) -> Table:
    rows = [r for r in summary.results if r.status != "skipped"]
    if len(rows) > MAX_ROWS:
        rows = [r for r in rows if r.status in ("failed", "kept")]
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col, justify in (("image", "left"), ("status", "left"), ("size", "right"), ("seconds", "right"),
                         ("notes / reason", "left")):
        t.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    style = {"done": "[green]done[/]", "kept": "[yellow]kept[/]", "failed": "[red]failed[/]"}
    for r in rows:
        size = f"{_size(r.in_size)} → {_size(r.out_size)}" if r.out_size else _size(r.in_size)
        why = f"redone: {r.reason}" if r.redone else r.reason
        t.add_row(str(r.job.rel), style[r.status], size, f"{r.seconds:.2f}" if r.status != "kept" else "", "; ".join([why, *r.notes] if why else r.notes))
    return t


def summary_line(summary: Summary) -> str:
    """'5 done (3 redone: input changed), 2 skipped (1 made with unknown settings (no record): a.png),
    1 kept, 0 failed in 1.2s'."""
    done, skipped, failed = summary.count("done"), summary.count("skipped"), summary.count("failed")
    line = f"[green]{done} done[/]"
    redone = summary.reasons("done")
    if redone:
        line += " (" + "; ".join(f"{len(rs)} redone: {why}" for why, rs in redone.items()) + ")"
    line += f", {skipped} skipped"
    unverified = summary.reasons("skipped")
    if unverified:
        line += " (" + "; ".join(f"{len(rs)} kept, {why}: {_names(rs)}" for why, rs in unverified.items()) + ")"
    kept = summary.count("kept")
    if kept:
        line += f", [yellow]{kept} kept (not replaced)[/]"
    line += f", [{'red' if failed else 'green'}]{failed} failed[/] in {summary.seconds:.1f}s"
    if summary.removed_temps:
        line += f"; removed {summary.removed_temps} partial file(s) left by an interrupted run"
    return line


def _run(jobs: list[Job], settings: Settings, ranks: Dist, quiet: bool, **load: Any) -> tuple[Summary, Upscaler]:
    """Load the model, run this process's share of the planned jobs; rank 0 shows progress for its share."""
    from ..upscale.batch import NoEvents, run_ranks
    from ..upscale.upscaler import load_upscaler

    up = load_upscaler(**load)
    header = run_header(up, settings, ranks.world if ranks.active else 1)
    with progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console, unit="images", quiet=quiet or not ranks.main) as bars, \
            _sigterm_as_interrupt():
        events = _ProgressEvents(bars, header) if ranks.main else NoEvents()
        if isinstance(events, _ProgressEvents) and up.runner is not None:
            up.runner.on_export = events.exported  # type: ignore[attr-defined]
        return run_ranks(jobs, up, settings, ranks, events), up


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
    seed: int | None = typer.Option(None, "--seed", min=0, metavar="N", help="Noise seed of a model sampled from "
                                    "noise (sst-real; default 0): the same seed gives the same image."),
    guidance: float | None = typer.Option(None, "--guidance", metavar="LAMBDA", help="Guidance of sst-real "
                                          "(default: its own, 2.0; higher is sharper, with more artefacts)."),
    alpha: Literal["model", "bicubic"] = typer.Option("model", "--alpha", metavar="model|bicubic",
                                                      help="Upscale an alpha channel with the model or with bicubic."),
    fmt: Literal["same", "png", "jpg", "jpeg", "webp", "tiff", "tif", "bmp"] = typer.Option(
        "same", "--format", "-f", metavar="FORMAT", help="Output format: same, png, jpg, webp, tiff or bmp; same = "
        "the input's where it can be written, else png."),
    quality: int = typer.Option(95, "--quality", "-q", metavar="N", min=1, max=100, help="JPEG/WebP quality (100 = "
                                "lossless WebP)."),
    suffix: str = typer.Option("", "--suffix", metavar="TEXT", help="Added to output file stems, e.g. _x4."),
    recursive: bool = flag("--recursive", "-r", help="Read subfolders of folder inputs."),
    overwrite: bool = flag("--overwrite", help="Replace every output that exists, whatever made it (by default "
                           "only sst's own unfinished outputs, or those whose input changed, are redone)."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=0, metavar="N", help="Refuse, from "
                                   "the header and before decoding, input images with more pixels (0: no limit)."),
    threads: int | None = threads_option(RANK_THREADS_HELP),
    device: str = device_option(),
    dtype: DtypeName = dtype_option(),
    backend: BackendName = backend_option(),
    runtime: RuntimeName = typer.Option("auto", "--runtime", metavar="auto|torch|onnxruntime|openvino",
                                        help="What runs the network: torch, or its ONNX graph (exported once per "
                                        "tile size and cached) in ONNX Runtime or OpenVINO, on the CPU in fp32; "
                                        "auto = torch for now."),
    json_path: str | None = json_option("Also write the summary as JSON to FILE ('-' prints JSON instead "
                                        "of the table)."),
    quiet: bool = flag("--quiet", help="No progress display (in a log: no progress lines)."),
    codec: str | None = typer.Option(None, "--codec", metavar="NAME", help="Video encoder (default: the first of "
                                     "libx264, libx265, libsvtav1, libvpx-vp9, libaom-av1, mpeg4 that the installed "
                                     "PyAV has and the container holds)."),
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
    an OUTPUT with an image extension, that file. Outputs made before with the same settings are skipped;
    an existing output made otherwise is replaced only with --overwrite.

    Videos (pip install 'sst-cli\\[video]') keep their frame rate, colour tags, audio and subtitles.

    Under torchrun every process upscales its share of the files, and rank 0 reports for all.

    Exit code 0 when every image succeeded, 1 when some failed or an existing output was not replaced (the
    rest are still done), 2 for usage errors.
    """
    if len(paths) < 2:
        raise UsageError("give at least one input and the output (a folder, or a file name for one image): "
                         "sst upscale INPUT... OUTPUT.")
    from ..upscale.jobs import Settings, VideoSettings, plan_jobs

    settings = Settings(tile=tile, overlap=tile_overlap, tile_batch=tile_batch, tta=tta, outscale=outscale, alpha=alpha,
                        format=fmt.lower(), quality=quality, suffix=suffix, overwrite=overwrite, recursive=recursive,
                        max_pixels=max_pixels or None,
                        video=VideoSettings(codec, crf, pix_fmt, audio, segment_frames,
                                            Path(frames_dir) if frames_dir else None))
    jobs = plan_jobs(paths[:-1], paths[-1], settings)  # before torch: inputs that match nothing answer at once
    if model == "bicubic" and scale is None and outscale is not None and outscale >= 2 and float(outscale).is_integer():
        scale = int(outscale)  # bicubic has every integer scale: one resize, not x4 and then a second one
    from .. import distributed
    from ..upscale.batch import describe

    ranks = distributed.setup()  # one process, or this rank's share of the files under torchrun
    try:
        distributed.set_threads(threads, ranks)
        summary, up = _run(jobs, settings, ranks, quiet, model=model, weights=weights, scale=scale,
                           device=ranks.device(device), dtype=dtype, backend=backend, sha256=sha256,
                           noise_seed=seed, guidance=guidance, runtime=runtime)
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
        for line in kept_lines(summary):
            console.print(line, soft_wrap=True)
    if summary.interrupted:
        left = len(jobs) - len(summary.results)
        err_console.print(f"[yellow]interrupted[/]: {left} image(s) not done; run the same command again to resume.")
        raise typer.Exit(130)
    raise typer.Exit(summary.exit_code)
