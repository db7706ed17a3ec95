"""The training loop: DDP-aware, resumable, with EMA, validation and atomic checkpoints."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..errors import SSTError
from ..io.files import atomic_write
from ..model.attention import BackendUnavailable, resolve_backend
from ..model.network import SST, build_model
from ..model.registry import get_variant
from ..model.weights import load_checkpoint, load_into, save_checkpoint
from .config import TrainConfig, to_dict
from .data import CounterSampler, ScanReport, SRTrainSet, scan_images

CKPT_RE = re.compile(r"^ckpt_(\d{8})\.pt$")


# ------------------------------------------------------------------------------------------ setup
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on GPU, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    d = Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(d.local_rank)
    return d


def network_config(cfg: TrainConfig) -> dict[str, Any]:
    base: dict[str, Any] = {}
    if cfg.model:
        try:
            base = get_variant(cfg.model).network_g(cfg.scale)
        except KeyError as exc:
            raise SSTError(str(exc.args[0]) + ".") from None
    base.update(cfg.network or {})
    base["upscaling_factor"] = cfg.scale
    return base


def lr_factor(cfg: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up, then MultiStepLR (or cosine) as a function of the iteration."""

    def f(it: int) -> float:
        if cfg.warmup and it < cfg.warmup:
            return (it + 1) / cfg.warmup
        if cfg.scheduler == "cosine":
            t = (it - cfg.warmup) / max(1, cfg.iters - cfg.warmup)
            floor = cfg.min_lr / cfg.lr
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        return cfg.gamma ** sum(it >= m for m in cfg.milestones)

    return f


class EMA:
    """Exponential moving average of the weights (evaluated and exported as ``params_ema``)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_p = list(self.model.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1 - self.decay)


# ------------------------------------------------------------------------------------- checkpoints
def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuplify(state["python"]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def list_checkpoints(run_dir: Path) -> list[Path]:
    return sorted((p for p in run_dir.glob("ckpt_*.pt") if CKPT_RE.match(p.name)), reverse=True)


def load_latest(run_dir: Path, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The newest checkpoint that loads; a truncated or corrupt one is reported and skipped."""
    for path in list_checkpoints(run_dir):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or "iter" not in state:
                raise ValueError("not a training checkpoint")
            state["path"] = str(path)
            return state
        except Exception as exc:  # noqa: BLE001 - any failure means "use the previous one"
            log(f"[yellow]checkpoint {path.name} is unreadable ({type(exc).__name__}); trying the previous one[/]")
    return None


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
          device: str | None = None) -> TrainResult:
    """Train per ``cfg`` into ``run_dir``. Single process, or one rank of a torchrun job."""
    d = init_distributed()
    run = Path(run_dir)
    if d.main:
        run.mkdir(parents=True, exist_ok=True)
        for stale in run.glob(".*.tmp"):  # left by a run killed mid-write; never a valid checkpoint
            stale.unlink(missing_ok=True)
    dev = torch.device(device or (f"cuda:{d.local_rank}" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed + d.rank)
    random.seed(cfg.seed + d.rank)
    np.random.seed(cfg.seed + d.rank)

    # model
    net_cfg = network_config(cfg)
    model: SST = build_model(net_cfg)
    if cfg.init_from:
        ckpt = load_checkpoint(cfg.init_from)
        load_into(model, ckpt, resample_scale=True)
        log(f"initialised from {cfg.init_from}")
    try:
        backend = resolve_backend(cfg.backend, dev, torch.bfloat16 if dev.type == "cuda" and cfg.bf16 else torch.float32,
                                  with_bias=net_cfg.get("attn_type", "RIB").lower() == "rpb")
    except BackendUnavailable as exc:
        raise SSTError(str(exc)) from None
    model.set_backend(backend).to(dev).train()
    ema = EMA(model, cfg.ema) if cfg.ema > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg))
    use_amp = dev.type == "cuda" and cfg.bf16
    start, best, history = 0, None, []
    if resume:
        state = load_latest(run, log)
        if state is None:
            log("no checkpoint to resume from; starting at iteration 0")
        else:
            model.load_state_dict(state["model"])
            if ema is not None and state.get("ema") is not None:
                ema.model.load_state_dict(state["ema"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
            start, best = int(state["iter"]), state.get("best_psnr")
            log(f"resumed from {Path(state['path']).name} at iteration {start}")
    train_model: nn.Module = model
    if d.world > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[d.local_rank] if dev.type == "cuda" else None)
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
    dataset = SRTrainSet(hr_files, cfg.scale, cfg.patch, cfg.seed, lr_files, cache=cfg.cache_images)
    per_step = cfg.batch * cfg.accum * d.world
    sampler = CounterSampler(start * per_step, d.rank, d.world)
    loader = DataLoader(dataset, batch_size=cfg.batch, sampler=sampler, num_workers=cfg.workers,
                        persistent_workers=cfg.workers > 0, pin_memory=dev.type == "cuda",
                        prefetch_factor=4 if cfg.workers > 0 else None)
    batches = iter(loader)

    metrics_file = run / "metrics.jsonl"
    tb = _tensorboard(run) if d.main else None

    def save(it: int) -> None:
        if not d.main:
            return
        state = {
            "iter": it, "model": model.state_dict(), "ema": ema.model.state_dict() if ema else None,
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": None, "rng": rng_state(),
            "sampler_position": it * per_step, "best_psnr": best, "config": to_dict(cfg), "network_g": net_cfg,
        }
        atomic_write(run / f"ckpt_{it:08d}.pt", lambda tmp: torch.save(state, tmp))
        for old in list_checkpoints(run)[cfg.keep_last:]:
            old.unlink(missing_ok=True)

    def exported() -> SST:
        return ema.model if (ema is not None and cfg.export_weights == "ema") else model

    val_sets = _load_val_sets(cfg) if (cfg.val_sets and d.main) else []
    t0, last_t, loss_acc, n_acc, loss_val = time.time(), time.time(), 0.0, 0, float("nan")
    it = start
    for it in range(start + 1, cfg.iters + 1):
        opt.zero_grad(set_to_none=True)
        for _ in range(cfg.accum):
            lr_img, hr_img = next(batches)
            lr_img, hr_img = lr_img.to(dev, non_blocking=True), hr_img.to(dev, non_blocking=True)
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
            ema.update(model)

        if it % cfg.log_every == 0 or it == cfg.iters:
            now = time.time()
            loss_val = loss_acc / max(1, n_acc)
            rate = n_acc / max(1e-9, now - last_t)
            rec = {"iter": it, "loss": loss_val, "lr": opt.param_groups[0]["lr"], "it_per_s": rate,
                   "eta_s": (cfg.iters - it) / max(rate, 1e-9), "elapsed_s": now - t0}
            loss_acc, n_acc, last_t = 0.0, 0, now
            if d.main:
                history.append(rec)
                with open(metrics_file, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                if tb:
                    tb.add_scalar("train/loss", rec["loss"], it)
                    tb.add_scalar("train/lr", rec["lr"], it)
                if progress:
                    progress(rec)
        if val_sets and (it % cfg.val_every == 0 or it == cfg.iters):
            scores = validate(exported(), val_sets, cfg.scale, dev)
            mean = float(np.mean([s["psnr_y"] for s in scores.values()]))
            rec = {"iter": it, "val": scores, "val_psnr_y": mean}
            history.append(rec)
            with open(metrics_file, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            if tb:
                tb.add_scalar("val/psnr_y", mean, it)
            log(f"iter {it}: validation " + ", ".join(f"{k} {v['psnr_y']:.3f} dB / {v['ssim_y']:.4f}" for k, v in scores.items()))
            if best is None or mean > best:
                best = mean
                export(exported(), run / "best.safetensors", cfg, it, mean)
        if it % cfg.ckpt_every == 0 or it == cfg.iters:
            save(it)
    out = None
    if d.main:
        out = export(exported(), run / "final.safetensors", cfg, it, best)
        sd = exported().state_dict()
        atomic_write(run / "final_basicsr.pth", lambda tmp: torch.save({"params_ema": sd}, tmp))
    if tb:
        tb.close()
    if d.world > 1:
        dist.barrier()
    return TrainResult(it, loss_val, best, run, out, report, history)


def export(model: SST, path: Path, cfg: TrainConfig, it: int, psnr: float | None) -> Path:
    meta = {"name": cfg.name or (cfg.model or "sst"), "iter": it, "val_psnr_y": psnr, "train_config": to_dict(cfg)}
    return save_checkpoint(path, model, meta, dtype=torch.float16 if cfg.export_fp16 else None)


def _tensorboard(run: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # noqa: BLE001 - tensorboard is an optional extra
        return None
    return SummaryWriter(str(run / "tb"))


# ------------------------------------------------------------------------------------- validation
def _load_val_sets(cfg: TrainConfig) -> dict[str, list[tuple[str, torch.Tensor, np.ndarray]]]:
    return {spec: val_pairs(spec, cfg.scale, cfg.val_root) for spec in cfg.val_sets}


def val_pairs(spec: str, scale: int, root: str) -> list[tuple[str, torch.Tensor, np.ndarray]]:
    """(name, LR float (3, h, w), mod-cropped HR uint8 (H, W, 3)) for a set in any layout `sst eval` reads,
    with the same shipped-or-generated LR rule."""
    from ..evaluation.datasets import discover, generate_lr, mod_crop, read_rgb_u8, resolve_dataset, to_tensor

    pairs = []
    for pair in discover(resolve_dataset(spec, root), scale).pairs:
        hr = mod_crop(read_rgb_u8(pair.hr)[0], scale)
        lr = read_rgb_u8(pair.lr)[0] if pair.lr is not None else generate_lr(hr, scale)
        pairs.append((pair.name, to_tensor(lr)[0], hr))
    return pairs


@torch.no_grad()
def validate(model: nn.Module, sets: dict[str, list[tuple[str, torch.Tensor, np.ndarray]]], scale: int,
             device: torch.device) -> dict[str, dict[str, float]]:
    """Mean Y-PSNR/SSIM per set with the eval code's conventions (quantise, border crop = scale)."""
    from ..evaluation.metrics import psnr, ssim
    from ..model.bicubic import quantize_uint8

    was_training = model.training
    model.eval()
    out = {}
    for name, pairs in sets.items():
        ps, ss = [], []
        for _, lr, hr in pairs:
            sr = model(lr.unsqueeze(0).to(device)).float().cpu()[0]
            sr_u8 = quantize_uint8(sr.clamp(0, 1).permute(1, 2, 0))
            ps.append(psnr(sr_u8, hr, scale))
            ss.append(ssim(sr_u8, hr, scale))
        out[name] = {"psnr_y": float(np.mean(ps)), "ssim_y": float(np.mean(ss))}
    model.train(was_training)
    return out
