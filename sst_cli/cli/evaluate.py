"""`sst eval`: benchmark PSNR/SSIM with the conventions BasicSR-based papers use, NIQE and pyiqa's metrics, and
no-reference scores of folders of low-quality images (``--lq-only``)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import SSTError
from ..evaluation.registry import METRICS, OFFERED, canonical, parse_metrics
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
    scales_option,
    split_list,
    threads_option,
    tile_option,
    tile_overlap_option,
    weights_option,
)
from ._progress import progress

if TYPE_CHECKING:
    from ..distributed import Dist
    from ..evaluation.report import EvalOptions, EvalReport
    from ..evaluation.runner import Task

def _metrics(value: str | None) -> str | None:
    """Names checked while parsing (exit 2 before torch); the default and the --lq-only check come after."""
    if value is None:
        return None
    names = split_list(value)
    bad = [n for n in names if canonical(n) is None]
    if bad or not names:
        raise typer.BadParameter(f"metrics are a comma list of {', '.join(OFFERED)} (got '{value}').")
    return value


def _fmt(v: float, digits: int) -> str:
    if math.isnan(v):
        return "–"
    return "inf" if math.isinf(v) else f"{v:.{digits}f}"


def weights_label(settings: dict[str, Any]) -> str:
    """Which weights ran, per scale: where they came from and their fingerprint's start, so the bundled
    model and a user's own weights of the same network are told apart."""
    sources, digests = settings.get("model_source") or {}, settings.get("weights_sha256") or {}
    labels = {scale: f"{source} #{digests[scale][:8]}" if digests.get(scale) and source != "built-in" else str(source)
              for scale, source in sources.items()}
    if len(set(labels.values())) == 1:  # one file for every scale, or the built-in bicubic
        return next(iter(labels.values()))
    return "; ".join(f"x{scale}: {label}" for scale, label in labels.items()) or "no weights"


def render(report: EvalReport) -> Table:
    """The dataset x scale table: mean metrics, paper values and deltas, images, LR source, seconds."""
    names = list(dict.fromkeys(m for r in report.results for m in r.metric_names))
    paper = report.settings.get("compare_paper")
    s = report.settings
    t = Table(title=f"{s['model']} ({weights_label(s)}) on {s['device']} {s['dtype']}, tile {s['tile']}, "
                    f"TTA {'on' if s['tta'] else 'off'}, crop border = {s['crop_border']}",
              box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("dataset", no_wrap=True)
    t.add_column("scale", justify="right", no_wrap=True)
    for m in names:
        t.add_column(METRICS[m].column, justify="right", no_wrap=True)
    if paper:
        t.add_column("paper PSNR/SSIM", justify="right", no_wrap=True)
        t.add_column("Δ PSNR/SSIM", justify="right", no_wrap=True)
    for col in ("images", "LR", "seconds"):
        t.add_column(col, justify="right", no_wrap=True)
    for r in report.results:
        means = r.means
        cells = [r.dataset, f"x{r.scale}", *(_fmt(means[m], METRICS[m].digits) for m in names)]
        if paper:
            p = r.paper
            if p is None:
                cells += ["–", "–"]
            else:
                cells.append(f"{p['psnr_y']:.2f} / {p['ssim_y']:.4f}" if p.get("ssim_y") is not None else f"{p['psnr_y']:.2f}")
                dp, ds = p.get("delta_psnr_y"), p.get("delta_ssim_y")
                cells.append(" / ".join(f"{d:+.{n}f}" for d, n in ((dp, 2), (ds, 4)) if d is not None) or "–")
        images = f"{len(r.images)}" + (f" [yellow](+{len(r.skipped)} skipped)[/]" if r.skipped else "")
        cells += [images, r.lr_source, f"{r.seconds:.1f}"]
        t.add_row(*cells)
    return t


def _notes(report: EvalReport, options: EvalOptions) -> list[str]:
    notes = []
    gray = sorted({f"{r.dataset}/{n}" for r in report.results for n in r.to_dict()["grayscale_images"]})
    if gray:
        notes.append(f"Grayscale images ({', '.join(gray)}) were read as RGB and measured on Y (BasicSR "
                     "convention, as the compared papers; MATLAB-era tables used the grey value: ~0.09 dB on Set14).")
    generated = sorted({f"{r.dataset} x{r.scale}" for r in report.results if r.lr_source in ("generated", "mixed")})
    if generated:
        notes.append(f"LR generated from the mod-cropped HR with MATLAB-style bicubic (no shipped LR files) for: "
                     f"{', '.join(generated)}.")
    for r in report.results:
        for sk in r.skipped:
            notes.append(f"[yellow]skipped[/] {r.dataset} x{r.scale} {sk['name']}: {sk['reason']}")
    if options.random_weights:
        notes.append(f"[yellow]Random weights (seed {options.seed}): the scores are meaningless; use this for "
                     "timing only.[/]")
    if report.settings.get("dtype") not in ("float32", None):
        notes.append(f"[yellow]Computed in {report.settings['dtype']}, not float32 as the papers' tables: expect "
                     "differences of about 0.01 dB.[/]")
    if options.compare_paper and all(r.paper is None for r in report.results):
        notes.append("--compare-paper: no paper values for this model (not an official variant) or these datasets.")
    unreported = [METRICS[m].label for m in options.metrics or () if not METRICS[m].in_paper]
    if options.compare_paper and unreported:
        notes.append(f"--compare-paper: the SST paper reports Y-PSNR/SSIM only; it has no {', '.join(unreported)} "
                     "figures to compare with.")
    return notes


def _method_line(options: EvalOptions, crop_border: int | None) -> str:
    """How the numbers were computed, under the table."""
    names = options.metrics or ()
    border = ("scale" if not options.lq_only else "0") if crop_border is None else f"{crop_border} px"
    line = (f"Metrics as BasicSR: SR rounded to uint8, crop border = {border}, BT.601 Y (not rounded), "
            "dataset score = mean of per-image values.")
    if "niqe" in names:
        line += " NIQE as BasicSR's calculate_niqe (Y rounded, 96x96 blocks, the NIQE authors' pristine model)."
    pyiqa = [METRICS[m].label for m in names if METRICS[m].computed_by == "pyiqa"]
    if pyiqa:
        line += f" {', '.join(pyiqa)} by pyiqa, on the whole SR image."
    if options.lq_only:
        line += " --lq-only: no ground truth; each input upscaled and scored by no-reference metrics alone."
    return line


@app.command("eval", cls=Command)
def eval_cmd(
    dataset: str = typer.Option(..., "--dataset", "-d", metavar="NAMES", help="Comma list of Set5, Set14, B100, Urban100, "
                                "Manga109, DIV2K-val, LSDIR-val, folder names under --data-root, or paths."),
    scale: Any = scales_option(help="Scales, comma-separated from 2, 3, 4 (default: the "
                                               "weights' own with --weights, else 4)."),
    model: str | None = model_option("bicubic is the baseline; default: the bundled model."),
    weights: str | None = weights_option(),
    data_root: str | None = typer.Option(None, "--data-root", metavar="DIR", help="Folder holding the datasets "
                                            "(default: $SST_DATA_ROOT or ./datasets)."),
    crop_border: int | None = typer.Option(None, "--crop-border", metavar="N", min=0, help="Pixels cropped from each edge "
                                              "before measuring (default: the scale; 0 with --lq-only)."),
    metric_list: str | None = typer.Option(None, "--metrics", callback=_metrics, metavar="NAMES",
                                           help="Comma list of psnr, ssim (the Y-channel ones: psnr_y, ssim_y), "
                                                "psnr_rgb, ssim_rgb, niqe (computed by sst), lpips, dists, musiq, "
                                                "maniqa, clipiqa (pyiqa: pip install 'sst-cli\\[iqa]'). Default: "
                                                "psnr_y,ssim_y; with --lq-only: niqe."),
    lq_only: bool = flag("--lq-only", help="The datasets are folders of low-quality images without ground truth "
                                           "(RealSet65, RealSR's LR side): each is upscaled and scored by the "
                                           "no-reference metrics niqe, musiq, maniqa, clipiqa (crop border 0)."),
    json_path: str | None = json_option("Write results (per image too) as JSON to FILE; '-' prints it."),
    csv_path: str | None = typer.Option(None, "--csv", metavar="FILE", help="Write one CSV row per image."),
    save_dir: str | None = typer.Option(None, "--save-dir", metavar="DIR", help="Write the SR images under DIR, one folder per dataset and "
                                         "scale (DIR/Set5/X4/baby.png)."),
    tta: bool = flag("--tta", help="Average the 8 flips/transposes (x8 slower)."),
    tile: str = tile_option("Tile side in input pixels, 0 = whole image, auto = tiles only when the image "
                            "does not fit in memory."),
    tile_overlap: int | None = tile_overlap_option(),
    device: str = device_option(),
    dtype: DtypeName = dtype_option("auto = fp32 on every device, the precision the papers' tables use; bf16/fp16 "
                                    "are faster on a GPU, move scores by ~0.01 dB and are labelled in the table."),
    backend: BackendName = backend_option(),
    compare_paper: bool = flag("--compare-paper", help="Add the paper's value and our delta "
                                       "(official variants)."),
    random_weights: bool = flag("--random-weights", help="Untrained --model (timing runs only)."),
    seed: int = typer.Option(0, "--seed", metavar="N", min=0, help="Initialises --random-weights, so two runs get the same weights."),
    threads: int | None = threads_option(RANK_THREADS_HELP),
    quiet: bool = flag("--quiet", help="No progress display (in a log: no progress lines)."),
) -> None:
    """Evaluate a model on SR benchmarks: Y-PSNR/SSIM exactly as BasicSR-based papers compute them, NIQE as
    BasicSR computes it, LPIPS/DISTS/MUSIQ/MANIQA/CLIPIQA through pyiqa; --lq-only scores folders of real
    low-quality images without ground truth.

    Under torchrun every process evaluates its share of the images; rank 0 reports the same numbers as one process.
    """
    from ..evaluation.datasets import default_data_root, resolve_datasets

    metrics = parse_metrics(metric_list, lq_only)  # a full-reference metric with --lq-only: exit 2, before torch
    root = data_root or str(default_data_root())
    try:
        resolve_datasets(split_list(dataset), root)  # before torch: every missing dataset is named at once
    except SSTError as missing:
        # A --weights path that is not there either is named in the same answer (a name or URL may still be
        # fetched, so only a path with a folder in it counts).
        if weights and "://" not in weights and ("/" in weights or os.sep in weights) and not Path(weights).exists():
            raise SSTError(f"weights file {weights} does not exist. Also, {missing}") from None
        raise
    from .. import distributed
    from ..evaluation.report import EvalOptions

    ranks = distributed.setup()  # one process, or this rank's share of every dataset under torchrun
    options = EvalOptions(
        datasets=split_list(dataset), scales=scale,
        data_root=root,
        model=model, weights=weights, metrics=metrics, crop_border=crop_border, lq_only=lq_only,
        tile=tile, overlap=tile_overlap, tta=tta, device=ranks.device(device), dtype=dtype, backend=backend,
        save_dir=save_dir, compare_paper=compare_paper, random_weights=random_weights, seed=seed,
    )
    try:
        distributed.set_threads(threads, ranks)
        report = _evaluate(options, ranks, quiet=quiet or json_path == "-" or not ranks.main)
    finally:
        distributed.teardown(ranks)
    if ranks.main:  # rank 0 speaks for all
        _show(report, options, json_path, csv_path, crop_border)


def _evaluate(options: EvalOptions, ranks: Dist, quiet: bool) -> EvalReport:
    """run_eval with a progress bar over this process's share of the images."""
    from ..evaluation.runner import run_eval

    bars = progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err_console, unit="images", quiet=quiet)
    bar: dict[str, Any] = {}

    def on_plan(tasks: list[Task]) -> None:
        bar["id"] = bars.add_task("evaluating", total=sum(len(ranks.shard(t.layout.pairs)) for t in tasks))

    def on_model(upscaler: Any) -> None:
        if not quiet:
            bars.console.print(f"x{upscaler.scale}: {upscaler.name} ({upscaler.source}) on {upscaler.device}, "
                                   f"{str(upscaler.dtype).removeprefix('torch.')}, attention {upscaler.backend}")

    def on_image(task: Task, name: str) -> None:
        bars.update(bar["id"], advance=1, description=f"{task.dataset.name} x{task.scale} {name}")

    with bars:
        return run_eval(options, on_image=on_image, on_plan=on_plan, on_model=on_model, dist=ranks)


def _show(report: EvalReport, options: EvalOptions, json_path: str | None, csv_path: str | None,
          crop_border: int | None) -> None:
    from ..evaluation.report import to_json, write_csv, write_json

    quiet = json_path == "-"
    if json_path and json_path != "-":
        write_json(report, json_path)
    if csv_path:
        write_csv(report, csv_path)
    if quiet:
        print(to_json(report))
        return
    # piped or captured output: don't squeeze the numbers into 80 columns (a real terminal sets its own width)
    out = console if console.is_terminal else Console(file=console.file, width=max(console.width, 140))
    out.print(render(report))
    for note in _notes(report, options):
        console.print(note)
    console.print(_method_line(options, crop_border))
    for label, path in (("JSON", json_path), ("CSV", csv_path)):
        if path:
            console.print(f"{label} written to {path}")
