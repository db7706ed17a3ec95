"""sst against the official networks (SST, ESC-RIB), side by side, with the same weights on the same CPU.

Both networks run as their users run them: the official one as published (its attention casts q/k/v to
bfloat16 even on CPU, under ``torch.no_grad`` as BasicSR tests it), ours through the public API in
fp32 (``sst_cli.load_upscaler(weights=...)``, then a tensor forward, as ``sst upscale`` does; like every
``sst`` command, the process calls ``sst_cli.runtime.keep_freed_memory`` before torch loads). The
weights are random ones in the official layout: a preparation process builds the official network,
saves its state dict (ours loads it strictly) and computes the reference output of the official network
with float32 attention (its ``arch_utils`` run with ``torch.bfloat16`` standing for ``torch.float32``, patched in
that process only; see shared/reference/README.md).

Every run is a fresh process, one side at a time, alternating official/ours (the order flips every
pair so drift on a shared machine hits both alike); each process does ``--warmup`` untimed forwards
and ``--runs`` timed ones. Reported per side: the median of the per-process times with min-max, the
process CPU time (all threads) of the timed forwards, the peak RSS (VmHWM) of the process, and the
first forward of a process. The ratio is official / ours; its spread is the range of the per-pair
ratios. max |diff| compares our output, and the official default, with the float32 reference.

    pip install -e '.[bench]'      # einops, which the official code imports
    python benchmarks/vs_official.py              # sst-light x4 64/128/256, sst x2 64/128, esc-rib x4 64
    python benchmarks/vs_official.py --cases sst-light:4:512 --pairs 5 --json out.json

The official code is looked up in --official DIR (a checkout of the authors' repository, or the copy
in shared/reference/official), else ../shared/reference/official next to this repository; without
either the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OFFICIAL = ROOT.parent / "shared" / "reference" / "official"
DEFAULT_CASES = "sst-light:4:64,sst-light:4:128,sst-light:4:256,sst:2:64,sst:2:128,esc-rib:4:64"
# the official class of each network_g type: (module under the official sst/archs, class)
OFFICIAL_CLASS = {"SST": ("sst_arch", "SST"), "ESCRIB": ("esc_rib_arch", "ESCRIB")}


def vm_hwm_mb() -> float:
    """This process's own peak RSS (ru_maxrss can be inherited from the forking parent)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM"))


# ---------------------------------------------------------------------------------- child processes
def _official_net(official: str, network_g: dict, float32_attention: bool):
    sys.path.insert(0, official)
    import torch

    if float32_attention:
        import sst.archs.arch_utils as arch_utils

        class _Float32Torch:
            """``torch`` as arch_utils sees it, with bfloat16 standing for float32."""

            bfloat16 = torch.float32

            def __getattr__(self, name: str):
                return getattr(torch, name)

        arch_utils.torch = _Float32Torch()
    import importlib

    module, name = OFFICIAL_CLASS[network_g.get("type", "SST")]
    cls = getattr(importlib.import_module(f"sst.archs.{module}"), name)
    return cls(**{k: v for k, v in network_g.items() if k != "type"})


def prepare(args: argparse.Namespace) -> dict:
    """Official random weights and input saved for both sides; the float32-attention reference output."""
    import torch

    from sst_cli.model.registry import get_variant

    torch.set_num_threads(args.threads)
    network_g = get_variant(args.model).network_g(args.scale)
    torch.manual_seed(0)
    net = _official_net(args.official, network_g, float32_attention=True).eval()
    weights = Path(args.work) / f"{get_variant(args.model).official}_X{args.scale}.pth"
    torch.save({"params": net.state_dict()}, weights)
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.size))
    torch.save(x, Path(args.work) / "input.pt")
    with torch.no_grad():
        torch.save(net(x), Path(args.work) / "reference_fp32.pt")
    return {"weights": str(weights), "network_g": network_g}


def time_side(args: argparse.Namespace) -> dict:
    """One process of one side: build, load, warm up, time; returns times, CPU times and VmHWM."""
    if args.side == "ours":
        from sst_cli.runtime import keep_freed_memory

        keep_freed_memory()  # as every `sst` command does, before torch loads
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    x = torch.load(work / "input.pt")
    if args.side == "official":
        ckpt = torch.load(args.weights, map_location="cpu")["params"]
        net = _official_net(args.official, json.loads(args.network_g), float32_attention=False)
        net.load_state_dict(ckpt, strict=True)
        net.eval()

        def forward(t):
            with torch.no_grad():
                return net(t)
    else:
        import sst_cli

        up = sst_cli.load_upscaler(args.model, weights=args.weights, device="cpu", dtype="fp32")
        forward = up  # Upscaler on a tensor: one whole-input forward, float32 out

    t0 = time.perf_counter()
    y = forward(x)
    first = time.perf_counter() - t0
    for _ in range(args.warmup - 1):
        forward(x)
    times, cpu = [], []
    for _ in range(args.runs):
        t0, c0 = time.perf_counter(), time.process_time()
        forward(x)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if args.save:
        torch.save(y.float(), args.save)
    return {"times": times, "cpu": cpu, "first_s": first, "peak_rss_mb": vm_hwm_mb(),
            "threads": torch.get_num_threads()}


# ------------------------------------------------------------------------------------------- parent
def child(args: argparse.Namespace, task: str, extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", task, "--official", args.official, "--threads", str(args.threads),
           "--warmup", str(args.warmup), "--runs", str(args.runs), *extra]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if res.returncode != 0:
        sys.exit(f"{task} {' '.join(extra)} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def measure(args: argparse.Namespace, model: str, scale: int, size: int, tmp: Path) -> dict:
    import torch

    work = tmp / f"{model}_x{scale}_{size}"
    work.mkdir()
    base = ["--model", model, "--scale", str(scale), "--size", str(size), "--work", str(work)]
    prep = child(args, "prepare", base)
    side_args = base + ["--weights", prep["weights"], "--network-g", json.dumps(prep["network_g"])]
    runs: dict[str, list[dict]] = {"official": [], "ours": []}
    for i in range(args.pairs):
        for side in ("official", "ours") if i % 2 == 0 else ("ours", "official"):
            save = ["--save", str(work / f"{side}.pt")] if i == 0 else []
            runs[side].append(child(args, side, side_args + save))
        print(f"  {model} x{scale} {size}: pair {i + 1}/{args.pairs} done", file=sys.stderr, flush=True)
    ref = torch.load(work / "reference_fp32.pt")
    row: dict = {"model": model, "scale": scale, "input": size, "pairs": args.pairs}
    for side, rs in runs.items():
        row[side] = {
            "wall_s": spread([statistics.median(r["times"]) for r in rs]),
            "cpu_s": spread([statistics.median(r["cpu"]) for r in rs]),
            "peak_rss_mb": spread([r["peak_rss_mb"] for r in rs]),
            "first_s": spread([r["first_s"] for r in rs]),
            "max_abs_diff_vs_fp32_reference": (torch.load(work / f"{side}.pt") - ref).abs().max().item(),
        }
    pair_ratios = [statistics.median(o["times"]) / statistics.median(u["times"])
                   for o, u in zip(runs["official"], runs["ours"], strict=True)]
    row["ratio"] = row["official"]["wall_s"]["median"] / row["ours"]["wall_s"]["median"]
    row["pair_ratios"] = spread(pair_ratios)
    row["cpu_ratio"] = row["official"]["cpu_s"]["median"] / row["ours"]["cpu_s"]["median"]
    row["rss_ratio"] = row["ours"]["peak_rss_mb"]["median"] / row["official"]["peak_rss_mb"]["median"]
    return row


def table(rows: list[dict]) -> str:
    out = ["| model | input | official s (min-max) | ours s (min-max) | official / ours (pairs min-max) | "
           "CPU s official / ours | peak RSS MB official / ours (min-max) | first call s official / ours | "
           "max abs diff vs fp32 official: ours (official default) |",
           "|---|---:|---|---|---|---|---|---|---|"]
    for r in rows:
        o, u = r["official"], r["ours"]

        def s(d: dict) -> str:
            return f"{d['median']:.2f} ({d['min']:.2f}-{d['max']:.2f})"

        def rss(d: dict) -> str:
            return f"{d['median']:.0f} ({d['min']:.0f}-{d['max']:.0f})"

        out.append(
            f"| {r['model']} x{r['scale']} | {r['input']} | {s(o['wall_s'])} | {s(u['wall_s'])} | "
            f"**{r['ratio']:.2f}** ({r['pair_ratios']['min']:.2f}-{r['pair_ratios']['max']:.2f}) | "
            f"{o['cpu_s']['median']:.2f} / {u['cpu_s']['median']:.2f} | "
            f"{rss(o['peak_rss_mb'])} / {rss(u['peak_rss_mb'])} | "
            f"{o['first_s']['median']:.2f} / {u['first_s']['median']:.2f} | "
            f"{u['max_abs_diff_vs_fp32_reference']:.1e} ({o['max_abs_diff_vs_fp32_reference']:.1e}) |")
    return "\n".join(out)


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "load_avg": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", default=None, help="the official code (folder holding sst/ and basicsr/)")
    ap.add_argument("--cases", default=DEFAULT_CASES, help="comma list of MODEL:SCALE:SIZE (square input)")
    ap.add_argument("--pairs", type=int, default=5, help="official/ours process pairs per case (>= 5 for a median)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed forwards per process")
    ap.add_argument("--runs", type=int, default=1, help="timed forwards per process")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the rows and the machine description here")
    ap.add_argument("--child", choices=("prepare", "official", "ours"), help=argparse.SUPPRESS)
    for name in ("--model", "--work", "--weights", "--network-g", "--save"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    ap.add_argument("--scale", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.side = args.child
        print(json.dumps(prepare(args) if args.child == "prepare" else time_side(args)))
        return

    official = Path(args.official) if args.official else DEFAULT_OFFICIAL
    if not (official / "sst" / "archs" / "sst_arch.py").is_file():
        where = f"--official {args.official}" if args.official else f"{DEFAULT_OFFICIAL}"
        print(f"skipped: the official SST code was not found ({where} has no sst/archs/sst_arch.py); pass "
              "--official DIR with a checkout of the authors' repository.")
        return
    try:
        import einops  # noqa: F401  (the official code imports it)
    except ImportError:
        sys.exit("the official SST code needs einops: pip install -e '.[bench]'.")
    args.official = str(official.resolve())
    cases = [(m, int(s), int(n)) for m, s, n in (c.split(":") for c in args.cases.split(",") if c)]
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, {args.threads} threads, "
          f"{args.pairs} pairs x {args.runs} timed forward(s) after {args.warmup} warm-up; load {info['load_avg']}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model, scale, size in cases:
            rows.append(measure(args, model, scale, size, Path(tmp)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    info["load_avg_end"] = os.getloadavg()
    print()
    print(table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "threads": args.threads, "pairs": args.pairs, "runs": args.runs,
                       "warmup": args.warmup, "official": args.official, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
