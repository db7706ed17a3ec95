"""Peak memory and wall time of tiled upscaling of one large image on the CPU, for several tile sizes.

Each tile size runs in a fresh subprocess (so peak RSS is that run's own) through the same code path as
`sst upscale`: decode the PNG, tile, blend, write the PNG atomically. The model is a small random SST
(timing and memory only: its output is meaningless) unless --model names a variant or `bicubic`.

    python benchmarks/upscale_memory.py                       # 2048x2048 input, x2, tiles 128 and 512
    python benchmarks/upscale_memory.py --size 3000 --tiles 96,256,0 --model sst-light

Prints a markdown table; peak RSS should grow with the tile, not with the image.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL_SST = {"dim": 32, "window_sizes": [8, 16, 32], "num_heads": 2, "ranks": 8, "n_blocks": 2, "exp_ratio": 2,
             "upsampler_type": "pixelshuffle_direct"}


def rss_mb() -> float:
    """Current resident set size (Linux), MiB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def make_image(path: Path, size: int) -> None:
    """A size x size RGB PNG with structure at every scale (written in strips to keep this process small)."""
    import numpy as np

    from sst_cli.io.images import PngWriter

    yy = np.arange(size, dtype=np.float32)[:, None]
    xx = np.arange(size, dtype=np.float32)[None, :]
    with open(path, "wb") as fh:
        w = PngWriter(fh, size, size, 3, 8)
        for y0 in range(0, size, 256):
            y = yy[y0 : y0 + 256]
            r = 0.5 + 0.5 * np.sin(xx / 7.0 + y / 13.0)
            g = 0.5 + 0.5 * np.cos((xx * y) / (size * 3.0))
            b = ((xx // 32 + y // 32) % 2) * 0.6 + 0.2
            w.write_rows((np.stack([r, g, b * np.ones_like(r)], axis=2) * 255).round().astype(np.uint8))
        w.close()


def child(args: argparse.Namespace) -> None:
    import torch

    from sst_cli.io.images import read_image
    from sst_cli.model.archs import build_model
    from sst_cli.upscale.batch import process_file
    from sst_cli.upscale.jobs import Settings
    from sst_cli.upscale.tiling import plan_tiles, resolve_tile
    from sst_cli.upscale.upscaler import Upscaler, load_upscaler

    torch.set_num_threads(args.threads)
    if args.model == "small-sst":
        torch.manual_seed(0)
        net = build_model({**SMALL_SST, "upscaling_factor": args.scale}).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        up = Upscaler(net, "small-sst", args.scale, torch.device("cpu"), torch.float32, "sdpa", "random")
    else:
        up = load_upscaler(args.model, scale=args.scale, device="cpu", dtype="fp32",
                           random_weights=args.model != "bicubic")
    src, dst = Path(args.input), Path(args.output)
    h, w = read_image(src).pixels.shape[:2]
    base = rss_mb()
    tile = resolve_tile(up, args.tile, h, w)
    plan = plan_tiles(up, h, w, tile)
    t0 = time.perf_counter()
    process_file(src, dst, up, Settings(tile=tile))
    wall = time.perf_counter() - t0
    print(json.dumps({"tile": tile, "tiles": plan.count, "overlap": plan.overlap, "wall_s": wall,
                      "baseline_mb": base, "peak_mb": peak_mb(), "output_bytes": dst.stat().st_size}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=2048, help="input side in pixels (square image)")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--tiles", default="128,512", help="comma list of tile sizes (0 = whole image, auto)")
    ap.add_argument("--model", default="small-sst", help="small-sst (default), bicubic, or a variant name")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tile", default="0", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.tile = args.tile if args.tile == "auto" else int(args.tile)
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "large.png"
        make_image(src, args.size)
        rows = []
        for tile in [t.strip() for t in args.tiles.split(",") if t.strip()]:
            cmd = [sys.executable, __file__, "--child", "--tile", tile, "--input", str(src),
                   "--output", str(Path(tmp) / f"out_{tile}.png"), "--model", args.model,
                   "--scale", str(args.scale), "--threads", str(args.threads)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                sys.exit(f"tile {tile} failed:\n{res.stderr}")
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"tile {tile}: done", file=sys.stderr, flush=True)
    out = args.size * args.scale
    print(f"\n{args.size}x{args.size} RGB -> {out}x{out}, model {args.model}, x{args.scale}, CPU, "
          f"{args.threads} threads\n")
    print("| tile (px) | tiles | overlap | wall time (s) | peak RSS (MiB) | RSS before upscaling (MiB) | "
          "peak - before (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        tile = "whole image" if r["tile"] == 0 else r["tile"]
        print(f"| {tile} | {r['tiles']} | {r['overlap']} | {r['wall_s']:.1f} | {r['peak_mb']:.0f} | "
              f"{r['baseline_mb']:.0f} | {r['peak_mb'] - r['baseline_mb']:.0f} |")


if __name__ == "__main__":
    main()
