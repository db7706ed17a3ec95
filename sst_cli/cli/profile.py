"""`sst profile`: latency, peak memory and FLOPs across attention backends, models, biases, dtypes and devices."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.measure import Measurement
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..io.files import atomic_write
from ..runtime import DTYPE_NAMES
from . import app
from ._common import (
    console,
    err_console,
    flag,
    json_option,
    parse_backends,
    parse_device,
    parse_models,
    parse_size,
    scales_option,
    split_list,
    threads_option,
)

if TYPE_CHECKING:
    from ..profiling import grid

BIASES = ("rib", "rpb", "none")
DTYPE_CHOICES = ("auto", *DTYPE_NAMES)


def _choice_list(allowed: tuple[str, ...], what: str) -> Any:
    def parse(value: str) -> list[str]:
        items = [v.lower() for v in split_list(value)]
        bad = [v for v in items if v not in allowed]
        if bad or not items:
            raise typer.BadParameter(f"{what} are a comma list of {', '.join(allowed)} (got '{value}').")
        return items

    return parse


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)


def _num(v: float | None) -> str:
    """Compact numbers for narrow terminals: 3 significant digits, no decimals above 100."""
    if v is None:
        return "–"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


SHORT_STATUS = {"backend unavailable": "unavailable", "bias unsupported by backend": "bias unsupported",
                "device unavailable": "no device", "dtype unsupported": "dtype unsupported",
                "out of memory": "OOM", "failed": "failed"}


def _short(status: str) -> str:
    head = status.split(":")[0]
    return SHORT_STATUS.get(head, "timeout" if head.startswith("timed out") else head)


def _table(result: dict[str, Any], compare_paper: bool) -> tuple[Table, list[str]]:
    """The results table plus footnotes holding the full reason for every row that did not run."""
    env, rows = result["environment"], result["rows"]
    title = f"sst profile · torch {env['torch']}"
    if env.get("cuda"):
        title += f" · CUDA {env['cuda']} · cuDNN {env['cudnn']}"
    t = Table(title=title, box=box.SIMPLE_HEAD, caption="peak MB: CPU = peak RSS of the worker process, CUDA = max allocated")
    # Settings shared by every row go to the caption instead of taking width (80 columns when piped).
    keys = ("model", "scale", "backend", "bias", "dtype", "device", "input_hw", "batch", "mode")
    same = {k: rows[0][k] for k in keys if len(rows) > 1 and all(r[k] == rows[0][k] for r in rows)}
    if same:
        t.caption += " · " + " · ".join(
            f"{k.replace('_hw', '')} {'x'.join(map(str, v)) if k == 'input_hw' else v}" for k, v in same.items())
    names = {"scale": "x", "input_hw": "input"}
    cols = [names.get(k, k) for k in keys if k not in same]
    if any(r["status"] != "ok" for r in rows):
        cols.append("status")
    cols += ["median ms", "p90 ms"]
    if any(r.get("cpu_ms_median") is not None for r in rows):
        cols.append("CPU ms")
        t.caption += " · CPU ms: process CPU time per pass, all threads"
    cols += ["peak MB", "GFLOP", "TFLOP/s"]
    if any(r.get("peak_fraction") is not None for r in rows):
        cols.append("% peak")
    if compare_paper and any(r.get("paper") for r in rows):
        cols += ["paper ms", "paper MB"]
        gpus = {r["paper"]["gpu"] for r in rows if r.get("paper")}
        if len(gpus) == 1:
            t.caption += f" · paper figures measured on {gpus.pop()}"
        else:
            cols.append("paper GPU")
    text_cols = {"model", "x", "backend", "bias", "dtype", "device", "input", "batch", "mode", "status", "paper GPU"}
    for c in cols:
        numeric = c not in text_cols
        t.add_column(c, justify="right" if numeric else "left", overflow="fold")
    notes: list[str] = []
    for r in rows:
        if r["status"] == "ok":
            status = "[green]ok[/]"
        else:
            if r["status"] not in notes:
                notes.append(r["status"])
            status = f"[red]{_short(r['status'])} [{notes.index(r['status']) + 1}][/]"
        device = "cpu" if r["device"] == "cpu" else f"{r['device']} {r.get('device_name', '')}".strip()
        cells = {
            "model": r["model"], "x": str(r["scale"]), "backend": r["backend"], "bias": r["bias"],
            "dtype": r["dtype"], "device": device, "input": "x".join(map(str, r["input_hw"])),
            "batch": str(r["batch"]), "mode": r["mode"], "status": status,
            "median ms": _num(r["latency_ms_median"]), "p90 ms": _num(r["latency_ms_p90"]),
            "CPU ms": _num(r.get("cpu_ms_median")), "peak MB": _fmt(r["peak_mem_mb"], ".0f"),
            "GFLOP": _num(r["flops"] / 1e9 if r["flops"] else None), "TFLOP/s": _num(r["tflops_per_s"]),
            "% peak": _num(r["peak_fraction"] * 100 if r.get("peak_fraction") is not None else None),
        }
        paper = r.get("paper") or {}
        cells.update({"paper ms": _num(paper.get("latency_ms")), "paper MB": _fmt(paper.get("mem_mb"), ".0f"),
                      "paper GPU": paper.get("gpu", "–")})
        t.add_row(*(cells[c] for c in cols))
    return t, [f"[{i + 1}] {n}" for i, n in enumerate(notes)]


def _write_json(path: str, result: dict[str, Any]) -> None:
    if path == "-":
        console.print_json(json.dumps(result))
        return
    atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8"))


def _write_csv(path: str, result: dict[str, Any]) -> None:
    from ..profiling import runner

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(runner.CSV_COLUMNS))
            w.writeheader()
            w.writerows(runner.csv_rows(result))

    atomic_write(Path(path), write)


@app.command("profile")
def profile_cmd(
    model: Any = typer.Option("sst-light", "--model", "-m", callback=parse_models, metavar="NAMES",
                              help="Variant(s), comma-separated (see `sst models`)."),
    scale: Any = scales_option("4", "Scale(s), comma-separated from 2, 3, 4."),
    backend: Any = typer.Option("sdpa", "--backend", callback=parse_backends, metavar="NAMES",
                                help="Attention backend(s), comma-separated: naive, sdpa, sdpa-math, sdpa-efficient, "
                                "sdpa-flash, sdpa-cudnn, flex, fa2, fa3, fa4."),
    bias: Any = typer.Option("rib", "--bias", callback=_choice_list(BIASES, "biases"), metavar="rib,rpb,none",
                             help="Positional bias(es), comma-separated: rib, rpb, none."),
    dtype: Any = typer.Option("auto", "--dtype", callback=_choice_list(DTYPE_CHOICES, "dtypes"), metavar="auto,fp32,bf16,fp16",
                              help="fp32, bf16, fp16 (comma-separated); auto = bf16 on CUDA, fp32 elsewhere."),
    device: str = typer.Option("auto", "--device", callback=parse_device, metavar="DEVICES",
                               help="cpu, cuda, cuda:N, all (every visible GPU), comma-separated."),
    size: Any = typer.Option("1280x720", "--size", callback=parse_size, metavar="WxH",
                             help="OUTPUT size WxH, as in the paper; the input is size/scale."),
    batch: int | None = typer.Option(None, "--batch", min=1, help="Batch size (default 1; 8 with --train)."),
    warmup: int = typer.Option(3, "--warmup", min=0, help="Untimed passes before timing."),
    repeat: int = typer.Option(10, "--repeat", min=1, help="Timed passes (median and p90 are reported)."),
    compile_: bool = flag("--compile", help="torch.compile the model (compile time stays out of the timing)."),
    train: bool = flag("--train", help="Time training steps (forward, L1, backward, AdamW) on --patch crops."),
    patch: int = typer.Option(64, "--patch", min=1, help="LR training patch size for --train."),
    json_path: str | None = json_option("Write the results as JSON to FILE ('-' prints JSON instead of the table)."),
    csv_path: str | None = typer.Option(None, "--csv", metavar="FILE", help="Write the rows as CSV to FILE."),
    compare_paper: bool = flag("--compare-paper", help="Show the paper's figures (and its GPU) beside ours."),
    timeout: float | None = typer.Option(None, "--timeout", min=0.1, metavar="SECONDS", help="Give up on one configuration after this many seconds."),
    threads: int | None = threads_option(),
) -> None:
    """Measure latency, peak memory and FLOPs; every configuration runs in a fresh process.

    Configurations that cannot run here (a CUDA-only backend on CPU, rpb with a bias-less kernel, out of
    memory) get a row saying why, and the run continues. Weights are random: speed does not depend on them.
    """
    from ..profiling import grid, runner

    configs = grid.build_grid(
        model, scale, backend, bias, dtype, split_list(device), size=size, batch=batch or (8 if train else 1), warmup=warmup, repeat=repeat,
        compile=compile_, train=train, patch=patch, timeout_s=timeout, threads=threads,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("profiling", total=len(configs))

        def on_start(c: grid.ProfileConfig) -> None:
            bar.update(task, description=f"{c.model} x{c.scale} {c.backend}/{c.bias} {c.dtype} {c.device}")

        result = runner.profile(configs, compare_paper=compare_paper, on_start=on_start,
                                   on_row=lambda _row: bar.advance(task))
    if json_path:
        _write_json(json_path, result)
    if csv_path:
        _write_csv(csv_path, result)
    if json_path == "-":
        return
    table, notes = _table(result, compare_paper)
    # Piped output gets the table's natural width rather than rich's 80-column default.
    width = console.width
    if not console.is_terminal:
        console.width = max(width, Measurement.get(console, console.options.update(width=240), table).maximum)
    try:
        console.print(table)
    finally:
        console.width = width
    for note in notes:
        console.print(note, markup=False, highlight=False)
    if compare_paper and any(r.get("paper") for r in result["rows"]):
        tables = sorted({r["paper"]["table"] for r in result["rows"] if r.get("paper")})
        console.print(f"Paper figures: {', '.join(tables)} of the SST paper, at a 1280x720 output (x2 training "
                      "for Table 1) on the GPU named; compare only like with like.")
    for path in filter(None, (json_path, csv_path)):
        console.print(f"wrote {path}")
