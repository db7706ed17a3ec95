"""`make gpu-check`: the GPU paths on the real kernels, in one command (issue 22).

    python -m benchmarks.gpu_check [--quick] [--list] [--out DIR] [--data-root DIR]

Runs every check in PLAN on the first CUDA GPU and writes DIR/gpu_check.json and DIR/gpu_check.md (default
DIR: gpu-check/). Budgets: 10 minutes in all on one H100-class GPU, 3 with --quick (smaller sizes, fewer
iterations). Without CUDA it exits 2 with one sentence; --list prints the plan and runs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SET5 = ROOT / "tests" / "data"  # holds Set5 (HR and LR, the BasicSR layout `sst eval` reads)

# Largest |backend - naive fp32| allowed, per dtype, on unit-variance q, k, v: fp32 is IEEE (a different
# summation order only); tf32 and fp16 keep 10 mantissa bits, bf16 7.
TOLERANCE = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 5e-3, "bf16": 3e-2}


@dataclass(frozen=True)
class Check:
    name: str
    budget_s: int  # full run; --quick gets 30% of it
    what: str
    run: Callable[[argparse.Namespace, Path], dict[str, Any]]


def _sst(args: list[str], timeout: float) -> tuple[int, float, str]:
    """`sst ARGS` in a subprocess (this checkout's package): exit code, seconds, last output lines."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sst_cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
    return proc.returncode, round(time.perf_counter() - t0, 2), tail


# ------------------------------------------------------------------------------------------- checks
def check_backends(opts: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Every installed backend x dtype against naive in IEEE fp32, RIB concatenated and an RPB bias."""
    import torch

    from sst_cli.model import attention
    from sst_cli.runtime import set_tf32

    dev = torch.device("cuda")
    g = torch.Generator(device="cpu").manual_seed(0)
    b, h, n, d, r = (4, 3, 1024, 32, 16) if opts.quick else (16, 6, 4096, 32, 16)
    q, k, v = (torch.randn(b, h, n, d, generator=g).to(dev) for _ in range(3))
    pos = tuple(torch.randn(h, n, r, generator=g).to(dev) * 0.5 for _ in range(2))
    bias = torch.randn(h, n, n, generator=g).to(dev)
    rows = []
    for with_bias in (False, True):
        set_tf32(False)
        want = attention.attend(q, k, v, "naive", scale=d**-0.5, rib=None if with_bias else pos,
                                bias=bias if with_bias else None)
        for name in attention.BACKENDS:
            for dt_name in TOLERANCE:
                dt = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dt_name]
                set_tf32(dt_name == "tf32")
                reason = attention.unavailable_reason(name, dev, dt, with_bias=with_bias)
                row = {"backend": name, "dtype": dt_name, "bias": "rpb" if with_bias else "rib", "tolerance": TOLERANCE[dt_name]}
                if reason:
                    rows.append({**row, "status": "unavailable", "reason": reason})
                    continue
                t0 = time.perf_counter()
                with torch.no_grad():
                    got = attention.attend(q.to(dt), k.to(dt), v.to(dt), name, scale=d**-0.5,
                                           rib=None if with_bias else tuple(p.to(dt) for p in pos),
                                           bias=bias.to(dt) if with_bias else None)
                torch.cuda.synchronize()
                err = (got.float() - want).abs().max().item()
                rows.append({**row, "max_abs_err": err, "seconds_first_call": round(time.perf_counter() - t0, 3),
                             "status": "ok" if err <= TOLERANCE[dt_name] else "FAIL"})
    set_tf32(False)
    return {"ok": all(r["status"] != "FAIL" for r in rows), "rows": rows}


def check_upscale(opts: argparse.Namespace, out: Path) -> dict[str, Any]:
    """sst-l x2 on a 1280x720 image, random weights, bf16: the CLI's exit, then time and peak memory."""
    import numpy as np
    import torch
    from PIL import Image

    from sst_cli.upscale.upscaler import load_upscaler

    w, h = (640, 360) if opts.quick else (1280, 720)
    src = out / "upscale_in"
    src.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(src / "frame.png")
    rc, seconds, tail = _sst(["upscale", str(src), str(out / "upscale_out"), "--model", "sst-l", "--scale", "2",
                              "--random-weights", "--dtype", "bf16", "--device", "cuda", "--overwrite"], 300)
    up = load_upscaler(model="sst-l", scale=2, random_weights=True, device="cuda", dtype="bf16")
    img = np.asarray(Image.open(src / "frame.png"))
    up(img[:64, :64])  # warm-up: kernels loaded, autotuning done
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = up(img)
    torch.cuda.synchronize()
    lib_s = time.perf_counter() - t0
    return {"ok": rc == 0 and result.shape == (2 * h, 2 * w, 3), "input": f"{w}x{h}", "cli_exit": rc,
            "cli_seconds": seconds, "cli_tail": tail, "backend": up.backend, "seconds": round(lib_s, 3),
            "peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}


def check_profile(opts: argparse.Namespace, out: Path) -> dict[str, Any]:
    """`sst profile` RIB vs RPB vs none for sst+ and sst-l+ (their w=64 and w=96 layers), fp32 and bf16."""
    size = "640x360" if opts.quick else "1280x720"
    path = out / "profile.json"
    rc, seconds, tail = _sst(["profile", "-m", "sst+,sst-l+", "-s", "2", "--bias", "rib,rpb,none",
                              "--dtype", "bf16" if opts.quick else "fp32,bf16", "--device", "cuda", "--size", size,
                              "--warmup", "2", "--repeat", "3" if opts.quick else "5", "--json", str(path),
                              "--timeout", "120"], 540)
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    keep = ("model", "bias", "dtype", "backend", "status", "first_call_ms", "latency_ms_median", "peak_mem_mb",
            "tf32_matmul", "tf32_cudnn")
    return {"ok": rc == 0 and bool(rows), "exit": rc, "seconds": seconds, "tail": tail,
            "rows": [{k: r.get(k) for k in keep} for r in rows]}


def check_train(opts: argparse.Namespace, out: Path) -> dict[str, Any]:
    """`sst train` of 200 iterations in bf16 with validation at 100, then a resume to 220."""
    run = out / "train_run"
    iters = 100 if opts.quick else 200
    common = ["train", "--config", str(ROOT / "configs" / "tiny.yaml"), "--run-dir", str(run), "--device", "cuda",
              "--set", f"train_hr=[{SET5 / 'Set5' / 'HR'}]", "--set", f"val_root={SET5}", "--set", "val_sets=[Set5]",
              "--set", "bf16=true", "--set", f"val_every={iters // 2}", "--set", f"ckpt_every={iters // 2}"]
    rc1, s1, tail1 = _sst([*common, "--set", f"iters={iters}", "--overwrite"], 240)
    rc2, s2, tail2 = _sst([*common, "--set", f"iters={iters + 20}", "--resume"], 120)
    metrics = run / "metrics.jsonl"
    recs = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    return {"ok": rc1 == 0 and rc2 == 0 and (run / "final.safetensors").is_file(), "exits": [rc1, rc2],
            "seconds": [s1, s2], "tails": [tail1, tail2], "records": len(recs)}


def _eval_json(device: str, out: Path, extra: list[str] | None = None, launcher: list[str] | None = None) -> Any:
    path = out / f"eval_bicubic_{device.replace(':', '')}{'_torchrun' if launcher else ''}.json"
    args = ["eval", "Set5", "-m", "bicubic", "-s", "2,4", "--data-root", str(SET5), "--device", device,
            "--json", str(path), *(extra or [])]
    if launcher:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.run([*launcher, "-m", "sst_cli", *args], capture_output=True, text=True, timeout=300,
                              env=env, cwd=ROOT)
        rc = proc.returncode
    else:
        rc, _, _ = _sst(args, 300)
    return rc, json.loads(path.read_text()) if path.is_file() else None


def _scores(report: Any) -> dict[str, float]:
    """Every (dataset, scale, metric) mean of an eval JSON, rounded to 4 decimals."""
    found: dict[str, float] = {}

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in ("images", "settings", "environment", "timing", "seconds"):
                    walk(v, f"{key}/{k}")
        elif isinstance(node, float):
            found[key] = round(node, 4)

    walk(report, "")
    return found


def check_eval(opts: argparse.Namespace, out: Path) -> dict[str, Any]:
    """`sst eval -m bicubic` on Set5: CUDA equal to the CPU to 4 decimals."""
    rc_gpu, gpu = _eval_json("cuda", out)
    rc_cpu, cpu = _eval_json("cpu", out)
    a, b = _scores(gpu), _scores(cpu)
    diff = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
    return {"ok": rc_gpu == 0 and rc_cpu == 0 and bool(a) and not diff, "exits": [rc_gpu, rc_cpu],
            "compared": len(a), "differences": diff}


def check_torchrun(opts: argparse.Namespace, out: Path) -> dict[str, Any]:
    """torchrun x2 (two GPUs): `sst eval -m bicubic` equal to one process's figures."""
    import torch

    if torch.cuda.device_count() < 2:
        return {"ok": True, "skipped": f"{torch.cuda.device_count()} GPU visible; torchrun x2 needs two"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    rc, two = _eval_json("cuda", out, launcher=launcher)
    _, one = _eval_json("cuda", out)
    return {"ok": rc == 0 and _scores(two) == _scores(one), "exit": rc}


def check_bf16_cost(opts: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The Y-PSNR cost of bf16 against fp32 on Set5 x4 with 16-bit inputs (bundled model): the README figure."""
    import numpy as np

    from sst_cli.evaluation.metrics import measure
    from sst_cli.io.images import read_image
    from sst_cli.model.bicubic import imresize_np
    from sst_cli.upscale.upscaler import load_upscaler

    per = {}
    ups = {dt: load_upscaler(scale=4, device="cuda", dtype=dt, tile=0) for dt in ("fp32", "bf16")}
    for hr_path in sorted((SET5 / "Set5" / "HR").glob("*.png")):
        hr = read_image(hr_path).pixels[..., :3]
        h, w = hr.shape[0] // 4 * 4, hr.shape[1] // 4 * 4
        hr = hr[:h, :w]
        lr16 = imresize_np(hr.astype(np.float32) / 255, 0.25)  # float LR, kept at 16 bits
        lr16 = np.round(np.clip(lr16, 0, 1) * 65535).astype(np.uint16)
        for dt, up in ups.items():
            sr8 = np.round(up(lr16).astype(np.float64) / 257).astype(np.uint8)
            per.setdefault(dt, []).append(measure(sr8, hr, 4, ("psnr_y",))["psnr_y"])
    means = {dt: float(np.mean(v)) for dt, v in per.items()}
    return {"ok": True, "psnr_y_fp32": round(means["fp32"], 4), "psnr_y_bf16": round(means["bf16"], 4),
            "bf16_cost_db": round(means["fp32"] - means["bf16"], 4)}


PLAN = (
    Check("backends", 90, "every installed backend x dtype against naive in IEEE fp32 (RIB and RPB), tolerances "
          + ", ".join(f"{k} {v:g}" for k, v in TOLERANCE.items()), check_backends),
    Check("upscale-720p", 90, "sst upscale of a 1280x720 image, sst-l x2, random weights, bf16: time, peak memory",
          check_upscale),
    Check("profile", 180, "sst profile RIB vs RPB vs none, sst+ and sst-l+ (w=64 and w=96 layers), fp32 and bf16",
          check_profile),
    Check("train", 120, "sst train, 200 iterations in bf16, validation at 100, then --resume", check_train),
    Check("eval-bicubic", 40, "sst eval -m bicubic on Set5: CUDA equal to the CPU to 4 decimals", check_eval),
    Check("torchrun-x2", 40, "torchrun x2 sst eval when two GPUs are present (skipped with one)", check_torchrun),
    Check("bf16-cost", 40, "bf16 against fp32 Y-PSNR on Set5 x4 with 16-bit inputs (the README's figure)",
          check_bf16_cost),
)


def plan_text(quick: bool) -> str:
    share = 0.3 if quick else 1.0  # --quick: 3 of the 10 minutes
    lines = [f"{c.name:14} {int(c.budget_s * share):4d} s  {c.what}" for c in PLAN]
    total = sum(int(c.budget_s * share) for c in PLAN)
    return "\n".join([*lines, f"{'total':14} {total:4d} s  (one H100-class GPU{', --quick' if quick else ''})"])


def summary_md(results: dict[str, Any], gpu: str) -> str:
    lines = [f"# make gpu-check on {gpu}", "", "| check | result | seconds |", "|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {'ok' if r.get('ok') else 'FAIL'} | {r.get('check_seconds')} |")
    if "backends" in results:
        lines += ["", "| backend | dtype | bias | max abs err | tolerance | status |", "|---|---|---|---|---|---|"]
        for row in results["backends"].get("rows", []):
            err = f"{row['max_abs_err']:.2e}" if "max_abs_err" in row else "-"
            lines.append(f"| {row['backend']} | {row['dtype']} | {row['bias']} | {err} | {row['tolerance']:g} | "
                         f"{row['status']} |")
    if "bf16-cost" in results and "bf16_cost_db" in results["bf16-cost"]:
        r = results["bf16-cost"]
        lines += ["", f"bf16 Y-PSNR cost on Set5 x4, 16-bit inputs: {r['bf16_cost_db']} dB "
                      f"(fp32 {r['psnr_y_fp32']}, bf16 {r['psnr_y_bf16']})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: at most 3 minutes")
    parser.add_argument("--list", action="store_true", help="print the plan (every check, its time budget) and exit")
    parser.add_argument("--out", type=Path, default=ROOT / "gpu-check")
    parser.add_argument("--only", default="", help="comma-separated check names")
    opts = parser.parse_args(argv)
    if opts.list:
        print(plan_text(opts.quick))
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu-check needs a CUDA GPU and PyTorch sees none here; `--list` shows what it would run.",
              file=sys.stderr)
        return 2
    shutil.rmtree(opts.out, ignore_errors=True)
    opts.out.mkdir(parents=True)
    gpu = torch.cuda.get_device_name(0)
    chosen = [c for c in PLAN if not opts.only or c.name in opts.only.split(",")]
    results: dict[str, Any] = {}
    for check in chosen:
        print(f"[gpu-check] {check.name}: {check.what}", flush=True)
        t0 = time.perf_counter()
        try:
            results[check.name] = check.run(opts, opts.out)
        except Exception as exc:  # noqa: BLE001 - one failed check is a row, the others still run
            results[check.name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        results[check.name]["check_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"[gpu-check] {check.name}: {'ok' if results[check.name]['ok'] else 'FAIL'}", flush=True)
    from sst_cli.profiling.measure import environment

    doc = {"gpu": gpu, "quick": opts.quick, "environment": environment(), "checks": results}
    (opts.out / "gpu_check.json").write_text(json.dumps(doc, indent=1, default=str))
    (opts.out / "gpu_check.md").write_text(summary_md(results, gpu))
    print(summary_md(results, gpu))
    return 0 if all(r.get("ok") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
