"""Attention backends behind one narrow signature.

:func:`attend` computes ``softmax(scale * q k^T + pos_q pos_k^T + bias) v`` in the (B, H, N, D) layout.
``pos_q``/``pos_k`` are RIB's low-rank position vectors, shared by every batch entry (window). By
default they are concatenated to q and k, the form every fused kernel runs (the paper's point); a
backend may instead supply a ``run_rib`` that handles them its own way (see ``_sdpa_rib_cpu``).
Backends' ``run`` functions see scale 1 (q pre-scaled) and may get a ``v`` narrower than q/k.

The model calls :func:`attend` and never imports a kernel package itself.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..runtime import autocast_off, free_memory, release_blas_buffers
from .registry import BACKENDS  # the names live with the other plain data, so the CLI needs no torch

# Order in which ``auto`` tries backends on CUDA (fastest first); CPU always uses ``sdpa``.
AUTO_ORDER_CUDA = ("fa3", "fa4", "fa2", "sdpa-cudnn", "sdpa-flash", "sdpa")
# Backends that accept an additive (H, N, N) logit bias (needed by the RPB ablation).
BIAS_BACKENDS = ("naive", "sdpa", "sdpa-math", "sdpa-efficient", "flex")
# Device types on which the CUDA-only kernels and ``auto``'s CUDA order are tried. Only the tests add
# "cpu": their strict stand-ins of those kernels (tests/kernels.py) run on the CPU.
CUDA_KERNEL_DEVICES: frozenset[str] = frozenset({"cuda"})


def uses_cuda_kernels(device: torch.device | str) -> bool:
    """True where the CUDA kernels (and half-precision training) apply: CUDA devices."""
    return torch.device(device).type in CUDA_KERNEL_DEVICES


class BackendUnavailable(RuntimeError):
    """A backend cannot run for the requested device/dtype; the message is one sentence."""


def _pad_last(x: Tensor, size: int) -> Tensor:
    return x if x.shape[-1] == size else F.pad(x, (0, size - x.shape[-1]))


def _round8(n: int) -> int:
    return (n + 7) // 8 * 8


def _equal_head_dims(q: Tensor, k: Tensor, v: Tensor, multiple_of_8: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Zero-pad q, k and v to one head dim: zeros change neither q.k nor the kept v channels."""
    d = max(q.shape[-1], v.shape[-1])
    if multiple_of_8:
        d = _round8(d)
    return _pad_last(q, d), _pad_last(k, d), _pad_last(v, d)


# --------------------------------------------------------------------------------------------- kernels
# Logit elements per block of query rows in ``naive``: 32 MB of float32 keeps big windows (64x64 = 4096
# tokens) cache-friendly and bounds memory, instead of materialising every window's N x N at once.
_NAIVE_BLOCK = 1 << 23


# On CUDA, ``naive`` uses at most this share of the free memory for one batch of windows' attention.
_NAIVE_CUDA_SHARE = 0.5


def _naive(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, *, device_type: str | None = None, budget: int | None = None,
) -> Tensor:
    """The reference: logits materialised in float32 whatever the input dtype (autocast kept off, so the
    products really are float32). On CUDA the paper's baseline: each window's whole attention, as many
    windows at a time as ``budget`` bytes allow (default: half the free memory); elsewhere the CPU's row blocks.
    ``device_type`` and ``budget`` override what is read from ``q`` (tests run the CUDA batching on the CPU)."""
    with autocast_off(q.device):
        if (device_type or q.device.type) == "cuda":
            if budget is None:
                budget = int(free_memory(q.device) * _NAIVE_CUDA_SHARE)
            return _naive_windows(q, k, v, bias, budget)
        return _naive_rows(q, k, v, bias)


def naive_windows_per_batch(heads: int, n: int, budget: int) -> int:
    """How many windows' float32 attention (logits and probabilities, heads x N x N each) fit in ``budget``
    bytes; raises BackendUnavailable when not even one does."""
    per_window = 2 * heads * n * n * 4
    if per_window > budget:
        raise BackendUnavailable(
            f"naive needs {per_window / 2**20:,.0f} MB to materialise one {n}-token window's attention "
            f"({heads} heads, float32) but only {budget / 2**20:,.0f} MB are available; use a fused backend "
            "(sdpa, sdpa-efficient, flex) or a smaller window.")
    return budget // per_window


def _naive_windows(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, budget: int) -> Tensor:
    b, h, n, _ = q.shape
    step = naive_windows_per_batch(h, n, budget)
    bf = None if bias is None else bias.float()
    outs = []
    for s in range(0, b, step):
        logits = q[s : s + step].float() @ k[s : s + step].float().transpose(-2, -1)  # (step, H, N, N)
        if bf is not None:
            logits = logits + bf
        outs.append(logits.softmax(dim=-1) @ v[s : s + step].float())
        del logits
    return torch.cat(outs).to(v.dtype)


def _naive_rows(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    # Each query row's softmax is independent, so processing rows in blocks changes nothing but speed
    # and peak memory (CPU: a block stays in cache).
    kt, vf = k.float().transpose(-2, -1), v.float()
    bf = None if bias is None else bias.float()
    n = q.shape[-2]
    rows = max(1, min(n, _NAIVE_BLOCK // max(1, q[..., 0, 0].numel() * k.shape[-2])))
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=torch.float32, device=q.device)
    for s in range(0, n, rows):
        logits = q[..., s : s + rows, :].float() @ kt  # (B, H, rows, N)
        if bf is not None:
            logits = logits + bf[..., s : s + rows, :]
        out[..., s : s + rows, :] = logits.softmax(dim=-1) @ vf
    return out.to(v.dtype)


# One block of the RIB mask is one head's (rows x N) float32 logits: about 12 MB, so it stays in the L3
# cache while every window re-reads it and memory stays bounded (a whole w=96 mask would be 2 GB), but
# at least 768 query rows, below which PyTorch's CPU flash kernel switches to smaller, slower tiles.
_MASK_BLOCK_BYTES = 12 << 20
_MASK_MIN_ROWS = 768
# Building the mask costs about as much as attending over 2-3 windows with the concatenated head dim,
# so the mask only pays from this many windows on (measured: benchmarks/RESULTS.md#cpu-inference).
_MASK_MIN_WINDOWS = 4
# Every head's mask in one kernel call only while that is small (w <= 16 for 3 heads: 0.8 MB); larger
# masks go a head at a time, equally fast (w=32, 4-64 windows), so a w=32 layer holds 4 MB of mask
# rather than 12.6 MB: on a 64x64 input that is 16x its q.
_MASK_ALL_HEADS_BYTES = 2 << 20


def _sdpa_rib_as_mask(
    q: Tensor, k: Tensor, v: Tensor, scale: float, pos_q: Tensor, pos_k: Tensor, q_is_scratch: bool = False,
) -> Tensor | None:
    """RIB on CPU as an additive mask: pos_q pos_k^T is the same for every window, so build it once
    per call, a block at a time, and give SDPA head dim d instead of d + r.

    PyTorch's CPU flash kernel is compute bound and its cost grows with the head dim: for sst-light's
    w=64 layers (d=16, r=24) concatenation runs q.k and p.v at 40 channels, the mask at 16. Same
    numbers up to float32 rounding. For CPU float32 inference with equal head dims (see
    :func:`_sdpa_rib_cpu`). With ``q_is_scratch`` the blocked path writes the output over q: each block's rows of q are read
    only by that block's call (one q-sized buffer less at the layer's memory peak).
    """
    b, h, n, _ = q.shape
    kt = pos_k.transpose(-2, -1)  # (H, r, N)
    if h * n * n * 4 <= _MASK_ALL_HEADS_BYTES:  # small windows: every head's mask at once, one kernel call
        return F.scaled_dot_product_attention(q, k, v, attn_mask=torch.bmm(pos_q, kt)[None], scale=scale)
    rows = min(n, max(_MASK_MIN_ROWS, _MASK_BLOCK_BYTES // (4 * n)))
    out = q if q_is_scratch else q.new_empty(b, n, h, v.shape[-1]).transpose(1, 2)  # (B, H, N, Dv) in (B, N, H, Dv) memory
    block = q.new_empty(rows * n)  # one mask block, reused: never two alive, no fresh pages per block
    for i in range(h):
        for s in range(0, n, rows):
            e = min(n, s + rows)
            mask = torch.mm(pos_q[i, s:e], kt[i], out=block[: (e - s) * n].view(e - s, n))
            qi, ki, vi = q[:, i : i + 1, s:e], k[:, i : i + 1], v[:, i : i + 1]
            # The (1, 1, rows, N) mask broadcasts over the windows; it is never copied.
            out[:, i : i + 1, s:e] = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask[None, None], scale=scale)
    return out


def _sdpa_rib_cpu(
    q: Tensor, k: Tensor, v: Tensor, scale: float, pos_q: Tensor, pos_k: Tensor, q_is_scratch: bool = False,
) -> Tensor | None:
    """How ``sdpa`` runs RIB in CPU float32 inference: as a shared mask from 4 windows on; with fewer
    windows and a scratch q, the concatenated form a head at a time, written over q, so the
    concatenated q and k and the zero-padded v exist for one head rather than all (a 64-window layer on
    a 64x64 input: 2.6 MB instead of 8 MB). None elsewhere (gradients wanted, other devices or dtypes,
    unequal head dims): the caller concatenates every head at once.
    """
    wants_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, pos_q, pos_k))
    if q.device.type != "cpu" or q.dtype != torch.float32 or wants_grad or v.shape[-1] != q.shape[-1]:
        return None
    if q.shape[0] >= _MASK_MIN_WINDOWS:
        return _sdpa_rib_as_mask(q, k, v, scale, pos_q, pos_k, q_is_scratch)
    if not q_is_scratch:
        return None
    run = _REGISTRY["sdpa"].run
    for i in range(q.shape[1]):
        qc, kc = _concat_rib(q[:, i : i + 1], k[:, i : i + 1], scale, pos_q[i : i + 1], pos_k[i : i + 1])
        q[:, i : i + 1] = run(qc, kc, v[:, i : i + 1], None)
        del qc, kc
    return q


def _concat_rib(q: Tensor, k: Tensor, scale: float, pos_q: Tensor, pos_k: Tensor) -> tuple[Tensor, Tensor]:
    """RIB's own form: [scale * q, pos_q] . [k, pos_k] = scale * q.k + pos_q.pos_k, one dot product."""
    b = q.shape[0]
    qc = torch.cat([q * scale if scale != 1.0 else q, pos_q.expand(b, -1, -1, -1)], dim=-1)
    return qc, torch.cat([k, pos_k.expand(b, -1, -1, -1)], dim=-1)


def _sdpa_with(kernel: str | None) -> Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]:
    def run(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
        dv = v.shape[-1]
        # Fused kernels (the CPU flash kernel included) want one head dim for q, k and v; a smaller v
        # sends SDPA to its slow math path, so pad v with zeros and slice the output.
        if kernel != "MATH":
            q, k, v = _equal_head_dims(q, k, v, multiple_of_8=kernel is not None)
        # (1, H, N, N): broadcast over the batch; a 3-D or expanded mask is much slower on CPU.
        mask = None if bias is None else bias.to(q.dtype)[None]
        ctx = contextlib.nullcontext()
        if kernel is not None:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            ctx = sdpa_kernel([getattr(SDPBackend, kernel)])
        with ctx:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        return out[..., :dv]

    return run


@functools.cache
def compiled_flex() -> Callable[..., Tensor]:
    """flex_attention through torch.compile, built once per process: only compiled does it run as a fused
    kernel. Each new shape compiles on its first call (the profile reports that call apart)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _flex(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    """On CUDA the compiled FlexAttention kernel (a failed compilation is the probe's reason to refuse flex).
    Elsewhere eager flex_attention, which PyTorch runs as math attention with the scores materialised:
    correct, not the fused kernel."""
    from torch.nn.attention.flex_attention import flex_attention

    dv = v.shape[-1]
    q, k, v = _equal_head_dims(q, k, v, multiple_of_8=True)
    score_mod = None
    if bias is not None:
        table = bias.to(q.dtype)

        def score_mod(score, b, h, q_idx, kv_idx):  # noqa: ANN001, ANN202 - flex's callback signature
            return score + table[h, q_idx, kv_idx]

    with warnings.catch_warnings():
        # Eager flex (CPU, or no torch.compile) warns that it materialises the scores; for our small
        # windows that is expected, and the warning would otherwise print on every `sst` run.
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile", category=UserWarning)
        fn = compiled_flex() if q.device.type == "cuda" else flex_attention
        out = fn(q, k, v, score_mod=score_mod, scale=1.0)
    return out[..., :dv]


def _flash_package(module: str, returns_lse: bool) -> Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]:
    def run(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
        fn = importlib.import_module(module).flash_attn_func
        dv = v.shape[-1]
        q, k, v = _equal_head_dims(q, k, v, multiple_of_8=True)
        # flash-attn packages take (B, N, H, D).
        out = fn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=1.0)
        if isinstance(out, tuple):  # fa4 (and some fa3 builds) return (out, lse)
            out = out[0]
        return out.transpose(1, 2)[..., :dv]

    return run


@dataclass(frozen=True)
class Backend:
    name: str
    run: Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]
    # Optional own handling of RIB vectors; returns None where it does not apply.
    run_rib: Callable[..., Tensor | None] | None = None  # (q, k, v, scale, pos_q, pos_k, q_is_scratch)
    module: str | None = None  # optional package that must import
    cuda_only: bool = False
    half_only: bool = False  # fp16/bf16 only
    describe: str = ""


_REGISTRY: dict[str, Backend] = {
    "naive": Backend("naive", _naive, describe="float32 logits materialised (on CUDA per batch of windows); the reference"),
    "sdpa": Backend(
        "sdpa", _sdpa_with(None), run_rib=_sdpa_rib_cpu,
        describe="PyTorch SDPA, PyTorch picks the kernel (on CPU, RIB runs as a shared mask)",
    ),
    "sdpa-math": Backend("sdpa-math", _sdpa_with("MATH"), describe="PyTorch SDPA, math kernel"),
    "sdpa-efficient": Backend(
        "sdpa-efficient", _sdpa_with("EFFICIENT_ATTENTION"), describe="PyTorch SDPA, memory-efficient kernel"
    ),
    "sdpa-flash": Backend("sdpa-flash", _sdpa_with("FLASH_ATTENTION"), describe="PyTorch SDPA, flash kernel"),
    "sdpa-cudnn": Backend(
        "sdpa-cudnn", _sdpa_with("CUDNN_ATTENTION"), cuda_only=True, describe="PyTorch SDPA, cuDNN kernel"
    ),
    "flex": Backend("flex", _flex, module="torch.nn.attention.flex_attention", describe="PyTorch FlexAttention (compiled on CUDA; on CPU eager: math attention, scores materialised)"),
    "fa2": Backend(
        "fa2", _flash_package("flash_attn", False), module="flash_attn", cuda_only=True, half_only=True,
        describe="flash-attn 2 (pip install flash-attn)",
    ),
    "fa3": Backend(
        "fa3", _flash_package("flash_attn_interface", False), module="flash_attn_interface", cuda_only=True,
        half_only=True, describe="FlashAttention 3, Hopper build (flash_attn_interface)",
    ),
    "fa4": Backend(
        "fa4", _flash_package("flash_attn.cute", True), module="flash_attn.cute", cuda_only=True,
        half_only=True, describe="FlashAttention 4, CuTe DSL build (flash_attn.cute)",
    ),
}


def _module_importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means "not installed here"
        return False
    return True


def _static_reason(name: str, device_type: str, dtype: torch.dtype, with_bias: bool) -> str | None:
    """Why ``name`` cannot run, from what needs no kernel call: device type, dtype, bias, package installed."""
    backend = _REGISTRY[name]
    where = f"{device_type}/{str(dtype).replace('torch.', '')}"
    if backend.cuda_only and device_type not in CUDA_KERNEL_DEVICES:
        return f"{name} needs a CUDA GPU ({where} requested)."
    if backend.half_only and dtype not in (torch.float16, torch.bfloat16):
        return f"{name} runs only in fp16/bf16 ({where} requested)."
    if with_bias and name not in BIAS_BACKENDS:
        return f"{name} takes no additive bias, so it cannot run the rpb bias (use naive, sdpa, sdpa-math, " \
               "sdpa-efficient or flex)."
    if backend.module and not _module_importable(backend.module):
        return f"{name} needs the Python module '{backend.module}', which is not installed."
    return None


def _run_probe(name: str, device: torch.device, dtype: torch.dtype, with_bias: bool, backward: bool) -> str | None:
    """Run the backend once on tiny tensors (and back through it with ``backward``): None if that works,
    else the kernel's refusal as one sentence. On a GPU this creates a CUDA context and loads (or JIT-compiles)
    the kernel, so it belongs in the process that then uses the backend."""
    try:
        g = torch.Generator().manual_seed(0)
        q, k = (torch.randn(1, 2, 16, 24, generator=g).to(device, dtype) for _ in range(2))
        v = torch.randn(1, 2, 16, 16, generator=g).to(device, dtype)
        bias = torch.zeros(2, 16, 16, device=device, dtype=dtype) if with_bias else None
        if backward:  # a training step differentiates q, k, v and the RPB table
            for t in (q, k, v, bias):
                if t is not None:
                    t.requires_grad_(True)
            with torch.enable_grad():
                _REGISTRY[name].run(q, k, v, bias).float().sum().backward()
        else:
            with torch.no_grad():
                _REGISTRY[name].run(q, k, v, bias)
    except Exception as exc:  # noqa: BLE001 - the kernel's own refusal is what we report
        text = str(exc).strip()
        # The kernel's first sentence only: the reason must stay one sentence.
        first = text.splitlines()[0].split(". ")[0].rstrip(".")[:160] if text else type(exc).__name__
        where = f"{device.type}/{str(dtype).replace('torch.', '')}"
        return f"{name} cannot run{' backward' if backward else ''} on {where}: {first}."
    return None


@functools.cache
def _probe(name: str, device_type: str, device_index: int | None, dtype: torch.dtype, with_bias: bool,
           backward: bool) -> str | None:
    """The static checks, then the kernel run once (:func:`_run_probe`); None if both pass."""
    reason = _static_reason(name, device_type, dtype, with_bias)
    if reason is not None:
        return reason
    device = torch.device(device_type, device_index) if device_index is not None else torch.device(device_type)
    return _run_probe(name, device, dtype, with_bias, backward)


def unavailable_reason(name: str, device: torch.device | str, dtype: torch.dtype, with_bias: bool = False, *,
                       backward: bool = False, run_kernel: bool = True) -> str | None:
    """None when ``name`` runs on ``device``/``dtype``; otherwise one sentence saying why not.

    ``backward``: the backend must also differentiate (training). ``run_kernel=False`` keeps to the checks
    that need no kernel call (device type, dtype, bias, package installed): for a process that will not run
    the backend itself, such as `sst profile`'s parent, which would otherwise keep a CUDA context (and
    compiled kernels) on every GPU it probes.
    """
    if name not in _REGISTRY:
        return f"unknown attention backend '{name}' (choose from: auto, {', '.join(BACKENDS)})."
    device = torch.device(device)
    if not run_kernel:
        return _static_reason(name, device.type, dtype, with_bias)
    return _probe(name, device.type, device.index, dtype, with_bias, backward)


def resolve_backend(name: str, device: torch.device | str, dtype: torch.dtype, with_bias: bool = False) -> str:
    """Turn ``auto`` into the best backend that runs here; check any other name. Raises BackendUnavailable."""
    device = torch.device(device)
    if name == "auto":
        cuda = uses_cuda_kernels(device)
        order = AUTO_ORDER_CUDA if cuda else ("sdpa",)
        if with_bias:
            order = ("sdpa-efficient", "sdpa", "naive") if cuda else ("sdpa", "naive")
        for candidate in order:
            if unavailable_reason(candidate, device, dtype, with_bias) is None:
                return candidate
        return "naive"
    reason = unavailable_reason(name, device, dtype, with_bias)
    if reason is not None:
        raise BackendUnavailable(reason)
    return name


def fp32_backend(name: str, device: torch.device | str, with_bias: bool = False) -> str:
    """``name`` when it runs in float32 on ``device``, else the backend ``auto`` picks for float32 there.

    For running a model trained through a half-precision-only kernel (fa2/3/4, sdpa-flash, sdpa-cudnn)
    in float32, as validation does: those kernels refuse float32 inputs.
    """
    if unavailable_reason(name, device, torch.float32, with_bias) is None:
        return name
    return resolve_backend("auto", device, torch.float32, with_bias)


def position_dtype(backend: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype the model hands RIB vectors and the RPB bias in: the kernel's, except for ``naive``, which
    computes in float32 and so gets them unrounded (a bf16 copy would lose what fp32 RIB keeps)."""
    return torch.float32 if backend == "naive" else dtype


def describe(name: str) -> str:
    return _REGISTRY[name].describe


def attend(
    q: Tensor, k: Tensor, v: Tensor, backend: str = "sdpa", *, scale: float = 1.0,
    rib: tuple[Tensor, Tensor] | None = None, bias: Tensor | None = None, q_is_scratch: bool = False,
) -> Tensor:
    """softmax(scale * q k^T + pos_q pos_k^T + bias) v.

    q, k: (B, H, N, Dqk); v: (B, H, N, Dv); rib: (pos_q, pos_k), each (H, N, r) and shared by the
    batch, or None; bias: (H, N, N) or None -> (B, H, N, Dv). ``q_is_scratch``: the caller has no
    further use for q, so a backend may write the output into its memory (the result may alias q).
    """
    impl = _REGISTRY[backend]
    out = None
    if rib is not None:
        if impl.run_rib is not None and bias is None:
            out = impl.run_rib(q, k, v, scale, *rib, q_is_scratch=q_is_scratch)
        if out is None:
            q, k = _concat_rib(q, k, scale, *rib)
    elif scale != 1.0:
        q = q * scale
    if out is None:
        out = impl.run(q, k, v, bias)
    if out.device.type == "cpu":
        release_blas_buffers()  # the CPU kernels' per-shape MKL buffers would otherwise stay for good
    return out
