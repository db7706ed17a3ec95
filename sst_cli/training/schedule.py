"""The learning-rate schedule, and what a resume may change about it.

A checkpoint stores the scheduler's position, not its shape: the shape is recomputed from the config at
every start. Resuming with other settings would therefore reshape the schedule silently (a 300-iteration
cosine run resumed with ``iters: 400`` jumps back up), so :func:`resume_schedule` compares the run's
settings with the new ones and refuses any difference, unless the caller asks to ``extend`` the run: then
the new schedule continues from the learning rate the run had reached, and says so in one sentence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .config import TrainConfig, to_dict

# Settings that shape the schedule: --extend may change these (the new schedule starts at the current LR).
EXTENDABLE = ("iters", "milestones", "warmup", "scheduler", "min_lr", "gamma")
# Settings that define what a step is, or the rate the schedule is a multiple of: never changed by a resume.
FIXED = ("lr", "batch", "patch", "accum", "scale", "degradation")
_MISSING_MEANS = {"degradation": None}  # checkpoints older than the key were made with plain bicubic

Factor = Callable[[int], float]  # iteration -> multiple of the base learning rate (torch's LambdaLR)


def lr_factor(cfg: TrainConfig) -> Factor:
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


def extended_factor(cfg: TrainConfig, start: int, current: float) -> Factor:
    """The schedule of ``cfg`` continued from ``current`` (a multiple of ``cfg.lr``) at iteration ``start``:
    no second warm-up; cosine decays from there to ``min_lr`` at ``cfg.iters``; multistep keeps the rate and
    multiplies it by ``gamma`` at each milestone after ``start``."""
    floor = min(current, cfg.min_lr / cfg.lr)

    def f(it: int) -> float:
        if cfg.scheduler == "cosine":
            t = (it - start) / max(1, cfg.iters - start)
            return floor + (current - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, t))))
        return current * cfg.gamma ** sum(it >= m for m in cfg.milestones if m > start)

    return f


def describe(cfg: TrainConfig) -> str:
    """'AdamW at 0.001, warm-up 200, cosine to 1e-05' (one clause for the start banner)."""
    warm = f", warm-up {cfg.warmup}" if cfg.warmup else ""
    if cfg.scheduler == "cosine":
        return f"AdamW at {cfg.lr:g}{warm}, cosine to {cfg.min_lr:g}"
    steps = ", ".join(str(m) for m in cfg.milestones) or "none"
    return f"AdamW at {cfg.lr:g}{warm}, x{cfg.gamma:g} at iterations {steps}"


def _changes(saved: dict[str, Any], cfg: TrainConfig, keys: tuple[str, ...]) -> list[str]:
    new = to_dict(cfg)
    out = []
    for key in keys:
        if key not in saved and key not in _MISSING_MEANS:
            continue  # a setting older checkpoints did not record
        old = saved.get(key, _MISSING_MEANS.get(key))
        if old != new[key]:
            out.append(f"{key} {old} -> {new[key]}")
    return out


Extension = dict[str, Any]  # {"start": iteration, "factor": multiple of lr there}: stored in checkpoints


def schedule(cfg: TrainConfig, extension: Extension | None) -> Factor:
    """The schedule of a run: ``cfg``'s own, or its continuation after an ``--extend``."""
    return extended_factor(cfg, extension["start"], extension["factor"]) if extension else lr_factor(cfg)


def resume_schedule(state: dict[str, Any], cfg: TrainConfig, run: Path, extend: bool
                    ) -> tuple[Extension | None, str | None]:
    """How a resume from checkpoint ``state`` runs its schedule, and the sentence announcing an extension.

    The checkpoint holds the run's config (``config``; old ones may not), the scheduler's state (the rate
    reached) and an earlier extension (``lr_extension``), kept by later resumes. Differences are refused
    with a :class:`UsageError` naming them, except schedule settings under ``extend``.
    """
    saved, start, earlier = state.get("config"), int(state["iter"]), state.get("lr_extension")
    if saved is None:
        return earlier, None
    fixed = _changes(saved, cfg, FIXED)
    if fixed:
        raise UsageError(f"{run} was trained with other settings ({'; '.join(fixed)}), which a resume cannot "
                         "change; resume with the run's own values, or start a new run from its weights with "
                         "--set init_from=CHECKPOINT.")
    shaped = _changes(saved, cfg, EXTENDABLE)
    if not shaped:
        return earlier, None
    if not extend:
        raise UsageError(f"{run} was trained with another schedule ({'; '.join(shaped)}); resume with the run's "
                         "own values, or add --extend to continue from the current learning rate with the new one.")
    if cfg.iters < start:
        raise UsageError(f"--extend to iters {cfg.iters} would end before iteration {start}, where {run} stands.")
    sched = state["scheduler"]
    current = sched["_last_lr"][0] / sched["base_lrs"][0]
    now = current * cfg.lr
    if cfg.scheduler == "cosine":
        shape = f"cosine down to {min(now, cfg.min_lr):.3g} at iteration {cfg.iters}"
    else:
        later = [str(m) for m in cfg.milestones if start < m <= cfg.iters]
        shape = f"x{cfg.gamma:g} at iterations {', '.join(later)}" if later else "constant"
        shape += f" until iteration {cfg.iters}"
    message = (f"extending the run ({'; '.join(shaped)}): the learning rate continues from {now:.3g} at "
               f"iteration {start}, {shape}.")
    return {"start": start, "factor": current}, message
