"""The ``sst`` command line. Each subcommand lives in its own thin module: parse, call the library, render.

Command modules import the library inside their functions, so ``sst --help``, ``sst CMD --help`` and
usage errors never import torch.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from .. import __version__
from ..errors import SSTError
from ..runtime import keep_freed_memory
from ._common import Group, console, err_console

app = typer.Typer(
    name="sst",
    cls=Group,
    help="SST super-resolution: upscale images, evaluate, profile and train SST models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"sst {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version, metavar="",
                                 help="Print the version and exit (`sst env` for torch, CUDA and kernels)."),
) -> None:
    """SST super-resolution: upscale images, evaluate, profile and train SST models."""
    keep_freed_memory()  # fewer page faults per forward pass; no result changes


from . import datasets, env, evaluate, export, models, profile, train, upscale  # noqa: E402,F401  (registers the commands)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: user errors end in one sentence and a non-zero exit."""
    try:
        app(args=argv, prog_name="sst")
    except SystemExit as exc:  # click's own exits: --help, usage errors (2), Ctrl-C (Abort)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except SSTError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")  # a message may hold [brackets]
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        return 130
    except MemoryError:
        err_console.print("[bold red]error:[/] out of memory; try a smaller --tile, --batch or input.")
        return 1
    return 0


__all__ = ["app", "main", "console"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
