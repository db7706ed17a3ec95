"""The training loop: DDP-aware, resumable, with EMA, validation (through ``sst eval``'s runner) and atomic
checkpoints; Ctrl-C or SIGTERM saves a checkpoint and stops."""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from ..distributed import Dist, collective_backend, from_env
from ..errors import SSTError, UsageError
from ..evaluation.runner import Task, evaluate_model, plan, validation_setup
from ..io.files import atomic_write, atomic_write_text
from ..model.archs import arch_of, build_model, config_of
from ..model.attention import BackendUnavailable, resolve_backend, uses_cuda_kernels
from ..model.loading import load_into
from ..model.registry import get_variant
from ..model.weights import load_checkpoint, save_basicsr, save_checkpoint
from ..runtime import dtype_name, resolve_device, set_tf32
from .config import TrainConfig, to_dict
from .data import CounterSampler, ScanReport, SRTrainSet, scan_images
from .run_dir import (
    StopSignals,
    TrainingStopped,
    list_checkpoints,
    load_latest,
    prepare,
    rng_state,
    set_rng_state,
    worker_ignores_stop_signals,
)
from .schedule import describe, resume_schedule, schedule


# ------------------------------------------------------------------------------------------ setup
def init_distributed(device: str | None = None) -> tuple[Dist, torch.device]:
    """This rank and its device, the process group joined under torchrun.

    The default device is this rank's GPU (``cuda:LOCAL_RANK``), else the CPU; an explicit one is checked by
    :meth:`Dist.device`. The group's backend follows the device, not the machine: NCCL for CUDA (gradients
    are all-reduced there), gloo for the CPU even where GPUs exist.
    """
    d = from_env()
    dev = resolve_device(d.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))
    if d.active and not dist.is_initialized():
        dist.init_process_group(collective_backend(dev.type))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return d, dev


def network_config(cfg: TrainConfig) -> dict[str, Any]:
    """The official network_g to train: the variant's, with ``network``'s keywords over it (a ``network`` of
    another architecture type replaces it), at ``scale``."""
    base: dict[str, Any] = {}
    if cfg.model:
        try:
            base = get_variant(cfg.model).network_g(cfg.scale)
        except KeyError as exc:
            raise SSTError(str(exc.args[0]) + ".") from None
    try:
        if cfg.network and "type" in cfg.network and base and arch_of(cfg.network) is not arch_of(base):
            base = {}
        network_g = {**base, **(cfg.network or {})}
        refusal = getattr(arch_of(network_g).config, "NOT_TRAINABLE", "")  # e.g. SSTReal: no fine-tuning built
        if refusal:
            raise SSTError(refusal)
        return config_of(network_g).at_scale(cfg.scale).to_network_g()
    except ValueError as exc:
        raise SSTError(f"the network of the config cannot be built: {exc}.") from None


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    """Exponential moving average of the weights (evaluated and exported as ``params_ema``).

    ``AveragedModel`` with ``get_ema_multi_avg_fn`` lerps every parameter by ``1 - decay`` after each step,
    as BasicSR does, but on its first ``update_parameters`` it copies the model instead of averaging. With
    ``n_averaged`` set to 1 up front, the average starts from the initial weights and every update is a
    lerp: the same weights, bit for bit, as ``ema = decay * ema + (1 - decay) * w`` from step 0 (tested).
    Checkpoints store ``ema.module.state_dict()``: the network's own keys, as before.
    """
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    ema.n_averaged.fill_(1)
    ema.module.eval().requires_grad_(False)
    return ema


# ---------------------------------------------------------------------------------------- trainer
@dataclass
class TrainResult:
    iters: int
    final_loss: float
    best_psnr: float | None
    run_dir: Path
    export: Path | None
    skipped: ScanReport
    history: list[dict[str, Any]]


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False,
          log: Callable[[str], None] = print, progress: Callable[[dict[str, Any]], None] | None = None,
          device: str | None = None, overwrite: bool = False, extend: bool = False) -> TrainResult:
    """Train per ``cfg`` into ``run_dir``. Single process, or one rank of a torchrun job.

    A ``run_dir`` that already holds a run is refused unless ``resume`` (continue from its newest valid
    checkpoint) or ``overwrite`` (remove that run's files first). A resume with other settings than the
    run's is refused, unless ``extend`` allows new schedule settings (``schedule.resume_schedule``).
    SIGINT/SIGTERM during the loop save a checkpoint and raise
    :class:`~sst_cli.training.run_dir.TrainingStopped`. ``log`` gets a short start banner; all settings go
    to ``run_dir/config.yaml``.
    """
    if extend and not resume:
        raise UsageError("--extend changes the schedule of a resumed run; use it with --resume.")
    d, dev = init_distributed(device)
    run = Path(run_dir)
    prepare(run, resume, overwrite, remove=d.main)
    # the run folder's checks come first: nothing is printed or built for a resume that would be refused
    state = load_latest(run, log) if resume else None
    extension, extended = resume_schedule(state, cfg, run, extend) if state is not None else (None, None)
    if d.main:
        run.mkdir(parents=True, exist_ok=True)
        for stale in run.glob(".*.tmp"):  # left by a run killed mid-write; never a valid checkpoint
            stale.unlink(missing_ok=True)
    if d.world > 1:
        dist.barrier()
    set_tf32(cfg.tf32)  # recorded with the config in every checkpoint
    torch.manual_seed(cfg.seed + d.rank)
    random.seed(cfg.seed + d.rank)
    np.random.seed(cfg.seed + d.rank)

    # model
    net_cfg = network_config(cfg)
    model = build_model(net_cfg)
    if cfg.init_from:
        ckpt = load_checkpoint(cfg.init_from)
        load_into(model, ckpt, resample_scale=True)
        log(f"initialised from {cfg.init_from}")
    use_amp = cfg.bf16 and uses_cuda_kernels(dev)  # bf16 autocast on CUDA
    try:
        backend = resolve_backend(cfg.backend, dev, torch.bfloat16 if use_amp else torch.float32,
                                  with_bias=config_of(net_cfg).bias == "rpb")
    except BackendUnavailable as exc:
        raise SSTError(str(exc)) from None
    model.set_backend(backend).to(dev).train()
    ema = make_ema(model, cfg.ema) if cfg.ema > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule(cfg, extension))
    if d.main:
        log(_banner(cfg, run, state, d, dev, "bf16 autocast" if use_amp else "float32", backend))
    start, best, history = 0, None, []
    if resume:
        if state is None:
            log("no checkpoint to resume from; starting at iteration 0")
        else:
            model.load_state_dict(state["model"])
            if ema is not None and state.get("ema") is not None:
                ema.module.load_state_dict(state["ema"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
            start, best = int(state["iter"]), _best_psnr(state.get("best_psnr"), run, int(state["iter"]))
            log(f"resumed from {Path(state['path']).name} at iteration {start}")
            if extended:
                log(extended)
    train_model: nn.Module = model
    if d.world > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)
    step_fn = torch.compile(train_model) if cfg.compile else train_model

    # data
    min_side = cfg.patch * cfg.scale
    hr_files, report = scan_images(cfg.train_hr, min_side)
    lr_files = None
    if cfg.train_lr:
        lr_files, _ = scan_images(cfg.train_lr, cfg.patch)
        by_stem = {p.stem.split("x")[0] if p.stem not in {q.stem for q in hr_files} else p.stem: p for p in lr_files}
        pairs = [(h, by_stem[h.stem]) for h in hr_files if h.stem in by_stem]
        hr_files, lr_files = [h for h, _ in pairs], [lr for _, lr in pairs]
    if d.main and report.n_skipped:
        reasons = ", ".join(f"{len(v)} {k}" for k, v in report.skipped.items())
        log(f"[yellow]skipped {report.n_skipped} training file(s): {reasons}[/]")
    dataset = SRTrainSet(hr_files, cfg.scale, cfg.patch, cfg.seed, lr_files, cache=cfg.cache_images,
                          degradation=cfg.degradation)
    per_step = cfg.batch * cfg.accum * d.world
    sampler = CounterSampler(start * per_step, d.rank, d.world)
    loader = DataLoader(dataset, batch_size=cfg.batch, sampler=sampler, num_workers=cfg.workers,
                        persistent_workers=cfg.workers > 0, pin_memory=dev.type == "cuda",
                        prefetch_factor=4 if cfg.workers > 0 else None, worker_init_fn=worker_ignores_stop_signals)
    batches = iter(loader)

    metrics_file = run / "metrics.jsonl"
    tb = _tensorboard(run) if d.main else None

    def save(it: int) -> Path | None:
        if not d.main:
            return None
        state = {
            "iter": it, "model": model.state_dict(), "ema": ema.module.state_dict() if ema else None,
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": None, "rng": rng_state(),
            "sampler_position": it * per_step, "best_psnr": best, "config": to_dict(cfg), "network_g": net_cfg,
            "lr_extension": extension,
        }
        path = atomic_write(run / f"ckpt_{it:08d}.pt", lambda tmp: torch.save(state, tmp))
        for old in list_checkpoints(run)[cfg.keep_last:]:
            old.unlink(missing_ok=True)
        return path

    def exported() -> nn.Module:
        return ema.module if (ema is not None and cfg.export_weights == "ema") else model

    def record(rec: dict[str, Any]) -> None:
        history.append(rec)
        with open(metrics_file, "a") as fh:
            fh.write(json.dumps(rec) + "\n")

    # resolved up front, so a missing validation set fails before any training
    # every rank validates its share of the images (as `sst eval` under torchrun): no rank idles in a collective
    # for the whole validation, whose length NCCL's timeout would otherwise bound
    val_tasks = plan(cfg.val_sets, [cfg.scale], cfg.val_root) if cfg.val_sets else []
    if d.main:  # every setting of this start (the banner shows a few); rewritten by each start and resume
        atomic_write_text(run / "config.yaml", yaml.safe_dump(json.loads(json.dumps(to_dict(cfg))), sort_keys=False))
    t0, last_t, loss_acc, n_acc, loss_val = time.time(), time.time(), 0.0, 0, float("nan")
    it = start
    with StopSignals() as stop:
        for it in range(start + 1, cfg.iters + 1):
            opt.zero_grad(set_to_none=True)
            for micro in range(cfg.accum):
                lr_img, hr_img = next(batches)
                lr_img, hr_img = lr_img.to(dev, non_blocking=True), hr_img.to(dev, non_blocking=True)
                # DDP all-reduces the gradients on every backward; the sum is only needed after the last one.
                with _accumulating(train_model, last=micro == cfg.accum - 1):
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                        loss = F.l1_loss(step_fn(lr_img).float(), hr_img) / cfg.accum
                    loss.backward()
                loss_acc += loss.item()
            n_acc += 1
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)

            if it % cfg.log_every == 0 or it == cfg.iters:
                now = time.time()
                loss_val = loss_acc / max(1, n_acc)
                rate = n_acc / max(1e-9, now - last_t)
                rec = {"iter": it, "loss": loss_val, "lr": opt.param_groups[0]["lr"], "it_per_s": rate,
                       "eta_s": (cfg.iters - it) / max(rate, 1e-9), "elapsed_s": now - t0}
                loss_acc, n_acc, last_t = 0.0, 0, now
                if d.main:
                    record(rec)
                    if tb:
                        tb.add_scalar("train/loss", rec["loss"], it)
                        tb.add_scalar("train/lr", rec["lr"], it)
                    if progress:
                        progress(rec)
            # The checkpoint first: a validation that fails (or is killed) never costs training progress.
            saved = it % cfg.ckpt_every == 0 or it == cfg.iters
            ckpt = save(it) if saved else None
            if val_tasks and (it % cfg.val_every == 0 or it == cfg.iters):
                rec = validate(exported(), val_tasks, it, log if d.main else _silent, d)
                if "val_psnr_y" in rec and (best is None or rec["val_psnr_y"] > best):
                    best = rec["val_psnr_y"]  # the same merged scores on every rank
                    if d.main:
                        export(exported(), run / "best.safetensors", cfg, it, best)
                if d.main:
                    record(rec)
                    if tb and "val_psnr_y" in rec:
                        tb.add_scalar("val/psnr_y", rec["val_psnr_y"], it)
            signum = _agreed_stop(stop.signum, d, dev)
            if signum is not None and it < cfg.iters:
                if not saved:
                    ckpt = save(it)
                if tb:
                    tb.close()
                raise TrainingStopped(signum, it, ckpt)
    out = None
    if d.main:
        out = export(exported(), run / "final.safetensors", cfg, it, best)
        save_basicsr(run / "final_basicsr.pth", exported())  # params_ema + network_g (the windows)
    if tb:
        tb.close()
    if d.world > 1:
        dist.barrier()
    return TrainResult(it, loss_val, best, run, out, report, history)


def _best_psnr(saved: float | None, run: Path, it: int) -> float | None:
    """The best validation score up to iteration ``it``: a checkpoint is saved before that iteration's
    validation, so best.safetensors (exported by it) may hold a higher one than the checkpoint."""
    path = run / "best.safetensors"
    if not path.is_file():
        return saved
    meta = load_checkpoint(path).meta
    score, at = meta.get("val_psnr_y"), meta.get("iter")
    if score is None or at is None or int(at) > it:  # a later run's export: not this checkpoint's past
        return saved
    return float(score) if saved is None else max(saved, float(score))


def _accumulating(model: nn.Module, last: bool) -> contextlib.AbstractContextManager[Any]:
    """DDP's ``no_sync()`` for every micro-batch but the last of a step (the gradients then add up locally
    and are all-reduced once); nothing for a single process or the last micro-batch."""
    if last or not isinstance(model, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def _banner(cfg: TrainConfig, run: Path, state: dict[str, Any] | None, d: Dist, dev: torch.device, precision: str,
            backend: str) -> str:
    """Four short lines: what trains into where, the data, the optimisation, how it runs (every setting
    goes to config.yaml)."""
    where = f"resuming at iteration {int(state['iter'])}" if state is not None else "new run"
    steps = f"{cfg.iters} iterations of {cfg.batch} x {cfg.patch}-px LR patches"
    if cfg.accum > 1:
        steps += f", {cfg.accum} accumulated"
    if d.world > 1:
        steps += f", on each of {d.world} processes"
    ema = f", EMA {cfg.ema:g}" if cfg.ema else ""
    lr_from = "paired LR files" if cfg.train_lr else ("bicubic" if cfg.degradation is None else "the degradation mix")
    return (f"training {cfg.model or 'custom SST'} x{cfg.scale} into {run} ({where}); all settings in "
            f"{run / 'config.yaml'}\n"
            f"  data: {steps}, LR from {lr_from}\n"
            f"  optimiser: {describe(cfg)}{ema}\n"
            f"  runs on: {dev}, {precision}, attention {backend}")


def _agreed_stop(signum: int | None, d: Dist, dev: torch.device) -> int | None:
    """The signal to stop on, agreed by all ranks (torchrun forwards it to each, not at the same step)."""
    if d.world == 1:
        return signum
    flag = torch.tensor([signum or 0], device=dev)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


def _silent(_msg: str) -> None:
    pass


def validate(model: nn.Module, tasks: list[Task], it: int, log: Callable[[str], None],
             d: Dist | None = None) -> dict[str, Any]:
    """Mean Y-PSNR/SSIM per validation set, computed by ``sst eval``'s own code (same numbers), with the
    dtype and backend it ran in (float32; see :func:`~sst_cli.evaluation.runner.validation_setup`); under
    torchrun (``d``) each rank evaluates its share of the images and every rank gets the whole result.

    A validation that fails is logged and recorded (``val_error``) and training goes on: the checkpoint of
    this iteration, when one is due, is already saved, the final weights are still exported, and a
    validation set that cannot run at one step usually cannot at the next either, so stopping would only
    trade the rest of the run for a message; ``sst eval`` can score the weights afterwards.
    """
    _, dtype, backend = validation_setup(model)
    setup = {"iter": it, "val_dtype": dtype_name(dtype), "val_backend": backend}
    scores: dict[str, dict[str, float]] = {}
    try:
        for res in evaluate_model(model, tasks, name="validation", dist=d):
            key = res.dataset if res.dataset not in scores else res.path
            scores[key] = {"psnr_y": res.mean("psnr_y"), "ssim_y": res.mean("ssim_y")}
            for sk in res.skipped:
                log(f"[yellow]validation skipped {res.dataset}/{sk['name']}: {sk['reason']}[/]")
    except Exception as exc:  # noqa: BLE001 - any failure: training progress matters more than this score
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        log(f"[red]iter {it}: validation failed ({type(exc).__name__}: {first}); training goes on[/]")
        return {**setup, "val_error": f"{type(exc).__name__}: {first}"}
    mean = float(np.mean([s["psnr_y"] for s in scores.values()]))
    log(f"iter {it}: validation ({setup['val_dtype']}, {backend}) "
        + ", ".join(f"{k} {v['psnr_y']:.3f} dB / {v['ssim_y']:.4f}" for k, v in scores.items()))
    return {**setup, "val": scores, "val_psnr_y": mean}


def export(model: nn.Module, path: Path, cfg: TrainConfig, it: int, psnr: float | None) -> Path:
    meta = {"name": cfg.name or (cfg.model or "sst"), "iter": it, "val_psnr_y": psnr, "train_config": to_dict(cfg)}
    return save_checkpoint(path, model, meta, dtype=torch.float16 if cfg.export_fp16 else None)


def _tensorboard(run: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # noqa: BLE001 - tensorboard is an optional extra
        return None
    return SummaryWriter(str(run / "tb"))
