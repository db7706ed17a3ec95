"""The default path end to end: `sst upscale frame.jpg out/` on a 1920x1080 photo-like JPEG, on the CPU.

Each run is a fresh process that runs the real command line (``sst_cli.cli.main``, what ``sst`` and
``python -m sst_cli`` call) on one image and reports its wall time, process CPU time (all threads) and
peak RSS (VmHWM). With several ``--code`` trees (e.g. a worktree of an older commit) the trees take
turns run by run, so drift on a shared machine hits them alike; outputs are compared pixel by pixel
with the first tree's (``--format png`` for a lossless comparison; JPEG outputs differ by encoding).
``--profile`` adds one more run per tree under torch.profiler and prints its per-op table.

``--runtime NAME`` (repeatable: torch, onnxruntime, openvino) runs each tree with each runtime, every pair a
column of the table, all columns taking turns run by run. A graph runtime first gets one untimed run that
exports its graphs into a fresh sst cache (reported as "export run"), so the timed runs measure what every
later run costs. Each column's output is compared with the first tree's torch output (``--format png`` for a
lossless comparison): a graph runtime becomes the CPU default (``sst_cli.export.runner.CPU_DEFAULT``) only
where it is faster and its max difference is at most 1 level (1/255). A tree without ``--runtime`` (an older
sst) runs the torch column only.

    python benchmarks/upscale_1080p.py                                   # bundled sst-tiny x4, 3 runs
    python benchmarks/upscale_1080p.py --code /tmp/before --code . --format png --runs 3 --profile
    python benchmarks/upscale_1080p.py --model sst-light --runs 1     # random sst-light x4 weights
    python benchmarks/upscale_1080p.py --runtime torch --runtime onnxruntime --runtime openvino --format png

The image is synthetic (no data is downloaded): smooth shading, textures with a 1/f spectrum, hard
edges and fine lines, JPEG-compressed at quality 90, so tiles see photo-like content.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_photo(path: Path, width: int = 1920, height: int = 1080, seed: int = 0) -> None:
    """A deterministic photo-like RGB JPEG: 1/f noise texture, shading, shapes with hard edges, thin lines."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(width, height)) ** 1.1
    chans = []
    for _ in range(3):
        spec = amp * np.exp(2j * np.pi * rng.random(amp.shape))
        tex = np.fft.irfft2(spec, s=(height, width))
        chans.append((tex - tex.mean()) / tex.std())
    tex = np.stack(chans, axis=2)
    tex = 0.6 * tex[..., :1] + 0.4 * tex  # mostly luminance texture, some colour
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    shade = np.stack([0.55 + 0.3 * xx, 0.45 + 0.2 * yy, 0.5 - 0.25 * xx * yy], axis=2)
    img = np.clip(shade + 0.08 * tex, 0, 1)
    im = Image.fromarray((img * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(20, 300), rng.integers(20, 300)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h], fill=colour)
    for _ in range(60):
        pts = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)]
        draw.line(pts, fill=tuple(int(c) for c in rng.integers(0, 256, 3)), width=int(rng.integers(1, 4)))
    im.save(path, quality=90)


# ------------------------------------------------------------------------------------------- child
def child(args: argparse.Namespace) -> None:
    """Run the command line once in this process; print one JSON line with the figures."""
    cli = ["upscale", args.input, args.out, "--overwrite"] + args.cli_args.split()
    if args.profile:
        import torch
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            code = _run_cli(cli)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows)
        print(table, file=sys.stderr)
        total = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e6
        print(json.dumps({"profile_self_cpu_s": total, "rc": code, "threads": torch.get_num_threads()}))
        return
    t0, c0 = time.perf_counter(), time.process_time()
    code = _run_cli(cli)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    with open("/proc/self/status") as fh:  # VmHWM: this process's own peak (ru_maxrss may be the parent's)
        hwm = next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM"))
    import torch

    import sst_cli

    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": hwm, "rc": code,
                      "threads": torch.get_num_threads(), "sst_cli": sst_cli.__file__}))


def bound(args: argparse.Namespace) -> None:
    """The compute bound of the default path, in this process (this tree): the network's FLOPs on the tiles the
    CLI plans for this image (and on the image alone, without tile overlap), over the fp32 rate a plain
    matrix product reaches here with the same threads, measured now. Prints one JSON line."""
    import torch

    from sst_cli import load_upscaler
    from sst_cli.model.archs import cost_of
    from sst_cli.upscale.tiling import plan_tiles, resolve_tile

    torch.set_num_threads(args.threads)
    # a tree's own bundled x4 (its weights carry their config), planned and costed by this tree's code
    up = load_upscaler(scale=4, weights=args.bound_weights) if args.bound_weights else load_upscaler(scale=4)
    flops_px = cost_of(up.model).flops
    tile = resolve_tile(up, "auto", args.height, args.width)
    plan = plan_tiles(up, args.height, args.width, tile)
    computed = plan.count * plan.th * plan.tw * flops_px
    image = args.height * args.width * flops_px
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)  # warm-up
    rates = []
    for _ in range(5):
        t = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * 2048**3 / (time.perf_counter() - t))
    rate = max(rates)  # the machine's best: the bound is what it could do, not what a busy moment gave
    print(json.dumps({"flops_per_pixel": flops_px, "tile": tile, "tiles": plan.count, "tile_hw": [plan.th, plan.tw],
                      "tflop_computed": computed / 1e12, "tflop_image": image / 1e12, "fp32_gflops": rate / 1e9,
                      "bound_s": computed / rate, "bound_image_s": image / rate}))


def _run_cli(argv: list[str]) -> int:
    from sst_cli.cli import main

    return main(argv)


# ------------------------------------------------------------------------------------------ parent
def run(args: argparse.Namespace, col: Column, src: Path, out: Path, profile: bool = False) -> dict:
    code = col.code
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--input", str(src), "--out", str(out),
           f"--cli-args={args.cli_args}{col.flag}"]
    if profile:
        cmd += ["--profile", "--profile-rows", str(args.profile_rows)]
    # The tree under test ahead of the installed package (and of anything on PYTHONPATH, e.g. a runtime's
    # target folder); one sst cache for the whole benchmark, fresh, so graphs are exported by the export run.
    path = os.pathsep.join([str(code), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               PYTHONPATH=path, XDG_CACHE_HOME=str(args.cache))
    # Bytecode cached as on a user's machine (pip compiles it at install; a clone writes it on the first run):
    # a shell that sets PYTHONDONTWRITEBYTECODE would otherwise charge every run ~0.1 s of compiling sst's sources.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=code, env=env)
    if res.returncode != 0 or not res.stdout.strip():
        sys.exit(f"run in {code} failed:\n{res.stderr[-3000:]}")
    row = json.loads(res.stdout.strip().splitlines()[-1])
    if not profile and not row["sst_cli"].startswith(str(code)):
        sys.exit(f"the run imported {row['sst_cli']}, not the tree {code}")
    if row["rc"] != 0:
        sys.exit(f"sst upscale exited {row['rc']} in {code}:\n{res.stderr[-3000:]}")
    if profile:
        row["table"] = res.stderr
    return row


@dataclass(frozen=True)
class Column:
    """One column of the table: a source tree run with one runtime."""

    code: Path
    runtime: str
    explicit: bool  # the tree knows --runtime (an older sst runs torch without the flag)

    @property
    def flag(self) -> str:
        return f" --runtime {self.runtime}" if self.explicit else ""

    @property
    def label(self) -> str:
        return f"{self.code} [{self.runtime}]"


def knows_runtime(code: Path) -> bool:
    """Whether the tree's `sst upscale` has --runtime."""
    cli = code / "sst_cli" / "cli" / "upscale.py"
    return cli.is_file() and '"--runtime"' in cli.read_text(encoding="utf-8")


def columns(codes: list[Path], runtimes: list[str]) -> list[Column]:
    """Every tree with every runtime it has; torch first, so the first column is the reference."""
    cols = []
    for code in codes:
        explicit = knows_runtime(code)
        for rt in sorted(dict.fromkeys(runtimes), key=lambda r: r != "torch"):
            if explicit or rt == "torch":
                cols.append(Column(code, rt, explicit))
            else:
                print(f"{code} has no --runtime: its {rt} column is left out", file=sys.stderr)
    return cols


def random_weights(model: str, folder: Path) -> str:
    """A checkpoint of ``model`` x4 with random weights (the CLI loads only files for non-bundled models)."""
    import torch

    from sst_cli import create_model, save_checkpoint

    torch.manual_seed(0)
    path = folder / f"{model}_x4_random.safetensors"
    save_checkpoint(path, create_model(model, 4), {"name": model})
    return str(path)


def output_of(folder: Path) -> Path:
    """The image in an output folder (beside it: sst's .sst-manifest records)."""
    return next(p for p in sorted(folder.iterdir()) if p.is_file())


def compare(a: Path, b: Path) -> dict:
    from PIL import Image

    x = np.asarray(Image.open(a)).astype(np.int32)
    y = np.asarray(Image.open(b)).astype(np.int32)
    d = np.abs(x - y)
    return {"max_levels": int(d.max()), "mean_levels": float(d.mean()), "pixels_differing": int((d > 0).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code", action="append", help="source tree(s) holding sst_cli/ to run (default: this one)")
    ap.add_argument("--runs", type=int, default=3, help="runs per tree (fresh processes, trees alternating)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--model", help="a variant instead of the bundled model, with random x4 weights (timing only)")
    ap.add_argument("--format", default="same", help="output format passed to sst upscale (png to compare)")
    ap.add_argument("--extra", default="", help="more `sst upscale` options, e.g. '--tile 256'")
    ap.add_argument("--runtime", action="append", choices=["torch", "onnxruntime", "openvino"],
                    help="runtime(s) to run each tree with, a column each (default: torch)")
    ap.add_argument("--profile", action="store_true", help="one more run per column under torch.profiler")
    ap.add_argument("--profile-rows", type=int, default=25)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--cli-args", default="", help=argparse.SUPPRESS)
    ap.add_argument("--bound", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bound-weights", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.bound:
        bound(args)
        return
    codes = [Path(c).resolve() for c in (args.code or [str(ROOT)])]
    for c in codes:
        if not (c / "sst_cli" / "__init__.py").is_file():
            sys.exit(f"{c} holds no sst_cli package.")
    cols = columns(codes, args.runtime or ["torch"])
    rows: dict[Column, list[dict]] = {c: [] for c in cols}
    exports: dict[Column, dict] = {}
    profiles: dict[Column, dict] = {}
    diffs: dict[Column, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        args.cache = Path(tmp) / "cache"
        extra = ["--format", args.format] + args.extra.split()
        if args.model:
            extra += ["--weights", random_weights(args.model, Path(tmp))]
        args.cli_args = " ".join(extra)
        src = Path(tmp) / "frame.jpg"
        make_photo(src, args.width, args.height)
        print(f"sst upscale frame.jpg out/ {args.cli_args}: {args.width}x{args.height}, {args.threads} threads, "
              f"{args.runs} runs per column; load {os.getloadavg()}")
        if len(cols) > 1 and args.format != "png":
            print("note: outputs are compared as written; use --format png for a lossless comparison", file=sys.stderr)
        outs = {c: Path(tmp) / f"out{i}" for i, c in enumerate(cols)}
        for c in cols:
            if c.runtime != "torch":  # export and cache its graphs, untimed
                exports[c] = run(args, c, src, outs[c])
                print(f"  {c.label}: export run {exports[c]['wall_s']:.1f} s", file=sys.stderr, flush=True)
        for r in range(args.runs):
            for c in cols if r % 2 == 0 else cols[::-1]:
                rows[c].append(run(args, c, src, outs[c]))
                last = rows[c][-1]
                print(f"  {c.label}: {last['wall_s']:.1f} s, CPU {last['cpu_s']:.1f} s, peak {last['peak_rss_mb']:.0f} "
                      "MB", file=sys.stderr, flush=True)
        first = cols[0]
        for c in cols[1:]:
            diffs[c] = compare(output_of(outs[first]), output_of(outs[c]))
        if args.profile:
            for c in cols:
                profiles[c] = run(args, c, src, Path(tmp) / "prof", profile=True)
    print()
    print(f"| code [runtime] | wall s median (min-max) | CPU s median | peak RSS MB median (max) | vs {first.label}: "
          "max diff (levels), pixels differing | export run s |")
    print("|---|---|---|---|---|---|")
    summary = []
    for c in cols:
        rs = rows[c]
        wall = [r["wall_s"] for r in rs]
        row = {"code": str(c.code), "runtime": c.runtime, "wall_s": wall, "cpu_s": [r["cpu_s"] for r in rs],
               "peak_rss_mb": [r["peak_rss_mb"] for r in rs], "threads": rs[0]["threads"], "diff": diffs.get(c),
               "export_run_s": exports[c]["wall_s"] if c in exports else None}
        summary.append(row)
        d = diffs.get(c)
        dtxt = f"{d['max_levels']}, {d['pixels_differing']}" if d else "-"
        etxt = f"{row['export_run_s']:.1f}" if row["export_run_s"] is not None else "-"
        print(f"| {c.label} | {statistics.median(wall):.1f} ({min(wall):.1f}-{max(wall):.1f}) | "
              f"{statistics.median(row['cpu_s']):.1f} | {statistics.median(row['peak_rss_mb']):.0f} "
              f"({max(row['peak_rss_mb']):.0f}) | {dtxt} | {etxt} |")
    # The compute bound of each tree's bundled x4, measured after the runs in a process of its own: that tree's
    # weights, costed and tiled by this tree's code (older trees have no cost model; their tiling was the same).
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    bounds: dict[Path, dict] = {}
    for code in dict.fromkeys(c.code for c in cols):
        weights = code / "sst_cli" / "data" / "weights" / "sst-tiny_x4.safetensors"
        res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--bound", "--threads", str(args.threads),
                              "--width", str(args.width), "--height", str(args.height), "--bound-weights", str(weights)],
                             capture_output=True, text=True, cwd=ROOT, env=env)
        if res.returncode != 0 or args.model:
            if res.returncode != 0:
                print(f"compute bound of {code} not measured: {res.stderr.strip()[-500:]}", file=sys.stderr)
            continue
        cb = bounds[code] = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"\ncompute bound (bundled x4 of {code}, {cb['flops_per_pixel'] / 1e3:.1f} kFLOP/px): "
              f"{cb['tflop_computed']:.3f} TFLOP on {cb['tiles']} tiles of {cb['tile_hw'][0]}x{cb['tile_hw'][1]} "
              f"({cb['tflop_image']:.3f} on the image alone) at {cb['fp32_gflops']:.0f} GFLOP/s (fp32 2048x2048 "
              f"matmul, {args.threads} threads, now) = {cb['bound_s']:.2f} s ({cb['bound_image_s']:.2f} s without "
              "overlap)")
        for c in cols:
            if c.code == code:
                wall = statistics.median(r["wall_s"] for r in rows[c])
                print(f"  {c.label}: achieved {cb['bound_s'] / wall:.0%} of the bound over the whole command "
                      f"({wall:.1f} s, including start-up, decoding and encoding)")
    for c, p in profiles.items():
        print(f"\nper-op profile, {c.label} (self CPU total {p['profile_self_cpu_s']:.1f} s):\n{p['table']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": f"sst upscale frame.jpg out/ {args.cli_args}", "size": [args.width, args.height],
                       "threads": args.threads, "rows": summary,
                       "compute_bound": {str(code): cb for code, cb in bounds.items()},
                       "profiles": {c.label: p for c, p in profiles.items()}}, fh, indent=1)


if __name__ == "__main__":
    main()
