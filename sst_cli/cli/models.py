"""`sst models`: the model zoo, which official weights are here and where, the attention backends available
here; `sst models download`: fetch official weights ahead of use."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich import box
from rich.table import Table

from ..model.registry import (
    HUB_COLLECTION_URL,
    OFFICIAL_FILES,
    SCALES,
    VARIANTS,
    OfficialFile,
    Variant,
    create_model,
    official_file_for,
)
from ..paper import quality
from . import app
from ._common import Command, Group, console, device_option, flag, json_option, parse_model, scales_option


def _params(v: Variant) -> dict[int, int]:
    """Parameter count at every scale from one shape-only build: only ``upsampler.up_conv`` (shared by every
    architecture built at several scales) depends on the scale, with (channels per sub-pixel) x s^2 outputs."""
    import torch

    with torch.device("meta"):
        model = create_model(v.name, 4)
    total = sum(p.numel() for p in model.parameters())
    if v.scales == (4,):  # one scale (sst-real): no upsampler to re-size
        return {4: total}
    up = model.upsampler.up_conv
    per_subpixel = (up.weight.numel() + up.bias.numel()) // 16
    return {s: total + (s * s - 16) * per_subpixel for s in v.scales}


def _costs(v: Variant) -> dict[str, object]:
    """What the architecture says of the variant: its windows and FLOPs per input pixel at every scale."""
    from ..model.archs import config_of, network_cost

    return {"windows": list(config_of(v.network_g(4)).windows),
            "flops_per_pixel": {s: int(network_cost(v.network_g(s)).flops) for s in v.scales}}


def _emit_json(path: str, data: object) -> bool:
    """Write ``data`` as JSON to ``path`` ('-': print it); True when the table should not follow."""
    from ..io.files import atomic_write_text

    text = json.dumps(data, indent=1)
    if path == "-":
        print(text)
        return True
    atomic_write_text(path, text + "\n")
    return False


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n < 1e7 else f"{n / 1e6:.1f}M"


models_app = typer.Typer(cls=Group, no_args_is_help=False, add_completion=False)
app.add_typer(models_app, name="models")


def _official_here() -> list[tuple[OfficialFile, Path]]:
    """Official checkpoints already on this machine (search folders or the Hugging Face cache), no network."""
    from ..model.hub import cached_official

    return [(f, p) for f in OFFICIAL_FILES.values() if (p := cached_official(f)) is not None]


@models_app.callback(invoke_without_command=True)
def models_cmd(
    ctx: typer.Context,
    backends: bool = flag("--backends", help="List attention backends and whether they run here."),
    device: str = device_option("Device for --backends: auto, cpu, cuda, cuda:N or mps."),
    json_path: str | None = json_option("Write the list as JSON to FILE ('-' prints JSON instead of the table)."),
) -> None:
    """List SST variants (params, windows, official weights, paper Urban100 PSNR) and which weights are here."""
    if ctx.invoked_subcommand is not None:
        return
    if backends:
        _backends(device, json_path)
        return
    from ..model.hub import search_dirs_text
    from ..model.weights import bundled_path

    here = _official_here()
    rows = []
    for v in VARIANTS.values():
        mine = [(f, p) for f, p in here if f.variant is v]
        urban = {s: (q["psnr_y"] if (q := quality(v.name, "Urban100", s)) else None) for s in v.scales}
        rows.append({
            "name": v.name, "official": v.official, "scales": list(v.scales),
            "architecture": v.type, "params": _params(v), **_costs(v),
            "checkpoints": {s: v.checkpoint_names(s) for s in v.scales}, "paper_urban100_psnr": urban,
            "local_weights": {s: str(next(p for f, p in mine if f.scale == s)) for s in v.scales
                              if any(f.scale == s for f, _ in mine)},
            "cached": {f.name: str(p) for f, p in mine},
        })
    bundled = {s: str(bundled_path(s)) for s in SCALES if bundled_path(s).is_file()}
    if json_path and _emit_json(json_path, {"variants": rows, "bundled": bundled, "hub_cache": _hub_cache(),
                                            "collection": HUB_COLLECTION_URL}):
        return
    # Sized for an 80-column terminal: params and Urban100 at x4 only, the official file names folded
    # into one pattern per variant, the files here listed below; --json has every scale and file name.
    t = Table(title="SST model zoo", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    t.add_column("name", no_wrap=True)
    t.add_column("params", justify="right", no_wrap=True)
    t.add_column("windows", no_wrap=True)
    t.add_column("official weights", no_wrap=True)
    t.add_column("Urban100", justify="right", no_wrap=True)
    for r, v in zip(rows, VARIANTS.values(), strict=True):
        sets = v.checkpoint_sets
        if v.bundled:
            files = "bundled with sst"
        else:
            files = "_".join(filter(None, (v.official, sets[0]))) if len(sets) == 1 else \
                f"{v.official}_{{{','.join(sets)}}}"
        urban = r["paper_urban100_psnr"][4]
        t.add_row(r["name"], _millions(r["params"][4]), ",".join(map(str, r["windows"])), files,
                  f"{urban:.2f}" if urban else "[dim]-[/]")
    console.print(t)
    console.print("[dim]params and paper Urban100 PSNR at x4; files: <official weights>_X<scale>.pth[/]")
    if here:
        console.print("Official weights here:")
        for f, path in here:
            console.print(f"  {f.variant.name} x{f.scale} {f.training_set}".rstrip() + f": {path}", overflow="fold")
    else:
        console.print("No official weights here yet.")
    if bundled:
        console.print(f"Bundled: sst-tiny at {', '.join('x' + str(s) for s in bundled)} (used without --model).")
    console.print(f"--model NAME downloads the official weights on first use (`sst models download NAME -s 4` "
                  f"fetches ahead) from {HUB_COLLECTION_URL} into the Hugging Face cache ({_hub_cache()}); "
                  f"files downloaded by hand go in {search_dirs_text()}.", overflow="fold")


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _backends(device: str, json_path: str | None) -> None:
    import torch

    from ..model import attention
    from ..runtime import resolve_device

    dev = resolve_device(device)
    rows = []
    for name in attention.BACKENDS:
        status = {}
        for dt_name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
            status[dt_name] = attention.unavailable_reason(name, dev, dt) or "ok"
        rows.append({"backend": name, "description": attention.describe(name), **status})
    if json_path and _emit_json(json_path, {"device": str(dev), "backends": rows}):
        return
    t = Table(title=f"Attention backends on {dev}", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    t.add_column("backend", no_wrap=True)
    for d in ("fp32", "bf16", "fp16"):
        t.add_column(d, no_wrap=True)
    t.add_column("description, or why it cannot run", overflow="fold")
    for r in rows:
        marks = ["[green]ok[/]" if r[d] == "ok" else "[red]no[/]" for d in ("fp32", "bf16", "fp16")]
        why = next((r[d] for d in ("fp32", "bf16", "fp16") if r[d] != "ok"), None)
        t.add_row(r["backend"], *marks, f"[dim]{why}[/]" if why else r["description"])
    console.print(t)


def _training_set(value: str | None) -> str | None:
    if value is None:
        return None
    sets = sorted({t for v in VARIANTS.values() for t in v.checkpoint_sets if t})
    match = [t for t in sets if t.lower() == value.strip().lower()]
    if not match:
        raise typer.BadParameter(f"'{value}' is not a training set of the official weights (choose from "
                                 f"{', '.join(sets)}).")
    return match[0]


@models_app.command("download", cls=Command)
def download_cmd(
    name: str = typer.Argument(..., metavar="NAME", callback=parse_model,
                               help="Variant: " + ", ".join(n for n, v in VARIANTS.items() if v.checkpoint_sets) + "."),
    scales: str = scales_option("4", "Scales, comma-separated from 2, 3, 4."),
    training_set: str | None = typer.Option(None, "--trained-on", callback=_training_set, metavar="SET",
                                            help="Training set of the published file, e.g. DF2K or DFLIP "
                                                 "(default: the one the paper's tables report)."),
    # `sst train --set` is KEY=VALUE; this command's older name for --trained-on stays, unlisted
    old_set: str | None = typer.Option(None, "--set", callback=_training_set, hidden=True),
) -> None:
    """Download official weights ahead of use (into the Hugging Face cache; verified; once)."""
    from rich.markup import escape

    from ..errors import SSTError, UsageError
    from ..model.hub import cached_official, fetch_official
    from ._common import err_console

    if training_set and old_set and training_set != old_set:
        raise UsageError("--set is the old name of --trained-on; give one of them.")
    training_set = training_set or old_set

    variant = VARIANTS.get(name or "")
    if variant is None or variant.bundled:
        what = "the bicubic baseline has no weights" if name == "bicubic" else f"{name} is bundled with sst"
        raise UsageError(f"{what}; nothing to download (official weights: "
                         + ", ".join(n for n, v in VARIANTS.items() if v.checkpoint_sets) + ").")
    try:
        files = [official_file_for(variant, s, training_set) for s in scales]  # type: ignore[union-attr]  # parsed: list[int]
    except KeyError as exc:
        raise UsageError(str(exc.args[0]) + ".") from None
    missing = []
    for f in files:  # every file is tried and named, whatever happened to the one before
        before = cached_official(f)
        try:
            path = fetch_official(f)
        except SSTError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
            missing.append(f.name)
            continue
        size = path.stat().st_size / 1e6
        done = "already here" if before is not None else "downloaded"
        trained = f", {f.training_set}" if f.training_set else ""
        console.print(f"{f.name} ({variant.name} x{f.scale}{trained}, {size:.1f} MB): {done}, {path}",
                      overflow="fold")
    if missing:
        raise SSTError(f"{len(missing)} of {len(files)} files could not be had: {', '.join(missing)}.")
