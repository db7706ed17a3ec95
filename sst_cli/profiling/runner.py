"""``sst profile`` as a library: the driver that measures a grid, the paper's reference figures, CSV rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .grid import ROW_KEYS, ProfileConfig, attention_flops, build, count_flops, network_for, precheck
from .measure import device_peak_tflops, environment, run_config

# ------------------------------------------------------------------------------------------ paper
PAPER_GPU_NAMES = {"H200": "H200", "RTX 4090": "RTX4090", "A6000": "A6000"}
_ABLATION_ATTENTION = {"naive": "naive", "flex": "FlexAttention", "fa3": "FlashAttention3"}


def _paper_gpu(device_name: str | None) -> str:
    for key, paper_name in PAPER_GPU_NAMES.items():
        if device_name and key in device_name:
            return paper_name
    return "H200"  # the paper's main GPU; the closest reference for any other device


def paper_reference(row: dict[str, Any]) -> dict[str, Any] | None:
    """The paper's figure for the same model/scale/bias/backend, naming its GPU; None if it has none."""
    from ..paper import table

    def num(v: str | None) -> float | None:
        try:
            return float(v) if v else None
        except ValueError:
            return None

    model, scale, mode = row["model"], int(row["scale"]), row["mode"]
    if row["bias"] == "rpb":
        name = _ABLATION_ATTENTION.get(row["backend"])
        for r in table("bias_ablation"):
            if r["attention"] == name and r["bias"] == "RPB":
                lat = num(r["train_sec_per_step"]) if mode == "train" else num(r["infer_latency_ms"])
                mem = num(r["train_memory_GB"]) if mode == "train" else num(r["infer_memory_MB"])
                return {"gpu": "H200", "table": "Table 4 (bias ablation)",
                        "latency_ms": lat * 1000 if lat is not None and mode == "train" else lat,
                        "mem_mb": mem * 1024 if mem is not None and mode == "train" else mem,
                        "note": "the paper's x2 ablation model (13.6M params), 1280x720 output"}
        return None
    if row["bias"] != "rib":
        return None
    if mode == "train":
        for r in table("costs_x2"):
            if r["method"] == model and scale == 2:
                return {"gpu": "H200", "table": "Table 1 (costs, x2)",
                        "latency_ms": num(r["train_sec_per_step"]) * 1000, "mem_mb": num(r["train_memory_GB"]) * 1024,
                        "note": f"train patch {r['train_patch']}; the paper does not state the batch"}
        return None
    gpu = _paper_gpu(row.get("device_name"))
    for r in table("inference_hd"):
        if r["method"] == model and int(r["scale"]) == scale and r["gpu"] == gpu:
            return {"gpu": gpu, "table": "Table S4 (inference)", "latency_ms": num(r["latency_ms"]),
                    "mem_mb": num(r["memory_MB"]),
                    "note": "1280x720 output" + (", OOM" if r["latency_ms"] == "OOM" else "")}
    return None


# ------------------------------------------------------------------------------------------ driver
def profile(
    configs: list[ProfileConfig], isolate: bool = True, compare_paper: bool = False,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[ProfileConfig], None] | None = None,
) -> dict[str, Any]:
    """Measure every configuration; returns ``{"environment": {...}, "rows": [...]}`` (the JSON shape)."""
    flops_cache: dict[tuple, tuple[int, int]] = {}
    rows = []
    for cfg in configs:
        if on_start:
            on_start(cfg)
        h, w = cfg.input_hw
        row: dict[str, Any] = {
            "model": cfg.model, "scale": cfg.scale, "backend": cfg.backend, "bias": cfg.bias, "dtype": cfg.dtype,
            "device": cfg.device, "input_hw": [h, w],
            "output_hw": [h * cfg.scale, w * cfg.scale], "batch": cfg.batch, "mode": cfg.mode,
            "status": "ok", "latency_ms_median": None, "latency_ms_p90": None, "peak_mem_mb": None,
            "params": None, "flops": None, "tflops_per_s": None,
        }
        key = (json.dumps(network_for(cfg), sort_keys=True), cfg.input_hw, cfg.batch, cfg.mode)
        if key not in flops_cache:
            flops_cache[key] = count_flops(cfg)
        row["params"], row["flops"] = flops_cache[key]
        row["attention_flops"] = attention_flops(build(cfg, "meta"), cfg.input_hw, cfg.batch, cfg.mode == "train")
        reason = precheck(cfg)
        if reason is not None:
            row["status"] = reason
        else:
            row.update(run_config(cfg, isolate))
        if row["status"] == "ok" and row["latency_ms_median"]:
            row["tflops_per_s"] = float(f"{row['flops'] / (row['latency_ms_median'] / 1000) / 1e12:.4g}")
            peak = device_peak_tflops(row.get("device_name") or "", cfg.dtype) if cfg.device != "cpu" else None
            if peak:
                row["device_peak_tflops"] = peak
                row["peak_fraction"] = float(f"{row['tflops_per_s'] / peak:.4g}")
        if compare_paper:
            row["paper"] = paper_reference(row)
        rows.append(row)
        if on_row:
            on_row(row)
    return {"environment": environment(), "rows": rows}


CSV_COLUMNS = ROW_KEYS + (
    "output_hw", "device_name", "cpu_ms_median", "base_mem_mb", "peak_reserved_mb", "attention_flops", "peak_fraction",
    "paper_gpu", "paper_latency_ms", "paper_mem_mb",
)


def csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows for CSV: sizes as 'HxW', the paper's figures as columns."""
    out = []
    for r in result["rows"]:
        flat = {k: r.get(k) for k in CSV_COLUMNS}
        for k in ("input_hw", "output_hw"):
            flat[k] = "x".join(map(str, r[k])) if r.get(k) else None
        paper = r.get("paper") or {}
        flat["paper_gpu"], flat["paper_latency_ms"], flat["paper_mem_mb"] = (
            paper.get("gpu"), paper.get("latency_ms"), paper.get("mem_mb"))
        out.append(flat)
    return out
