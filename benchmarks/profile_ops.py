"""Where the CPU time of one forward goes: torch.profiler per-op time, grouped, with FLOP rates.

One fresh process per side (ours, and the official network when its code is found, as in
vs_official.py; random weights, the same input), one warm-up forward, then one profiled forward. Ops
are grouped into attention kernel, convolutions (1x1, depthwise, 3x3, fused oneDNN), matrix products
(q/k/v, RIB masks and vectors), copies, LayerNorm, GELU and elementwise work. FLOPs come from the
profiler (plain convolutions and matrix products; it does not count the fused oneDNN kernels); the
attention kernel's are counted analytically at head dim d for q.k and p.v (what the model needs; the
official kernel runs d + r).

    python benchmarks/profile_ops.py --cases sst-light:4:128,sst-light:4:256 --threads 1
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_official import DEFAULT_OFFICIAL, ROOT, _official_net  # noqa: E402


def group(name: str, shapes: list) -> str:
    if "scaled_dot_product" in name or "flash_attention" in name:
        return "attention kernel"
    if "_convolution_pointwise" in name:
        return "conv fused (oneDNN)"
    if "convolution" in name and len(shapes) > 1 and len(shapes[1]) == 4:
        w = shapes[1]
        return "conv depthwise" if w[1] == 1 and w[2] > 1 else "conv 1x1" if w[2] == 1 else "conv 3x3"
    if name in ("aten::mm", "aten::bmm", "aten::baddbmm", "aten::addmm", "aten::einsum", "aten::matmul"):
        return "matrix products (q/k/v, RIB)"
    if name in ("aten::copy_", "aten::clone", "aten::cat", "aten::constant_pad_nd", "aten::reflection_pad2d",
                "aten::fill_", "aten::zero_", "aten::pixel_shuffle", "aten::_to_copy"):
        return "copies/pad/cat"
    if "layer_norm" in name:
        return "layernorm"
    if name == "aten::gelu":
        return "gelu"
    if name in ("aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::sigmoid", "aten::relu"):
        return "add/mul/sigmoid"
    return "other"


def attention_gflop(network_g: dict, size: int) -> float:
    """q.k and p.v at head dim d over every window of every layer (padded sides included)."""
    total = 0
    for ws, heads in zip(network_g["window_sizes"], network_g["num_heads"], strict=True):
        side = -(-size // ws) * ws
        n = ws * ws
        total += heads * (side // ws) ** 2 * n * n * (network_g["dim"] // heads) * 2 * 2
    return total * network_g["n_blocks"] / 1e9


def child(args: argparse.Namespace) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from sst_cli.model.registry import get_variant

    torch.set_num_threads(args.threads)
    network_g = get_variant(args.model).network_g(args.scale)
    torch.manual_seed(0)
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.size))
    if args.side == "official":
        net = _official_net(args.official, network_g, float32_attention=False).eval()
        ctx = torch.no_grad
    else:
        import sst_cli
        from sst_cli.runtime import keep_freed_memory

        keep_freed_memory()
        net = sst_cli.build_model(network_g).eval()
        ctx = torch.inference_mode
    with ctx():
        net(x)
        t0, c0 = time.perf_counter(), time.process_time()
        net(x)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        with profile(activities=[ProfilerActivity.CPU], with_flops=True, record_shapes=True) as prof:
            net(x)
    secs: collections.Counter = collections.Counter()
    flops: collections.Counter = collections.Counter()
    for e in prof.key_averages(group_by_input_shape=True):
        g = group(e.key, e.input_shapes)
        secs[g] += e.self_cpu_time_total / 1e6
        flops[g] += e.flops / 1e9
    flops["attention kernel"] = attention_gflop(network_g, args.size)
    print(json.dumps({"side": args.side, "wall_s": wall, "cpu_s": cpu, "seconds": secs, "gflop": flops}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="sst-light:4:128,sst-light:4:256", help="MODEL:SCALE:SIZE, comma list")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--official", default=str(DEFAULT_OFFICIAL))
    ap.add_argument("--json", help="write the groups here")
    ap.add_argument("--child", choices=("official", "ours"), help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--scale", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.side = args.child
        child(args)
        return
    sides = ["ours"] + (["official"] if (Path(args.official) / "sst" / "archs" / "sst_arch.py").is_file() else [])
    rows = []
    for case in args.cases.split(","):
        model, scale, size = case.split(":")
        for side in sides:
            cmd = [sys.executable, __file__, "--child", side, "--model", model, "--scale", scale, "--size", size,
                   "--threads", str(args.threads), "--official", args.official]
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if res.returncode:
                sys.exit(res.stderr[-3000:])
            r = json.loads(res.stdout.strip().splitlines()[-1])
            r.update(model=model, scale=int(scale), size=int(size))
            rows.append(r)
            total = sum(r["seconds"].values())
            print(f"\n{side}: {model} x{scale} {size}x{size}, {args.threads} thread(s): forward {r['wall_s']:.2f} s wall, "
                  f"{r['cpu_s']:.2f} s CPU (profiled pass {total:.2f} s)\n")
            print("| group | s | share | GFLOP | GFLOP/s |\n|---|---:|---:|---:|---:|")
            for g in sorted(r["seconds"], key=lambda k: -r["seconds"][k]):
                s, f = r["seconds"][g], r["gflop"].get(g, 0.0)
                rate = f"{f / s:.0f}" if f and s else ""
                print(f"| {g} | {s:.3f} | {s / total:.0%} | {f:.1f} | {rate} |" if f else
                      f"| {g} | {s:.3f} | {s / total:.0%} | | |")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
