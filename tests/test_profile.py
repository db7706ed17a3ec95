"""`sst profile`: tiny configurations through the real measurement path (fresh worker processes)."""

from __future__ import annotations

import csv
import json
import subprocess

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sst_cli.cli import main
from sst_cli.errors import SSTError
from sst_cli.profiling import grid, measure, runner
from sst_cli.profiling.grid import ProfileConfig

# A small SST (dim 16, windows 8 and 16) keeps each worker to about a second of compute.
TINY = {"dim": 16, "window_sizes": [8, 16], "num_heads": [2, 2], "ranks": [8, 8], "n_blocks": 1,
        "exp_ratio": 2, "upsampler_type": "pixelshuffle_direct"}


def tiny(backend: str = "sdpa", bias: str = "rib", hw: tuple[int, int] = (16, 16), **kw) -> ProfileConfig:
    kw.setdefault("warmup", 1)
    kw.setdefault("repeat", 2)
    kw.setdefault("dtype", "fp32")
    kw.setdefault("device", "cpu")
    return ProfileConfig("tiny", 2, backend, bias, input_hw=hw, network_g=TINY, **kw)


def check_schema(row: dict) -> None:
    assert set(grid.ROW_KEYS) <= set(row)
    assert row["mode"] in grid.MODES
    assert isinstance(row["input_hw"], list) and len(row["input_hw"]) == 2
    assert isinstance(row["status"], str) and row["status"]
    assert row["params"] > 0 and row["flops"] > 0


def test_small_and_large_inputs_run_in_workers_and_differ_in_memory():
    result = runner.profile([tiny(hw=(16, 16)), tiny(hw=(256, 256))])
    small, large = result["rows"]
    for row in (small, large):
        check_schema(row)
        assert row["status"] == "ok", row["status"]
        assert len(row["latencies_ms"]) == 2
        assert 0 < row["latency_ms_median"] <= row["latency_ms_p90"]
        assert row["tflops_per_s"] > 0
        assert row["mem_scope"] == "timed passes"
        # the worker's own memory: model + input loaded is less than the peak of a pass
        assert 0 < row["base_mem_mb"] <= row["peak_mem_mb"]
    assert large["flops"] > 100 * small["flops"]
    # 256x256 activations of a 16-channel model are tens of MB; a 16x16 input needs almost nothing.
    assert large["peak_mem_mb"] > small["peak_mem_mb"] + 20
    env = result["environment"]
    assert env["torch"] == torch.__version__ and env["cpu_threads"] >= 1
    assert "kernel_packages" in env and "flops_method" in env


def test_unavailable_and_unsupported_configurations_give_status_rows():
    configs = [
        tiny("fa3", "rib"),  # CUDA-only kernel
        tiny("fa3", "rpb"),  # and it takes no logit bias
        tiny("sdpa-flash", "rpb"),  # flash kernels take no additive bias, on any device
        tiny("sdpa", "rib", dtype="fp16"),  # fp16 on CPU
    ]
    if not torch.cuda.is_available():
        configs.append(tiny("sdpa", "rib", device="cuda:0"))
    rows = runner.profile(configs)["rows"]
    assert len(rows) == len(configs)
    for row in rows:
        check_schema(row)
        assert row["latency_ms_median"] is None and row["peak_mem_mb"] is None
    if torch.cuda.is_available():
        assert rows[0]["status"].startswith("backend unavailable") or rows[0]["status"] == "ok"
    else:
        assert rows[0]["status"].startswith("backend unavailable") and "CUDA" in rows[0]["status"]
        assert rows[4]["status"].startswith("device unavailable")
    assert rows[1]["status"].startswith("bias unsupported by backend") and "rpb" in rows[1]["status"]
    assert rows[2]["status"].startswith("bias unsupported by backend")
    assert rows[3]["status"].startswith("dtype unsupported")


def test_train_step_in_a_worker():
    cfg = tiny(hw=(16, 16), mode="train", batch=2, repeat=1, threads=1)
    row = runner.profile([cfg])["rows"][0]
    check_schema(row)
    assert row["status"] == "ok", row["status"]
    assert row["threads"] == 1 and row["cpu_ms_median"] > 0
    assert row["mode"] == "train" and row["latency_ms_median"] > 0
    # forward + backward: the attention matmuls cost exactly three forwards, convolutions a little more
    # (PyTorch's counter charges their backward ~3.8x the forward here)
    infer_flops = grid.count_flops(tiny(hw=(16, 16), batch=2))[1]
    assert 3 * infer_flops < row["flops"] < 4 * infer_flops


@pytest.mark.parametrize("bias", ["rib", "rpb", "none"])
def test_analytic_attention_flops_match_the_counter(bias):
    cfg = tiny(bias=bias, hw=(24, 40))  # not a multiple of 16: the windows pad
    model = grid.build(cfg, "meta").set_backend("naive")
    x = torch.empty(1, 3, 24, 40, device="meta")
    # With gradients on, RIB takes the concatenation path (q, k carry d + r channels, v keeps d): the
    # attention matmuls are exactly the batched ones the counter sees.
    with FlopCounterMode(display=False) as counter:
        model(x)
    counts = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    # RIB's position vectors come from two small einsums per layer (also batched matmuls): N x 32 x r per head.
    rib = sum(2 * 2 * w * w * 32 * r * h for w, r, h in zip(TINY["window_sizes"], TINY["ranks"], TINY["num_heads"], strict=True))
    assert counts["aten.bmm"] == grid.attention_flops(model, (24, 40)) + (rib if bias == "rib" else 0)


def test_model_flops_include_attention_for_every_backend():
    params, flops = grid.count_flops(tiny())
    assert params == sum(p.numel() for p in grid.build(tiny()).parameters())
    attn = grid.attention_flops(grid.build(tiny(), "meta"), (16, 16))
    assert flops > attn > 0  # attention and the convolutions are both in the count
    # Fused kernels are invisible to FlopCounterMode, so the count uses the reference attention: every backend,
    # fa3 included, is charged the same FLOPs, and RIB's extra q/k channels show up as extra FLOPs.
    assert grid.count_flops(tiny(backend="fa3"))[1] == flops
    assert flops > grid.count_flops(tiny(bias="none"))[1]


def test_out_of_memory_is_a_status():
    assert measure.failure_status(MemoryError()) == "out of memory"
    assert measure.failure_status(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")) == "out of memory"
    assert measure.failure_status(RuntimeError("DefaultCPUAllocator: not enough memory: you tried")) == "out of memory"
    assert measure.failure_status(ValueError("bad shape\nmore")) == "failed: ValueError: bad shape"


def test_a_worker_killed_by_the_oom_killer_is_reported_and_the_run_goes_on(monkeypatch):
    real_run = subprocess.run

    def killed(cmd, **kw):
        return subprocess.CompletedProcess(cmd, -9, stdout="", stderr="")

    monkeypatch.setattr(measure.subprocess, "run", killed)
    row = measure.run_config(tiny())
    assert row["status"] == "out of memory" and "SIGKILL" in row["detail"]
    monkeypatch.setattr(measure.subprocess, "run", real_run)


def test_grid_and_user_errors():
    configs = grid.build_grid(["sst-light", "sst"], [2, 4], ["sdpa", "naive"], ["rib", "rpb"], ["fp32"], ["cpu"],
                                size=(1280, 720))
    assert len(configs) == 2 * 2 * 2 * 2
    assert {c.input_hw for c in configs} == {(360, 640), (180, 320)}
    train = grid.build_grid(["sst-l"], [2], ["sdpa"], ["rib"], ["auto"], ["cpu"], train=True, patch=48, batch=8)
    assert train[0].input_hw == (48, 48) and train[0].mode == "train" and train[0].dtype == "fp32"
    assert grid.parse_size("1280x720") == (1280, 720)
    for bad in (dict(models=["nope"]), dict(backends=["fa9"]), dict(biases=["alibi"]), dict(dtypes=["fp8"])):
        args = dict(models=["sst-light"], scales=[4], backends=["sdpa"], biases=["rib"], dtypes=["fp32"],
                    devices=["cpu"]) | bad
        with pytest.raises(SSTError):
            grid.build_grid(**args)
    with pytest.raises(SSTError):
        grid.parse_size("big")
    if not torch.cuda.is_available():
        with pytest.raises(SSTError, match="--device all"):
            grid.expand_devices(["all"])


def test_paper_reference_names_the_gpu():
    row = {"model": "sst-l", "scale": 2, "bias": "rib", "backend": "fa3", "mode": "inference"}
    ref = runner.paper_reference(row)
    assert ref["gpu"] == "H200" and ref["latency_ms"] == pytest.approx(608.4) and ref["mem_mb"] == 2824
    ref = runner.paper_reference(row | {"device_name": "NVIDIA GeForce RTX 4090"})
    assert ref["gpu"] == "RTX4090" and ref["latency_ms"] == pytest.approx(1439.2)
    ref = runner.paper_reference(row | {"mode": "train"})
    assert ref["latency_ms"] == pytest.approx(370.0) and "Table 1" in ref["table"]
    ref = runner.paper_reference(row | {"bias": "rpb", "backend": "naive"})
    assert ref["mem_mb"] == 126181 and "Table 4" in ref["table"]
    assert runner.paper_reference(row | {"model": "sst-light"}) is None


def test_peak_tflops_table():
    assert measure.device_peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert measure.device_peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert measure.device_peak_tflops("NVIDIA A100-SXM4-80GB", "fp16") == 312.0
    assert measure.device_peak_tflops("AMD EPYC", "fp32") is None


def test_cli_json_and_csv(tmp_path, capsys):
    out_json, out_csv = tmp_path / "p.json", tmp_path / "p.csv"
    code = main(["profile", "--model", "sst-light", "--scale", "4", "--size", "32x32", "--backend", "sdpa,fa3",
                 "--bias", "rib", "--dtype", "fp32", "--device", "cpu", "--warmup", "0", "--repeat", "1",
                 "--json", str(out_json), "--csv", str(out_csv), "--compare-paper"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "sst profile" in printed and "backend unavailable: fa3" in printed
    data = json.loads(out_json.read_text())
    assert set(data) == {"environment", "rows"}
    sdpa, fa3 = data["rows"]
    for row in (sdpa, fa3):
        check_schema(row)
        assert row["input_hw"] == [8, 8] and row["output_hw"] == [32, 32] and "paper" in row
    assert sdpa["status"] == "ok" and sdpa["latency_ms_median"] > 0 and sdpa["peak_mem_mb"] > 0
    assert fa3["status"].startswith("backend unavailable")
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["backend"] for r in rows] == ["sdpa", "fa3"] and rows[0]["input_hw"] == "8x8"


def test_cli_user_error_is_one_sentence(capsys):
    assert main(["profile", "--model", "sst-huge", "--device", "cpu"]) == 2  # a usage error, found at parse time
    assert "not a model" in capsys.readouterr().err
