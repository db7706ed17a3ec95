"""Attention backends behind one narrow signature.

Every backend computes ``softmax(q @ k^T + bias) @ v`` with a softmax scale of 1 (callers pre-scale
``q``). Tensors use the (B, H, N, D) layout; backends that want (B, N, H, D) transpose inside. ``v`` may
have a smaller head dim than ``q``/``k`` (RIB appends position channels to q and k only).

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

BACKENDS = (
    "naive",
    "sdpa",
    "sdpa-math",
    "sdpa-efficient",
    "sdpa-flash",
    "sdpa-cudnn",
    "flex",
    "fa2",
    "fa3",
    "fa4",
)
# Order in which ``auto`` tries backends on CUDA (fastest first); CPU always uses ``sdpa``.
AUTO_ORDER_CUDA = ("fa3", "fa4", "fa2", "sdpa-cudnn", "sdpa-flash", "sdpa")
# Backends that accept an additive (H, N, N) logit bias (needed by the RPB ablation).
BIAS_BACKENDS = ("naive", "sdpa", "sdpa-math", "sdpa-efficient", "flex")


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


def _naive(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    # The reference: logits materialised in float32 whatever the input dtype. Each query row's softmax
    # is independent, so processing rows in blocks changes nothing but speed and peak memory.
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


def _sdpa_with(kernel: str | None) -> Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]:
    def run(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
        dv = v.shape[-1]
        # Fused kernels (the CPU flash kernel included) want one head dim for q, k and v; a smaller v
        # sends SDPA to its slow math path, so pad v with zeros and slice the output.
        if kernel != "MATH":
            q, k, v = _equal_head_dims(q, k, v, multiple_of_8=kernel is not None)
        mask = None if bias is None else bias.to(q.dtype).expand(q.shape[0], -1, -1, -1)
        ctx = contextlib.nullcontext()
        if kernel is not None:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            ctx = sdpa_kernel([getattr(SDPBackend, kernel)])
        with ctx:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        return out[..., :dv]

    return run


def _flex(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
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
        out = flex_attention(q, k, v, score_mod=score_mod, scale=1.0)
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
    module: str | None = None  # optional package that must import
    cuda_only: bool = False
    half_only: bool = False  # fp16/bf16 only
    describe: str = ""


_REGISTRY: dict[str, Backend] = {
    "naive": Backend("naive", _naive, describe="float32 logits materialised; the reference"),
    "sdpa": Backend("sdpa", _sdpa_with(None), describe="PyTorch SDPA, PyTorch picks the kernel"),
    "sdpa-math": Backend("sdpa-math", _sdpa_with("MATH"), describe="PyTorch SDPA, math kernel"),
    "sdpa-efficient": Backend(
        "sdpa-efficient", _sdpa_with("EFFICIENT_ATTENTION"), describe="PyTorch SDPA, memory-efficient kernel"
    ),
    "sdpa-flash": Backend("sdpa-flash", _sdpa_with("FLASH_ATTENTION"), describe="PyTorch SDPA, flash kernel"),
    "sdpa-cudnn": Backend(
        "sdpa-cudnn", _sdpa_with("CUDNN_ATTENTION"), cuda_only=True, describe="PyTorch SDPA, cuDNN kernel"
    ),
    "flex": Backend("flex", _flex, module="torch.nn.attention.flex_attention", describe="PyTorch FlexAttention"),
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


@functools.cache
def _probe(name: str, device_type: str, device_index: int | None, dtype: torch.dtype, with_bias: bool) -> str | None:
    """Run the backend once on tiny tensors; return None if it works, else a one-sentence reason."""
    backend = _REGISTRY[name]
    where = f"{device_type}/{str(dtype).replace('torch.', '')}"
    if backend.cuda_only and device_type != "cuda":
        return f"{name} needs a CUDA GPU ({where} requested)."
    if backend.half_only and dtype not in (torch.float16, torch.bfloat16):
        return f"{name} runs only in fp16/bf16 ({where} requested)."
    if with_bias and name not in BIAS_BACKENDS:
        return f"{name} takes no additive bias, so it cannot run the rpb bias (use naive, sdpa, sdpa-math, " \
               "sdpa-efficient or flex)."
    if backend.module and not _module_importable(backend.module):
        return f"{name} needs the Python module '{backend.module}', which is not installed."
    device = torch.device(device_type, device_index) if device_index is not None else torch.device(device_type)
    try:
        g = torch.Generator().manual_seed(0)
        q, k = (torch.randn(1, 2, 16, 24, generator=g).to(device, dtype) for _ in range(2))
        v = torch.randn(1, 2, 16, 16, generator=g).to(device, dtype)
        bias = torch.zeros(2, 16, 16, device=device, dtype=dtype) if with_bias else None
        with torch.no_grad():
            backend.run(q, k, v, bias)
    except Exception as exc:  # noqa: BLE001 - the kernel's own refusal is what we report
        text = str(exc).strip()
        # The kernel's first sentence only: the reason must stay one sentence.
        first = text.splitlines()[0].split(". ")[0].rstrip(".")[:160] if text else type(exc).__name__
        return f"{name} cannot run on {where}: {first}."
    return None


def unavailable_reason(name: str, device: torch.device | str, dtype: torch.dtype, with_bias: bool = False) -> str | None:
    """None when ``name`` runs on ``device``/``dtype``; otherwise one sentence saying why not."""
    if name not in _REGISTRY:
        return f"unknown attention backend '{name}' (choose from: auto, {', '.join(BACKENDS)})."
    device = torch.device(device)
    return _probe(name, device.type, device.index, dtype, with_bias)


def resolve_backend(name: str, device: torch.device | str, dtype: torch.dtype, with_bias: bool = False) -> str:
    """Turn ``auto`` into the best backend that runs here; check any other name. Raises BackendUnavailable."""
    device = torch.device(device)
    if name == "auto":
        order = AUTO_ORDER_CUDA if device.type == "cuda" else ("sdpa",)
        if with_bias:
            order = ("sdpa-efficient", "sdpa", "naive") if device.type == "cuda" else ("sdpa", "naive")
        for candidate in order:
            if unavailable_reason(candidate, device, dtype, with_bias) is None:
                return candidate
        return "naive"
    reason = unavailable_reason(name, device, dtype, with_bias)
    if reason is not None:
        raise BackendUnavailable(reason)
    return name


def describe(name: str) -> str:
    return _REGISTRY[name].describe


def attend(q: Tensor, k: Tensor, v: Tensor, backend: str = "sdpa", bias: Tensor | None = None) -> Tensor:
    """softmax(q k^T + bias) v with scale 1.

    q, k: (B, H, N, Dqk); v: (B, H, N, Dv); bias: (H, N, N) or None -> (B, H, N, Dv).
    """
    return _REGISTRY[backend].run(q, k, v, bias)
