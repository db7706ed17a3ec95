"""`sst models`: the model zoo and the attention backends available here."""

from __future__ import annotations

import json

import torch
import typer
from rich.table import Table

from .. import attention
from ..checkpoint import find_official
from ..engine import bundled_path, resolve_device
from ..paper import quality
from ..zoo import SCALES, VARIANTS, create_model
from . import app
from ._common import console


def _params(name: str, scale: int) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in create_model(name, scale).parameters())


@app.command("models")
def models_cmd(
    backends: bool = typer.Option(False, "--backends", help="List attention backends and whether they run here."),
    device: str = typer.Option("auto", help="Device for --backends: auto, cpu, cuda, cuda:N."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List SST variants (params, windows, checkpoint files, paper Urban100 PSNR, local weights)."""
    if backends:
        dev = resolve_device(device)
        rows = []
        for name in attention.BACKENDS:
            status = {}
            for dt_name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
                status[dt_name] = attention.unavailable_reason(name, dev, dt) or "ok"
            rows.append({"backend": name, "description": attention.describe(name), **status})
        if as_json:
            console.print_json(json.dumps({"device": str(dev), "backends": rows}))
            return
        t = Table(title=f"Attention backends on {dev}")
        for col in ("backend", "fp32", "bf16", "fp16", "description"):
            t.add_column(col, overflow="fold")
        for r in rows:
            t.add_row(r["backend"], *(("[green]ok[/]" if r[d] == "ok" else f"[red]{r[d]}[/]") for d in ("fp32", "bf16", "fp16")), r["description"])
        console.print(t)
        return
    rows = []
    for v in VARIANTS.values():
        found = {s: str(p) for s in SCALES if (p := find_official(v, s))}
        urban = {s: (q["psnr_y"] if (q := quality(v.name, "Urban100", s)) else None) for s in SCALES}
        rows.append({
            "name": v.name, "official": v.official, "scales": list(SCALES),
            "params": {s: _params(v.name, s) for s in SCALES}, "windows": list(v.window_sizes),
            "checkpoints": {s: v.checkpoint_names(s) for s in SCALES}, "paper_urban100_psnr": urban,
            "local_weights": found,
        })
    bundled = {s: str(bundled_path(s)) for s in SCALES if bundled_path(s).is_file()}
    if as_json:
        console.print_json(json.dumps({"variants": rows, "bundled": bundled}))
        return
    t = Table(title="SST model zoo")
    for col in ("name", "params (x2/x3/x4)", "windows", "checkpoint files (x{s})", "paper Urban100 x2/x3/x4", "local weights"):
        t.add_column(col, overflow="fold")
    for r in rows:
        params = " / ".join(f"{r['params'][s] / 1e6:.2f}M" for s in SCALES)
        urban = " / ".join(f"{u:.2f}" if u else "–" for u in r["paper_urban100_psnr"].values())
        files = ", ".join(n.replace("_X4", "_X{s}") for n in r["checkpoints"][4])
        local = ", ".join(f"x{s}" for s in r["local_weights"]) or "[dim]none[/]"
        t.add_row(r["name"], params, ",".join(map(str, r["windows"])), files, urban, local)
    console.print(t)
    if bundled:
        console.print(f"Bundled model: sst-tiny at {', '.join('x' + str(s) for s in bundled)} (used when no --model is given).")
    console.print("Official weights: the authors publish them in their Hugging Face collection dslisleedh/sst; "
                  "pass --weights FILE or put files in $SST_WEIGHTS_DIR.")
