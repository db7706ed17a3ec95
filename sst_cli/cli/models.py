"""`sst models`: the model zoo and the attention backends available here."""

from __future__ import annotations

import json

from rich import box
from rich.table import Table

from ..model.registry import SCALES, VARIANTS, create_model
from ..paper import quality
from . import app
from ._common import console, device_option, flag, json_option


def _params(name: str) -> dict[int, int]:
    """Parameter count at every scale from one shape-only build: only ``upsampler.up_conv`` depends on
    the scale, with (channels per sub-pixel) x s^2 outputs."""
    import torch

    with torch.device("meta"):
        model = create_model(name, 4)
    total = sum(p.numel() for p in model.parameters())
    up = model.upsampler.up_conv
    per_subpixel = (up.weight.numel() + up.bias.numel()) // 16
    return {s: total + (s * s - 16) * per_subpixel for s in SCALES}


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


@app.command("models")
def models_cmd(
    backends: bool = flag("--backends", help="List attention backends and whether they run here."),
    device: str = device_option("Device for --backends: auto, cpu, cuda, cuda:N or mps."),
    json_path: str | None = json_option("Write the list as JSON to FILE ('-' prints JSON instead of the table)."),
) -> None:
    """List SST variants (params, windows, checkpoint files, paper Urban100 PSNR, local weights)."""
    import torch

    from ..model import attention
    from ..model.hub import cached_official
    from ..model.registry import official_file_for
    from ..model.weights import bundled_path
    from ..runtime import resolve_device

    if backends:
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
        return
    rows = []
    for v in VARIANTS.values():
        found = {s: str(p) for s in SCALES if v.checkpoint_sets and (p := cached_official(official_file_for(v, s)))}
        urban = {s: (q["psnr_y"] if (q := quality(v.name, "Urban100", s)) else None) for s in SCALES}
        rows.append({
            "name": v.name, "official": v.official, "scales": list(SCALES),
            "params": _params(v.name), "windows": list(v.window_sizes),
            "checkpoints": {s: v.checkpoint_names(s) for s in SCALES}, "paper_urban100_psnr": urban,
            "local_weights": found,
        })
    bundled = {s: str(bundled_path(s)) for s in SCALES if bundled_path(s).is_file()}
    if json_path and _emit_json(json_path, {"variants": rows, "bundled": bundled}):
        return
    # Sized for an 80-column terminal: params and Urban100 at x4 only, the official file names folded
    # into one pattern per variant, local files listed below; --json has every scale and file name.
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
            files = f"{v.official}_{sets[0]}" if len(sets) == 1 else f"{v.official}_{{{','.join(sets)}}}"
        urban = r["paper_urban100_psnr"][4]
        t.add_row(r["name"], _millions(r["params"][4]), ",".join(map(str, r["windows"])), files,
                  f"{urban:.2f}" if urban else "[dim]-[/]")
    console.print(t)
    console.print("[dim]params and paper Urban100 PSNR at x4; files: <official weights>_X<scale>.pth[/]")
    found = [f"{r['name']} x{s} ({path})" for r in rows for s, path in r["local_weights"].items()]
    if found:
        console.print("Found locally: " + "; ".join(found) + ".")
    else:
        console.print("No official weights found here ($SST_WEIGHTS_DIR, user cache, checkpoints/).")
    if bundled:
        console.print(f"Bundled model: sst-tiny at {', '.join('x' + str(s) for s in bundled)} (used when no --model is given).")
    console.print("Official weights are published by the authors in the Hugging Face collection\n"
                  "dslisleedh/sst; pass --weights FILE or put the files in $SST_WEIGHTS_DIR.")
