"""`sst train`: train or fine-tune an SST variant (single process, or under torchrun for DDP)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from . import app
from ._common import console, flag, parse_device


@app.command("train")
def train_cmd(
    config: Path | None = typer.Option(None, "--config", "-c", metavar="FILE", help="YAML config (see configs/)."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a config key: --set lr=1e-4 (repeatable)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", metavar="DIR", help="Where checkpoints and logs go (default runs/<config name>)."),
    resume: bool = flag("--resume", help="Continue from the newest valid checkpoint in --run-dir."),
    device: str | None = typer.Option(None, "--device", callback=lambda v: v if v is None else parse_device(v),
                                      metavar="cpu|cuda[:N]|mps", help="cpu, cuda, cuda:N or mps (default: the GPU of this rank, else CPU)."),
) -> None:
    """Train or fine-tune SST. Multi-GPU: torchrun --nproc-per-node N -m sst_cli train --config ..."""
    from ..training.config import load_config
    from ..training.loop import train

    cfg = load_config(config, set_)
    run = run_dir or Path("runs") / (config.stem if config else "run")
    main_rank = int(os.environ.get("RANK", "0")) == 0

    def log(msg: str) -> None:
        if main_rank:
            console.print(msg)

    def progress(rec: dict[str, Any]) -> None:
        eta = int(rec["eta_s"])
        log(f"iter {rec['iter']:>7}/{cfg.iters}  loss {rec['loss']:.4f}  lr {rec['lr']:.2e}  "
            f"{rec['it_per_s']:.2f} it/s  ETA {eta // 3600}h{eta % 3600 // 60:02d}m")

    log(f"training {cfg.model or 'custom SST'} x{cfg.scale} into {run}")
    result = train(cfg, run, resume=resume, log=log, progress=progress, device=device)
    if not main_rank:
        return
    t = Table(title="training finished")
    t.add_column("item")
    t.add_column("value")
    t.add_row("iterations", str(result.iters))
    t.add_row("last loss", f"{result.final_loss:.4f}")
    t.add_row("best val Y-PSNR", f"{result.best_psnr:.3f} dB" if result.best_psnr is not None else "–")
    t.add_row("skipped files", str(result.skipped.n_skipped))
    t.add_row("weights (ours)", str(result.export))
    t.add_row("weights (BasicSR)", str(run / "final_basicsr.pth"))
    console.print(t)
