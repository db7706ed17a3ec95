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
from ._progress import duration


@app.command("train", cls=Command, help=(
    "Train or fine-tune SST. Multi-GPU: torchrun --nproc-per-node N -m sst_cli train --config ...\n\n"
    f"With no --config, `sst train --data DIR` trains a small model on the HR images in DIR ({summary()}); "
    "the full settings are written to RUN_DIR/config.yaml, and --set KEY=VALUE changes any of them.\n\n"
    "Relative paths in a config file are relative to that file's folder. Validation sets are looked up under "
    "$SST_DATA_ROOT (else ./datasets) unless the config sets val_root.\n\n"
    "Ctrl-C (or SIGTERM) saves a checkpoint before stopping, and --resume continues from it with the run's own "
    "settings; --resume --extend accepts a new iters, milestones, warmup, scheduler, min_lr or gamma and continues "
    "from the current learning rate. A --run-dir that already holds a run is refused unless --resume or "
    "--overwrite is given."))
def train_cmd(
    config: Path | None = typer.Option(None, "--config", "-c", metavar="FILE", help="YAML config (see configs/)."),
    data: list[Path] = typer.Option([], "--data", metavar="DIR", help="Folder of HR training images (LR made by "
                                    "MATLAB bicubic); repeatable. Replaces the config's train_hr."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a config key: --set lr=1e-4 (repeatable)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", metavar="DIR", help="Where checkpoints and logs go "
                                        f"(default runs/<config name>, runs/{QUICK_START['name']} without --config)."),
    resume: bool = flag("--resume", help="Continue from the newest valid checkpoint in --run-dir (other "
                                         "settings than the run's are refused)."),
    extend: bool = flag("--extend", help="With --resume: accept new schedule settings (e.g. --set iters=N); "
                                         "the new schedule continues from the current learning rate."),
    overwrite: bool = flag("--overwrite", help="Start over in a --run-dir that holds a run (removes its "
                                               "checkpoints, logs and exported weights)."),
    device: str | None = typer.Option(None, "--device", callback=lambda v: v if v is None else parse_device(v),
                                      metavar="cpu|cuda[:N]|mps", help="cpu, cuda, cuda:N or mps (default: the GPU of this rank, else CPU)."),
    quiet: bool = flag("--quiet", help="No per-iteration progress lines (metrics.jsonl still has them)."),
) -> None:
    if config is None and not data and not any(s.strip().startswith("train_hr=") for s in set_):
        raise UsageError("give the training images with --data DIR (a folder of HR images), or a --config FILE.")
    if extend and not resume:
        raise UsageError("--extend changes the schedule of a resumed run; use it with --resume.")
    if resume and overwrite:
        raise UsageError("--resume continues the run in --run-dir and --overwrite starts it over; choose one.")
    from ..training.config import load_config  # no torch: a bad key or value answers at once

    cfg = load_config(config, set_, {"train_hr": [str(d) for d in data]} if data else None)
    from ..training.loop import train
    from ..training.run_dir import TrainingStopped

    run = run_dir or Path("runs") / (config.stem if config else QUICK_START["name"])
    main_rank = int(os.environ.get("RANK", "0")) == 0

    def log(msg: str) -> None:
        if main_rank:
            console.print(msg, highlight=False, soft_wrap=True)  # a log keeps whole lines

    def progress(rec: dict[str, Any]) -> None:
        if not quiet:
            log(f"iter {rec['iter']:>7}/{cfg.iters}  loss {rec['loss']:.4f}  lr {rec['lr']:.2e}  "
                f"{rec['it_per_s']:.2f} it/s  ETA {duration(rec['eta_s'])}")

    try:
        result = train(cfg, run, resume=resume, log=log, progress=progress, device=device, overwrite=overwrite,
                       extend=extend)
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
