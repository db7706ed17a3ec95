"""`sst profile` as a library: latency, peak memory and FLOPs of SST across backends, models, dtypes and devices.

How the figures are taken (so they can be trusted):

* Every configuration runs in a fresh worker process (``python -m sst_cli.profiling.worker``), so one
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
* A configuration that cannot run gets a row whose ``status`` says why; the run continues. The parent
  checks what needs no kernel (device, dtype, bias, package installed); the worker runs the backend once
  on tiny tensors first (and back through it for a training step), so the parent never holds a CUDA
  context or compiled kernels on a profiled GPU.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from ..model.attention import unavailable_reason
from ..model.registry import KERNEL_DISTRIBUTIONS
from ..runtime import is_oom, set_tf32, tf32_settings, torch_dtype
from .grid import ProfileConfig, build
from .schema import SCHEMA_VERSION

RESULT_MARK = "SST_PROFILE_RESULT "  # prefix of the worker's one result line on stdout
MB = 2**20  # "MB" throughout means MiB, as torch.cuda memory figures are usually reported

# Dense (no sparsity) peak TFLOP/s from the vendors' spec sheets. Matched by substring of the CUDA device
# name, most specific first. fp32 is the plain (non-tensor-core) rate: PyTorch leaves TF32 matmul off.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"bf16": 989.0, "fp16": 989.0, "tf32": 494.7, "fp32": 67.0}),
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.0}),
    ("H100 NVL", {"bf16": 835.0, "fp16": 835.0, "tf32": 417.5, "fp32": 60.0}),
    ("H100", {"bf16": 989.0, "fp16": 989.0, "tf32": 494.7, "fp32": 67.0}),  # SXM ("H100 80GB HBM3")
    ("A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    ("RTX 4090", {"bf16": 165.2, "fp16": 165.2, "tf32": 82.6, "fp32": 82.6}),
    ("A6000", {"bf16": 154.8, "fp16": 154.8, "tf32": 77.4, "fp32": 38.7}),
)
PEAK_SOURCE = "vendor spec sheets (NVIDIA datasheets), dense tensor-core rates; fp32 without TF32, tf32 with it"
FLOPS_METHOD = (
    "torch.utils.flop_counter.FlopCounterMode on a meta-device copy with the reference (matmul) attention, "
    "so every backend is charged the same model FLOPs; fused attention kernels are invisible to the counter"
)

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
    try:
        import resource
    except ImportError:  # Windows: neither /proc nor resource
        return float("nan")

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
    if is_oom(exc) or "not enough memory" in str(exc):
        return "out of memory"
    text = str(exc).strip()
    first = text.splitlines()[0][:200] if text else type(exc).__name__
    return f"failed: {type(exc).__name__}: {first}"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    return float(np.percentile(values, q))


def measure(config: ProfileConfig) -> dict[str, Any]:
    """Run ``config`` in this process and return the measured part of its row.

    Meant for a fresh worker process (``run_config`` starts one); in a long-lived process the CPU peak
    RSS would include everything that ran before.
    """
    out: dict[str, Any] = {"status": "ok"}
    dev = torch.device(config.device)
    cuda = dev.type == "cuda"
    dtype = torch_dtype(config.dtype)
    set_tf32(config.dtype == "tf32")  # fp32 is IEEE fp32 (cuDNN would otherwise convolve in TF32)
    out.update(tf32_settings())
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
        reason = unavailable_reason(config.backend, dev, dtype, with_bias=config.bias == "rpb", backward=train)
        if reason is not None:  # a refusal, not a failure: no partial figures to keep aside
            return {**out, "status": f"backend unavailable: {reason}"}
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
        # torch.compile (and flex's compiled kernel on CUDA) compiles on the first call: reported on its
        # own as first_call_ms, never inside a timed pass.
        for i in range(max(config.warmup, 1 if config.compile or config.backend == "flex" else 0)):
            t0 = time.perf_counter()
            step()
            if i == 0:
                if cuda:
                    torch.cuda.synchronize(dev)
                out["first_call_ms"] = round((time.perf_counter() - t0) * 1000, 3)
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
    cmd = [sys.executable, "-m", "sst_cli.profiling.worker"]
    try:
        proc = subprocess.run(cmd, input=config.to_json(), capture_output=True, text=True,
                              timeout=config.timeout_s, env=_worker_env())
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {config.timeout_s:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    if proc.returncode == -getattr(signal, "SIGKILL", 9):
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
    for dist in KERNEL_DISTRIBUTIONS:  # importlib.metadata matches names with - or _ alike
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def environment() -> dict[str, Any]:
    """Versions and hardware: enough to say what produced a set of figures."""
    env: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "sst": __version__,
        "host": platform.node(),
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
    # The parent's settings; each row records its own worker's (tf32_matmul, tf32_cudnn).
    env.update(tf32_settings())
    return env


