"""``sst profile`` as a library: the driver that measures a grid, the paper's reference figures, CSV rows."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any

from .grid import PAPER_SIZE, ProfileConfig, attention_flops, build, count_flops, network_for, padded_hw, precheck
from .measure import device_peak_tflops, environment, run_config
from .schema import ROW_KEYS, wxh

# ------------------------------------------------------------------------------------------ paper
PAPER_GPU_NAMES = {"H200": "H200", "RTX 4090": "RTX4090", "A6000": "A6000"}
PAPER_MODELS = ("sst", "sst+", "sst-l", "sst-l+")
# Filters applied in turn; the first that leaves no paper figure names why a row has none.
_MATCH_ORDER = (("model", "model"), ("mode", "mode"), ("scale", "scale"), ("bias", "bias"), ("size", "size"),
                ("backend", "backend"))


def _num(v: str | None) -> float | None:
    try:
        return float(v) if v else None
    except ValueError:
        return None


@functools.cache
def paper_figures() -> tuple[dict[str, Any], ...]:
    """The paper's speed figures as configurations: model, scale, mode, bias, backend, size, GPU, ms, MB.

    Inference sizes are the 1280x720 output; training sizes the LR patch. The paper's model for the bias
    ablation (Table 4, Table S3) is sst+ at x2 (its 11.7M/13.6M parameters are ours with rib/rpb). Table S4
    does not name the kernel: FlashAttention 3 on the H200 (its sst+ figure equals Table 4's FA3 one), and
    FlashAttention 2 is assumed on the RTX 4090 and A6000, where FA3 does not run.
    """
    from ..paper import table

    out: list[dict[str, Any]] = []
    size = "x".join(map(str, PAPER_SIZE))

    def add(model: str, scale: int, backend: str, gpu: str, ms: float | None, mb: float | None, src: str,
            note: str, mode: str = "inference", bias: str = "rib", at: str = size) -> None:
        out.append({"model": model, "scale": scale, "mode": mode, "bias": bias, "backend": backend, "size": at,
                    "gpu": gpu, "latency_ms": ms, "mem_mb": mb, "table": src, "note": note})

    for r in table("inference_hd"):
        if r["method"] in PAPER_MODELS:
            backend, kernel = ("fa3", "FlashAttention 3") if r["gpu"] == "H200" else ("fa2", "FlashAttention 2 assumed")
            add(r["method"], int(r["scale"]), backend, r["gpu"], _num(r["latency_ms"]), _num(r["memory_MB"]),
                "Table S4 (inference)", f"{size} output; {kernel}")
    for r in table("fa2_vs_fa3"):
        if r["attention"] == "FlashAttention2":
            add("sst+", 2, "fa2", "H200", _num(r["infer_latency_ms"]), _num(r["infer_memory_MB"]),
                "Table S3 (FA2 vs FA3)", f"{size} output")
    ablation = {"naive": "naive", "FlexAttention": "flex"}
    for r in table("bias_ablation"):
        if r["bias"] == "RPB" and r["attention"] in ablation:
            add("sst+", 2, ablation[r["attention"]], "H200", _num(r["infer_latency_ms"]), _num(r["infer_memory_MB"]),
                "Table 4 (bias ablation)", f"{size} output; the ablation model with RPB", bias="rpb")
    for r in table("costs_x2"):
        if r["method"] in PAPER_MODELS:
            sec, gb, patch = _num(r["train_sec_per_step"]), _num(r["train_memory_GB"]), r["train_patch"]
            add(r["method"], 2, "fa3", "H200", sec * 1000 if sec else None, gb * 1024 if gb else None,
                "Table 1 (costs, x2)", f"train patch {patch} (inferred from the text); the paper does not state "
                "the batch", mode="train", at=f"{patch}x{patch}")
    return tuple(out)


def _row_size(row: dict[str, Any]) -> str | None:
    """The size a paper figure is matched on: the output (inference, as requested) or the patch (train)."""
    hw = row.get("input_hw")
    if not hw:
        return None
    if row.get("mode") == "train":
        return wxh(hw)
    s = int(row["scale"])
    # The grid's input is size // scale, so a 1280x720 request at x3 makes a 1278x720 output.
    if list(hw) == [PAPER_SIZE[1] // s, PAPER_SIZE[0] // s]:
        return "x".join(map(str, PAPER_SIZE))
    return wxh(row.get("output_hw") or [hw[0] * s, hw[1] * s])


def paper_match(row: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the paper's figure for this row's model, mode, scale, bias, size and backend, None), or (None, why not).

    Among figures for several GPUs, the row's own GPU wins, then the paper's main GPU (the H200).
    """
    values = {"model": row.get("model"), "mode": row.get("mode"), "scale": row.get("scale"),
              "bias": row.get("bias"), "size": _row_size(row), "backend": row.get("backend")}
    found = list(paper_figures())
    for key, label in _MATCH_ORDER:
        kept = [f for f in found if f[key] == values[key]]
        if not kept:
            options = ", ".join(dict.fromkeys(str(f[key]) for f in found))
            return None, f"{label} {values[key]}: the paper times {options}"
        found = kept
    device = row.get("device_name") or ""
    gpu = next((g for k, g in PAPER_GPU_NAMES.items() if k in device), "H200")
    best = next((f for f in found if f["gpu"] == gpu), None) or next((f for f in found if f["gpu"] == "H200"), found[0])
    return {k: best[k] for k in ("gpu", "table", "latency_ms", "mem_mb", "note")}, None


def paper_reference(row: dict[str, Any]) -> dict[str, Any] | None:
    """The paper's figure for the same model/scale/bias/size/backend, naming its GPU; None if it has none."""
    return paper_match(row)[0]


# -------------------------------------------------------------------------------------------- torchrun
def torchrun_rank() -> tuple[int, int] | None:
    """(rank, world size) when torchrun started several processes, else None.

    Profiling measures one configuration at a time so that nothing else shares the device; several ranks
    would share it (and each write the same files), so rank 0 measures and the others have nothing to do.
    """
    try:
        world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    except ValueError:
        return None
    return (rank, world) if world > 1 else None


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
            "output_hw": [h * cfg.scale, w * cfg.scale], "padded_hw": list(padded_hw(cfg)), "batch": cfg.batch,
            "mode": cfg.mode,
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
            row["paper"], missing = paper_match(row)
            if missing:
                row["paper_missing"] = missing
        rows.append(row)
        if on_row:
            on_row(row)
    return {"environment": environment(), "rows": rows}


# Sizes in CSV are 'WxH' strings, under names that say so.
CSV_COLUMNS = tuple(k if k != "input_hw" else "input_wxh" for k in ROW_KEYS) + (
    "output_wxh", "device_name", "cpu_ms_median", "base_mem_mb", "peak_reserved_mb", "attention_flops", "peak_fraction",
    "paper_gpu", "paper_latency_ms", "paper_mem_mb",
)


def csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows for CSV: sizes as 'WxH', the paper's figures as columns."""
    out = []
    for r in result["rows"]:
        flat = {k: r.get(k) for k in CSV_COLUMNS}
        flat["input_wxh"], flat["output_wxh"] = wxh(r.get("input_hw")), wxh(r.get("output_hw"))
        paper = r.get("paper") or {}
        flat["paper_gpu"], flat["paper_latency_ms"], flat["paper_mem_mb"] = (
            paper.get("gpu"), paper.get("latency_ms"), paper.get("mem_mb"))
        out.append(flat)
    return out
