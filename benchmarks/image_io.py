"""Decode and encode time of a 12 MP photo through ``sst_cli.io`` (read_image / write_image).

    python benchmarks/image_io.py                      # 4000x3000, median of 5 rounds
    python benchmarks/image_io.py --runs 3 --json benchmarks/results/image_io.json

The picture is synthetic but behaves like a photo under compression: smooth lighting, objects with soft
edges, fine texture and sensor noise (in all 16 bits for the 16-bit cases). The input files are encoded
once, by cv2 with fixed settings rather than by sst_cli, so two versions of sst_cli decode the same bytes:
PNG at zlib level 6, JPEG at quality 92 with 4:2:0 chroma (as cameras write them), TIFF with Adobe Deflate
and the horizontal predictor (as photo editors export 16-bit). Encoding writes through
``write_image`` with its defaults (JPEG quality 95). Cases take turns in every round, so drift of this
shared machine spreads over all of them; the figures are the medians of the rounds, in wall-clock seconds
and in CPU seconds of this process (all its threads), which a busy machine inflates far less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np

# name: (file suffix, bits, format passed to write_image)
CASES = {"png-8": (".png", 8, "png"), "png-16": (".png", 16, "png"), "jpg-8": (".jpg", 8, "jpg"),
         "tiff-16": (".tif", 16, "tiff")}


def upsample(small: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear enlargement of a 2-D array to (height, width)."""

    def along(a: np.ndarray, n: int, axis: int) -> np.ndarray:
        pos = np.linspace(0, a.shape[axis] - 1, n, dtype=np.float32)
        i = np.minimum(pos.astype(np.int64), a.shape[axis] - 2)
        f = (pos - i).reshape((-1, 1) if axis == 0 else (1, -1))
        return np.take(a, i, axis) * (1 - f) + np.take(a, i + 1, axis) * f

    return along(along(small, height, 0), width, 1)


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] with the statistics that matter to codecs: mostly smooth, some edges,
    texture, noise."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    # lighting: a few slow waves, correlated between channels
    light = np.zeros((height, width), np.float32)
    for _ in range(6):
        fx, fy = rng.uniform(0.3, 3, 2)
        light += np.sin(np.float32(6.3 * fx) * x + np.float32(6.3 * fy) * y + np.float32(rng.uniform(0, 6.3))) / 6
    img = np.empty((height, width, 3), np.float32)
    for c, tint in enumerate(rng.uniform(0.35, 0.6, 3)):
        img[..., c] = tint + 0.25 * light + 0.05 * (c - 1) * (x - y)
    # objects: ellipses and boxes with their own colour and shading, edges softened over ~2 pixels
    for _ in range(60):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(20, width / 6), rng.uniform(20, height / 6)
        y0, y1 = int(max(0, cy - ry - 2)), int(min(height, cy + ry + 2))
        x0, x1 = int(max(0, cx - rx - 2)), int(min(width, cx + rx + 2))
        if y1 <= y0 or x1 <= x0:
            continue
        yy = np.arange(y0, y1, dtype=np.float32)[:, None]
        xx = np.arange(x0, x1, dtype=np.float32)[None, :]
        if rng.random() < 0.5:
            dist = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) - 1
            inside = np.clip(0.5 - dist * min(rx, ry) / 2, 0, 1)
        else:
            dist = np.maximum(np.abs(xx - cx) - rx, np.abs(yy - cy) - ry)
            inside = np.clip(0.5 - dist / 2, 0, 1)
        colour = rng.uniform(0.05, 0.95, 3).astype(np.float32)
        shade = 1 + 0.3 * ((yy - cy) / ry)
        region = img[y0:y1, x0:x1]
        region += inside[..., None] * (colour * shade[..., None] - region)
    # texture: smooth value noise at three scales, then sensor noise
    for cell, amp in ((64, 0.04), (8, 0.03), (2, 0.02)):
        small = rng.standard_normal((height // cell + 2, width // cell + 2)).astype(np.float32)
        img += amp * upsample(small, height, width)[..., None]
    img += rng.standard_normal(img.shape, dtype=np.float32) * 0.008
    return np.clip(img, 0, 1)


def quantise(img: np.ndarray, bits: int) -> np.ndarray:
    top = 65535 if bits == 16 else 255
    return np.round(img * top).astype(np.uint16 if bits == 16 else np.uint8)


def write_inputs(folder: Path, img: np.ndarray) -> dict[str, np.ndarray]:
    """Encode the input files with cv2 (fixed settings, independent of sst_cli); returns the exact pixels."""
    import cv2

    pixels = {8: quantise(img, 8), 16: quantise(img, 16)}
    params = {".png": [cv2.IMWRITE_PNG_COMPRESSION, 6],
              ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 92, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                       cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420],
              ".tif": [cv2.IMWRITE_TIFF_COMPRESSION, cv2.IMWRITE_TIFF_COMPRESSION_ADOBE_DEFLATE,
                       cv2.IMWRITE_TIFF_PREDICTOR, cv2.IMWRITE_TIFF_PREDICTOR_HORIZONTAL]}
    for name, (suffix, bits, _) in CASES.items():
        ok, buf = cv2.imencode(suffix, cv2.cvtColor(pixels[bits], cv2.COLOR_RGB2BGR), params[suffix])
        assert ok, name
        (folder / f"{name}{suffix}").write_bytes(buf.tobytes())
    return {name: pixels[bits] for name, (_, bits, _) in CASES.items()}


def versions() -> dict[str, str]:
    import PIL

    out = {"python": platform.python_version(), "numpy": np.__version__, "pillow": PIL.__version__}
    try:
        import cv2

        out["opencv"] = cv2.__version__
    except ImportError:
        pass
    return out


def commit() -> str:
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=7"],
                         capture_output=True, text=True)
    return run.stdout.strip() or "unknown"


def synthetic(width: int, height: int, runs: int, cases: list[str]) -> list[dict]:
    """Each case decoded and encoded once per round, cases taking turns; medians per case."""
    from sst_cli.io.images import read_image, write_image

    with tempfile.TemporaryDirectory(prefix="sst-image-io-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        expected = write_inputs(folder, photo(width, height))
        print(f"inputs: {width}x{height}, made in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        decode: dict[str, list[tuple[float, float]]] = {c: [] for c in cases}  # (wall s, CPU s) per round
        encode: dict[str, list[tuple[float, float]]] = {c: [] for c in cases}
        exact: dict[str, bool | None] = {c: None for c in cases}
        for r in range(runs):
            for name in cases:
                suffix, _, fmt = CASES[name]
                src, dst = folder / f"{name}{suffix}", folder / f"out-{name}{suffix}"
                t, c = time.perf_counter(), time.process_time()
                img = read_image(src)
                decode[name].append((time.perf_counter() - t, time.process_time() - c))
                t, c = time.perf_counter(), time.process_time()
                write_image(dst, img, fmt)
                encode[name].append((time.perf_counter() - t, time.process_time() - c))
                if r == 0 and fmt != "jpg":  # lossless cases must come back bit for bit, both ways
                    exact[name] = bool(np.array_equal(img.pixels, expected[name])
                                       and np.array_equal(read_image(dst).pixels, expected[name]))
                del img
                print(f"round {r + 1}/{runs} {name}: decode {decode[name][-1][0]:.3f} s "
                      f"(CPU {decode[name][-1][1]:.3f}), encode {encode[name][-1][0]:.3f} s "
                      f"(CPU {encode[name][-1][1]:.3f})", file=sys.stderr)
        rows = []
        for name in cases:
            suffix, bits, fmt = CASES[name]
            rows.append({"case": name, "bits": bits, "format": fmt,
                         "input_mb": (folder / f"{name}{suffix}").stat().st_size / 1e6,
                         "output_mb": (folder / f"out-{name}{suffix}").stat().st_size / 1e6,
                         "decode_s": median(w for w, _ in decode[name]),
                         "encode_s": median(w for w, _ in encode[name]),
                         "decode_cpu_s": median(c for _, c in decode[name]),
                         "encode_cpu_s": median(c for _, c in encode[name]),
                         "decode_runs_s": decode[name], "encode_runs_s": encode[name], "exact": exact[name]})

    return rows


def real_photos(folder: Path, limit: int, out: Path) -> dict:
    """Decode and re-encode (as PNG) the first ``limit`` PNG photos of ``folder``: CPU seconds and bytes in
    total, since one synthetic image says little about how real photos compress."""
    from sst_cli.io.images import read_image, write_image

    files = sorted(folder.glob("*.png"))[:limit]
    if not files:
        raise SystemExit(f"no PNG files in {folder}")
    decode_cpu = encode_cpu = 0.0
    in_bytes = out_bytes = 0
    exact = True
    for f in files:
        c = time.process_time()
        img = read_image(f)
        decode_cpu += time.process_time() - c
        c = time.process_time()
        write_image(out, img, "png")
        encode_cpu += time.process_time() - c
        in_bytes += f.stat().st_size
        out_bytes += out.stat().st_size
        exact = exact and bool(np.array_equal(read_image(out).pixels, img.pixels))
    return {"folder": str(folder), "files": len(files), "input_mb": in_bytes / 1e6, "output_mb": out_bytes / 1e6,
            "decode_cpu_s": decode_cpu, "encode_cpu_s": encode_cpu, "exact": exact}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=5, help="rounds; each times every case once")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    ap.add_argument("--photos", type=Path, help="also decode and re-encode the PNG photos of this folder")
    ap.add_argument("--photos-limit", type=int, default=60, help="at most this many photos (sorted by name)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s): {', '.join(unknown)}")

    rev = commit()  # before any work: the tree may change while this runs
    import sst_cli.io.images

    rows = synthetic(args.width, args.height, args.runs, cases) if cases else []
    photos = None
    if args.photos:
        with tempfile.TemporaryDirectory(prefix="sst-image-io-") as tmp:
            photos = real_photos(args.photos, args.photos_limit, Path(tmp) / "out.png")

    print(f"\n{args.width}x{args.height} RGB, median of {args.runs} rounds, commit {rev}, "
          f"sst_cli from {Path(sst_cli.io.images.__file__).parents[2]}\n")
    print("| case | input MB | decode s (CPU s) | encode s (CPU s) | decode+encode s (CPU s) | output MB "
          "| lossless round trip |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        trip = {True: "exact", False: "DIFFERS", None: "(lossy)"}[row["exact"]]
        both, both_cpu = row["decode_s"] + row["encode_s"], row["decode_cpu_s"] + row["encode_cpu_s"]
        print(f"| {row['case']} | {row['input_mb']:.1f} | {row['decode_s']:.2f} ({row['decode_cpu_s']:.2f}) | "
              f"{row['encode_s']:.2f} ({row['encode_cpu_s']:.2f}) | {both:.2f} ({both_cpu:.2f}) | "
              f"{row['output_mb']:.1f} | {trip} |")
    if photos:
        print(f"\n{photos['files']} photos of {photos['folder']}, decoded and written as PNG once each\n")
        print("| photos | input MB | decode CPU s | encode CPU s | output MB | lossless round trip |")
        print("|---|---|---|---|---|---|")
        print(f"| {photos['files']} | {photos['input_mb']:.2f} | {photos['decode_cpu_s']:.2f} | "
              f"{photos['encode_cpu_s']:.2f} | {photos['output_mb']:.2f} | "
              f"{'exact' if photos['exact'] else 'DIFFERS'} |")
    if args.json:
        report = {"benchmark": "image_io", "commit": rev, "size": [args.width, args.height],
                  "runs": args.runs, "versions": versions(), "machine": {"cpus": os.cpu_count(),
                  "platform": platform.platform()}, "sst_cli": str(Path(sst_cli.io.images.__file__).parents[2]),
                  "results": rows, "photos": photos}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
