"""CPU inference, measured side by side: our default path against our own alternatives.

Paths (same random weights, same input):
  sdpa        the default: PyTorch's fused CPU kernel, RIB as a mask shared by the windows (head dim d)
  sdpa-flash  the same kernel with RIB concatenated to q/k (head dim d + r, v zero-padded), the official form
  naive       our float32 reference (logits materialised in blocks)
  sdpa-bf16   (--bf16) the whole model in bf16, with its PSNR against the fp32 output
  sdpa-compile (--compile) torch.compile of the sdpa path; compile time reported apart

Every measurement runs in a fresh process (one warm-up, then --runs timed forwards), and the paths take
turns for --rounds rounds, so drift on a shared machine hits every path alike and no path inherits
another's heap. Latency is the median over all timed forwards of a path; peak RSS is the largest VmHWM
of its processes. Like every `sst` command, the processes call runtime.keep_freed_memory() unless
--default-malloc. The official implementation's figures for this machine kind (shared/design/COMPUTE.md)
are printed as anchors; they were not measured here.

    .venv/bin/python benchmarks/cpu_inference.py --models sst-light --sizes 64,128,256
    .venv/bin/python benchmarks/cpu_inference.py --models sst --sizes 64
    .venv/bin/python benchmarks/cpu_inference.py --models sst-light --sizes 128 --bf16 --compile
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# Official implementation, fp32 (attention cast to bf16), torch 2.13 CPU, 2 threads, from
# shared/design/COMPUTE.md: seconds (its quoted range), peak RSS MB.
OFFICIAL = {("sst-light", 64): ((0.9, 0.9), 280), ("sst-light", 128): ((3.0, 3.8), 330),
            ("sst-light", 256): ((14.0, 14.0), 581), ("sst", 64): ((3.8, 4.3), None)}
PATHS = {"sdpa": ("sdpa", "float32", False), "sdpa-flash": ("sdpa-flash", "float32", False),
         "naive": ("naive", "float32", False), "sdpa-bf16": ("sdpa", "bfloat16", False),
         "sdpa-compile": ("sdpa", "float32", True)}


# ------------------------------------------------------------------------------------- child process
def child(name: str, size: int, path: str, runs: int, threads: int, save: str | None) -> dict:
    """One warm-up and ``runs`` timed forwards of ``path``; optionally saves the output for comparison."""
    from sst_cli.model.registry import create_model
    from sst_cli.runtime import keep_freed_memory

    if os.environ.get("SST_DEFAULT_MALLOC") != "1":
        keep_freed_memory()
    torch.set_num_threads(threads)
    backend, dtype, compiled = PATHS[path]
    torch.manual_seed(0)
    model = create_model(name, 4).eval().set_backend(backend).to(getattr(torch, dtype))
    fn = torch.compile(model) if compiled else model
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size)).to(getattr(torch, dtype))
    times, faults = [], []
    with torch.inference_mode():
        t = time.perf_counter()
        y = fn(x)
        first = time.perf_counter() - t
        for _ in range(runs):
            f, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f)
    if save:
        torch.save(y.float(), save)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec.
    hwm = [int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
    return {"times": times, "faults": faults, "first_call_s": first, "peak_rss_mb": hwm}


def run_child(args: argparse.Namespace, name: str, size: int, path: str, save: str | None) -> dict:
    cmd = [sys.executable, __file__, "--child", f"{name},{size},{path}", "--runs", str(args.runs),
           "--threads", str(args.threads)] + (["--save", save] if save else [])
    env = dict(os.environ, SST_DEFAULT_MALLOC="1") if args.default_malloc else None
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- parent
def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def measure(name: str, size: int, paths: list[str], args: argparse.Namespace, tmp: Path) -> list[dict]:
    results: dict[str, list[dict]] = {p: [] for p in paths}
    for rnd in range(args.rounds):
        for p in paths:
            save = str(tmp / f"{name}_{size}_{p}.pt") if rnd == 0 else None
            results[p].append(run_child(args, name, size, p, save))
    ref = torch.load(tmp / f"{name}_{size}_naive.pt")
    med = {p: statistics.median([t for r in results[p] for t in r["times"]]) for p in paths}
    rows = []
    for p in paths:
        out = torch.load(tmp / f"{name}_{size}_{p}.pt")
        times = [t for r in results[p] for t in r["times"]]
        row = {"model": name, "input": size, "path": p, "median_s": med[p], "min_s": min(times), "runs_s": times,
               "minor_faults_per_run": statistics.median([f for r in results[p] for f in r["faults"]]),
               "peak_rss_mb": max(r["peak_rss_mb"] for r in results[p]),
               "first_call_s": statistics.median([r["first_call_s"] for r in results[p]]),
               "speedup_vs_naive": med["naive"] / med[p], "speedup_vs_sdpa_flash": med["sdpa-flash"] / med[p],
               "max_abs_diff_vs_naive": (out - ref).abs().max().item(), "psnr_vs_naive_db": psnr(out, ref)}
        if (name, size) in OFFICIAL:
            (lo, hi), rss = OFFICIAL[(name, size)]
            row.update(official_s=[lo, hi], official_rss_mb=rss,
                       speedup_vs_official=[lo / med[p], hi / med[p]])
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | input | path | median s (min) | x vs naive | x vs sdpa-flash | x vs official (its s) | "
             "peak RSS MB (official) | faults/run | max diff vs naive | PSNR vs naive |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        off = "–"
        if "speedup_vs_official" in r:
            lo, hi = r["speedup_vs_official"]
            olo, ohi = r["official_s"]
            off = f"{lo:.2f} ({olo} s)" if olo == ohi else f"{lo:.2f}–{hi:.2f} ({olo}–{ohi} s)"
        db = "exact" if r["psnr_vs_naive_db"] == float("inf") else f"{r['psnr_vs_naive_db']:.1f} dB"
        lines.append(f"| {r['model']} | {r['input']} | {r['path']} | {r['median_s']:.2f} ({r['min_s']:.2f}) | "
                     f"{r['speedup_vs_naive']:.2f} | {r['speedup_vs_sdpa_flash']:.2f} | {off} | "
                     f"{r['peak_rss_mb']:.0f} ({r.get('official_rss_mb') or '–'}) | {r['minor_faults_per_run']:.0f} | "
                     f"{r['max_abs_diff_vs_naive']:.1e} | {db} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="sst-light")
    ap.add_argument("--sizes", default="64,128,256")
    ap.add_argument("--rounds", type=int, default=3, help="turns each path takes (a fresh process each)")
    ap.add_argument("--runs", type=int, default=2, help="timed forwards per process, after one warm-up")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="also time the whole model in bf16, with its PSNR")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the sdpa path")
    ap.add_argument("--default-malloc", action="store_true", help="leave glibc's malloc settings alone")
    ap.add_argument("--json", help="write the rows as JSON here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        name, size, path = args.child.split(",")
        print(json.dumps(child(name, int(size), path, args.runs, args.threads, args.save)))
        return
    malloc = "default" if args.default_malloc else "keep_freed_memory"
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.machine()}, malloc: {malloc}, "
          f"{args.rounds} rounds x {args.runs} runs per path")
    paths = ["sdpa", "sdpa-flash", "naive"] + (["sdpa-bf16"] if args.bf16 else []) + (
        ["sdpa-compile"] if args.compile else [])
    with tempfile.TemporaryDirectory() as tmp:
        rows = [r for name in args.models.split(",") for size in map(int, args.sizes.split(","))
                for r in measure(name, size, paths, args, Path(tmp))]
    print()
    print(table(rows))
    for r in rows:
        if r["path"] == "sdpa-compile":
            print(f"{r['model']} {r['input']}: torch.compile + first call {r['first_call_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"malloc": malloc, "torch": torch.__version__, "threads": args.threads, "rows": rows}, fh,
                      indent=1)


if __name__ == "__main__":
    main()
