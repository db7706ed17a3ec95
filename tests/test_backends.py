"""Attention backends: agreement with the naive reference, availability reasons, ``auto``, layouts.

Tolerances against ``naive`` (run on the same inputs): fp32 max |diff| <= 1e-5; bf16 max <= 2e-2 and mean
<= 2e-3 (a few bf16 ulps at |out| ~ 2, since the output itself is rounded to 8 mantissa bits); fp16 max
<= 4e-3 and mean <= 4e-4. Outputs here have magnitude up to ~3.
"""

from __future__ import annotations

import platform
import sys
import types
import warnings

import pytest
import torch

from sst_cli.model import attention
from sst_cli.model.attention import (
    BACKENDS,
    BIAS_BACKENDS,
    BackendUnavailable,
    attend,
    resolve_backend,
    unavailable_reason,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TOL = {torch.float32: (1e-5, 1e-6), torch.bfloat16: (2e-2, 2e-3), torch.float16: (4e-3, 4e-4)}
# (q/k head dim, v head dim): RIB appends rank channels to q and k only, so v is narrower; 20 and 12
# are not multiples of 8, which exercises the zero-padding the fused kernels need.
HEAD_DIMS = [(24, 12), (20, 12), (32, 32)]


def _qkv(dqk: int, dv: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    b, h, n = 2, 3, 64  # one 8x8 window per batch entry
    q = torch.randn(b, h, n, dqk, generator=g) * 2 * dqk**-0.5  # peaked softmax, as in trained models
    k = torch.randn(b, h, n, dqk, generator=g)
    v = torch.randn(b, h, n, dv, generator=g)
    bias = torch.randn(h, n, n, generator=g)
    return q, k, v, bias


def _check_close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    max_tol, mean_tol = TOL[dtype]
    diff = (out.float() - ref.float()).abs()
    assert diff.max().item() <= max_tol, f"max |diff| {diff.max().item():.3g} > {max_tol}"
    assert diff.mean().item() <= mean_tol, f"mean |diff| {diff.mean().item():.3g} > {mean_tol}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("name", [b for b in BACKENDS if b != "naive"])
def test_backend_agrees_with_naive(name: str, with_bias: bool, dtype: torch.dtype, device: str) -> None:
    reason = unavailable_reason(name, device, dtype, with_bias=with_bias)
    if reason is not None:
        pytest.skip(reason)
    # Every head-dim case in fp32; the padding-heavy one in half precision (eager flex is slow on CPU).
    cases = HEAD_DIMS if dtype == torch.float32 else HEAD_DIMS[1:2]
    for dqk, dv in cases:
        q, k, v, bias = (t.to(device, dtype) for t in _qkv(dqk, dv))
        b = bias if with_bias else None
        ref = attend(q, k, v, backend="naive", bias=b)
        out = attend(q, k, v, backend=name, bias=b)
        assert out.shape == (2, 3, 64, dv) and out.dtype == dtype and out.device.type == device
        _check_close(out, ref, dtype)


def test_naive_is_softmax_attention() -> None:
    """The reference itself: softmax(q k^T + bias) v with scale 1, written out independently."""
    q, k, v, bias = _qkv(24, 12)
    want = torch.softmax(torch.einsum("bhnd,bhmd->bhnm", q.double(), k.double()) + bias.double(), -1)
    want = torch.einsum("bhnm,bhmd->bhnd", want, v.double())
    got = attend(q, k, v, backend="naive", bias=bias)
    assert (got.double() - want).abs().max().item() < 1e-5


def test_naive_keeps_float32_logits_for_bf16_inputs() -> None:
    """naive materialises logits in float32, so bf16 inputs lose only the final output rounding."""
    q, k, v, _ = (t.bfloat16() for t in _qkv(24, 12))
    exact = attend(q.float(), k.float(), v.float(), backend="naive")
    got = attend(q, k, v, backend="naive")
    assert got.dtype == torch.bfloat16
    # bf16 has 8 mantissa bits: rounding the output alone costs at most 2^-8 relative.
    assert ((got.float() - exact).abs() <= exact.abs() * 2**-8 + 1e-6).all()


@pytest.mark.parametrize("name", ["fa2", "fa3", "fa4", "sdpa-cudnn"])
def test_gpu_only_backends_explain_themselves_on_cpu(name: str) -> None:
    reason = unavailable_reason(name, "cpu", torch.float32)
    assert isinstance(reason, str) and name in reason
    # One sentence: a single line, a single full stop at the end.
    assert "\n" not in reason and reason.endswith(".") and reason.count(". ") == 0, reason
    with pytest.raises(BackendUnavailable) as info:
        resolve_backend(name, "cpu", torch.float32)
    assert str(info.value) == reason


def test_unknown_backend_is_one_sentence() -> None:
    reason = unavailable_reason("warp-drive", "cpu", torch.float32)
    assert reason is not None and "warp-drive" in reason and "naive" in reason and "\n" not in reason
    with pytest.raises(BackendUnavailable):
        resolve_backend("warp-drive", "cpu", torch.float32)


def test_every_backend_reports_ok_or_a_reason_on_cpu() -> None:
    for name in BACKENDS:
        for dtype in (torch.float32, torch.bfloat16):
            reason = unavailable_reason(name, "cpu", dtype)
            assert reason is None or (isinstance(reason, str) and reason.strip() and "\n" not in reason)
    # The reference and PyTorch's SDPA always run on CPU.
    assert unavailable_reason("naive", "cpu", torch.float32) is None
    assert unavailable_reason("sdpa", "cpu", torch.float32) is None


def test_bias_is_refused_by_backends_without_additive_bias() -> None:
    for name in BACKENDS:
        if name in BIAS_BACKENDS:
            continue
        reason = unavailable_reason(name, "cpu", torch.float32, with_bias=True)
        assert reason is not None and "\n" not in reason, name
    assert "bias" in unavailable_reason("sdpa-flash", "cpu", torch.float32, with_bias=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_auto_resolves_to_a_working_backend_on_cpu(dtype: torch.dtype, with_bias: bool) -> None:
    name = resolve_backend("auto", torch.device("cpu"), dtype, with_bias=with_bias)
    assert name in BACKENDS
    assert unavailable_reason(name, "cpu", dtype, with_bias=with_bias) is None
    if with_bias:
        assert name in BIAS_BACKENDS
    q, k, v, bias = (t.to(dtype) for t in _qkv(24, 12))
    b = bias if with_bias else None
    _check_close(attend(q, k, v, backend=name, bias=b), attend(q, k, v, backend="naive", bias=b), dtype)


def test_flex_does_not_warn_about_torch_compile() -> None:
    if unavailable_reason("flex", "cpu", torch.float32) is not None:
        pytest.skip(unavailable_reason("flex", "cpu", torch.float32))
    from torch.nn.attention import flex_attention as flex_module

    # PyTorch warns once per process; forget that it already did so the check is meaningful.
    shown = getattr(flex_module, "_WARNINGS_SHOWN", None)
    if isinstance(shown, set):
        shown.discard("flex_attention_performance")
    q, k, v, _ = _qkv(24, 12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        attend(q, k, v, backend="flex")
    assert not [w for w in caught if "torch.compile" in str(w.message)]


# ------------------------------------------------------------ flash-attn packages, with a stand-in kernel
def _fake_flash_attn_func(returns_lse: bool, calls: list):
    """A stand-in for flash_attn_func: (B, N, H, D) layout, equal head dims that are multiples of 8,
    half precision only, as the real kernels demand."""

    def flash_attn_func(q, k, v, softmax_scale=None, **_: object):  # noqa: ANN001, ANN202 - mimics the package
        assert q.dtype in (torch.float16, torch.bfloat16)
        assert q.shape[-1] == k.shape[-1] == v.shape[-1] and q.shape[-1] % 8 == 0
        calls.append(tuple(q.shape))
        qh, kh, vh = (t.transpose(1, 2).float() for t in (q, k, v))  # -> (B, H, N, D)
        p = torch.softmax(qh @ kh.transpose(-2, -1) * softmax_scale, dim=-1)
        out = (p @ vh).transpose(1, 2).to(q.dtype)
        return (out, torch.zeros(1)) if returns_lse else out

    return flash_attn_func


@pytest.mark.parametrize(("name", "module", "returns_lse"), [
    ("fa2", "flash_attn", False), ("fa3", "flash_attn_interface", False), ("fa4", "flash_attn.cute", True),
])
def test_flash_package_wrappers_handle_layout_padding_and_lse(monkeypatch, name, module, returns_lse) -> None:
    calls: list = []
    fake = types.ModuleType(module)
    fake.flash_attn_func = _fake_flash_attn_func(returns_lse, calls)
    monkeypatch.setitem(sys.modules, module, fake)
    if "." in module:
        parent = types.ModuleType(module.split(".")[0])
        monkeypatch.setitem(sys.modules, module.split(".")[0], parent)
    q, k, v, _ = (t.bfloat16() for t in _qkv(20, 12))  # 20 and 12: both need padding to 24
    out = attention._REGISTRY[name].run(q, k, v, None)  # the kernel wrapper, bypassing the CUDA check
    assert calls == [(2, 64, 3, 24)]  # transposed to (B, N, H, D), padded to one multiple of 8
    assert out.shape == (2, 3, 64, 12) and out.dtype == torch.bfloat16
    _check_close(out, attend(q, k, v, backend="naive"), torch.bfloat16)


# ------------------------------------------------------------------------- RIB position vectors (rib=)
def _rib_case(windows: int, n: int = 64, d: int = 8, r: int = 12, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(windows, 3, n, d, generator=g) for _ in range(3))
    pos_q, pos_k = (torch.randn(3, n, r, generator=g) * 0.5 for _ in range(2))
    return q, k, v, pos_q, pos_k


def _rib_reference(q, k, v, scale, pos_q, pos_k) -> torch.Tensor:  # noqa: ANN001 - float64 formula
    logits = scale * q.double() @ k.double().transpose(-2, -1) + (pos_q.double() @ pos_k.double().transpose(-2, -1))
    return logits.softmax(-1) @ v.double()


@pytest.mark.parametrize("windows", [1, 5], ids=["1window", "5windows"])
@pytest.mark.parametrize("name", BACKENDS)
def test_rib_vectors_give_the_rib_logits_on_every_backend(name: str, windows: int) -> None:
    """attend(..., rib=(pos_q, pos_k)) = softmax(scale q.k + pos_q.pos_k) v, however the backend runs it
    (concatenated to q/k, or, for sdpa on CPU with enough windows, as a shared mask)."""
    reason = unavailable_reason(name, "cpu", torch.float32)
    if reason is not None:
        pytest.skip(reason)
    q, k, v, pos_q, pos_k = _rib_case(windows)
    out = attend(q, k, v, backend=name, scale=0.35, rib=(pos_q, pos_k))
    assert out.shape == v.shape and out.dtype == torch.float32
    assert (out.double() - _rib_reference(q, k, v, 0.35, pos_q, pos_k)).abs().max().item() < 1e-5


class _SdpaSpy:
    """Records the q head dim and mask shape of every F.scaled_dot_product_attention call."""

    def __init__(self, monkeypatch) -> None:  # noqa: ANN001
        self.calls: list[tuple[int, tuple | None]] = []
        real = torch.nn.functional.scaled_dot_product_attention

        def spy(q, k, v, attn_mask=None, **kw):  # noqa: ANN001, ANN202
            self.calls.append((q.shape[-1], None if attn_mask is None else tuple(attn_mask.shape)))
            return real(q, k, v, attn_mask=attn_mask, **kw)

        monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)


def test_sdpa_runs_rib_as_a_blocked_shared_mask_on_cpu(monkeypatch) -> None:
    # Blocks of 24 query rows over 64 tokens: three blocks per head, the last one ragged (16 rows).
    monkeypatch.setattr(attention, "_MASK_ALL_HEADS_BYTES", 0)
    monkeypatch.setattr(attention, "_MASK_BLOCK_BYTES", 24 * 64 * 4)
    monkeypatch.setattr(attention, "_MASK_MIN_ROWS", 1)
    spy = _SdpaSpy(monkeypatch)
    q, k, v, pos_q, pos_k = _rib_case(windows=4)
    out = attend(q, k, v, backend="sdpa", scale=0.35, rib=(pos_q, pos_k))
    # head dim d (8), not d + r (20); one (1, 1, rows, N) mask per head and block, broadcast over windows
    assert [c[0] for c in spy.calls] == [8] * 9
    assert [c[1] for c in spy.calls] == [(1, 1, 24, 64), (1, 1, 24, 64), (1, 1, 16, 64)] * 3
    assert (out.double() - _rib_reference(q, k, v, 0.35, pos_q, pos_k)).abs().max().item() < 1e-5


def test_small_masks_go_in_one_call_larger_ones_a_head_at_a_time(monkeypatch) -> None:
    q, k, v, pos_q, pos_k = _rib_case(windows=4)
    reference = _rib_reference(q, k, v, 0.35, pos_q, pos_k)
    spy = _SdpaSpy(monkeypatch)
    out = attend(q, k, v, backend="sdpa", scale=0.35, rib=(pos_q, pos_k))  # 3 x 64 x 64 floats: 48 KB
    assert spy.calls == [(8, (1, 3, 64, 64))]
    assert (out.double() - reference).abs().max().item() < 1e-5
    # Above the bound (w=32 with 3 heads is 12 MB at once, 4 MB a head): one whole-head mask per call.
    monkeypatch.setattr(attention, "_MASK_ALL_HEADS_BYTES", 3 * 64 * 64 * 4 - 1)
    spy.calls.clear()
    out = attend(q, k, v, backend="sdpa", scale=0.35, rib=(pos_q, pos_k))
    assert spy.calls == [(8, (1, 1, 64, 64))] * 3
    assert (out.double() - reference).abs().max().item() < 1e-5


def test_a_scratch_q_takes_the_output_of_the_blocked_mask_path(monkeypatch) -> None:
    monkeypatch.setattr(attention, "_MASK_ALL_HEADS_BYTES", 0)
    q, k, v, pos_q, pos_k = _rib_case(windows=4)
    reference = _rib_reference(q, k, v, 0.35, pos_q, pos_k)
    kept = q.clone()
    out = attend(q, k, v, backend="sdpa", scale=0.35, rib=(pos_q, pos_k))
    assert torch.equal(q, kept) and out.data_ptr() != q.data_ptr()  # q is the caller's unless it says so
    out = attend(q, k, v, backend="sdpa", scale=0.35, rib=(pos_q, pos_k), q_is_scratch=True)
    assert out.data_ptr() == q.data_ptr()
    assert (out.double() - reference).abs().max().item() < 1e-5


def test_few_windows_with_a_scratch_q_concatenate_a_head_at_a_time(monkeypatch) -> None:
    spy = _SdpaSpy(monkeypatch)
    q, k, v, pos_q, pos_k = _rib_case(windows=1)
    reference = _rib_reference(q, k, v, 0.35, pos_q, pos_k)
    out = attend(q, k, v, backend="sdpa", scale=0.35, rib=(pos_q, pos_k), q_is_scratch=True)
    assert spy.calls == [(20, None)] * 3 and out.data_ptr() == q.data_ptr()
    assert (out.double() - reference).abs().max().item() < 1e-5


def _heap_in_use() -> int:
    """Bytes glibc's malloc has handed out and not taken back (heap and mmapped)."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
                         and torch.backends.mkl.is_available()), reason="needs glibc's mallinfo2 and MKL")
def test_cpu_attention_leaves_no_blas_buffers_behind() -> None:
    """MKL pools ~4 MB per thread for every new matrix-product shape; PyTorch's CPU attention kernel
    makes new shapes for every window size and head dim. They must not pile up across layers."""
    def run(n: int, d: int, windows: int) -> None:
        g = torch.Generator().manual_seed(n + d)
        q, k, v = (torch.randn(windows, 3, n, d, generator=g) for _ in range(3))
        pos_q, pos_k = (torch.randn(3, n, 16, generator=g) for _ in range(2))
        with torch.no_grad():
            attend(q, k, v, backend="sdpa", scale=d**-0.5, rib=(pos_q, pos_k))

    run(64, 16, 8)  # the first call's one-off allocations (thread pools, kernel set-up) do not count
    before = _heap_in_use()
    for n, d, windows in ((256, 16, 4), (1024, 16, 4), (1024, 24, 1), (256, 32, 4)):
        run(n, d, windows)
    assert _heap_in_use() - before < 2 << 20  # four new shapes pooled would hold 16-32 MB


def test_sdpa_concatenates_rib_where_the_mask_does_not_pay_or_apply(monkeypatch) -> None:
    spy = _SdpaSpy(monkeypatch)
    q, k, v, pos_q, pos_k = _rib_case(windows=2)  # too few windows to pay for building the mask
    attend(q, k, v, backend="sdpa", scale=0.35, rib=(pos_q, pos_k))
    assert spy.calls == [(20, None)]
    # Gradients wanted (training): concatenation, and they reach the position vectors.
    q, k, v, pos_q, pos_k = _rib_case(windows=4)
    pos_q.requires_grad_(True)
    spy.calls.clear()
    out = attend(q, k, v, backend="sdpa", scale=0.35, rib=(pos_q, pos_k))
    out.sum().backward()
    assert spy.calls == [(20, None)] and pos_q.grad is not None and pos_q.grad.abs().sum() > 0
    # Not float32: concatenation (the mask would round the position logits to bf16).
    spy.calls.clear()
    attend(*(t.bfloat16() for t in (q, k, v)), backend="sdpa", scale=0.35, rib=(pos_q.detach().bfloat16(), pos_k.bfloat16()))
    assert spy.calls == [(20, None)]
