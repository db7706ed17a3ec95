"""`sst train`: train or fine-tune an SST variant (single process, or under torchrun for DDP)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..errors import UsageError
from ..training.defaults import QUICK_START, summary
from . import app
from ._common import Command, console, err_console, flag, parse_device


@app.command("train", cls=Command, help=(
    "Train or fine-tune SST. Multi-GPU: torchrun --nproc-per-node N -m sst_cli train --config ...\n\n"
    f"With no --config, `sst train --data DIR` trains a small model on the HR images in DIR ({summary()}); "
    "the full settings are printed at start, and --set KEY=VALUE changes any of them.\n\n"
    "Relative paths in a config file are relative to that file's folder. Validation sets are looked up under "
    "$SST_DATA_ROOT (else ./datasets) unless the config sets val_root.\n\n"
    "Ctrl-C (or SIGTERM) saves a checkpoint before stopping, and --resume continues from it. A --run-dir that "
    "already holds a run is refused unless --resume or --overwrite is given."))
def train_cmd(
    config: Path | None = typer.Option(None, "--config", "-c", metavar="FILE", help="YAML config (see configs/)."),
    data: list[Path] = typer.Option([], "--data", metavar="DIR", help="Folder of HR training images (LR made by "
                                    "MATLAB bicubic); repeatable. Replaces the config's train_hr."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a config key: --set lr=1e-4 (repeatable)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", metavar="DIR", help="Where checkpoints and logs go "
                                        f"(default runs/<config name>, runs/{QUICK_START['name']} without --config)."),
    resume: bool = flag("--resume", help="Continue from the newest valid checkpoint in --run-dir."),
    overwrite: bool = flag("--overwrite", help="Start over in a --run-dir that holds a run (removes its "
                                               "checkpoints, logs and exported weights)."),
    device: str | None = typer.Option(None, "--device", callback=lambda v: v if v is None else parse_device(v),
                                      metavar="cpu|cuda[:N]|mps", help="cpu, cuda, cuda:N or mps (default: the GPU of this rank, else CPU)."),
) -> None:
    if config is None and not data and not any(s.strip().startswith("train_hr=") for s in set_):
        raise UsageError("give the training images with --data DIR (a folder of HR images), or a --config FILE.")
    import yaml

    from ..training.config import load_config, to_dict
    from ..training.loop import train
    from ..training.run_dir import TrainingStopped

    cfg = load_config(config, set_, {"train_hr": [str(d) for d in data]} if data else None)
    run = run_dir or Path("runs") / (config.stem if config else QUICK_START["name"])
    main_rank = int(os.environ.get("RANK", "0")) == 0

    def log(msg: str) -> None:
        if main_rank:
            console.print(msg)

    def progress(rec: dict[str, Any]) -> None:
        eta = int(rec["eta_s"])
        log(f"iter {rec['iter']:>7}/{cfg.iters}  loss {rec['loss']:.4f}  lr {rec['lr']:.2e}  "
            f"{rec['it_per_s']:.2f} it/s  ETA {eta // 3600}h{eta % 3600 // 60:02d}m")

    if config is None and main_rank:
        console.print("no --config: training with these settings (save them as a YAML file to change more "
                      "than --set allows):", highlight=False)
        console.print(yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip(), highlight=False, markup=False)
    log(f"training {cfg.model or 'custom SST'} x{cfg.scale} into {run}")
    try:
        result = train(cfg, run, resume=resume, log=log, progress=progress, device=device, overwrite=overwrite)
    except TrainingStopped as exc:
        if main_rank:
            err_console.print(f"[yellow]{exc}[/]")
        raise typer.Exit(exc.exit_code) from None
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
