"""`sst profile`: tiny configurations through the real measurement path (fresh worker processes)."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import re
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import sst_cli
from sst_cli.cli import main
from sst_cli.errors import SSTError, UsageError
from sst_cli.profiling import grid, measure, runner, schema, table
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
    assert set(schema.ROW_KEYS) <= set(row)
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
    for bad in (dict(models=["nope"]), dict(backends=["fa9"]), dict(biases=["alibi"]), dict(dtypes=["fp8"])):
        args = dict(models=["sst-light"], scales=[4], backends=["sdpa"], biases=["rib"], dtypes=["fp32"],
                    devices=["cpu"]) | bad
        with pytest.raises(SSTError):
            grid.build_grid(**args)
    if not torch.cuda.is_available():
        with pytest.raises(SSTError, match="--device all"):
            grid.expand_devices(["all"])


def test_paper_figure_only_beside_the_same_model_scale_size_and_backend():
    row = {"model": "sst-l", "scale": 2, "bias": "rib", "backend": "fa3", "mode": "inference", "input_hw": [360, 640]}
    ref = runner.paper_reference(row)
    assert ref["gpu"] == "H200" and ref["latency_ms"] == pytest.approx(608.4) and ref["mem_mb"] == 2824
    # the row's own GPU when the paper has it (FA3 does not run on an RTX 4090: FA2 is what the paper could run)
    ref = runner.paper_reference(row | {"backend": "fa2", "device_name": "NVIDIA GeForce RTX 4090"})
    assert ref["gpu"] == "RTX4090" and ref["latency_ms"] == pytest.approx(1439.2)
    # x3 of a 1280x720 request is a 1278x720 output (input 426x240): still the paper's size
    assert runner.paper_reference(row | {"scale": 3, "input_hw": [240, 426]})["latency_ms"] == pytest.approx(276.3)
    ref = runner.paper_reference(row | {"mode": "train", "input_hw": [64, 64]})
    assert ref["latency_ms"] == pytest.approx(370.0) and "Table 1" in ref["table"]
    # the bias ablation model is sst+ at x2 (its parameter counts are ours with rib and rpb)
    ablation = row | {"model": "sst+", "bias": "rpb", "backend": "naive"}
    assert runner.paper_reference(ablation)["mem_mb"] == 126181
    assert sum(p.numel() for p in grid.build(ProfileConfig("sst+", 2, "naive", "rpb", "fp32", "cpu", (8, 8)),
                                            "meta").parameters()) == pytest.approx(13.6e6, rel=0.01)
    # no figure, and why: another backend, size, model, or a training patch the paper did not use
    for change, word in (({"backend": "sdpa"}, "backend sdpa"), ({"input_hw": [64, 64]}, "size 128x128"),
                         ({"model": "sst-light"}, "model sst-light"),
                         ({"mode": "train", "input_hw": [48, 48]}, "size 48x48"),
                         ({"model": "sst", "bias": "rpb", "backend": "naive"}, "bias rpb")):
        ref, why = runner.paper_match(row | change)
        assert ref is None and why.startswith(word), why


def test_peak_tflops_table():
    assert measure.device_peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert measure.device_peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert measure.device_peak_tflops("NVIDIA A100-SXM4-80GB", "fp16") == 312.0
    assert measure.device_peak_tflops("AMD EPYC", "fp32") is None


def test_cli_json_csv_and_plot(tmp_path, capsys):
    out_json, out_csv, out_png = tmp_path / "p.json", tmp_path / "p.csv", tmp_path / "p.png"
    has_mpl = importlib.util.find_spec("matplotlib") is not None
    code = main(["profile", "--model", "sst-light", "--scale", "4", "--size", "32x16", "--backend", "sdpa,fa3",
                 "--bias", "rib", "--dtype", "fp32", "--device", "cpu", "--warmup", "0", "--repeat", "1",
                 "--threads", "1", "--json", str(out_json), "--csv", str(out_csv), "--compare-paper"]
                + ["--plot", str(out_png)] * has_mpl)
    assert code == 0
    printed = capsys.readouterr().out
    assert "sst profile" in printed and "n/a [1]" in printed and "[1] backend unavailable: fa3" in printed
    # sizes read WxH; the paper has no sst-light speed figure, and the run says so instead of borrowing one
    assert "input 8x4 → output 32x16" in printed and "no paper figure: model sst-light" in printed
    assert max(map(len, printed.splitlines())) <= 80
    data = json.loads(out_json.read_text())
    assert set(data) == {"environment", "rows"}
    assert data["environment"]["schema_version"] == schema.SCHEMA_VERSION
    assert data["environment"]["sst"] == sst_cli.__version__
    sdpa, fa3 = data["rows"]
    for row in (sdpa, fa3):
        check_schema(row)
        assert row["input_hw"] == [4, 8] and row["output_hw"] == [16, 32] and row["paper"] is None
        assert row["paper_missing"].startswith("model sst-light")
    assert sdpa["status"] == "ok" and sdpa["latency_ms_median"] > 0 and sdpa["peak_mem_mb"] > 0
    assert fa3["status"].startswith("backend unavailable")
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["backend"] for r in rows] == ["sdpa", "fa3"] and rows[0]["input_wxh"] == "8x4"
    assert out_png.read_bytes().startswith(b"\x89PNG") if has_mpl else not out_png.exists()


def test_cli_nothing_measured_exits_1_after_saying_why(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["profile", "--backend", "fa3", "--device", "cpu", "--json", str(out)]) == 1
    captured = capsys.readouterr()
    assert "[1] backend unavailable: fa3 needs a CUDA GPU" in captured.out
    assert "nothing could be measured" in captured.err and "Traceback" not in captured.err
    assert json.loads(out.read_text())["rows"][0]["input_hw"] == [64, 64]  # the CPU default: 256x256 output


def test_cli_under_torchrun_only_rank_0_measures(tmp_path, capsys, monkeypatch):
    out = tmp_path / "p.json"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["profile", "--backend", "sdpa", "--device", "cpu", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == captured.err == "" and not out.exists()  # quietly, without measuring
    monkeypatch.setenv("RANK", "0")
    assert main(["profile", "--backend", "fa3", "--device", "cpu", "--json", str(out)]) == 1  # fa3: nothing to run
    assert "measuring on rank 0 only" in capsys.readouterr().err and out.exists()
    assert main(["profile", "--help"]) == 0
    assert "torchrun only rank 0 measures" in re.sub(r"\s+", " ", capsys.readouterr().out)


def test_cli_compare_merges_files_into_one_80_column_table(tmp_path, capsys):
    reason = "out of memory"
    a = result_file(tmp_path / "a.json", [result_row("sdpa", 480.0), result_row("naive", 1200.0, 420.0),
                                          result_row("flex", None, None, reason)],
                    schema_version=1, sst="0.2.0", host="laptop", cpu_threads=2)
    b = result_file(tmp_path / "b.json", [result_row("sdpa", 30.0, device="cuda:0", name="NVIDIA H100 80GB HBM3",
                                                     peak_mem_mb=None)])  # an older file: no versions
    out_json, out_csv = tmp_path / "c.json", tmp_path / "c.csv"
    assert main(["profile", "compare", a, b, "--json", str(out_json), "--csv", str(out_csv)]) == 0
    printed = capsys.readouterr().out
    assert max(map(len, printed.splitlines())) <= 80
    lines = [line.split() for line in printed.splitlines()]
    assert ["backend", "A", "ms", "B", "ms", "B/A", "A", "MB", "B", "MB"] in lines
    assert ["sdpa", "480", "30", "0.06", "300", "–"] in lines and ["naive", "1200", "–", "–", "420", "–"] in lines
    assert ["flex", "OOM", "[1]", "–", "–", "–", "–"] in lines and "[1] out of memory" in printed
    assert "A: Intel Xeon Platinum 8481C, 2 threads · laptop, sst 0.2.0" in printed
    assert "B: H100 80GB HBM3, sst version not recorded" in printed
    merged = json.loads(out_json.read_text())
    assert [c["file"] for c in merged["columns"]] == [a, b] and len(merged["rows"]) == 3
    assert len(list(csv.DictReader(out_csv.open()))) == 4
    # the merged table is no result file: comparing it again is refused by name
    assert main(["profile", "compare", str(out_json)]) == 1
    assert "c.json is a merged table" in capsys.readouterr().err


def test_cli_compare_refusals(tmp_path, capsys, monkeypatch):
    ok = result_file(tmp_path / "ok.json", [result_row("sdpa", 1.0)])
    future = result_file(tmp_path / "future.json", [], schema_version=schema.SCHEMA_VERSION + 1)
    assert main(["profile", "compare", ok, future]) == 1
    err = capsys.readouterr().err
    assert "future.json uses result schema" in err and "upgrade sst" in err
    assert main(["profile", "compare", ok, "--plot", str(tmp_path / "p.jpg")]) == 2
    assert "PNG or SVG" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the `plot` extra were not installed
    for args in (["profile", "compare", ok], ["profile", "--backend", "sdpa", "--device", "cpu"]):
        # issue 23: exit 2 before anything is measured (a usage error), not after minutes of measuring
        assert main([*args, "--plot", str(tmp_path / "p.png")]) == 2
        captured = capsys.readouterr()
        err = " ".join(captured.err.split())
        assert "needs matplotlib" in err and "sst-cli[plot]" in err and "or drop --plot" in err
        assert "Traceback" not in err and captured.out == ""  # no table: nothing was measured
    assert sorted(p.name for p in tmp_path.iterdir()) == ["future.json", "ok.json"]


def test_tables_fit_80_columns():
    from rich.console import Console
    from rich.measure import Measurement

    from sst_cli.cli.profile import _render, _rich_table
    from sst_cli.profiling import compare
    from sst_cli.profiling.table import compare_tables, run_table

    fa3 = "backend unavailable: fa3 needs a CUDA GPU (cpu/float32 requested)."
    rpb = "bias unsupported by backend: fa3 takes no additive logit bias, so rpb cannot run on it (rpb runs with ...)."
    rows = [result_row(b, 900.0, flops=48e9, tflops_per_s=0.05, cpu_ms_median=1800.0, bias=bias,
                       status="ok" if b != "fa3" else (fa3 if bias == "rib" else rpb))
            for bias in ("rib", "rpb") for b in ("sdpa", "naive", "fa3")]
    paper = {"gpu": "H200", "table": "Table S4 (inference)", "latency_ms": 608.4, "mem_mb": 2824.0, "note": ""}
    gpu_rows = [result_row("fa3", 650.0, 2900.0, device="cuda:0", name="NVIDIA H100 80GB HBM3", model="sst-l", scale=2,
                           input_hw=[360, 640], flops=18e12, tflops_per_s=27.7, peak_fraction=0.028, paper=paper),
                result_row("sdpa", 900.0, 3100.0, device="cuda:0", name="NVIDIA H100 80GB HBM3", model="sst-l", scale=2,
                           input_hw=[360, 640], flops=18e12, tflops_per_s=20.0, peak_fraction=0.02,
                           paper_missing="backend sdpa: the paper has fa2, fa3")]
    merged = compare.merge([(f"run{i}/machine-{i}.json", {"environment": {"host": f"host-{i}"}, "rows": rows})
                            for i in range(5)])
    tables = compare_tables(merged)  # five machines: too wide for one table
    assert [t.title for t in tables] == ["sst profile compare: latency", "sst profile compare: peak memory"]
    for t in (run_table({"environment": {}, "rows": rows}), run_table({"environment": {}, "rows": gpu_rows}, True),
              *tables):
        console = Console(width=80, record=True, file=io.StringIO())
        # the table's natural width fits, so nothing is folded to fit
        assert Measurement.get(console, console.options, _rich_table(t)).maximum <= 80, t.columns
        _render(t, console)
        text = console.export_text()
        assert max(map(len, text.splitlines())) <= 80
        assert "[1]" in text or "paper" in text
    text = " ".join(text.split())
    assert "[1] " + fa3 in text and "[2] " + rpb in text


def test_cli_user_error_is_one_sentence(capsys):
    assert main(["profile", "--model", "sst-huge", "--device", "cpu"]) == 2  # a usage error, found at parse time
    assert "'sst-huge' is not a model" in capsys.readouterr().err
    assert main(["profile", "--backend", "sdpa,nope", "--device", "cpu"]) == 2
    assert "'nope' is not an attention backend" in " ".join(capsys.readouterr().err.split())


# ------------------------------------------------------------------------- result files and compare
def result_row(backend: str, ms: float | None, mb: float | None = 300.0, status: str = "ok", device: str = "cpu",
               name: str = "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", **kw) -> dict:
    row = {"model": "sst-light", "scale": 4, "backend": backend, "bias": "rib", "dtype": "fp32", "device": device,
           "input_hw": [64, 48], "output_hw": [256, 192], "batch": 1, "mode": "inference", "status": status,
           "latency_ms_median": ms, "latency_ms_p90": ms, "peak_mem_mb": mb, "device_name": name, "threads": 2}
    return row | kw


def result_file(path, rows: list[dict], **env) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"environment": env, "rows": rows}))
    return str(path)


def test_environment_records_schema_and_sst_versions():
    env = measure.environment()
    assert env["schema_version"] == schema.SCHEMA_VERSION and env["sst"] == sst_cli.__version__
    assert env["host"] and env["torch"] == torch.__version__


def test_merge_files_of_different_versions_with_missing_fields(tmp_path):
    from sst_cli.profiling import compare

    fa3_reason = "backend unavailable: fa3 needs a CUDA GPU (cpu/float32 requested)."
    new = result_file(tmp_path / "new.json", [result_row("sdpa", 400.0), result_row("naive", 1000.0, 420.0),
                                              result_row("fa3", None, None, fa3_reason)],
                      schema_version=1, sst="0.3.0", host="box1", cpu_threads=2)
    # written before sst recorded its version: no schema_version, no host; one row without peak memory
    old = result_file(tmp_path / "old.json", [result_row("sdpa", 200.0, name="AMD EPYC 7B13 64-Core Processor",
                                                         peak_mem_mb=None) | {"threads": None},
                                              result_row("flex", 50.0, device="cuda:0", name="NVIDIA H100 80GB HBM3")],
                      cpu_threads=8)
    comp = compare.merge([(p, schema.read_result(p)) for p in (new, old)])
    assert [c.label for c in comp.columns] == ["Intel Xeon Platinum 8481C, 2 threads · box1", "AMD EPYC 7B13 64-Core, 8 threads",
                                               "H100 80GB HBM3"]
    assert [c.schema for c in comp.columns] == [1, 0, 0] and comp.columns[1].sst is None
    assert [compare.config_words(comp.config(k))[2] for k in comp.keys] == ["sdpa", "naive", "fa3", "flex"]
    sdpa, naive, fa3, flex = comp.keys
    assert comp.ratio(sdpa, 1) == pytest.approx(0.5) and comp.value(sdpa, 1, "peak_mem_mb") is None
    assert comp.ratio(naive, 1) is None and comp.cells[naive][1] is None  # only in the first file
    assert comp.ratio(flex, 2) is None and comp.value(flex, 2, "latency_ms_median") == 50.0  # no baseline
    data = compare.to_json(comp)
    assert data["schema_version"] == schema.SCHEMA_VERSION and data["rows"][0]["input_wxh"] == "48x64"
    assert data["rows"][0]["results"][1] | {"column": None} == {
        "column": None, "status": "ok", "latency_ms": 200.0, "latency_ms_p90": 200.0, "peak_mem_mb": None,
        "latency_ratio": 0.5, "peak_mem_ratio": None}
    assert len(compare.csv_rows(comp)) == 5  # configuration x column pairs that exist

    from sst_cli.profiling.table import compare_tables

    (t,) = compare_tables(comp)
    assert t.columns == ["backend", "A ms", "B ms", "B/A", "C ms", "C/A", "A MB", "B MB", "C MB"]
    assert t.rows[0] == ["sdpa", "400", "200", "0.50", "–", "–", "300", "–", "–"]
    assert t.rows[2][:2] == ["fa3", "n/a [1]"] and t.notes == ["[1] " + fa3_reason]
    assert any(line.startswith("B: AMD EPYC") and "sst version not recorded" in line for line in t.caption)
    assert "sst-light · x4 · rib · fp32 · input 48x64 · batch 1 · inference" in t.caption


def test_columns_from_one_machine_are_told_apart_by_file(tmp_path):
    from sst_cli.profiling import compare

    rows = [result_row("sdpa", 10.0)]
    a = result_file(tmp_path / "run1" / "p.json", rows, host="h")
    b = result_file(tmp_path / "run2" / "p.json", rows, host="h")
    c = result_file(tmp_path / "c.json", rows, host="h")
    comp = compare.merge([(p, schema.read_result(p)) for p in (a, b, c, c)])
    labels = [col.label for col in comp.columns]
    assert len(set(labels)) == 4
    assert labels[0].endswith(f"({a})") and labels[1].endswith(f"({b})") and labels[2].endswith("(c.json)")
    assert labels[3].endswith("(c.json) #2")


def test_unreadable_or_future_result_files_are_refused_by_name(tmp_path):
    future = result_file(tmp_path / "future.json", [], schema_version=schema.SCHEMA_VERSION + 1, sst="9.0")
    with pytest.raises(SSTError, match=r"future\.json uses result schema 2 \(written by sst 9\.0\).*upgrade sst"):
        schema.read_result(future)
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "rows.json").write_text('{"rows": [1]}')
    for name, words in (("list.json", "not an `sst profile --json` result"), ("bad.json", "is not JSON"),
                        ("rows.json", "rows are not objects"), ("missing.json", "does not exist")):
        with pytest.raises(SSTError, match=re.escape(words)) as exc:
            schema.read_result(tmp_path / name)
        assert name in str(exc.value)


def test_plot_without_matplotlib_is_one_sentence(monkeypatch, tmp_path):
    from sst_cli.profiling import compare, plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    comp = compare.merge([("a", {"environment": {}, "rows": [result_row("sdpa", 1.0)]})])
    with pytest.raises(SSTError, match=r"needs matplotlib.*pip install 'sst-cli\[plot\]'"):
        plot.plot(comp, tmp_path / "p.png")
    assert not list(tmp_path.iterdir())
    with pytest.raises(UsageError, match="PNG or SVG"):
        plot.plot_format("p.jpg")


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_draws_png_and_svg(tmp_path, suffix):
    pytest.importorskip("matplotlib", reason="matplotlib (the optional `plot` extra) is not installed")
    from sst_cli.profiling import compare, plot

    rows = [result_row("sdpa", 400.0), result_row("naive", 900.0), result_row("fa3", None, None, "backend unavailable")]
    comp = compare.merge([("a", {"environment": {"host": "h"}, "rows": rows}),
                          ("b", {"environment": {}, "rows": [result_row("sdpa", 200.0, name="EPYC")]})])
    out = plot.plot(comp, tmp_path / f"p{suffix}")
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in data[:2000]
    assert [p.name for p in tmp_path.iterdir()] == [f"p{suffix}"]


def test_cpu_default_size_and_torchrun_rank(monkeypatch):
    configs = grid.build_grid(["sst-light"], [4], ["sdpa"], ["rib"], ["auto"], ["cpu"])
    assert configs[0].input_hw == (64, 64)  # 256x256 output: seconds on a CPU
    assert (configs[0].warmup, configs[0].repeat) == (1, 5)
    assert grid.default_size("cuda:0") == (1280, 720) and grid.default_passes("cuda:0") == (3, 10)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert runner.torchrun_rank() == (1, 2)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert runner.torchrun_rank() is None


def test_padding_of_a_small_input_is_stated_in_the_table_and_the_json():
    """Each layer pads to a multiple of its window: a 4x8 input to windows of 16 costs what 16x16 costs."""
    small, exact = tiny(backend="fa3", hw=(4, 8)), tiny(backend="fa3", hw=(32, 16))  # fa3: a status row, no worker
    assert grid.padded_hw(small) == (16, 16) and grid.padded_hw(exact) == (32, 16)
    result = runner.profile([small, exact])
    assert [r["padded_hw"] for r in result["rows"]] == [[16, 16], [32, 16]]
    t = table.run_table(result)
    padded = [line for line in t.caption if "pad" in line]
    assert padded == ["windows pad the input: 8x4 to 16x16 (costs are those of the padded size)"]
    t = table.run_table({**result, "rows": result["rows"][1:]})  # no padding: nothing said
    assert not [line for line in t.caption if "pad" in line]


# ----------------------------------------------------------------------- backend probing (issue 22, finding 10)
@pytest.fixture
def fresh_probes():
    """No availability answer cached by another test (it would hide a probe), none left for the next."""
    from sst_cli.model import attention

    attention._probe.cache_clear()
    yield
    attention._probe.cache_clear()


def _count_kernel_calls(monkeypatch) -> list[str]:
    """Every attention backend call this process makes on real tensors (meta ones only count FLOPs)."""
    from sst_cli.model import attention

    calls: list[str] = []
    for name, backend in attention._REGISTRY.items():
        def run(q, k, v, bias, _name=name, _run=backend.run):
            if q.device.type != "meta":
                calls.append(_name)
            return _run(q, k, v, bias)

        monkeypatch.setitem(attention._REGISTRY, name, dataclasses.replace(backend, run=run))
    return calls


def test_the_parent_runs_no_kernel_and_the_workers_report_the_kernels_refusals(strict_kernels, monkeypatch,
                                                                               fresh_probes):
    """Probing a backend runs it, which on a GPU leaves a CUDA context and compiled kernels behind: only the
    measuring worker may; the parent keeps the checks that need no kernel."""
    ran_here = _count_kernel_calls(monkeypatch)
    configs = [tiny("sdpa-flash", dtype="fp32"), tiny("sdpa-flash", dtype="bf16"), tiny("fa3", dtype="fp32")]
    rows = runner.profile(configs)["rows"]
    assert ran_here == []
    # only running the kernel tells: its own refusal, found in the worker
    assert rows[0]["status"] == "backend unavailable: sdpa-flash cannot run on cpu/float32: No available kernel."
    assert rows[0]["latency_ms_median"] is None and rows[0]["peak_mem_mb"] is None
    assert rows[1]["status"] == "ok", rows[1]["status"]
    assert rows[2]["status"].startswith("backend unavailable: fa3 runs only in fp16/bf16")  # the parent's check


class _NoBackward(torch.autograd.Function):
    """Identity forward; a backward that refuses, as a kernel without a backward pass does."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("this kernel has no backward pass. Use another one.")


def test_training_rows_probe_a_backward_pass(monkeypatch, fresh_probes):
    from sst_cli.model import attention

    forward_only = attention._REGISTRY["sdpa-math"]
    monkeypatch.setitem(attention._REGISTRY, "sdpa-math", dataclasses.replace(
        forward_only, run=lambda q, k, v, bias: _NoBackward.apply(forward_only.run(q, k, v, bias))))
    infer, train = runner.profile([tiny("sdpa-math"), tiny("sdpa-math", mode="train", batch=2, repeat=1)],
                                  isolate=False)["rows"]
    assert infer["status"] == "ok", infer["status"]
    assert train["status"] == ("backend unavailable: sdpa-math cannot run backward on cpu/float32: this kernel has "
                               "no backward pass.")
