"""Strict stand-ins for the CUDA attention kernels, so CPU tests meet the refusals a GPU run would meet.

Each double checks what the real entry point checks, in the same order where it matters, and raises the
real message (the file each rule comes from is named beside it), then computes attention in float32 on
the CPU and returns the input dtype:

* flash-attn 2 ``flash_attn.flash_attn_func`` (csrc/flash_attn/flash_api.cpp ``mha_fwd`` behind
  flash_attn/flash_attn_interface.py, which pads head dims to a multiple of 8 and makes the last dim
  contiguous before calling it);
* FlashAttention 3 ``flash_attn_interface.flash_attn_func`` (hopper/flash_api.cpp behind
  hopper/flash_attn_interface.py), returning ``out`` or, as older releases did, ``(out, lse)``;
* FlashAttention 4 ``flash_attn.cute.flash_attn_func`` (flash_attn/cute/interface.py), ``(out, lse)``;
* the CUDA SDPA kernels chosen with ``torch.nn.attention.sdpa_kernel`` (flash, efficient, cuDNN; PyTorch
  aten/src/ATen/native/transformers/cuda/sdp_utils.cpp and sdp_utils_cpp.h): with the math kernel off and
  no fused kernel allowed, "No available kernel. Aborting execution.", after a warning per reason.

Flash-attn kernels take (B, N, H, D) and SDPA (B, H, N, D); neither can tell a transposed input from a
valid one when the shapes agree (it silently attends over the wrong axis), so the doubles compute the
real result in their own layout and tests compare it with ``naive``.

The one concession to the CPU: the real kernels refuse non-CUDA tensors ("q must be on CUDA"). The
switch :data:`ON_CPU_ENV` (set by :func:`install`, read on every call, inherited by subprocesses such as
`sst profile`'s workers) lets the doubles take CPU tensors as if they were on a GPU; sst's side of the same
switch is ``sst_cli.model.attention.CUDA_KERNEL_DEVICES``, which :func:`install` extends with "cpu".
"""

from __future__ import annotations

import collections
import os
import sys
import types
import warnings
from pathlib import Path

import torch

ON_CPU_ENV = "SST_TEST_KERNELS_ON_CPU"  # "1": CPU tensors count as CUDA tensors for the doubles
HALF = (torch.float16, torch.bfloat16)
# Importable copies of the packages for subprocesses (tests/kernel_packages/<module>/__init__.py).
PACKAGES = Path(__file__).resolve().parent / "kernel_packages"
_real_sdpa = torch.nn.functional.scaled_dot_product_attention
# Successful calls per double ("fa2", "fa3", "fa4", "sdpa-flash", ...), so tests can tell which kernel ran.
calls: collections.Counter[str] = collections.Counter()


def _on_cuda(t: torch.Tensor) -> bool:
    return t.is_cuda or (t.device.type == "cpu" and os.environ.get(ON_CPU_ENV) == "1")


def _check(cond: bool, message: str) -> None:
    """TORCH_CHECK: a RuntimeError with the kernel's message."""
    if not cond:
        raise RuntimeError(message)


def _maybe_contiguous(x: torch.Tensor) -> torch.Tensor:
    # All three Python wrappers (flash_attn_interface.py, hopper/flash_attn_interface.py, cute/interface.py)
    # copy an input whose last dim is strided before the kernel sees it.
    return x.contiguous() if x.stride(-1) != 1 else x


def _attention_bnhd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(scale q k^T) v in the flash-attn layout (B, N, H, D) -> (B, N, H, Dv), q's dtype."""
    qh, kh, vh = (t.transpose(1, 2).float() for t in (q, k, v))  # (B, H, N, D)
    p = torch.softmax(qh @ kh.transpose(-2, -1) * scale, dim=-1)
    return (p @ vh).transpose(1, 2).to(q.dtype)


def _lse(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    qh, kh = (t.transpose(1, 2).float() for t in (q, k))
    return torch.logsumexp(qh @ kh.transpose(-2, -1) * scale, dim=-1)  # (B, H, N), float32 as the kernels


# ------------------------------------------------------------------------------------- flash-attn 2
def fa2_flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, **_):  # noqa: ANN001, ANN201
    """flash_attn.flash_attn_func: returns out (B, N, H, D)."""
    _check(q.dim() == k.dim() == v.dim() == 4, "q, k and v must be 4-D (batch_size, seqlen, num_heads, head_size)")
    q, k, v = (_maybe_contiguous(t) for t in (q, k, v))
    head_size_og = q.size(3)
    if head_size_og % 8 != 0:  # flash_attn_interface.py: FlashAttnFunc.forward pads q, k, v to a multiple of 8
        pad = 8 - head_size_og % 8
        q, k, v = (torch.nn.functional.pad(t, (0, pad)) for t in (q, k, v))
    # csrc/flash_attn/flash_api.cpp, mha_fwd:
    _check(q.dtype in HALF, "FlashAttention only support fp16 and bf16 data type")
    _check(k.dtype == q.dtype, "query and key must have the same dtype")
    _check(v.dtype == q.dtype, "query and value must have the same dtype")
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check(_on_cuda(t), f"{name} must be on CUDA")  # CHECK_DEVICE
    b, n, h, d = q.shape
    _check(b > 0, "batch size must be positive")
    _check(d <= 256, "FlashAttention forward only supports head dimension at most 256")
    _check(d % 8 == 0, "query, key, value, and out_ptr must have a head_size that is a multiple of 8")
    _check(h % k.size(2) == 0, "Number of heads in key/value must divide number of heads in query")
    # CHECK_SHAPE: one head size for q, k and v (v narrower than q is refused)
    _check(tuple(k.shape) == (b, k.size(1), k.size(2), d),
           "k must have shape (batch_size, seqlen_k, num_heads_k, head_size)")
    _check(tuple(v.shape) == (b, k.size(1), k.size(2), d),
           "v must have shape (batch_size, seqlen_k, num_heads_k, head_size)")
    scale = softmax_scale if softmax_scale is not None else d**-0.5
    calls["fa2"] += 1
    return _attention_bnhd(q, k, v, scale)[..., :head_size_og]


# ------------------------------------------------------------------------------- FlashAttention 3
def _fa3_checks(q, k, v) -> None:  # noqa: ANN001
    # hopper/flash_api.cpp, mha_fwd (no padding in hopper/flash_attn_interface.py):
    _check(q.dtype in (*HALF, torch.float8_e4m3fn), "FlashAttention only supports fp16, bf16, and fp8_e4m3 data type")
    _check(k.dtype == q.dtype, "query and key must have the same dtype")
    _check(v.dtype == q.dtype, "query and value must have the same dtype")
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check(_on_cuda(t), f"{name} must be on CUDA")
    b, n, h, d = q.shape
    dv = v.size(3)
    _check(d <= 256, "FlashAttention forward only supports head dimension at most 256")
    _check(h % k.size(2) == 0, "Number of heads in key/value must divide number of heads in query")
    alignment = 16 if q.dtype == torch.float8_e4m3fn else 8  # fp8 needs 16
    _check(d % alignment == 0, f"head_size should be a multiple of {alignment}")
    _check(dv % alignment == 0, f"head_size_v should be a multiple of {alignment}")
    _check(tuple(k.shape) == (b, k.size(1), k.size(2), d),
           "k must have shape (batch_size, seqlen_k, num_heads_k, head_size)")
    _check(tuple(v.shape) == (b, k.size(1), k.size(2), dv),
           "v must have shape (batch_size, seqlen_k, num_heads_k, head_size_v)")


def fa3_flash_attn_func(q, k, v, softmax_scale=None, causal=False, **_):  # noqa: ANN001, ANN201
    """flash_attn_interface.flash_attn_func (current releases): returns out (B, N, H, Dv)."""
    _check(q.dim() == k.dim() == v.dim() == 4, "q, k and v must be 4-D (batch_size, seqlen, num_heads, head_size)")
    q, k, v = (_maybe_contiguous(t) for t in (q, k, v))
    _fa3_checks(q, k, v)
    calls["fa3"] += 1
    scale = softmax_scale if softmax_scale is not None else q.size(3) ** -0.5
    return _attention_bnhd(q, k, v, scale)


def fa3_flash_attn_func_with_lse(q, k, v, softmax_scale=None, causal=False, **kw):  # noqa: ANN001, ANN201
    """Older FlashAttention 3 releases: returns (out, softmax_lse)."""
    out = fa3_flash_attn_func(q, k, v, softmax_scale=softmax_scale, causal=causal, **kw)
    return out, _lse(q, k, softmax_scale if softmax_scale is not None else q.size(3) ** -0.5)


# ------------------------------------------------------------------------------- FlashAttention 4
def fa4_flash_attn_func(q, k, v, softmax_scale=None, causal=False, **_):  # noqa: ANN001, ANN201
    """flash_attn.cute.flash_attn_func: returns (out, lse); refusals are AssertionErrors, as there."""
    q, k, v = (_maybe_contiguous(t) for t in (q, k, v))
    # flash_attn/cute/interface.py, _flash_attn_fwd:
    b, n, h, d = q.shape
    dv = v.shape[-1]
    assert k.shape == (b, k.shape[1], k.shape[2], d)
    assert v.shape == (b, k.shape[1], k.shape[2], dv)
    assert q.dtype in HALF, "inputs must be float16 or bfloat16"
    assert q.dtype == k.dtype == v.dtype, "inputs must have the same dtype"
    assert all(_on_cuda(t) for t in (q, k, v)), "inputs must be on CUDA device"
    assert h % k.shape[2] == 0, "num_head must be divisible by num_head_kv"
    assert d <= 256, "head_dim must be less than or equal to 256"
    alignment = 16 // q.element_size()
    assert d % alignment == 0, f"head_dim must be divisible by {alignment}"
    assert dv % alignment == 0, f"head_dim_v must be divisible by {alignment}"
    scale = softmax_scale if softmax_scale is not None else d**-0.5
    calls["fa4"] += 1
    return _attention_bnhd(q, k, v, scale), _lse(q, k, scale)


# ------------------------------------------------------------------------------- CUDA SDPA kernels
def _dtype_reason(q, k, v, allowed) -> str | None:  # noqa: ANN001
    # sdp_utils_cpp.h, check_tensor_dtype
    if q.dtype == k.dtype == v.dtype and q.dtype in allowed:
        return None
    scalar = {torch.float16: "Half", torch.bfloat16: "BFloat16", torch.float32: "Float"}  # ScalarType names
    meta = {torch.float16: "c10::Half", torch.bfloat16: "c10::BFloat16", torch.float32: "float"}  # TypeMeta names
    names = ", ".join(scalar[t] for t in allowed)
    got = [meta.get(t.dtype, str(t.dtype)) for t in (q, k, v)]
    return (f"Expected query, key and value to all be of dtype: {{{names}}}. Got Query dtype: {got[0]}, "
            f"Key dtype: {got[1]}, and Value dtype: {got[2]} instead.")


def _common_reasons(q, k, v) -> list[str]:  # noqa: ANN001
    out = []
    if not all(_on_cuda(t) for t in (q, k, v)):  # check_all_tensors_on_device
        out.append(f"All tensors need to be on cuda device. Got query on device: {q.device}")
    if not q.dim() == k.dim() == v.dim() == 4:  # sdp_utils_cpp.h, check_tensor_shapes
        out.append(f"All fused kernels requires query, key and value to be 4 dimensional, but got Query dim: "
                   f"{q.dim()}, Key dim: {k.dim()}, Value dim: {v.dim()} instead.")
    if not (q.stride(-1) == k.stride(-1) == v.stride(-1) == 1):  # check_last_dim_stride_equals_1_dense
        out.append("All fused kernels require the last dimension of the input to have stride 1. Got Query.stride(-1): "
                   f"{q.stride(-1)}, Key.stride(-1): {k.stride(-1)}, Value.stride(-1): {v.stride(-1)}")
    return out


def _flash_reasons(q, k, v, mask) -> list[str]:  # noqa: ANN001
    # cuda/sdp_utils.cpp, can_use_flash_attention
    out = _common_reasons(q, k, v)
    if mask is not None:  # check_for_attn_mask
        out.append("Flash Attention does not support non-null attn_mask.")
    dq, dk, dv = q.size(-1), k.size(-1), v.size(-1)
    if not (dq == dk == dv and dq <= 256):  # check_head_dim_size_flash
        out.append("Flash attention requires q,k,v to have the same last dimension and to be less than or equal to "
                   f"256. Got Query.size(-1): {dq}, Key.size(-1): {dk}, Value.size(-1): {dv} instead.")
    reason = _dtype_reason(q, k, v, HALF)  # check_dtypes_flash_attention (sm80+)
    return out + ([reason] if reason else [])


def _efficient_reasons(q, k, v, mask) -> list[str]:  # noqa: ANN001
    # cuda/sdp_utils.cpp, can_use_mem_efficient_attention (sm80+: fp32 and masks allowed)
    out = _common_reasons(q, k, v)
    align = 8 if q.dtype in HALF else 4  # minimum_gemm_alignment with tensor cores
    dq, dk, dv = q.size(-1), k.size(-1), v.size(-1)
    if not (dq == dk and dq % align == 0 and dv % align == 0 and dq > 0 and dv > 0):  # check_head_dim_size_mem_efficient
        out.append(f"Mem efficient attention requires last dimension of inputs to be divisible by {align}. "
                   f"Got Query.size(-1): {dq}, Key.size(-1): {dk}, Value.size(-1): {dv} instead.")
    reason = _dtype_reason(q, k, v, (torch.float16, torch.float32, torch.bfloat16))
    return out + ([reason] if reason else [])


def _cudnn_reasons(q, k, v, mask) -> list[str]:  # noqa: ANN001
    # cuda/sdp_utils.cpp, can_use_cudnn_attention
    out = _common_reasons(q, k, v)
    reason = _dtype_reason(q, k, v, HALF)  # check_dtypes_low_precision
    out += [reason] if reason else []
    dq, dv = q.size(-1), v.size(-1)
    if dq > 256 or dq % 8 or dv % 8:  # check_cudnn_tensor_shapes (frontend >= 1.24: up to 256)
        out.append(f"head_dim should be a multiple of 8 and no more than 256, got Query.size(-1): {dq}, "
                   f"Value.size(-1): {dv}.")
    return out


# sdp_utils_cpp.h check_runtime_disabled_*, cuda/sdp_utils.cpp check_runtime_disabled_cudnn
DISABLED = {"flash": "Flash attention has been runtime disabled.",
            "efficient": "Memory Efficient attention has been runtime disabled.",
            "cudnn": "cuDNN attention has been runtime disabled."}


def _enabled() -> dict[str, bool]:
    b = torch.backends.cuda
    return {"math": b.math_sdp_enabled(), "flash": b.flash_sdp_enabled(),
            "efficient": b.mem_efficient_sdp_enabled(), "cudnn": b.cudnn_sdp_enabled()}


def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):  # noqa: ANN001, ANN201
    """F.scaled_dot_product_attention with CUDA's kernel selection (cuda/sdp_utils.cpp, select_sdp_backend)
    for tensors on CUDA; others go to PyTorch's own function."""
    if not all(_on_cuda(t) for t in (query, key, value)) or query.is_cuda:
        return _real_sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                          scale=scale, **kw)
    on = _enabled()
    checks = {"cudnn": _cudnn_reasons, "flash": _flash_reasons, "efficient": _efficient_reasons}
    usable = on["math"] or any(on[name] and not check(query, key, value, attn_mask) for name, check in checks.items())
    if not usable:
        for title, name in (("Memory efficient kernel", "efficient"), ("Flash attention kernel", "flash"),
                            ("cuDNN attention kernel", "cudnn")):
            reasons = checks[name](query, key, value, attn_mask) if on[name] else [DISABLED[name]]
            warnings.warn(f"{title} not used because: " + " ".join(reasons), UserWarning, stacklevel=2)
        raise RuntimeError("No available kernel. Aborting execution.")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    chosen = next((f"sdpa-{n}" for n, check in checks.items() if on[n] and not check(query, key, value, attn_mask)),
                  "sdpa-math")
    calls[chosen] += 1
    with sdpa_kernel([SDPBackend.MATH]):  # the result, computed on the CPU
        return _real_sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                          scale=scale, **kw)


# ------------------------------------------------------------------------------------- installation
def modules(fa3_returns_lse: bool = False) -> dict[str, types.ModuleType]:
    """The stand-in packages by import name, as sys.modules holds them."""
    fa2 = types.ModuleType("flash_attn")
    fa2.flash_attn_func = fa2_flash_attn_func
    fa2.__path__ = []  # a package, so that flash_attn.cute imports
    fa4 = types.ModuleType("flash_attn.cute")
    fa4.flash_attn_func = fa4_flash_attn_func
    fa2.cute = fa4
    fa3 = types.ModuleType("flash_attn_interface")
    fa3.flash_attn_func = fa3_flash_attn_func_with_lse if fa3_returns_lse else fa3_flash_attn_func
    return {"flash_attn": fa2, "flash_attn.cute": fa4, "flash_attn_interface": fa3}


def install(monkeypatch, fa3_returns_lse: bool = False, on_cpu: bool = True) -> None:  # noqa: ANN001
    """Install every double for the test (undone by ``monkeypatch``): the kernel packages in sys.modules and
    on PYTHONPATH (for subprocesses), the CUDA SDPA selection, and with ``on_cpu`` the CPU-as-CUDA switch
    on both sides."""
    from sst_cli.model import attention

    for name, module in modules(fa3_returns_lse).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa)
    tests = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PACKAGES), tests, os.environ.get("PYTHONPATH", "")]))
    if fa3_returns_lse:
        monkeypatch.setenv("SST_TEST_FA3_RETURNS_LSE", "1")
    if on_cpu:
        monkeypatch.setenv(ON_CPU_ENV, "1")
        monkeypatch.setattr(attention, "CUDA_KERNEL_DEVICES", attention.CUDA_KERNEL_DEVICES | {"cpu"})
    else:
        monkeypatch.delenv(ON_CPU_ENV, raising=False)
    attention._probe.cache_clear()  # availability answers from before the doubles must not be reused
    calls.clear()
