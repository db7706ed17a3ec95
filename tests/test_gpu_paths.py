"""GPU-path behaviour that a CPU can check (issue 22, findings 5-9): the RPB index cache, naive's
per-window batching, flex's compiled path, IEEE fp32 against TF32, and float32 RIB/reference products
under autocast. What only a GPU can show is in benchmarks/gpu_check.py (make gpu-check)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sst_cli import runtime
from sst_cli.model import attention
from sst_cli.model.archs.sst import network
from sst_cli.model.archs.sst.network import SST
from sst_cli.model.attention import BackendUnavailable, attend


@pytest.fixture
def restore_tf32():
    saved = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    yield
    torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = saved


def _rpb_model() -> SST:
    torch.manual_seed(0)
    return SST(dim=12, window_sizes=(4, 8), num_heads=2, ranks=4, n_blocks=1, attn_type="RPB", upscaling_factor=2)


# ------------------------------------------------------------------------------- finding 5: RPB index
def test_rpb_index_built_once_per_layer_across_forwards(monkeypatch: pytest.MonkeyPatch) -> None:
    built = []
    real = network.relative_position_index
    monkeypatch.setattr(network, "relative_position_index", lambda w, device=None: built.append(w) or real(w, device))
    model = _rpb_model()
    x = torch.rand(1, 3, 16, 16)
    model.train()
    for _ in range(3):  # training: the bias needs a gradient each time, the index does not
        model(x).mean().backward()
    with torch.inference_mode():  # then validation-style forwards
        for _ in range(2):
            model.eval()(x)
    model.train()
    model(x).mean().backward()  # an index first used under inference_mode still serves a backward
    assert sorted(built) == [4, 8]


def test_rpb_cache_keeps_state_dict_and_results() -> None:
    model = _rpb_model()
    keys = set(model.state_dict())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        first = model.eval()(x)
        again = model(x)
    assert set(model.state_dict()) == keys  # the official layout: no index key
    assert not any("index" in k for k in keys)
    fresh = _rpb_model()
    fresh.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), first)
    torch.testing.assert_close(again, first)
    # A changed table invalidates the cached bias.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, network.WindowAttention):
                m.rpb_table.add_(0.5)
        assert not torch.equal(model(x), first)


def test_relative_position_index_matches_swin() -> None:
    w = 3
    idx = network.relative_position_index(w)
    coords = [(i, j) for i in range(w) for j in range(w)]
    want = [[(a[0] - b[0] + w - 1) * (2 * w - 1) + (a[1] - b[1] + w - 1) for b in coords] for a in coords]
    assert idx.tolist() == want


# ------------------------------------------------------------------ finding 6: naive on CUDA, batched
def _qkv(b: int = 5, h: int = 2, n: int = 16, d: int = 8) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    return tuple(torch.randn(b, h, n, d, generator=g) for _ in range(3))


def _softmax_reference(q, k, v, bias=None):
    logits = q.double() @ k.double().transpose(-2, -1)
    if bias is not None:
        logits = logits + bias.double()
    return (logits.softmax(-1) @ v.double()).float()


@pytest.mark.parametrize("windows_per_batch", [1, 2, 5])
def test_naive_cuda_batches_whole_windows(monkeypatch: pytest.MonkeyPatch, windows_per_batch: int) -> None:
    q, k, v = _qkv()
    bias = torch.randn(2, 16, 16)
    want = _softmax_reference(q, k, v, bias)
    seen = []
    real = torch.Tensor.softmax
    monkeypatch.setattr(torch.Tensor, "softmax", lambda t, dim: seen.append(tuple(t.shape)) or real(t, dim))
    per_window = 2 * 2 * 16 * 16 * 4
    out = attention._naive(q, k, v, bias, device_type="cuda", budget=windows_per_batch * per_window + 7)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    # Every window's whole (H, N, N) attention at once, as many windows as the budget holds.
    assert all(s[1:] == (2, 16, 16) and s[0] <= windows_per_batch for s in seen)
    assert len(seen) == -(-5 // windows_per_batch)


def test_naive_cuda_refuses_a_window_that_cannot_fit() -> None:
    q, k, v = _qkv()
    with pytest.raises(BackendUnavailable, match=r"naive needs .* MB to materialise one 16-token window"):
        attention._naive(q, k, v, None, device_type="cuda", budget=1000)


def test_naive_cpu_path_unchanged() -> None:
    q, k, v = _qkv()
    torch.testing.assert_close(attention._naive(q, k, v, None), _softmax_reference(q, k, v), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ finding 7: flex compiled
def test_flex_on_cuda_takes_the_compiled_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA tensor cannot exist here, so a tensor that says it is on CUDA stands in; the point is which
    flex_attention runs: the compiled one, never eager (math attention, all scores in float32)."""
    calls = []
    monkeypatch.setattr(attention, "compiled_flex", lambda: lambda q, k, v, **kw: calls.append("compiled") or v)

    class OnCuda(torch.Tensor):
        @property
        def device(self):  # noqa: ANN202
            return torch.device("cuda")

    q, k, v = (t.as_subclass(OnCuda) for t in _qkv(n=16, d=8))
    attention._flex(q, k, v, None)
    assert calls == ["compiled"]


def test_compiled_flex_is_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    compiles = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiles.append(kw) or fn)
    attention.compiled_flex.cache_clear()
    try:
        assert attention.compiled_flex() is attention.compiled_flex()
    finally:
        attention.compiled_flex.cache_clear()
    assert compiles == [{"dynamic": False}]


def test_flex_says_what_it_is_on_cpu() -> None:
    assert "compiled on CUDA" in attention.describe("flex") and "eager" in attention.describe("flex")


# -------------------------------------------------------------------------------- finding 8: fp32, tf32
def test_fp32_turns_tf32_off_for_convolutions_and_matmuls(restore_tf32: None) -> None:
    torch.backends.cudnn.conv.fp32_precision = "tf32"  # PyTorch's own default for cuDNN
    assert runtime.resolve_dtype("fp32", torch.device("cpu")) == torch.float32
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert runtime.tf32_settings() == {"tf32_matmul": False, "tf32_cudnn": False}


def test_tf32_only_when_asked(restore_tf32: None) -> None:
    assert runtime.resolve_dtype("tf32", torch.device("cpu")) == torch.float32
    assert runtime.tf32_settings() == {"tf32_matmul": True, "tf32_cudnn": True}
    assert runtime.precision_name(torch.float32, torch.device("cuda")) == "tf32"
    assert runtime.precision_name(torch.float32, torch.device("cpu")) == "fp32"
    runtime.resolve_dtype("auto", torch.device("cpu"))
    assert runtime.tf32_settings() == {"tf32_matmul": False, "tf32_cudnn": False}


def test_tf32_is_a_dtype_everywhere() -> None:
    from sst_cli.cli._common import DtypeName
    from sst_cli.training.config import TrainConfig

    assert "tf32" in DtypeName.__args__
    assert TrainConfig.__dataclass_fields__["tf32"].default is False


def test_profile_rows_and_environment_record_both_settings(restore_tf32: None) -> None:
    from sst_cli.profiling.measure import environment

    env = environment()
    assert set(env) >= {"tf32_matmul", "tf32_cudnn"}


# ---------------------------------------------------------------------- finding 9: precision under autocast
def test_naive_stays_float32_under_autocast() -> None:
    q, k, v = _qkv(n=64, d=16)
    want = _softmax_reference(q, k, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rows = attention._naive(q, k, v, None)
        windows = attention._naive(q, k, v, None, device_type="cuda", budget=1 << 30)
    for out in (rows, windows):
        torch.testing.assert_close(out, want, atol=2e-6, rtol=1e-5)


def test_rib_vectors_stay_float32_under_autocast() -> None:
    torch.manual_seed(0)
    layer = network.WindowAttention(16, 8, 2, 4)
    network._init_weights(layer)
    with torch.no_grad():
        want = layer.rib_vectors(torch.float32)
        layer._cache.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = layer.rib_vectors(torch.float32)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_naive_gets_unrounded_rib_vectors_from_a_bf16_model() -> None:
    """With bf16 activations, naive (the float32 reference) sees RIB vectors in float32, not bf16 copies."""
    q, k, v = (t.bfloat16() for t in _qkv(n=64, d=16))
    pos = torch.randn(2, 64, 4), torch.randn(2, 64, 4)
    assert attention.position_dtype("naive", torch.bfloat16) == torch.float32
    assert attention.position_dtype("sdpa", torch.bfloat16) == torch.bfloat16
    out = attend(q, k, v, backend="naive", scale=0.25, rib=pos)
    qc = torch.cat([q.float() * 0.25, pos[0].expand(5, -1, -1, -1)], -1)
    kc = torch.cat([k.float(), pos[1].expand(5, -1, -1, -1)], -1)
    torch.testing.assert_close(out.float(), _softmax_reference(qc, kc, v.float()).bfloat16().float())


def test_profile_reports_the_first_call_apart_and_its_tf32_setting(restore_tf32: None) -> None:
    from sst_cli.profiling import measure
    from sst_cli.profiling.grid import ProfileConfig

    tiny = {"dim": 16, "window_sizes": [8], "num_heads": [2], "ranks": [4], "n_blocks": 1, "exp_ratio": 2,
            "upsampler_type": "pixelshuffle_direct"}
    row = measure.measure(ProfileConfig("tiny", 2, "sdpa", "rib", "tf32", "cpu", (8, 8), warmup=1, repeat=1,
                                        network_g=tiny))
    assert row["status"] == "ok", row
    assert row["first_call_ms"] > 0 and len(row["latencies_ms"]) == 1  # the first call is no timed pass
    assert row["tf32_matmul"] is True and row["tf32_cudnn"] is True


def _tiny_upscaler(dtype: torch.dtype, auto: bool):
    from sst_cli.upscale.upscaler import Upscaler

    torch.manual_seed(0)
    net = SST(dim=12, window_sizes=(4,), num_heads=2, ranks=4, n_blocks=1, upscaling_factor=2)
    net = net.eval()
    source = copy.deepcopy(net) if auto else None  # what load_upscaler keeps when auto picks a half dtype
    return Upscaler(net.to(dtype).set_backend("sdpa"), "tiny", 2, torch.device("cpu"), dtype, "sdpa", "test",
                    tile=0, auto_dtype=auto, fp32_weights=source)


def test_16bit_images_keep_16bit_precision_when_the_dtype_was_auto() -> None:
    """The GPU default (auto -> bf16) must not round 16-bit images through bf16; the CPU stands in for the
    GPU here (the rule is the dtype's, not the device's)."""
    from sst_cli.upscale.array import upscale_array

    rng = np.random.default_rng(0)
    img16 = rng.integers(0, 65536, (12, 12, 3), dtype=np.uint16)
    img8 = (img16 >> 8).astype(np.uint8)
    auto_bf16, fp32 = _tiny_upscaler(torch.bfloat16, auto=True), _tiny_upscaler(torch.float32, auto=False)
    asked_bf16 = _tiny_upscaler(torch.bfloat16, auto=False)
    assert np.array_equal(upscale_array(img16, auto_bf16), upscale_array(img16, fp32))
    assert auto_bf16.for_pixels(np.dtype(np.uint16)) is auto_bf16.for_pixels(np.dtype(np.uint16))  # copied once
    assert auto_bf16.model.proj.weight.dtype == torch.bfloat16  # the bf16 model itself is untouched
    # 8-bit images and an explicitly asked bf16 stay in bf16.
    assert np.array_equal(upscale_array(img8, auto_bf16), upscale_array(img8, asked_bf16))
    assert not np.array_equal(upscale_array(img16, asked_bf16), upscale_array(img16, fp32))


# ---------------------------------------------------------------------------------------- make gpu-check
def test_gpu_check_without_cuda_exits_2_with_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import gpu_check

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.endswith(".") and "CUDA" in err


def test_gpu_check_list_prints_every_check_with_its_budget(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import gpu_check

    assert gpu_check.main(["--list"]) == 0
    text = capsys.readouterr().out
    for check in gpu_check.PLAN:
        assert check.name in text and check.what in text
    for needle in ("1280x720", "sst-l x2", "RIB vs RPB vs none", "200 iterations", "validation at 100", "--resume",
                   "4 decimals", "torchrun x2", "16-bit", "fp32 0.0001"):
        assert needle in text, needle
    assert sum(c.budget_s for c in gpu_check.PLAN) <= 600
    gpu_check.main(["--list", "--quick"])
    quick = capsys.readouterr().out
    assert int(quick.splitlines()[-1].split()[1]) <= 180
