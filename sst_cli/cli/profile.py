"""`sst profile`: latency, peak memory and FLOPs across attention backends, models, biases, dtypes and devices."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import SSTError
from ..io.files import atomic_write
from ..runtime import DTYPE_NAMES
from . import app
from ._common import (
    Command,
    Group,
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
from ._progress import progress

if TYPE_CHECKING:
    from ..profiling import grid
    from ..profiling.table import TextTable

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


def _parse_plot(value: str | None) -> str | None:
    if value is not None:
        from ..profiling.plot import plot_format

        try:
            plot_format(value)
        except SSTError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


def _plot_option() -> Any:
    return typer.Option(None, "--plot", metavar="FILE.png|FILE.svg", callback=_parse_plot,
                        help="Also draw a bar chart (latency and peak memory) to FILE; needs matplotlib "
                             "(pip install 'sst-cli\\[plot]').")


def _csv_option() -> Any:
    return typer.Option(None, "--csv", metavar="FILE", help="Also write the rows as CSV to FILE.")


def _rich_table(t: TextTable) -> Table:
    # one space of padding and the box's blank divider: two spaces between columns, as table.width() counts
    table = Table(title=t.title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
    for name, numeric in zip(t.columns, t.numeric, strict=True):
        table.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for row in t.rows:
        table.add_row(*row)
    return table


def _render(t: TextTable, out: Console = console) -> None:
    """Print a table built by ``sst_cli.profiling.table``: the grid, its caption lines, then the footnotes."""
    out.print(_rich_table(t))
    for line in t.caption:
        out.print(line, markup=False, highlight=False, style="dim")
    for line in t.notes:
        out.print(line, markup=False, highlight=False)


def _write_json(path: str, data: dict[str, Any]) -> None:
    if path == "-":
        console.print_json(json.dumps(data))
        return
    atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def _write_csv(path: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(columns))
            w.writeheader()
            w.writerows(rows)

    atomic_write(Path(path), write)


def _outputs(json_path: str | None, csv_path: str | None, plot_path: str | None, data: dict[str, Any],
             csv_columns: tuple[str, ...], csv_rows: list[dict[str, Any]], comparison: Any, title: str) -> None:
    """Write whichever of --json, --csv and --plot were asked for, and say so."""
    if json_path:
        _write_json(json_path, data)
    if csv_path:
        _write_csv(csv_path, csv_columns, csv_rows)
    if plot_path:
        from ..profiling.plot import plot

        plot(comparison, plot_path, title)
    if json_path != "-":
        for path in filter(None, (json_path if json_path != "-" else None, csv_path, plot_path)):
            console.print(f"wrote {path}")


profile_app = typer.Typer(cls=Group, no_args_is_help=False, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(profile_app, name="profile")


@profile_app.callback(invoke_without_command=True)
def profile_cmd(
    ctx: typer.Context,
    model: Any = typer.Option("sst-light", "--model", "-m", callback=parse_models, metavar="NAMES",
                              help="Variant(s), comma-separated (see `sst models`)."),
    scale: Any = scales_option("4", "Scale(s), comma-separated from 2, 3, 4."),
    backend: Any = typer.Option("sdpa", "--backend", callback=parse_backends, metavar="NAMES",
                                help="Attention backend(s), comma-separated: naive, sdpa, sdpa-math, sdpa-efficient, "
                                "sdpa-flash, sdpa-cudnn, flex, fa2, fa3, fa4."),
    bias: Any = typer.Option("rib", "--bias", callback=_choice_list(BIASES, "biases"), metavar="rib,rpb,none",
                             help="Positional bias(es), comma-separated: rib, rpb, none."),
    dtype: Any = typer.Option("auto", "--dtype", callback=_choice_list(DTYPE_CHOICES, "dtypes"), metavar="auto,fp32,bf16,fp16",
                              help="fp32, tf32, bf16, fp16 (comma-separated); auto = bf16 on CUDA, fp32 "
                                   "elsewhere; tf32 = fp32 with TF32 matrix products on CUDA."),
    device: str = typer.Option("auto", "--device", callback=parse_device, metavar="DEVICES",
                               help="cpu, cuda, cuda:N, all (every visible GPU), comma-separated."),
    size: Any = typer.Option(None, "--size", callback=lambda v: parse_size(v) if v else None, metavar="WxH",
                             help="OUTPUT size WxH; the input is size/scale. Default: the paper's 1280x720 on a GPU, "
                                  "256x256 on a CPU so that a run takes seconds (--size 1280x720 for the paper's)."),
    batch: int | None = typer.Option(None, "--batch", metavar="N", min=1, help="Batch size (default 1; 8 with --train)."),
    warmup: int | None = typer.Option(None, "--warmup", metavar="N", min=0, help="Untimed passes before timing (default 3 on a GPU, "
                                      "1 on a CPU)."),
    repeat: int | None = typer.Option(None, "--repeat", metavar="N", min=1, help="Timed passes, median and p90 reported (default 10 "
                                      "on a GPU, 5 on a CPU)."),
    compile_: bool = flag("--compile", help="torch.compile the model (compile time stays out of the timing)."),
    train: bool = flag("--train", help="Time training steps (forward, L1, backward, AdamW) on --patch crops."),
    patch: int = typer.Option(64, "--patch", metavar="N", min=1, help="LR training patch size for --train."),
    json_path: str | None = json_option("Write the results as JSON to FILE ('-' prints JSON instead of the table); "
                                        "`sst profile compare` merges such files from several machines."),
    csv_path: str | None = _csv_option(),
    plot_path: str | None = _plot_option(),
    compare_paper: bool = flag("--compare-paper", help="Show the paper's figure beside each row with the same model, "
                               "scale, bias, size (1280x720 output) and backend, and say why other rows have none."),
    timeout: float | None = typer.Option(None, "--timeout", min=0.1, metavar="SECONDS", help="Give up on one configuration after this many seconds."),
    threads: int | None = threads_option(),
    quiet: bool = flag("--quiet", help="No progress display (in a log: no progress lines)."),
) -> None:
    """Measure latency, peak memory and FLOPs; every configuration runs in a fresh process.

    Configurations that cannot run here (a CUDA-only backend on CPU, rpb with a bias-less kernel, out of memory) get a row saying why, and the run continues; when none could be measured, sst exits 1. Weights are random: speed does not depend on them.

    Under torchrun only rank 0 measures (one process at a time keeps the figures undisturbed); the other ranks exit 0 at once.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..profiling import compare, grid, runner
    from ..profiling.table import run_table

    ranks = runner.torchrun_rank()
    if ranks is not None:
        if ranks[0] != 0:
            return  # rank 0 does the measuring
        err_console.print(f"torchrun: measuring on rank 0 only; the other {ranks[1] - 1} rank(s) exit at once.")
    if plot_path:
        from ..profiling.plot import require_matplotlib

        require_matplotlib()  # before minutes of measuring, not after
    configs = grid.build_grid(
        model, scale, backend, bias, dtype, split_list(device), size=size, batch=batch or (8 if train else 1),
        warmup=warmup, repeat=repeat, compile=compile_, train=train, patch=patch, timeout_s=timeout, threads=threads,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with progress(*columns, console=err_console, unit="configurations", quiet=quiet) as bar:
        task = bar.add_task("profiling", total=len(configs))

        def on_start(c: grid.ProfileConfig) -> None:
            w, h = c.input_hw[1] * c.scale, c.input_hw[0] * c.scale
            bar.update(task, description=f"{c.model} x{c.scale} {c.backend}/{c.bias} {c.dtype} {c.device} {w}x{h}")

        result = runner.profile(configs, compare_paper=compare_paper, on_start=on_start,
                                on_row=lambda _row: bar.advance(task))
    if json_path != "-":
        _render(run_table(result, compare_paper))
    _outputs(json_path, csv_path, plot_path, result, runner.CSV_COLUMNS, runner.csv_rows(result),
             compare.merge([("this run", result)]) if plot_path else None, "sst profile")
    if not any(r["status"] == "ok" for r in result["rows"]):
        raise SSTError("nothing could be measured: no configuration runs here (the reasons are listed above).")


@profile_app.command("compare", cls=Command)
def compare_cmd(
    files: list[Path] = typer.Argument(..., metavar="RESULT.json", show_default=False,
                                       help="Result files of `sst profile --json`, e.g. from several machines."),
    json_path: str | None = json_option("Also write the merged table as JSON to FILE ('-' prints JSON instead)."),
    csv_path: str | None = _csv_option(),
    plot_path: str | None = _plot_option(),
) -> None:
    """Merge result files into one table: configurations as rows, machines as columns, ratios to the first.

    A configuration missing from a file, or a figure an older file lacks, shows '–'. Files written by other sst versions merge; a result schema newer than this sst knows is refused, naming the file.
    """
    from ..profiling import compare, schema
    from ..profiling.table import compare_tables

    if plot_path:
        from ..profiling.plot import require_matplotlib

        require_matplotlib()
    comparison = compare.merge([(str(f), schema.read_result(f)) for f in files])
    if json_path != "-":
        for table in compare_tables(comparison):
            _render(table)
    _outputs(json_path, csv_path, plot_path, compare.to_json(comparison), compare.CSV_COLUMNS,
             compare.csv_rows(comparison), comparison, "sst profile compare")
