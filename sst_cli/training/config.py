"""Training configuration: one flat dataclass, read from YAML, overridable with ``--set key=value``."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import SSTError


@dataclass
class TrainConfig:
    # model: a registry variant, or explicit official keywords (network overrides the variant's)
    model: str | None = "sst-light"
    network: dict[str, Any] | None = None
    scale: int = 2
    init_from: str | None = None  # any checkpoint the core loads; another scale's upsampler is re-sampled
    # data
    train_hr: list[str] = field(default_factory=list)  # HR folders (LR made on the fly by MATLAB bicubic)
    train_lr: list[str] | None = None  # paired LR folders (same stems as train_hr), optional
    patch: int = 64  # LR patch side; HR crop is patch * scale
    batch: int = 16  # per process
    workers: int = 2
    cache_images: bool = False  # keep decoded HR images in RAM (small data sets)
    val_sets: list[str] = field(default_factory=list)  # names or paths, any layout `sst eval` accepts
    val_root: str = "datasets"
    val_every: int = 5000
    # optimisation (the paper's recipe by default)
    iters: int = 500_000
    lr: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.9])
    weight_decay: float = 0.0
    warmup: int = 20_000
    scheduler: str = "multistep"  # multistep | cosine
    milestones: list[int] = field(default_factory=lambda: [250_000, 400_000, 450_000, 475_000, 490_000])
    gamma: float = 0.5
    min_lr: float = 1e-7  # cosine floor
    ema: float = 0.999  # 0 disables
    grad_clip: float | None = None
    accum: int = 1
    bf16: bool = True  # autocast on CUDA (ignored on CPU)
    compile: bool = False
    seed: int = 0
    backend: str = "auto"
    # bookkeeping
    log_every: int = 100
    ckpt_every: int = 5000
    keep_last: int = 3
    export_fp16: bool = False
    export_weights: str = "ema"  # ema | model: which weights final/best exports hold (EMA lags in short runs)
    name: str = ""  # recorded in exported weights


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """Validate (and gently coerce) one value against its annotation."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(key, value, a)
            except SSTError as exc:
                errors.append(str(exc))
        raise SSTError(errors[0] if errors else f"config key '{key}' has the wrong type.")
    if origin is list:
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, list):
            raise SSTError(f"config key '{key}' must be a list (got {type(value).__name__}).")
        return [_check_type(key, v, args[0]) for v in value] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise SSTError(f"config key '{key}' must be a mapping (got {type(value).__name__}).")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise SSTError(f"config key '{key}' must be true or false (got {value!r}).")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise SSTError(f"config key '{key}' must be an integer (got {value!r}).")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SSTError(f"config key '{key}' must be a number (got {value!r}).")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SSTError(f"config key '{key}' must be a string (got {value!r}).")
        return value
    return value


def from_dict(data: dict[str, Any]) -> TrainConfig:
    hints = typing.get_type_hints(TrainConfig)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SSTError(f"unknown config key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))}).")
    cfg = TrainConfig(**{k: _check_type(k, v, hints[k]) for k, v in data.items()})
    if cfg.scheduler not in ("multistep", "cosine"):
        raise SSTError(f"config key 'scheduler' must be multistep or cosine (got {cfg.scheduler!r}).")
    if cfg.export_weights not in ("ema", "model"):
        raise SSTError(f"config key 'export_weights' must be ema or model (got {cfg.export_weights!r}).")
    if cfg.scale not in (1, 2, 3, 4, 8):
        raise SSTError(f"config key 'scale' must be 2, 3 or 4 (got {cfg.scale}).")
    if cfg.model is None and cfg.network is None:
        raise SSTError("the config needs 'model' (a variant name) or 'network' (official keywords).")
    for key in ("patch", "batch", "iters", "accum", "ckpt_every", "log_every", "keep_last"):
        if getattr(cfg, key) < 1:
            raise SSTError(f"config key '{key}' must be at least 1.")
    return cfg


def parse_override(item: str) -> tuple[str, Any]:
    """'lr=1e-4' -> ('lr', 0.0001); values are parsed as YAML."""
    if "=" not in item:
        raise SSTError(f"--set takes key=value (got {item!r}).")
    key, raw = item.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise SSTError(f"config file {p} does not exist.")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SSTError(f"config file {p} is not valid YAML ({str(exc).splitlines()[0]}).") from None
        if not isinstance(data, dict):
            raise SSTError(f"config file {p} must hold a mapping of keys to values.")
    for item in overrides or []:
        k, v = parse_override(item)
        data[k] = v
    return from_dict(data)


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
