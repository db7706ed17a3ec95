"""The configuration grid of ``sst profile``: one ``ProfileConfig`` per measured point, FLOPs, prechecks."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import SSTError
from ..model import attention
from ..model.archs import build_model, config_of, network_cost
from ..model.archs.sst.network import WindowAttention
from ..model.registry import SCALES, get_variant
from ..runtime import DTYPE_NAMES, torch_dtype

BIASES = ("rib", "rpb", "none")
MODES = ("inference", "train")

# Defaults that keep a CPU run to seconds, not minutes: the output size (w, h) (the paper's 1280x720 on a GPU;
# 256x256 at x4 is a 64x64 input, the largest window of sst-light, below which padding saves nothing) and the
# (warm-up, timed) passes (a GPU's first passes autotune kernels; a CPU's only page the code in).
PAPER_SIZE = (1280, 720)
CPU_SIZE = (256, 256)
GPU_PASSES = (3, 10)
CPU_PASSES = (1, 5)


@dataclass(frozen=True)
class ProfileConfig:
    """One point of the grid. ``input_hw`` is the LR input (the training patch with mode="train")."""

    model: str
    scale: int
    backend: str
    bias: str
    dtype: str
    device: str
    input_hw: tuple[int, int]
    batch: int = 1
    mode: str = "inference"
    warmup: int = 3
    repeat: int = 10
    compile: bool = False
    network_g: dict[str, Any] | None = field(default=None, compare=False)  # overrides the zoo (tests)
    timeout_s: float | None = None
    threads: int | None = None  # CPU threads in the worker (torch.set_num_threads); None = PyTorch's default

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @staticmethod
    def from_json(text: str) -> ProfileConfig:
        d = json.loads(text)
        d["input_hw"] = tuple(d["input_hw"])
        return ProfileConfig(**d)


# ----------------------------------------------------------------------------------------------- grid
def expand_devices(devices: Iterable[str]) -> list[str]:
    """'all' becomes every visible CUDA GPU; other names pass through (checked per row)."""
    out: list[str] = []
    for d in devices:
        if d == "all":
            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if n == 0:
                raise SSTError("--device all profiles every visible CUDA GPU, and none is visible; use --device cpu.")
            out += [f"cuda:{i}" for i in range(n)]
        elif d == "auto":
            out.append("cuda:0" if torch.cuda.is_available() else "cpu")
        else:
            try:
                torch.device(d)
            except RuntimeError:
                raise SSTError(f"'{d}' is not a device (use cpu, cuda, cuda:N or all).") from None
            out.append("cuda:0" if d == "cuda" else d)
    return list(dict.fromkeys(out))


def default_size(device: str) -> tuple[int, int]:
    """The output size (w, h) profiled on ``device`` when none is given."""
    return CPU_SIZE if device == "cpu" else PAPER_SIZE


def default_passes(device: str) -> tuple[int, int]:
    """(warm-up, timed) passes on ``device`` when none are given."""
    return CPU_PASSES if device == "cpu" else GPU_PASSES


def build_grid(
    models: list[str], scales: list[int], backends: list[str], biases: list[str], dtypes: list[str],
    devices: list[str], size: tuple[int, int] | None = None, batch: int = 1, warmup: int | None = None, repeat: int | None = None,
    compile: bool = False, train: bool = False, patch: int = 64, timeout_s: float | None = None,
    threads: int | None = None,
) -> list[ProfileConfig]:
    """Every combination, grouped so that backends and biases of one model sit side by side.

    ``size`` is the output (w, h); None takes :func:`default_size` per device, as ``warmup``/``repeat`` take
    :func:`default_passes`. Names that are merely unavailable here (a CUDA-only backend on CPU) make status
    rows later; names that do not exist at all are user errors raised here.
    """
    for m in models:
        try:
            variant = get_variant(m)
        except KeyError as exc:
            raise SSTError(str(exc.args[0]) + ".") from None
        if not set(scales) <= set(variant.scales):
            raise SSTError(f"{variant.name} is built at {', '.join(f'x{s}' for s in variant.scales)} only; "
                           f"pass --scale {variant.scales[0]}.")
    for s in scales:
        if s not in SCALES:
            raise SSTError(f"--scale must be one of {', '.join(map(str, SCALES))} (got {s}).")
    for b in backends:
        if b not in attention.BACKENDS:
            raise SSTError(f"unknown attention backend '{b}' (choose from: {', '.join(attention.BACKENDS)}).")
    for b in biases:
        if b not in BIASES:
            raise SSTError(f"unknown --bias '{b}' (choose from: rib, rpb, none).")
    for d in dtypes:
        if d not in DTYPE_NAMES and d != "auto":
            raise SSTError(f"unknown dtype '{d}' (use auto, {', '.join(DTYPE_NAMES)}).")
    if threads is not None and threads < 1:
        raise SSTError("--threads must be at least 1.")
    if min(batch, repeat or 1, patch) < 1 or (warmup or 0) < 0:
        raise SSTError("--batch, --repeat and --patch must be at least 1 and --warmup at least 0.")
    configs = []
    for dev in expand_devices(devices):
        w, h = size or default_size(dev)
        dw, dr = default_passes(dev)
        passes = (dw if warmup is None else warmup, dr if repeat is None else repeat)
        for m in models:
            for s in scales:
                input_hw = (patch, patch) if train else (h // s, w // s)
                if min(input_hw) < 1:
                    raise SSTError(f"--size {w}x{h} is smaller than one input pixel at x{s}.")
                for d in dtypes:
                    dt = d if d != "auto" else ("bf16" if dev.startswith("cuda") else "fp32")
                    for b in biases:
                        for be in backends:
                            configs.append(ProfileConfig(
                                get_variant(m).name, s, be, b, dt, dev, input_hw, batch,
                                "train" if train else "inference", *passes, compile, timeout_s=timeout_s,
                                threads=threads,
                            ))
    return configs


# ------------------------------------------------------------------------------------ model and FLOPs
def network_for(config: ProfileConfig) -> dict[str, Any]:
    net = dict(config.network_g) if config.network_g else get_variant(config.model).network_g(config.scale)
    return config_of(net).at_scale(config.scale).with_bias(config.bias).to_network_g()


def padded_hw(config: ProfileConfig) -> tuple[int, int]:
    """The (h, w) the largest attention window works on: each layer pads the input up to a multiple of its
    window, so a small input costs what this size costs."""
    window = network_cost(network_for(config)).window
    h, w = config.input_hw
    return -(-h // window) * window, -(-w // window) * window


def build(config: ProfileConfig, device: torch.device | str = "cpu") -> torch.nn.Module:
    with torch.device(device):
        net = build_model(network_for(config))
    return net.sampler() if hasattr(net, "sampler") else net  # sampled from noise (sst-real): as upscale runs it


def attention_flops(model: torch.nn.Module, input_hw: tuple[int, int], batch: int = 1, train: bool = False) -> int:
    """Analytic FLOPs of the attention matmuls (q·kᵀ and p·v, 2 FLOPs per multiply-add).

    Each layer pads the image to a multiple of its window; q and k carry d + r channels with RIB.
    A training step adds the backward pass: two matmuls per forward matmul.
    """
    h, w = input_hw
    total = 0
    for m in model.modules():
        if isinstance(m, WindowAttention):
            ws = m.window
            windows = math.ceil(h / ws) * math.ceil(w / ws)
            n = ws * ws
            d_qk = m.head_dim + (m.rank if m.bias == "rib" else 0)
            total += 2 * batch * windows * m.heads * n * n * (d_qk + m.head_dim)
    return total * (3 if train else 1)


def count_flops(config: ProfileConfig) -> tuple[int, int]:
    """(params, FLOPs of one pass) for ``config``, on the meta device: costs no memory and no compute."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build(config, "meta").set_backend("naive")
    params = sum(p.numel() for p in model.parameters())
    h, w = config.input_hw
    x = torch.empty(config.batch, 3, h, w, device="meta")
    with FlopCounterMode(display=False) as counter:
        if config.mode == "train":
            y = model(x)
            F.l1_loss(y, torch.empty_like(y)).backward()
        else:
            with torch.no_grad():
                model(x)
    return params, int(counter.get_total_flops())


# ------------------------------------------------------------------------------------- prechecks
def precheck(config: ProfileConfig) -> str | None:
    """Why ``config`` cannot run here (one sentence), or None. Cheap, and runs no kernel: the measuring
    worker probes the backend itself (:func:`~sst_cli.profiling.measure.measure`), so this process keeps no
    CUDA context or compiled kernel on the GPUs it profiles."""
    dev = torch.device(config.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return f"device unavailable: no CUDA GPU is visible to PyTorch ({config.device} requested)."
        if (dev.index or 0) >= torch.cuda.device_count():
            return f"device unavailable: {config.device} does not exist ({torch.cuda.device_count()} GPU(s) visible)."
    elif dev.type != "cpu":
        return f"device unavailable: sst profiles cpu and cuda devices only ({config.device} requested)."
    if dev.type == "cpu" and config.dtype == "fp16":
        return "dtype unsupported: fp16 is not supported on CPU (use fp32 or bf16)."
    if dev.type == "cuda" and config.dtype == "bf16" and not torch.cuda.is_bf16_supported():
        return f"dtype unsupported: {torch.cuda.get_device_name(dev)} has no bf16 support (use fp16)."
    if config.bias == "rpb" and config.backend not in attention.BIAS_BACKENDS:
        return (f"bias unsupported by backend: {config.backend} takes no additive logit bias, so rpb cannot run on it "
                f"(rpb runs with {', '.join(attention.BIAS_BACKENDS)}).")
    reason = attention.unavailable_reason(config.backend, dev, torch_dtype(config.dtype), with_bias=config.bias == "rpb",
                                          run_kernel=False)
    if reason is not None:
        return f"backend unavailable: {reason}"
    return None


