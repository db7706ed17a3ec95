"""Where and how computation runs: devices, dtypes, memory, and process-wide settings.

The one home for dtype names, device resolution, free-memory queries and out-of-memory detection. Torch
is imported inside the functions that need it, so the CLI can import this module to validate names
without paying for torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

# "fp32" is IEEE float32 everywhere; "tf32" is float32 tensors with TF32 tensor-core matmuls and cuDNN
# convolutions (10-bit mantissa products): faster on Ampere and later, asked for by name only.
DTYPE_NAMES = ("fp32", "tf32", "bf16", "fp16")
# What runs the network in `sst upscale --runtime`: PyTorch itself, or its exported ONNX graph in ONNX Runtime or
# OpenVINO (CPU only; sst_cli.export.runner). "auto" is torch, or on the CPU the runtime runner.CPU_DEFAULT names.
RUNTIME_NAMES = ("torch", "onnxruntime", "openvino")

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit


# ------------------------------------------------------------------------------------ dtypes, devices
def torch_dtype(name: str) -> torch.dtype:
    """'fp32' | 'tf32' | 'bf16' | 'fp16' -> the torch dtype (tf32 tensors are float32: see :func:`set_tf32`)."""
    import torch

    return {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def dtype_name(dtype: torch.dtype) -> str:
    """The inverse of :func:`torch_dtype` for tensors: float32 is 'fp32' (see :func:`precision_name`)."""
    import torch

    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype).removeprefix("torch."))


def precision_name(dtype: torch.dtype, device: torch.device) -> str:
    """What a model in ``dtype`` on ``device`` computes in: 'tf32' for float32 on CUDA while TF32 is on."""
    name = dtype_name(dtype)
    return "tf32" if name == "fp32" and device.type == "cuda" and any(tf32_settings().values()) else name


def set_tf32(enabled: bool) -> None:
    """TF32 for float32 matmuls and cuDNN convolutions on (``--dtype tf32``) or off (IEEE fp32).

    PyTorch leaves cuDNN's TF32 on by default, so without this "fp32" convolutions would run in TF32. The
    new per-backend settings are used where this PyTorch has them: mixing them with the legacy
    ``allow_tf32`` flags makes PyTorch refuse to read either.
    """
    import torch

    mode = "tf32" if enabled else "ieee"
    matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and conv is not None and hasattr(conv, "fp32_precision"):
        matmul.fp32_precision = mode
        conv.fp32_precision = mode
    else:
        matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def tf32_settings() -> dict[str, bool]:
    """Whether float32 matmuls and cuDNN convolutions may use TF32 now: recorded in every result file."""
    import torch

    matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and conv is not None and hasattr(conv, "fp32_precision"):
        # "none" defers to the global setting (torch.backends.fp32_precision).
        global_tf32 = getattr(torch.backends, "fp32_precision", "ieee") == "tf32"
        return {"tf32_matmul": matmul.fp32_precision == "tf32" or (matmul.fp32_precision == "none" and global_tf32),
                "tf32_cudnn": conv.fp32_precision == "tf32"}
    return {"tf32_matmul": bool(matmul.allow_tf32), "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32)}


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda, then Apple's mps, then cpu; other names are checked against what is visible."""
    import torch

    from .errors import SSTError

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SSTError(f"'{device}' is not a device (use auto, cpu, cuda, cuda:N or mps).") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SSTError(f"device {device} was requested but no CUDA GPU is visible to PyTorch.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SSTError(f"device {device} does not exist ({torch.cuda.device_count()} CUDA GPU(s) visible).")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' -> bf16 (fp16 where bf16 is missing) on CUDA, fp32 elsewhere; names are checked.

    Also switches TF32 on for 'tf32' and off for everything else (:func:`set_tf32`), so fp32 is IEEE fp32.
    """
    import torch

    from .errors import SSTError

    if dtype in ("auto", *DTYPE_NAMES):
        set_tf32(dtype == "tf32")
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in DTYPE_NAMES:
        raise SSTError(f"unknown dtype '{dtype}' (use auto, {', '.join(DTYPE_NAMES)}).")
    if device.type == "cpu" and dtype == "fp16":
        raise SSTError("fp16 inference is not supported on CPU; use fp32 or bf16.")
    return torch_dtype(dtype)


def default_data_root() -> Path:
    """Where datasets are looked for unless told: $SST_DATA_ROOT, else ./datasets."""
    return Path(os.environ.get("SST_DATA_ROOT") or "datasets").expanduser()


# ------------------------------------------------------------------------------------------- memory
def free_memory(device: torch.device) -> int:
    """Bytes we may use: free CUDA memory, or MemAvailable on the CPU (Linux), else 4 GiB."""
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if hasattr(os, "sysconf"):
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return 4 << 30


_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def is_oom(exc: BaseException) -> bool:
    """CUDA out-of-memory (any flavour) or a failed CPU allocation."""
    if isinstance(exc, MemoryError):
        return True
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(s in msg for s in _OOM_TEXT)


# -------------------------------------------------------------------------------- process settings
def keep_freed_memory(retain_mb: int = 256) -> bool:
    """Let glibc keep freed blocks of up to 32 MB for reuse instead of handing them back to the OS.

    By default glibc unmaps large freed blocks and trims its heap, so every forward pass faults its
    activations' pages in afresh: one sst-light x4 pass at 256x256 took 1.3 million minor page faults
    (5 GB of fresh pages). With a fixed 32 MB mmap threshold and ``retain_mb`` of retained heap, the
    same pass takes a few thousand (numbers in benchmarks/RESULTS.md#cpu-inference). Only glibc has these knobs:
    elsewhere, or with ``SST_DEFAULT_MALLOC=1`` in the environment, nothing changes. Returns whether
    the setting was applied.

    It also asks MKL not to pool its work buffers (see :func:`release_blas_buffers`): MKL reads that
    once, when torch loads, so it takes effect only where torch is not imported yet, as in ``sst``
    commands; an explicit ``MKL_DISABLE_FAST_MM`` in the environment wins.
    """
    if os.environ.get("SST_DEFAULT_MALLOC") == "1":
        return False
    if "torch" not in sys.modules:
        os.environ.setdefault("MKL_DISABLE_FAST_MM", "1")
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
        return ok and libc.mallopt(_M_TRIM_THRESHOLD, retain_mb << 20) == 1
    except (OSError, AttributeError):
        return False


@functools.cache
def _mkl_free_buffers(scope: str = "") -> Callable[[], None] | None:
    """MKL's ``mkl_free_buffers`` (``scope="thread_"``: ``mkl_thread_free_buffers``, this thread's buffers
    only), where this PyTorch carries MKL and exports it; else None."""
    import torch

    if not torch.backends.mkl.is_available():
        return None
    lib = Path(torch.__file__).parent / "lib"
    # Linked statically into libtorch_cpu by the PyPI wheels (as mkl_serv_free_buffers); a torch built
    # against a shared MKL has it in the process under its public name.
    candidates = [(None, f"mkl_{scope}free_buffers")] + [
        (lib / name, f"mkl_serv_{scope}free_buffers") for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll")]
    for path, symbol in candidates:
        if path is not None and not path.is_file():
            continue
        try:
            fn = getattr(ctypes.CDLL(str(path) if path else None), symbol)
        except (OSError, AttributeError, TypeError):
            continue
        fn.restype, fn.argtypes = None, []
        return fn
    return None


def release_blas_buffers() -> None:
    """Hand MKL's pooled work buffers back to malloc.

    MKL keeps the packing buffers of its matrix products per thread and per shape, for reuse. PyTorch's
    CPU attention kernel calls it on blocks whose shapes change with the window size and head dim, so
    each new shape left ~4 MB per thread held for the life of the process: 25 MB after one sst-light
    forward at 64x64 (benchmarks/RESULTS.md#vs-official). Released after each attention call, the next call's
    buffers come from memory malloc already holds. A no-op without MKL, or with its pool switched off
    (:func:`keep_freed_memory`). Off the main thread (tiles running side by side) or with one intra-op
    thread, only this thread's buffers: other threads' may be in use.
    """
    import threading

    import torch

    alone = threading.current_thread() is threading.main_thread() and torch.get_num_threads() > 1
    fn = _mkl_free_buffers("" if alone else "thread_")
    if fn is not None:
        fn()


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """A context in which float32 products stay float32 even inside autocast (which would run matmuls and
    einsums in bf16/fp16): for the reference attention and RIB's position vectors. A no-op elsewhere."""
    import torch

    if device.type in ("cuda", "cpu") and torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()
