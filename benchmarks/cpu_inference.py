"""CPU inference, measured side by side: our fast path vs our float32 `naive` reference path.

Latency: one process, the two paths alternating, median of --repeat runs each (after a warm-up run).
Peak RSS: a fresh process per (model, size, path) doing one warm-up + one forward, so no run's memory
leaks into another's. Also reports the official implementation's published figures for this machine
kind (shared/design/COMPUTE.md) as anchors; those were not measured here.

    .venv/bin/python benchmarks/cpu_inference.py --models sst-light,sst --sizes 64,128,256
    .venv/bin/python benchmarks/cpu_inference.py --models sst-light --sizes 128 --bf16   # opt-in bf16 path
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

import torch

from sst_cli.zoo import create_model

# Official implementation, fp32, torch 2.13 CPU, 2 threads (shared/design/COMPUTE.md): seconds, peak RSS MB.
OFFICIAL = {("sst-light", 64): (0.9, 280), ("sst-light", 128): (3.4, 330), ("sst-light", 256): (14.0, 581),
            ("sst", 64): (4.05, None)}


def build(name: str, backend: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, 4).eval().set_backend(backend).to(dtype)


@torch.inference_mode()
def forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def child_rss(name: str, size: int, backend: str, dtype: str) -> float:
    """Peak RSS (MB) of a fresh process running one warm-up and one forward."""
    code = (
        "import torch, sys; sys.path.insert(0, '.');"
        "from benchmarks.cpu_inference import build, forward;"
        f"torch.set_num_threads({torch.get_num_threads()});"
        f"m = build('{name}', '{backend}', torch.{dtype}); x = torch.rand(1, 3, {size}, {size}).to(torch.{dtype});"
        "forward(m, x); forward(m, x);"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec.
        "print([int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="sst-light,sst")
    ap.add_argument("--sizes", default="64,128,256")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="also time the opt-in bf16 CPU path and its PSNR vs fp32")
    ap.add_argument("--no-rss", action="store_true", help="skip the per-process peak-RSS runs")
    ap.add_argument("--json", help="write the rows as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}")
    rows = []
    for name in args.models.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            paths = {"fast (sdpa)": (build(name, "sdpa"), torch.float32),
                     "naive (reference)": (build(name, "naive"), torch.float32)}
            if args.bf16:
                paths["fast bf16"] = (build(name, "sdpa", torch.bfloat16), torch.bfloat16)
            x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
            outs = {k: forward(m, x.to(dt)).float() for k, (m, dt) in paths.items()}  # warm-up + outputs
            times: dict[str, list[float]] = {k: [] for k in paths}
            for _ in range(args.repeat):  # alternate so drift hits every path alike
                for k, (m, dt) in paths.items():
                    t = time.perf_counter()
                    forward(m, x.to(dt))
                    times[k].append(time.perf_counter() - t)
            ref = outs["naive (reference)"]
            for k in paths:
                med = statistics.median(times[k])
                row = {"model": name, "input": size, "path": k, "median_s": med,
                       "speedup_vs_naive": statistics.median(times["naive (reference)"]) / med,
                       "max_abs_diff_vs_naive": (outs[k] - ref).abs().max().item(), "psnr_vs_fp32_db": psnr(outs[k], ref)}
                if not args.no_rss:
                    backend = "naive" if k.startswith("naive") else "sdpa"
                    row["peak_rss_mb"] = child_rss(name, size, backend, "bfloat16" if "bf16" in k else "float32")
                off = OFFICIAL.get((name, size))
                if off:
                    row["official_s"], row["official_rss_mb"] = off
                    row["speedup_vs_official"] = off[0] / med
                rows.append(row)
                print(json.dumps(row))
    print()
    print("| model | input | path | median s | x vs naive | x vs official | peak RSS MB (official) | max diff |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        off = f"{r['speedup_vs_official']:.2f}" if "speedup_vs_official" in r else "–"
        rss = f"{r.get('peak_rss_mb', float('nan')):.0f} ({r.get('official_rss_mb') or '–'})"
        print(f"| {r['model']} | {r['input']} | {r['path']} | {r['median_s']:.2f} | {r['speedup_vs_naive']:.2f} | "
              f"{off} | {rss} | {r['max_abs_diff_vs_naive']:.1e} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
