"""Training configuration: one flat dataclass, read from YAML, overridable with ``--set key=value``.

Types, ranges and choices are declared on the fields and checked by pydantic; a bad value ends in one
sentence naming the key and exits 2 (a usage error), before torch is imported. Keys a config file leaves out take the paper's recipe (the field defaults);
``sst train`` with no config file starts from ``defaults.QUICK_START`` instead.

Relative paths inside a config file (``train_hr``, ``train_lr``, ``val_root``, ``init_from``, and
``val_sets`` entries that contain a ``/``) are relative to the folder of that file, so a run does not
depend on where it is started; paths given with ``--set`` or ``--data`` are relative to the working
directory, as on any command line. ``val_root`` defaults to ``$SST_DATA_ROOT``, else ``./datasets``
(as ``sst eval --data-root``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass

from ..errors import UsageError
from ..runtime import default_data_root
from .defaults import QUICK_START
from .degrade import DegradationMix


def _listify(value: Any) -> Any:
    """A single value where a list is expected (``--set train_hr=DIR``) is a list of one."""
    return [value] if isinstance(value, (str, int, float)) else value


def _mix(value: Any) -> Any:
    """``degradation: mixed`` is the documented mix; ``none``/``bicubic`` is MATLAB bicubic alone."""
    if isinstance(value, str):
        if value.lower() == "mixed":
            return DegradationMix()
        if value.lower() in ("none", "bicubic", "matlab"):
            return None
        raise ValueError("must be 'mixed', 'bicubic' or a mapping of the mix's settings (README: Degradations)")
    return value


Paths = Annotated[list[str], BeforeValidator(_listify)]
Floats = Annotated[list[float], BeforeValidator(_listify)]
Ints = Annotated[list[int], BeforeValidator(_listify)]
AtLeast1 = Annotated[int, Field(ge=1)]


@dataclass(config=ConfigDict(extra="forbid"))
class TrainConfig:
    # model: a registry variant, or explicit official keywords (network overrides the variant's)
    model: str | None = "sst-light"
    network: dict[str, Any] | None = None
    scale: Literal[1, 2, 3, 4, 8] = 2
    init_from: str | None = None  # any checkpoint the core loads; another scale's upsampler is re-sampled
    # data
    train_hr: Paths = dataclasses.field(default_factory=list)  # HR folders (LR made on the fly by MATLAB bicubic)
    train_lr: Paths | None = None  # paired LR folders (same stems as train_hr), optional
    patch: AtLeast1 = 64  # LR patch side; HR crop is patch * scale
    batch: AtLeast1 = 16  # per process
    workers: Annotated[int, Field(ge=0)] = 2
    cache_images: bool = False  # keep decoded HR images in RAM (small data sets)
    # how LR is made from HR: None = MATLAB bicubic (the benchmarks' and the paper's); 'mixed' = degrade.py's mix
    degradation: Annotated[DegradationMix | None, BeforeValidator(_mix)] = None
    val_sets: Paths = dataclasses.field(default_factory=list)  # names or paths, any layout `sst eval` accepts
    val_root: str = dataclasses.field(default_factory=lambda: str(default_data_root()))
    val_every: AtLeast1 = 5000
    # optimisation (the paper's recipe by default)
    iters: AtLeast1 = 500_000
    lr: float = 5e-4
    betas: Floats = dataclasses.field(default_factory=lambda: [0.9, 0.9])
    weight_decay: float = 0.0
    warmup: Annotated[int, Field(ge=0)] = 20_000
    scheduler: Literal["multistep", "cosine"] = "multistep"
    milestones: Ints = dataclasses.field(default_factory=lambda: [250_000, 400_000, 450_000, 475_000, 490_000])
    gamma: float = 0.5
    min_lr: float = 1e-7  # cosine floor
    ema: Annotated[float, Field(ge=0, lt=1)] = 0.999  # 0 disables
    grad_clip: float | None = None
    accum: AtLeast1 = 1
    bf16: bool = True  # autocast on CUDA (ignored on CPU)
    tf32: bool = False  # TF32 for the float32 matmuls and convolutions on CUDA; off means IEEE fp32
    compile: bool = False
    seed: int = 0
    backend: str = "auto"
    # bookkeeping
    log_every: AtLeast1 = 100
    ckpt_every: AtLeast1 = 5000
    keep_last: AtLeast1 = 3
    export_fp16: bool = False
    export_weights: Literal["ema", "model"] = "ema"  # which weights final/best exports hold (EMA lags in short runs)
    name: str = ""  # recorded in exported weights


_PATH_KEYS = ("train_hr", "train_lr", "val_root", "init_from")
_PHRASES = {  # pydantic error type -> what the key must be
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list", "dict_type": "a mapping",
}


def _sentence(err: dict[str, Any]) -> str:
    """One pydantic error -> "config key 'batch' must be an integer (got 'big')."."""
    # Nested keys joined with dots; list positions and pydantic's "[key]" marker left out.
    key = ".".join(part for part in err["loc"] if isinstance(part, str) and part != "[key]") or "?"
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind in _PHRASES:
        what = f"must be {_PHRASES[kind]}"
    elif kind == "literal_error":
        what = f"must be {ctx['expected']}"
    elif kind == "unexpected_keyword_argument":
        what = "is not a setting there"
    elif kind in ("greater_than_equal", "greater_than", "less_than", "less_than_equal"):
        what = err["msg"].replace("Input should be", "must be")
    else:
        msg = err["msg"].removeprefix("Value error, ")  # pydantic's framing, not ours
        what = msg if msg.startswith(("must", "is ")) else f"is wrong: {msg[0].lower() + msg[1:] if msg[1:2].islower() else msg}"
    return f"config key '{key}' {what} (got {err['input']!r})."


# BasicSR's names for what our keys mean, so a BasicSR user's habit gets a pointer rather than a list.
_BASICSR_NAMES = {"total_iter": "iters", "niter": "iters", "batch_size_per_gpu": "batch", "batch_size": "batch",
                  "gt_size": "patch (in LR pixels: gt_size / scale)", "num_worker_per_gpu": "workers",
                  "manual_seed": "seed", "ema_decay": "ema", "save_checkpoint_freq": "ckpt_every",
                  "val_freq": "val_every", "print_freq": "log_every", "pretrain_network_g": "init_from",
                  "network_g": "network", "dataroot_gt": "train_hr", "dataroot_lq": "train_lr"}


# Top-level sections of a BasicSR options file; sst's config is one flat mapping.
_BASICSR_SECTIONS = {"datasets", "train", "path", "val", "logger", "dist_params", "network_g"}


def _did_you_mean(key: str, known: list[str]) -> str:
    if key in _BASICSR_NAMES:
        return f"{key} (BasicSR's name; here: {_BASICSR_NAMES[key]})"
    close = difflib.get_close_matches(key.lower(), known, n=1)
    return f"{key} (did you mean {close[0]}?)" if close else key


def from_dict(data: dict[str, Any]) -> TrainConfig:
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(data) - set(known))
    nested = sorted(k for k in unknown if k in _BASICSR_SECTIONS and isinstance(data[k], dict))
    if len(nested) >= 2:
        mapping = ", ".join(f"{k} -> {v}" for k, v in _BASICSR_NAMES.items() if k not in ("niter", "batch_size"))
        raise UsageError(f"this looks like a BasicSR options file (sections {', '.join(nested)}); sst's config is "
                       f"one flat mapping (see configs/), with BasicSR's keys named {mapping}.")
    if unknown:
        named = ", ".join(_did_you_mean(k, known) for k in unknown)
        raise UsageError(f"unknown config key(s): {named}; the keys are {', '.join(sorted(known))}.")
    try:
        cfg = TrainConfig(**data)
    except ValidationError as exc:
        raise UsageError(_sentence(exc.errors()[0])) from None
    if cfg.degradation is not None and cfg.train_lr:
        raise UsageError("'degradation' makes LR from HR; it cannot be combined with paired LR folders (train_lr).")
    if cfg.model is None and cfg.network is None:
        raise UsageError("the config needs 'model' (a variant name) or 'network' (official keywords).")
    return cfg


def parse_override(item: str) -> tuple[str, Any]:
    """'lr=1e-4' -> ('lr', 0.0001); values are parsed as YAML."""
    if "=" not in item:
        raise UsageError(f"--set takes key=value (got {item!r}).")
    key, raw = item.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def _relative_to(folder: Path, value: Any) -> Any:
    """A path from a config file, made relative to the file's folder (absolute paths and URLs kept)."""
    if not isinstance(value, str) or "://" in value:
        return value
    path = Path(value).expanduser()
    return str(path) if path.is_absolute() else os.path.normpath(folder / path)


def resolve_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The path keys of a config file's ``data``, resolved against ``folder`` (see the module docstring)."""
    out = dict(data)
    for key in _PATH_KEYS:
        if isinstance(out.get(key), list):
            out[key] = [_relative_to(folder, v) for v in out[key]]
        elif key in out:
            out[key] = _relative_to(folder, out[key])
    sets = out.get("val_sets")
    if sets is not None:  # a bare name is a benchmark or a folder under val_root; with a '/', a path
        out["val_sets"] = [_relative_to(folder, v) if isinstance(v, str) and "/" in v else v
                           for v in _listify(sets)]
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                values: dict[str, Any] | None = None) -> TrainConfig:
    """The config in ``path`` (or ``QUICK_START`` when None), then ``key=value`` overrides, then ``values``
    (already parsed, e.g. ``--data``)."""
    data: dict[str, Any] = dict(QUICK_START)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"config file {p} does not exist.")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"config file {p} is not valid YAML ({str(exc).splitlines()[0]}).") from None
        if not isinstance(data, dict):
            raise UsageError(f"config file {p} must hold a mapping of keys to values.")
        data = resolve_paths(data, p.resolve().parent)
    for item in overrides or []:
        k, v = parse_override(item)
        data[k] = v
    return from_dict({**data, **(values or {})})


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
