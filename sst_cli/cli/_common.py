"""What every subcommand shares: consoles, and one definition of each option they have in common.

One vocabulary across subcommands: ``-m/--model``, ``-s/--scale``, ``--weights``, ``--device``, ``--dtype``,
``--backend``, ``--threads``, ``--json FILE``, ``--tile``, ``--tile-overlap``; sizes are always WxH. Options are
checked while the command line is parsed (a mistake exits 2 before anything runs) using plain data only:
nothing here imports torch, so ``sst --help`` and usage errors stay fast.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperCommand, TyperGroup

from ..model.registry import BACKENDS, SCALES, VARIANTS
from ..runtime import DTYPE_NAMES

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


class _PlainHelp:
    """Help pages without Python: --help shows no "<bool>" beside it, and an argument shows its name alone
    (Typer adds its annotation, "<list[str]>") and reads in the usage line as in the README:
    ``sst upscale [OPTIONS] INPUT... OUTPUT``, not ``{INPUT... OUTPUT}...``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:  # type: ignore[attr-defined]
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "").upper()
                usage = name if param.nargs == 1 or name.endswith("...") or " " in name else f"{name}..."
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
                param._usage_display_name = lambda usage=usage: usage  # type: ignore[method-assign]

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class Command(_PlainHelp, TyperCommand):
    """The class of every sst command (``@app.command(..., cls=Command)``)."""


class Group(_PlainHelp, TyperGroup):
    """The class of every sst command group (``typer.Typer(cls=Group)``)."""

MODEL_NAMES = (*VARIANTS, "bicubic")
# Single-choice options are Literal types: Typer checks them at parse time and lists them in --help.
DtypeName = Literal[("auto", *DTYPE_NAMES)]  # type: ignore[valid-type]
BackendName = Literal[("auto", *BACKENDS)]  # type: ignore[valid-type]


def split_list(value: str | None) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c']."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _choices(values: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise typer.BadParameter(f"'{bad[0]}' is not {what} (choose from {', '.join(allowed)}).")
    return values


# ------------------------------------------------------------------------------------------- parsers
def parse_model(value: str | None) -> str | None:
    if value is None:
        return None
    name = value.strip().lower()
    return _choices([name], MODEL_NAMES, "a model")[0]


def parse_models(value: str) -> list[str]:
    names = [v.lower() for v in split_list(value)]
    if not names:
        raise typer.BadParameter("give at least one model name.")
    return _choices(names, tuple(VARIANTS), "a model")


def parse_scales(value: str | None) -> list[int] | None:
    """'2,3,4' -> [2, 3, 4]; None stays None (the command's default)."""
    if value is None:
        return None
    try:
        scales = [int(v) for v in split_list(value)]
    except ValueError:
        raise typer.BadParameter(f"scales are integers from {', '.join(map(str, SCALES))}, e.g. 2,4 "
                                 f"(got '{value}').") from None
    if not scales:
        raise typer.BadParameter("give at least one scale.")
    bad = [s for s in scales if s not in SCALES]
    if bad:
        raise typer.BadParameter(f"scale must be one of {', '.join(map(str, SCALES))} (got {bad[0]}).")
    return list(dict.fromkeys(scales))


def parse_device(value: str) -> str:
    """auto, cpu, mps, cuda, cuda:N (and 'all' where a command allows it, checked there)."""
    for item in split_list(value) or [value]:
        if not re.fullmatch(r"auto|cpu|mps|all|cuda(:\d+)?", item.strip().lower()):
            raise typer.BadParameter(f"'{item}' is not a device (use auto, cpu, cuda, cuda:N or mps).")
    return value.strip().lower()


def parse_backends(value: str) -> list[str]:
    return _choices(split_list(value), ("auto", *BACKENDS), "an attention backend")


def parse_tile(value: str) -> int | str:
    """'auto' | a number of input pixels (0 = the whole image at once)."""
    text = value.strip().lower()
    if text == "auto":
        return "auto"
    try:
        tile = int(text)
    except ValueError:
        raise typer.BadParameter(f"use auto, 0 (whole image) or a number of input pixels (got '{value}').") from None
    if tile < 0:
        raise typer.BadParameter("a tile size cannot be negative.")
    return tile


def parse_size(value: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720): WIDTHxHEIGHT, as everywhere in sst."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", value)
    if not m or min(int(m.group(1)), int(m.group(2))) < 1:
        raise typer.BadParameter(f"sizes are WIDTHxHEIGHT, e.g. 1280x720 (got '{value}').")
    return int(m.group(1)), int(m.group(2))


# ---------------------------------------------------------------------------------- shared options
def flag(*names: str, help: str) -> Any:
    """An on/off switch (no value after it, so --help shows no placeholder)."""
    return typer.Option(False, *names, help=help, metavar="")



def model_option(help: str = "Official weights download on first use; default: the bundled model.") -> Any:
    return typer.Option(None, "--model", "-m", callback=parse_model, metavar="NAME",
                        help=f"{', '.join(MODEL_NAMES)}. {help}")


def scale_option(default: int | None = None, help: str = "Scale: 2, 3 or 4 (default: the weights' own, else 4).") -> Any:
    return typer.Option(default, "--scale", "-s", help=help, min=min(SCALES), max=max(SCALES), metavar="2|3|4",
                        show_default=default is not None)


def scales_option(default: str | None = None, help: str = "Scales, comma-separated from 2, 3, 4.") -> Any:
    return typer.Option(default, "--scale", "-s", help=help, metavar="2,3,4", callback=parse_scales)


def weights_option() -> Any:
    return typer.Option(None, "--weights", "-w", metavar="FILE|URL",
                        help="Weights: a .pth/.safetensors file, an https:// URL or hf://owner/repo/file.")


def device_option(help: str = "auto (CUDA, then Apple mps, then CPU), cpu, cuda, cuda:N or mps.") -> Any:
    return typer.Option("auto", "--device", help=help, callback=parse_device, metavar="auto|cpu|cuda[:N]|mps")


def dtype_option(help: str = "auto = bf16 on CUDA, fp32 elsewhere.") -> Any:
    # tf32 (fp32 storage, TF32 matmuls on CUDA) is said in the help, not the metavar: it would not fit 80 columns
    return typer.Option("auto", "--dtype", help=help + " tf32: fp32 with TF32 matrix products on CUDA.",
                        metavar="auto|fp32|bf16|fp16")


def backend_option(help: str = "auto picks the fastest that runs here (`sst models --backends`).") -> Any:
    # the names in the help text, which wraps between words (a choice list in the metavar column is cut mid-name)
    return typer.Option("auto", "--backend", metavar="NAME", help=f"Attention backend: {', '.join(BACKENDS)}; {help}")


RANK_THREADS_HELP = ("CPU threads per process (default: PyTorch's, one per core; under torchrun the cores are "
                     "shared out among this machine's processes).")


def threads_option(help: str = "CPU threads (default: PyTorch's, one per core).") -> Any:
    return typer.Option(None, "--threads", metavar="N", min=1, help=help)


def json_option(help: str = "Also write the results as JSON to FILE ('-' prints JSON instead of the table).") -> Any:
    return typer.Option(None, "--json", metavar="FILE", help=help)


def tile_option(help: str = "Tile side in input pixels, 0 = whole image, auto = from free memory.") -> Any:
    return typer.Option("auto", "--tile", "-t", help=help, callback=parse_tile, metavar="auto|0|N")


def tile_overlap_option() -> Any:
    return typer.Option(None, "--tile-overlap", min=0, metavar="N",
                        help="Input pixels shared by neighbouring tiles, blended smoothly (default 32, at most tile/4).")
