"""The strict kernel stand-ins (tests/kernels.py): they refuse what the real kernels refuse, with the real
messages, and sst's backends run through them, wrapper and whole commands alike."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
from pathlib import Path

import kernels
import pytest
import torch
from PIL import Image
from torch.nn.attention import SDPBackend, sdpa_kernel

from conftest import data_path
from sst_cli.cli import main as cli_main
from sst_cli.model import attention
from sst_cli.model.attention import attend, resolve_backend, unavailable_reason
from sst_cli.training import loop


def _bnhd(d: int = 32, dv: int | None = None, dtype: torch.dtype = torch.bfloat16, n: int = 16, h: int = 2):
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, n, h, d, generator=g).to(dtype) for _ in range(2))
    return q, k, torch.randn(2, n, h, dv or d, generator=g).to(dtype)


FLASH = {
    "fa2": lambda: importlib.import_module("flash_attn").flash_attn_func,
    "fa3": lambda: importlib.import_module("flash_attn_interface").flash_attn_func,
    "fa4": lambda: importlib.import_module("flash_attn.cute").flash_attn_func,
}
FP32 = {"fa2": "FlashAttention only support fp16 and bf16 data type",
        "fa3": "FlashAttention only supports fp16, bf16, and fp8_e4m3 data type",
        "fa4": "inputs must be float16 or bfloat16"}
OVER_256 = {"fa2": "FlashAttention forward only supports head dimension at most 256",
            "fa3": "FlashAttention forward only supports head dimension at most 256",
            "fa4": "head_dim must be less than or equal to 256"}


@pytest.mark.parametrize("name", FLASH)
def test_flash_doubles_refuse_fp32_with_the_real_message(strict_kernels, name) -> None:
    with pytest.raises((RuntimeError, AssertionError), match=FP32[name]):
        FLASH[name]()(*_bnhd(dtype=torch.float32), softmax_scale=1.0)


@pytest.mark.parametrize("name", FLASH)
def test_flash_doubles_refuse_a_head_dim_over_256(strict_kernels, name) -> None:
    with pytest.raises((RuntimeError, AssertionError), match=OVER_256[name]):
        FLASH[name]()(*_bnhd(d=264), softmax_scale=1.0)


def test_head_dims_not_a_multiple_of_8_where_the_real_kernels_refuse_them(strict_kernels) -> None:
    # flash-attn 2's Python wrapper pads q, k and v to a multiple of 8 itself: accepted.
    out = FLASH["fa2"]()(*_bnhd(d=20), softmax_scale=1.0)
    assert out.shape == (2, 16, 2, 20)
    with pytest.raises(RuntimeError, match="head_size should be a multiple of 8"):
        FLASH["fa3"]()(*_bnhd(d=20), softmax_scale=1.0)
    with pytest.raises(AssertionError, match="head_dim must be divisible by 8"):
        FLASH["fa4"]()(*_bnhd(d=20), softmax_scale=1.0)
    # v narrower than q/k: FA3 and FA4 take it (a multiple of 8), FA2 wants one head size
    assert FLASH["fa3"]()(*_bnhd(d=24, dv=16), softmax_scale=1.0).shape == (2, 16, 2, 16)
    assert FLASH["fa4"]()(*_bnhd(d=24, dv=16), softmax_scale=1.0)[0].shape == (2, 16, 2, 16)
    with pytest.raises(RuntimeError, match=r"v must have shape \(batch_size, seqlen_k, num_heads_k, head_size\)"):
        FLASH["fa2"]()(*_bnhd(d=24, dv=16), softmax_scale=1.0)


@pytest.mark.parametrize("name", ["fa2", "fa3"])
def test_flash_doubles_refuse_a_wrong_layout(strict_kernels, name) -> None:
    q, k, v = _bnhd(n=16, h=2)
    # k in SDPA's (B, H, N, D) layout beside a (B, N, H, D) q: heads 16 vs 2
    with pytest.raises(RuntimeError, match="Number of heads in key/value must divide number of heads in query"):
        FLASH[name]()(q, k.transpose(1, 2), v.transpose(1, 2), softmax_scale=1.0)
    with pytest.raises(RuntimeError, match=r"v must have shape"):
        FLASH[name]()(q, k, v.transpose(1, 2).contiguous(), softmax_scale=1.0)


def test_fa4_double_refuses_a_wrong_layout(strict_kernels) -> None:
    q, k, v = _bnhd(n=16, h=2)
    with pytest.raises(AssertionError, match="num_head must be divisible by num_head_kv"):
        FLASH["fa4"]()(q, k.transpose(1, 2), v.transpose(1, 2), softmax_scale=1.0)


def test_doubles_need_cuda_without_the_switch(monkeypatch) -> None:
    kernels.install(monkeypatch, on_cpu=False)
    with pytest.raises(RuntimeError, match="q must be on CUDA"):
        FLASH["fa2"]()(*_bnhd(), softmax_scale=1.0)
    with pytest.raises(AssertionError, match="inputs must be on CUDA device"):
        FLASH["fa4"]()(*_bnhd(), softmax_scale=1.0)
    attention._probe.cache_clear()


def test_flash_doubles_compute_attention_in_their_layout(strict_kernels) -> None:
    q, k, v = _bnhd(d=32)
    ref = attend(*(t.transpose(1, 2) for t in (q, k, v)), backend="naive").transpose(1, 2)
    for name in FLASH:
        out = FLASH[name]()(q, k, v, softmax_scale=1.0)
        out = out[0] if isinstance(out, tuple) else out
        assert (out.float() - ref.float()).abs().max() < 2e-2, name


# ------------------------------------------------------------------------------------------ SDPA
def _sdpa_case(d: int = 32, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 2, 16, d, generator=g).to(dtype) for _ in range(3)]


@pytest.mark.parametrize("kernel", [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION])
def test_sdpa_half_kernels_refuse_fp32_like_cuda(strict_kernels, kernel) -> None:
    with sdpa_kernel([kernel]), pytest.warns(UserWarning, match="Expected query, key and value to all be of dtype"):
        with pytest.raises(RuntimeError, match="No available kernel. Aborting execution."):
            torch.nn.functional.scaled_dot_product_attention(*_sdpa_case())


def test_sdpa_flash_refuses_masks_big_heads_and_strided_last_dims(strict_kernels) -> None:
    q, k, v = _sdpa_case(dtype=torch.bfloat16)
    cases = [
        ((q, k, v), {"attn_mask": torch.zeros(16, 16, dtype=torch.bfloat16)}, "does not support non-null attn_mask"),
        (_sdpa_case(d=264, dtype=torch.bfloat16), {}, "less than or equal to 256"),
        ((q, k, v[..., ::2].repeat(1, 1, 1, 2)[..., ::2]), {}, "same last dimension"),
        ((q.transpose(-1, -2).contiguous().transpose(-1, -2), k, v), {}, "last dimension of the input to have stride 1"),
    ]
    for args, kw, reason in cases:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), pytest.warns(UserWarning, match=reason):
            with pytest.raises(RuntimeError, match="No available kernel"):
                torch.nn.functional.scaled_dot_product_attention(*args, **kw)


def test_sdpa_efficient_takes_fp32_and_masks_but_not_unaligned_heads(strict_kernels) -> None:
    q, k, v = _sdpa_case()
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=torch.zeros(16, 16))
        assert out.shape == q.shape
        with pytest.warns(UserWarning, match="divisible by 4"), pytest.raises(RuntimeError, match="No available kernel"):
            torch.nn.functional.scaled_dot_product_attention(*_sdpa_case(d=10))


# ----------------------------------------------------------------------- sst's backends through them
HALF_ONLY = ["fa2", "fa3", "fa4", "sdpa-flash", "sdpa-cudnn"]


@pytest.mark.parametrize("name", HALF_ONLY)
def test_half_only_backends_are_reported_unavailable_in_fp32(strict_kernels, name) -> None:
    reason = unavailable_reason(name, "cpu", torch.float32)
    assert reason is not None and reason.endswith(".") and "\n" not in reason


@pytest.mark.parametrize("fa3_lse", [False, True], ids=["fa3-out", "fa3-out-lse"])
@pytest.mark.parametrize("name", HALF_ONLY)
def test_half_only_backends_run_bf16_through_the_doubles(monkeypatch, name, fa3_lse) -> None:
    if fa3_lse and name != "fa3":
        pytest.skip("one return convention only")
    kernels.install(monkeypatch, fa3_returns_lse=fa3_lse)
    try:
        assert resolve_backend(name, "cpu", torch.bfloat16) == name
        g = torch.Generator().manual_seed(1)
        q, k = (torch.randn(3, 2, 64, 20, generator=g).bfloat16() for _ in range(2))  # 20: padded to 24
        v = torch.randn(3, 2, 64, 12, generator=g).bfloat16()
        out = attend(q, k, v, backend=name, scale=0.3)
        ref = attend(q, k, v, backend="naive", scale=0.3)
        assert out.shape == v.shape and out.dtype == torch.bfloat16
        assert (out.float() - ref.float()).abs().max() < 2e-2
    finally:
        attention._probe.cache_clear()


def test_auto_picks_the_first_cuda_kernel_for_bf16_and_a_float32_one_for_fp32(strict_kernels) -> None:
    assert resolve_backend("auto", "cpu", torch.bfloat16) == "fa3"
    assert resolve_backend("auto", "cpu", torch.float32) == "sdpa"
    assert attention.fp32_backend("fa3", "cpu") == "sdpa"
    assert attention.fp32_backend("sdpa-efficient", "cpu") == "sdpa-efficient"


# ------------------------------------------------------------- whole commands through a half-only kernel
REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 32x32 crops of Set5 images: training and validation set."""
    out = tmp_path_factory.mktemp("crops")
    for name in ("baby", "bird"):
        im = Image.open(data_path("Set5", "HR", f"{name}.png")).convert("RGB")
        w, h = im.size
        im.crop((w // 2 - 16, h // 2 - 16, w // 2 + 16, h // 2 + 16)).save(out / f"{name}.png")
    return out


def _train(crops: Path, run: Path, *sets: str) -> int:
    args = ["train", "--config", str(TINY), "--run-dir", str(run), "--device", "cpu"]
    for s in (f"train_hr=[{crops}]", f"val_sets=[{crops}]", "iters=4", "val_every=2", "ckpt_every=2",
              "log_every=2", "warmup=0", "bf16=true", "backend=auto", *sets):
        args += ["--set", s]
    return cli_main(args)


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_bf16_training_with_auto_validates_in_fp32_with_a_backend_that_runs_it(strict_kernels, crops, tmp_path,
                                                                                capsys) -> None:
    assert _train(crops, tmp_path / "run") == 0
    assert strict_kernels.calls["fa3"] > 0  # auto picked FA3 for bf16 training, as on an H100
    vals = [r for r in _records(tmp_path / "run") if "val_dtype" in r]
    assert [r["iter"] for r in vals] == [2, 4]
    assert all(r["val_dtype"] == "fp32" and r["val_backend"] == "sdpa" and "val_psnr_y" in r for r in vals)
    assert "validation (fp32, sdpa)" in capsys.readouterr().out
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_checkpoint_is_saved_before_validation_and_a_failed_validation_loses_nothing(strict_kernels, crops,
                                                                                     tmp_path, monkeypatch) -> None:
    from sst_cli.evaluation import runner

    seen: list[list[str]] = []

    def failing(model, tasks, name="model", options=None, dist=None):  # noqa: ANN001, ANN202 - the real signature
        seen.append(sorted(p.name for p in (tmp_path / "run").glob("ckpt_*.pt")))
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop, "evaluate_model", failing)
    assert runner.evaluate_model is not failing
    assert _train(crops, tmp_path / "run") == 0
    assert seen == [["ckpt_00000002.pt"], ["ckpt_00000002.pt", "ckpt_00000004.pt"]]  # saved, then validated
    errors = [r for r in _records(tmp_path / "run") if "val_error" in r]
    assert [r["iter"] for r in errors] == [2, 4] and "out of memory" in errors[0]["val_error"]
    assert (tmp_path / "run" / "final.safetensors").is_file()
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_upscale_runs_through_a_half_only_kernel_and_refuses_it_in_fp32(strict_kernels, crops, tmp_path,
                                                                         capsys) -> None:
    src = crops / "baby.png"
    assert cli_main(["upscale", str(src), str(tmp_path / "out.png"), "--device", "cpu", "--dtype", "bf16",
                     "--backend", "fa2"]) == 0
    assert strict_kernels.calls["fa2"] > 0 and Image.open(tmp_path / "out.png").size == (128, 128)
    capsys.readouterr()
    assert cli_main(["upscale", str(src), str(tmp_path / "fp32.png"), "--device", "cpu", "--dtype", "fp32",
                     "--backend", "fa2"]) == 1
    err = capsys.readouterr().err
    assert "fa2 runs only in fp16/bf16" in err and "Traceback" not in err and not (tmp_path / "fp32.png").exists()


def test_eval_runs_through_a_half_only_kernel_and_reports_it(strict_kernels, crops, capsys) -> None:
    assert cli_main(["eval", "--dataset", str(crops), "--scale", "4", "--device", "cpu", "--dtype", "bf16",
                     "--backend", "fa4", "--json", "-"]) == 0
    settings = json.loads(capsys.readouterr().out)["settings"]
    assert (settings["backend"], settings["dtype"]) == ("fa4", "bfloat16") and strict_kernels.calls["fa4"] > 0
    # eval's default dtype is fp32: an explicit half-only backend is refused in one sentence
    assert cli_main(["eval", "--dataset", str(crops), "--scale", "4", "--device", "cpu", "--backend", "fa4"]) == 1
    err = capsys.readouterr().err
    assert "fa4 runs only in fp16/bf16" in err and "Traceback" not in err


def test_profile_workers_run_the_doubles_and_report_their_refusals(strict_kernels, tmp_path, capsys) -> None:
    out = tmp_path / "p.json"
    assert cli_main(["profile", "--model", "sst-light", "--scale", "4", "--size", "32x16", "--backend", "fa3",
                     "--dtype", "bf16,fp32", "--device", "cpu", "--warmup", "0", "--repeat", "1", "--threads", "1",
                     "--json", str(out)]) == 0
    bf16, fp32 = json.loads(out.read_text())["rows"]
    assert bf16["status"] == "ok" and bf16["latency_ms_median"] > 0  # in a worker process, through the double
    assert fp32["status"].startswith("backend unavailable: fa3 runs only in fp16/bf16")


def test_kernel_versions_are_recorded_under_their_distribution_names(monkeypatch) -> None:
    from sst_cli.cli import env
    from sst_cli.profiling import measure

    installed = {"flash-attn-4": "4.0.0b1", "flash_attn_3": "3.0.0", "flash-attn": "2.8.3"}

    def version(name: str) -> str:
        if name in installed:
            return installed[name]
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert measure._package_versions() == installed  # FA4's distribution is flash-attn-4
    assert {k: v for k, v in env.collect()["packages"].items() if k in installed} == installed
