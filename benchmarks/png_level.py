"""PNG zlib level against encode time and file size, on what sst writes: x4 upscales of photos.

    python benchmarks/png_level.py                                   # ../shared/data/BSD200, 6 photos
    python benchmarks/png_level.py --photos DIR --limit 20 --levels 1,3,4,5,6,9 --json out.json

Each photo is enlarged x4 with bicubic (as smooth as a model's output, and fast), then encoded by cv2 at
every level in turn, as ``sst_cli.io`` writes PNGs (libpng's adaptive row filters), with the thread count
sst uses. Prints per level: total encode seconds, total bytes, and both relative to the level sst uses
(``sst_cli.io.png.LEVEL``), so the table is a side-by-side comparison made in one run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2

from sst_cli.io.files import list_images
from sst_cli.io.png import LEVEL


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "BSD200"
    ap.add_argument("--photos", type=Path, default=default, help="folder of photos (read recursively)")
    ap.add_argument("--limit", type=int, default=6, help="at most this many photos (sorted by name)")
    ap.add_argument("--levels", default="1,3,4,5,6", help="comma-separated zlib levels")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if not args.photos.is_dir():
        raise SystemExit(f"no photo folder at {args.photos}; pass --photos DIR.")
    levels = sorted({int(v) for v in args.levels.split(",")} | {LEVEL})
    cv2.setNumThreads(args.threads)
    totals = {lv: [0.0, 0] for lv in levels}
    photos = list_images(args.photos, recursive=True)[: args.limit]
    for path in photos:
        big = cv2.resize(cv2.imread(str(path)), None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
        for lv in levels:  # levels take turns on every photo, so drift of the machine hits all alike
            t0 = time.perf_counter()
            ok, data = cv2.imencode(".png", big, [cv2.IMWRITE_PNG_COMPRESSION, lv])
            totals[lv][0] += time.perf_counter() - t0
            totals[lv][1] += len(data)
    base_s, base_b = totals[LEVEL]
    print(f"{len(photos)} photos from {args.photos}, x4 bicubic (last {big.shape[1]}x{big.shape[0]}), "
          f"cv2 {cv2.__version__}, {args.threads} threads; relative to level {LEVEL} (sst's)")
    print("| level | encode s | MB | time vs sst's | bytes vs sst's |\n|---:|---:|---:|---:|---:|")
    for lv, (s, b) in totals.items():
        print(f"| {lv}{' (sst)' if lv == LEVEL else ''} | {s:.2f} | {b / 1e6:.1f} | {s / base_s:.2f}x | "
              f"{b / base_b:.3f} |")
    if args.json:
        rows = [{"level": lv, "seconds": s, "bytes": b} for lv, (s, b) in totals.items()]
        args.json.write_text(json.dumps({"photos": len(photos), "sst_level": LEVEL, "levels": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
