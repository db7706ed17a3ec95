"""CPU inference, measured side by side in one process: our default path against our own alternatives.

Paths (same random weights, same input):
  sdpa        the default: PyTorch's fused CPU kernel, RIB as a mask shared by the windows (head dim d)
  sdpa-flash  the same kernel with RIB concatenated to q/k (head dim d + r, v zero-padded), the official form
  naive       our float32 reference (logits materialised in blocks)
  sdpa bf16   (--bf16) the whole model in bf16, with its PSNR against the fp32 output

Latency: the paths alternate, median of --repeat runs each after a warm-up, with the minor page faults
per run. Peak RSS: a fresh process per (model, size, path) doing a warm-up and one forward (VmHWM).
Like every `sst` command, the processes call runtime.keep_freed_memory() unless --default-malloc.
The official implementation's figures for this machine kind (shared/design/COMPUTE.md) are printed as
anchors; they were not measured here.

    .venv/bin/python benchmarks/cpu_inference.py --models sst-light --sizes 64,128,256
    .venv/bin/python benchmarks/cpu_inference.py --models sst --sizes 64
    .venv/bin/python benchmarks/cpu_inference.py --models sst-light --sizes 128 --bf16 --compile
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

from sst_cli.runtime import keep_freed_memory
from sst_cli.zoo import create_model

# Official implementation, fp32 (attention cast to bf16), torch 2.13 CPU, 2 threads, from
# shared/design/COMPUTE.md: seconds (middle of the quoted range), peak RSS MB.
OFFICIAL = {("sst-light", 64): (0.9, 280), ("sst-light", 128): (3.4, 330), ("sst-light", 256): (14.0, 581),
            ("sst", 64): (4.05, None)}
PATHS = {"sdpa": ("sdpa", "float32"), "sdpa-flash": ("sdpa-flash", "float32"), "naive": ("naive", "float32"),
         "sdpa bf16": ("sdpa", "bfloat16")}


def build(name: str, backend: str, dtype: str = "float32") -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, 4).eval().set_backend(backend).to(getattr(torch, dtype))


@torch.inference_mode()
def forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x.to(next(model.parameters()).dtype))


def child_rss(name: str, size: int, path: str, default_malloc: bool) -> float:
    """Peak RSS (MB) of a fresh process running one warm-up and one forward on ``path``."""
    backend, dtype = PATHS[path]
    code = (
        "import torch, sys; sys.path.insert(0, '.');"
        "from benchmarks.cpu_inference import build, forward; from sst_cli.runtime import keep_freed_memory;"
        f"{'' if default_malloc else 'keep_freed_memory();'}"
        f"torch.set_num_threads({torch.get_num_threads()});"
        f"m = build('{name}', '{backend}', '{dtype}'); x = torch.rand(1, 3, {size}, {size});"
        "forward(m, x); forward(m, x);"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec.
        "print([int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(name: str, size: int, paths: list[str], args: argparse.Namespace) -> list[dict]:
    models = {p: build(name, *PATHS[p]) for p in paths}
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
    outs = {p: forward(m, x).float() for p, m in models.items()}  # warm-up, and the outputs compared
    compile_s = None
    if args.compile:
        models["sdpa + compile"] = torch.compile(models["sdpa"])
        t = time.perf_counter()
        outs["sdpa + compile"] = forward(models["sdpa + compile"], x).float()
        compile_s = time.perf_counter() - t
    times: dict[str, list[float]] = {p: [] for p in models}
    faults: dict[str, list[int]] = {p: [] for p in models}
    for _ in range(args.repeat):  # alternate, so drift on a shared machine hits every path alike
        for p, m in models.items():
            f, t = minor_faults(), time.perf_counter()
            forward(m, x)
            times[p].append(time.perf_counter() - t)
            faults[p].append(minor_faults() - f)
    ref, naive_s = outs["naive"], statistics.median(times["naive"])
    rows = []
    for p in models:
        med = statistics.median(times[p])
        row = {"model": name, "input": size, "path": p, "median_s": med, "min_s": min(times[p]),
               "runs_s": times[p], "minor_faults": statistics.median(faults[p]),
               "speedup_vs_naive": naive_s / med, "speedup_vs_sdpa_flash": statistics.median(times["sdpa-flash"]) / med,
               "max_abs_diff_vs_naive": (outs[p] - ref).abs().max().item(), "psnr_vs_fp32_db": psnr(outs[p], ref)}
        if p == "sdpa + compile":
            row["compile_and_first_call_s"] = compile_s
        elif not args.no_rss:
            row["peak_rss_mb"] = child_rss(name, size, p, args.default_malloc)
        if (name, size) in OFFICIAL:
            row["official_s"], row["official_rss_mb"] = OFFICIAL[(name, size)]
            row["speedup_vs_official"] = row["official_s"] / med
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="sst-light")
    ap.add_argument("--sizes", default="64,128,256")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="also time the whole model in bf16, with its PSNR vs fp32")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the sdpa path (compile time apart)")
    ap.add_argument("--default-malloc", action="store_true", help="leave glibc's malloc settings alone")
    ap.add_argument("--no-rss", action="store_true", help="skip the per-process peak-RSS runs")
    ap.add_argument("--json", help="write the rows as JSON here")
    args = ap.parse_args()
    malloc = "default" if args.default_malloc else ("keep_freed_memory" if keep_freed_memory() else "default (no glibc)")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.machine()}, malloc: {malloc}")
    paths = ["sdpa", "sdpa-flash", "naive"] + (["sdpa bf16"] if args.bf16 else [])
    rows = [r for name in args.models.split(",") for size in map(int, args.sizes.split(","))
            for r in measure(name, size, paths, args)]
    print()
    print("| model | input | path | median s (min) | x vs naive | x vs sdpa-flash | x vs official | "
          "peak RSS MB (official) | faults/run | max diff | PSNR vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        off = f"{r['speedup_vs_official']:.2f} ({r['official_s']} s)" if "speedup_vs_official" in r else "–"
        rss = f"{r['peak_rss_mb']:.0f} ({r.get('official_rss_mb') or '–'})" if "peak_rss_mb" in r else "–"
        db = "exact" if r["psnr_vs_fp32_db"] == float("inf") else f"{r['psnr_vs_fp32_db']:.1f} dB"
        print(f"| {r['model']} | {r['input']} | {r['path']} | {r['median_s']:.2f} ({r['min_s']:.2f}) | "
              f"{r['speedup_vs_naive']:.2f} | {r['speedup_vs_sdpa_flash']:.2f} | {off} | {rss} | "
              f"{r['minor_faults']:.0f} | {r['max_abs_diff_vs_naive']:.1e} | {db} |")
    if args.compile:
        for r in rows:
            if "compile_and_first_call_s" in r:
                print(f"{r['model']} {r['input']}: torch.compile + first call {r['compile_and_first_call_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"malloc": malloc, "torch": torch.__version__, "threads": args.threads, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
