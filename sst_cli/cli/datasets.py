"""`sst datasets`: the benchmark sets sst knows by name and which are downloaded here; `sst datasets download`:
fetch and verify them ahead of `sst eval`."""

from __future__ import annotations

import typer
from rich import box
from rich.table import Table

from ..evaluation.catalog import CATALOG, Benchmark
from . import app
from ._common import Command, Group, console

datasets_app = typer.Typer(cls=Group, no_args_is_help=False, add_completion=False)
app.add_typer(datasets_app, name="datasets")


def _download(bench: Benchmark) -> str:
    """Whether sst downloads the set: yes (verified), not yet (a Hub copy it cannot verify yet), no."""
    from ..evaluation.fetch import not_recorded

    if bench.archive is None:
        return "no"
    return "not yet" if not_recorded(bench.archive) else "yes"


def _size(bench: Benchmark) -> str:
    if bench.archive is None:
        return "[dim]-[/]"
    mb = bench.archive.approx_bytes / 1e6
    return f"{mb:.1f} MB" if mb < 10 else f"{mb:.0f} MB"


def _list() -> None:
    from ..evaluation.fetch import cached, datasets_cache_dir

    t = Table(title="Benchmark sets", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    t.add_column("name", no_wrap=True)
    t.add_column("images", justify="right", no_wrap=True)
    t.add_column("size", justify="right", no_wrap=True)
    t.add_column("licence", overflow="fold")
    t.add_column("download", no_wrap=True)
    t.add_column("cached", no_wrap=True)
    for bench in CATALOG.values():
        name = bench.name + (f" ({bench.aliases[1]})" if len(bench.aliases) > 1 and bench.name == "B100" else "")
        t.add_row(name, str(bench.images) if bench.images else "[dim]?[/]", _size(bench), bench.licence,
                  _download(bench), "[green]yes[/]" if cached(bench.name) else "no")
    console.print(t)
    console.print(f"`sst eval --dataset NAME` uses a folder NAME under --data-root, $SST_DATA_ROOT or ./datasets first, "
                  f"else the verified copy in {datasets_cache_dir()}, else downloads it once from a pinned Hub commit "
                  "and checks every image (\"download\": yes; \"not yet\": its checks are not recorded in this "
                  "version). `sst datasets download NAME` fetches ahead, or says where to get a set by hand.",
                  overflow="fold")


@datasets_app.callback(invoke_without_command=True)
def datasets_cmd(ctx: typer.Context) -> None:
    """List the benchmark sets sst knows: images, download size, licence, source, and whether a verified copy is here."""
    if ctx.invoked_subcommand is None:
        _list()


@datasets_app.command("list", cls=Command)
def list_cmd() -> None:
    """List the benchmark sets sst knows (as `sst datasets`)."""
    _list()


@datasets_app.command("download", cls=Command)
def download_cmd(
    names: list[str] = typer.Argument(..., metavar="NAME...", help="Benchmark names: " + ", ".join(CATALOG) + "."),
) -> None:
    """Download benchmark sets ahead of `sst eval` (once, from a pinned Hub commit, every image verified)."""
    from ..errors import SSTError, UsageError
    from ..evaluation.datasets import canonical_name
    from ..evaluation.fetch import cached, fetch_dataset, refusal, unavailable

    canon = []
    for name in names:
        c = canonical_name(name)
        if c is None:
            raise UsageError(f"'{name}' is not a benchmark sst knows ({', '.join(CATALOG)}); `sst datasets` lists them.")
        canon.append(c)
    canon = list(dict.fromkeys(canon))
    blocked = [(c, why) for c in canon if (why := unavailable(c))]
    if blocked:  # all named at once, before anything is downloaded
        raise SSTError(refusal(blocked))
    for c in canon:
        before = cached(c)
        folder = fetch_dataset(c)
        count = len(list((folder / "HR").iterdir()))
        console.print(f"{c}: {count} images, verified, {'already here' if before else 'downloaded'}: {folder / 'HR'}",
                      overflow="fold")
