"""`sst profile` as a library: latency, peak memory and FLOPs of SST across backends, models, dtypes and devices.

How the figures are taken (so they can be trusted):

* Every configuration runs in a fresh worker process (``python -m sst_cli.profiling_worker``), so one
  configuration's memory never leaks into another's. Peak memory covers the timed passes (the peak is
  reset after the warm-up, so one-off first-pass costs stay out): on CPU it is the worker's peak RSS,
  Python and PyTorch included (``base_mem_mb`` is the RSS with the model and input loaded, before any
  pass); on CUDA it is ``max_memory_allocated`` (and ``max_memory_reserved``), weights and input included.
* Latency: ``warmup`` untimed passes, then ``repeat`` timed ones; median and p90. CUDA passes are timed
  with CUDA events and a synchronisation after each; CPU passes with ``time.perf_counter``, plus the
  process CPU time per pass (``cpu_ms_median``, summed over threads). On a shared machine other load
  inflates wall time far more than CPU time (only OpenMP threads spin-waiting for a descheduled peer add
  CPU time), so CPU time near threads x wall time means the figures were not disturbed.
* FLOPs: counted by ``torch.utils.flop_counter.FlopCounterMode`` on a meta-device copy of the model (no
  memory, no compute) whose attention runs the reference matmuls. Fused kernels are invisible to the
  counter (PyTorch's CPU flash SDPA counts 0 FLOPs and FlexAttention raises under it), so every backend
  is charged the same model FLOPs; softmax and elementwise work are not counted, and kernels that
  zero-pad head dims execute somewhat more than they are charged. ``attention_flops`` gives the
  attention share analytically (the tests check it against the counter).
* A configuration that cannot run gets a row whose ``status`` says why; the run continues.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from . import attention
from .errors import SSTError
from .model import SST, WindowAttention, build_model
from .zoo import SCALES, get_variant

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
BIASES = {"rib": "RIB", "rpb": "RPB", "none": "none"}
MODES = ("inference", "train")
RESULT_MARK = "SST_PROFILE_RESULT "  # prefix of the worker's one result line on stdout
MB = 2**20  # "MB" throughout means MiB, as torch.cuda memory figures are usually reported

# Dense (no sparsity) peak TFLOP/s from the vendors' spec sheets. Matched by substring of the CUDA device
# name, most specific first. fp32 is the plain (non-tensor-core) rate: PyTorch leaves TF32 matmul off.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}),
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "fp32": 51.0}),
    ("H100 NVL", {"bf16": 835.0, "fp16": 835.0, "fp32": 60.0}),
    ("H100", {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}),  # SXM ("H100 80GB HBM3")
    ("A100", {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5}),
    ("RTX 4090", {"bf16": 165.2, "fp16": 165.2, "fp32": 82.6}),
    ("A6000", {"bf16": 154.8, "fp16": 154.8, "fp32": 38.7}),
)
PEAK_SOURCE = "vendor spec sheets (NVIDIA datasheets), dense tensor-core rates; fp32 without TF32"
FLOPS_METHOD = (
    "torch.utils.flop_counter.FlopCounterMode on a meta-device copy with the reference (matmul) attention, "
    "so every backend is charged the same model FLOPs; fused attention kernels are invisible to the counter"
)

ROW_KEYS = (
    "model", "scale", "backend", "bias", "dtype", "device", "input_hw", "batch", "mode", "status",
    "latency_ms_median", "latency_ms_p90", "peak_mem_mb", "params", "flops", "tflops_per_s",
)


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
def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720) as (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise SSTError(f"--size must look like WIDTHxHEIGHT, e.g. 1280x720 (got '{text}').") from None
    if w <= 0 or h <= 0:
        raise SSTError(f"--size must be positive (got '{text}').")
    return w, h


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


def build_grid(
    models: list[str], scales: list[int], backends: list[str], biases: list[str], dtypes: list[str],
    devices: list[str], size: tuple[int, int] = (1280, 720), batch: int = 1, warmup: int = 3, repeat: int = 10,
    compile: bool = False, train: bool = False, patch: int = 64, timeout_s: float | None = None,
    threads: int | None = None,
) -> list[ProfileConfig]:
    """Every combination, grouped so that backends and biases of one model sit side by side.

    Names that are merely unavailable here (a CUDA-only backend on CPU) make status rows later; names
    that do not exist at all are user errors raised here.
    """
    for m in models:
        try:
            get_variant(m)
        except KeyError as exc:
            raise SSTError(str(exc.args[0]) + ".") from None
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
        if d not in DTYPES and d != "auto":
            raise SSTError(f"unknown dtype '{d}' (use auto, fp32, bf16 or fp16).")
    if threads is not None and threads < 1:
        raise SSTError("--threads must be at least 1.")
    if min(batch, repeat, patch) < 1 or warmup < 0:
        raise SSTError("--batch, --repeat and --patch must be at least 1 and --warmup at least 0.")
    w, h = size
    configs = []
    for dev in expand_devices(devices):
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
                                "train" if train else "inference", warmup, repeat, compile, timeout_s=timeout_s,
                                threads=threads,
                            ))
    return configs


# ------------------------------------------------------------------------------------ model and FLOPs
def network_for(config: ProfileConfig) -> dict[str, Any]:
    net = dict(config.network_g) if config.network_g else get_variant(config.model).network_g(config.scale)
    net["upscaling_factor"] = config.scale
    net["attn_type"] = BIASES[config.bias]
    return net


def build(config: ProfileConfig, device: torch.device | str = "cpu") -> SST:
    with torch.device(device):
        return build_model(network_for(config))


def attention_flops(model: SST, input_hw: tuple[int, int], batch: int = 1, train: bool = False) -> int:
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
    """Why ``config`` cannot run here (one sentence), or None. Cheap: no model is run."""
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
    reason = attention.unavailable_reason(config.backend, dev, DTYPES[config.dtype], with_bias=config.bias == "rpb")
    if reason is not None:
        return f"backend unavailable: {reason}"
    return None


# ------------------------------------------------------------------------------------ measurement
def _proc_status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _rss_mb() -> float | None:
    return _proc_status_mb("VmRSS")


def _peak_rss_mb() -> float:
    # VmHWM is this address space's own peak. ru_maxrss is not: after fork + exec it also remembers the
    # RSS of the forked copy of the parent, so a worker would report its parent's size.
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def failure_status(exc: BaseException) -> str:
    """The status for an exception raised while running a configuration."""
    text = str(exc)
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or any(
        s in text for s in ("out of memory", "not enough memory", "can't allocate memory", "Cannot allocate memory")
    ):
        return "out of memory"
    first = text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
    return f"failed: {type(exc).__name__}: {first}"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def measure(config: ProfileConfig) -> dict[str, Any]:
    """Run ``config`` in this process and return the measured part of its row.

    Meant for a fresh worker process (``run_config`` starts one); in a long-lived process the CPU peak
    RSS would include everything that ran before.
    """
    out: dict[str, Any] = {"status": "ok"}
    dev = torch.device(config.device)
    cuda = dev.type == "cuda"
    dtype = DTYPES[config.dtype]
    train = config.mode == "train"
    try:
        torch.manual_seed(0)
        if cuda:
            torch.cuda.set_device(dev)
            out["device_name"] = torch.cuda.get_device_name(dev)
        else:
            if config.threads:
                torch.set_num_threads(config.threads)
            out["device_name"] = _cpu_name()
            out["threads"] = torch.get_num_threads()
        model = build(config, dev).set_backend(config.backend)
        h, w = config.input_hw
        s = config.scale
        x = torch.rand(config.batch, 3, h, w, device=dev)
        if train:
            # Mixed precision as in training: fp32 master weights, autocast to the half dtype.
            model.train()
            target = torch.rand(config.batch, 3, h * s, w * s, device=dev)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            half = dtype != torch.float32
            scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
        else:
            model = model.eval().to(dtype)
            for p in model.parameters():
                p.requires_grad_(False)
            x = x.to(dtype)
        runner = torch.compile(model) if config.compile else model

        def step() -> None:
            if not train:
                with torch.inference_mode():
                    runner(x)
                return
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=dtype, enabled=half):
                loss = F.l1_loss(runner(x).float(), target)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        if not cuda:
            out["base_mem_mb"] = _rss_mb()
        # torch.compile compiles on the first call: never let that land in a timed pass.
        for _ in range(max(config.warmup, 1 if config.compile else 0)):
            step()
        # Peak memory is taken over the timed passes: the first pass's one-off costs (library code paged
        # in, compilation) stay out; what the warm-up left cached (allocator pools) stays in.
        if cuda:
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        else:
            out["mem_scope"] = "timed passes" if _reset_peak_rss() else "whole worker process"
        times: list[float] = []
        cpu_times: list[float] = []  # process CPU time (all threads): shows contention
        for _ in range(config.repeat):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                step()
                end.record()
                torch.cuda.synchronize(dev)
                times.append(start.elapsed_time(end))
            else:
                t0, c0 = time.perf_counter(), time.process_time()
                step()
                times.append((time.perf_counter() - t0) * 1000)
                cpu_times.append((time.process_time() - c0) * 1000)
        out["latencies_ms"] = [round(t, 3) for t in times]
        if cpu_times:
            out["cpu_ms_median"] = round(percentile(cpu_times, 50), 3)
        out["latency_ms_median"] = round(percentile(times, 50), 3)
        out["latency_ms_p90"] = round(percentile(times, 90), 3)
    except Exception as exc:  # noqa: BLE001 - any failure of one configuration becomes its status row
        out["status"] = failure_status(exc)
        if out["status"] == "out of memory":
            out["detail"] = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if cuda:
        out["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(dev) / MB, 1)
        out["peak_reserved_mb"] = round(torch.cuda.max_memory_reserved(dev) / MB, 1)
    else:
        out["peak_mem_mb"] = round(_peak_rss_mb(), 1)
    if out["status"] != "ok":
        # A partial figure from a failed run is no peak memory of the configuration; keep it aside.
        out["peak_mem_mb_at_failure"] = out.pop("peak_mem_mb")
        out.pop("latency_ms_median", None)
        out.pop("latency_ms_p90", None)
    return out


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    # The worker must import this very package, even when it is run from a source checkout.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_config(config: ProfileConfig, isolate: bool = True) -> dict[str, Any]:
    """The measured part of one row; ``isolate`` runs it in a fresh worker process (the default)."""
    if not isolate:
        return measure(config)
    cmd = [sys.executable, "-m", "sst_cli.profiling_worker"]
    try:
        proc = subprocess.run(cmd, input=config.to_json(), capture_output=True, text=True,
                              timeout=config.timeout_s, env=_worker_env())
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {config.timeout_s:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    if proc.returncode == -signal.SIGKILL:
        # Linux's OOM killer ends a process that overcommits memory with SIGKILL.
        return {"status": "out of memory", "detail": "the worker was killed by SIGKILL (usually the OOM killer)"}
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
    return {"status": f"failed: worker exited with code {proc.returncode}: {tail}"}


# -------------------------------------------------------------------------------------- environment
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_peak_tflops(device_name: str, dtype: str) -> float | None:
    for key, peaks in PEAK_TFLOPS:
        if key in device_name:
            return peaks.get(dtype)
    return None


def _package_versions() -> dict[str, str]:
    found = {}
    for dist in ("flash-attn", "flash_attn_3", "flash-attn-3", "flash-attn-cute", "triton"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def environment() -> dict[str, Any]:
    """Versions and hardware: enough to say what produced a set of figures."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu": _cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "gpus": [],
        "kernel_packages": _package_versions(),
        # Workers call runtime.keep_freed_memory(), as every `sst` command does.
        "malloc": "default" if os.environ.get("SST_DEFAULT_MALLOC") == "1" else "keep_freed_memory",
        "flops_method": FLOPS_METHOD,
        "peak_tflops_source": PEAK_SOURCE,
        "memory": "peak over the timed passes, in a fresh worker per configuration. CPU: peak RSS (Python and "
                  "PyTorch included); CUDA: max_memory_allocated, weights and input included; 1 MB = 2^20 bytes",
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            env["gpus"].append({"index": i, "name": p.name, "memory_mb": round(p.total_memory / MB),
                                "capability": f"{p.major}.{p.minor}"})
        env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    return env


# ------------------------------------------------------------------------------------------ paper
PAPER_GPU_NAMES = {"H200": "H200", "RTX 4090": "RTX4090", "A6000": "A6000"}
_ABLATION_ATTENTION = {"naive": "naive", "flex": "FlexAttention", "fa3": "FlashAttention3"}


def _paper_gpu(device_name: str | None) -> str:
    for key, paper_name in PAPER_GPU_NAMES.items():
        if device_name and key in device_name:
            return paper_name
    return "H200"  # the paper's main GPU; the closest reference for any other device


def paper_reference(row: dict[str, Any]) -> dict[str, Any] | None:
    """The paper's figure for the same model/scale/bias/backend, naming its GPU; None if it has none."""
    from .paper import table

    def num(v: str | None) -> float | None:
        try:
            return float(v) if v else None
        except ValueError:
            return None

    model, scale, mode = row["model"], int(row["scale"]), row["mode"]
    if row["bias"] == "rpb":
        name = _ABLATION_ATTENTION.get(row["backend"])
        for r in table("bias_ablation"):
            if r["attention"] == name and r["bias"] == "RPB":
                lat = num(r["train_sec_per_step"]) if mode == "train" else num(r["infer_latency_ms"])
                mem = num(r["train_memory_GB"]) if mode == "train" else num(r["infer_memory_MB"])
                return {"gpu": "H200", "table": "Table 4 (bias ablation)",
                        "latency_ms": lat * 1000 if lat is not None and mode == "train" else lat,
                        "mem_mb": mem * 1024 if mem is not None and mode == "train" else mem,
                        "note": "the paper's x2 ablation model (13.6M params), 1280x720 output"}
        return None
    if row["bias"] != "rib":
        return None
    if mode == "train":
        for r in table("costs_x2"):
            if r["method"] == model and scale == 2:
                return {"gpu": "H200", "table": "Table 1 (costs, x2)",
                        "latency_ms": num(r["train_sec_per_step"]) * 1000, "mem_mb": num(r["train_memory_GB"]) * 1024,
                        "note": f"train patch {r['train_patch']}; the paper does not state the batch"}
        return None
    gpu = _paper_gpu(row.get("device_name"))
    for r in table("inference_hd"):
        if r["method"] == model and int(r["scale"]) == scale and r["gpu"] == gpu:
            return {"gpu": gpu, "table": "Table S4 (inference)", "latency_ms": num(r["latency_ms"]),
                    "mem_mb": num(r["memory_MB"]),
                    "note": "1280x720 output" + (", OOM" if r["latency_ms"] == "OOM" else "")}
    return None


# ------------------------------------------------------------------------------------------ driver
def profile(
    configs: list[ProfileConfig], isolate: bool = True, compare_paper: bool = False,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[ProfileConfig], None] | None = None,
) -> dict[str, Any]:
    """Measure every configuration; returns ``{"environment": {...}, "rows": [...]}`` (the JSON shape)."""
    flops_cache: dict[tuple, tuple[int, int]] = {}
    rows = []
    for cfg in configs:
        if on_start:
            on_start(cfg)
        h, w = cfg.input_hw
        row: dict[str, Any] = {
            "model": cfg.model, "scale": cfg.scale, "backend": cfg.backend, "bias": cfg.bias, "dtype": cfg.dtype,
            "device": cfg.device, "input_hw": [h, w],
            "output_hw": [h * cfg.scale, w * cfg.scale], "batch": cfg.batch, "mode": cfg.mode,
            "status": "ok", "latency_ms_median": None, "latency_ms_p90": None, "peak_mem_mb": None,
            "params": None, "flops": None, "tflops_per_s": None,
        }
        key = (json.dumps(network_for(cfg), sort_keys=True), cfg.input_hw, cfg.batch, cfg.mode)
        if key not in flops_cache:
            flops_cache[key] = count_flops(cfg)
        row["params"], row["flops"] = flops_cache[key]
        row["attention_flops"] = attention_flops(build(cfg, "meta"), cfg.input_hw, cfg.batch, cfg.mode == "train")
        reason = precheck(cfg)
        if reason is not None:
            row["status"] = reason
        else:
            row.update(run_config(cfg, isolate))
        if row["status"] == "ok" and row["latency_ms_median"]:
            row["tflops_per_s"] = float(f"{row['flops'] / (row['latency_ms_median'] / 1000) / 1e12:.4g}")
            peak = device_peak_tflops(row.get("device_name") or "", cfg.dtype) if cfg.device != "cpu" else None
            if peak:
                row["device_peak_tflops"] = peak
                row["peak_fraction"] = float(f"{row['tflops_per_s'] / peak:.4g}")
        if compare_paper:
            row["paper"] = paper_reference(row)
        rows.append(row)
        if on_row:
            on_row(row)
    return {"environment": environment(), "rows": rows}


CSV_COLUMNS = ROW_KEYS + (
    "output_hw", "device_name", "cpu_ms_median", "base_mem_mb", "peak_reserved_mb", "attention_flops", "peak_fraction",
    "paper_gpu", "paper_latency_ms", "paper_mem_mb",
)


def csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows for CSV: sizes as 'HxW', the paper's figures as columns."""
    out = []
    for r in result["rows"]:
        flat = {k: r.get(k) for k in CSV_COLUMNS}
        for k in ("input_hw", "output_hw"):
            flat[k] = "x".join(map(str, r[k])) if r.get(k) else None
        paper = r.get("paper") or {}
        flat["paper_gpu"], flat["paper_latency_ms"], flat["paper_mem_mb"] = (
            paper.get("gpu"), paper.get("latency_ms"), paper.get("mem_mb"))
        out.append(flat)
    return out
