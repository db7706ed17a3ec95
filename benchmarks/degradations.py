"""Does a model beat bicubic on the LR images users actually have? One row per degradation, side by side.

Held-out photos (never used for training: Set5 and Set14 HR, shipped in tests/data) are degraded each way
the training mix knows (``sst_cli.training.degrade``): MATLAB bicubic, OpenCV cubic/linear/area/Lanczos
without antialiasing, Pillow's cubic/linear/Lanczos with antialiasing, Gaussian blur, Gaussian and Poisson
noise, JPEG. Each LR is upscaled by MATLAB bicubic (``-m bicubic``) and by each model, and scored as
``sst eval`` scores: Y-PSNR on uint8, border of ``scale`` pixels cropped. Every draw is seeded.

    python benchmarks/degradations.py                                    # the bundled x4 against bicubic
    python benchmarks/degradations.py --weights old.safetensors --json benchmarks/results/degradations.json

``--weights`` adds columns (e.g. an older bundled model, extracted with ``git show REV:path > old.safetensors``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HR = [ROOT / "tests/data/Set5/HR", ROOT / "tests/data/Set14/HR"]


def degradations(scale: int) -> dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]]:
    """Name -> function (HR float32 (H, W, 3), rng) -> LR uint8, one per table row."""
    from sst_cli.training.degrade import KERNELS, add_noise, blur, jpeg, resize

    def down(kernel: str) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
        return lambda hr, rng: resize(hr, (hr.shape[0] // scale, hr.shape[1] // scale), kernel)

    def to8(x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)

    rows: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {}
    labels = {"matlab": "MATLAB bicubic (benchmarks)", "cubic": "OpenCV cubic, no AA", "linear": "OpenCV linear, no AA",
              "lanczos": "OpenCV Lanczos4, no AA", "area": "OpenCV area", "cubic_aa": "Pillow bicubic (AA)",
              "linear_aa": "Pillow bilinear (AA)", "lanczos_aa": "Pillow Lanczos (AA)"}
    for k in KERNELS:
        rows[labels[k]] = (lambda f: lambda hr, rng: to8(f(hr, rng)))(down(k))
    matlab = down("matlab")
    rows["blur sigma 1.0 + MATLAB"] = lambda hr, rng: to8(matlab(blur(hr, 1.0), rng))
    rows["Gaussian noise 4/255 + MATLAB"] = lambda hr, rng: to8(add_noise(matlab(hr, rng), 4.0, False, rng))
    rows["Poisson noise (4/255 at grey)"] = lambda hr, rng: to8(add_noise(matlab(hr, rng), 4.0, True, rng))
    rows["JPEG q75 + MATLAB"] = lambda hr, rng: jpeg(to8(matlab(hr, rng)), 75)
    rows["JPEG q90 + OpenCV cubic"] = lambda hr, rng: jpeg(to8(down("cubic")(hr, rng)), 90)
    return rows


def load_hr(folders: list[Path], scale: int) -> list[tuple[str, np.ndarray]]:
    """RGB float32 HR images, mod-cropped to ``scale`` (grey repeated to RGB, as training reads them)."""
    from sst_cli.training.data import load_rgb_float

    images = []
    for folder in folders:
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in {".png", ".jpg", ".bmp", ".tif", ".tiff"}:
                hr = load_rgb_float(p)
                h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
                images.append((f"{folder.parent.name}/{p.stem}", hr[:h, :w]))
    if not images:
        sys.exit(f"no images under {', '.join(map(str, folders))}")
    return images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--hr", type=Path, action="append", help="HR folder(s); default Set5 + Set14 from tests/data")
    ap.add_argument("--weights", action="append", default=[], help="more models to compare (files)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    from sst_cli import load_upscaler
    from sst_cli.evaluation.metrics import psnr
    from sst_cli.model.bicubic import imresize_np, quantize_uint8

    torch.set_num_threads(args.threads)
    s = args.scale
    images = load_hr(args.hr or DEFAULT_HR, s)
    models = {"bundled": load_upscaler(scale=s, device="cpu", dtype="fp32", tile=0)}
    for w in args.weights:
        models[Path(w).stem] = load_upscaler(weights=w, scale=s, device="cpu", dtype="fp32", tile=0)
    print(f"{len(images)} held-out images (mod-cropped to x{s}), models: bicubic, "
          + ", ".join(f"{k} ({m.name})" for k, m in models.items()), file=sys.stderr)

    rows = []
    for name, make_lr in degradations(s).items():
        t0 = time.perf_counter()
        scores: dict[str, list[float]] = {"bicubic": [], **{k: [] for k in models}}
        for i, (_, hr) in enumerate(images):
            lr8 = make_lr(hr, np.random.default_rng((args.seed, i)))
            hr8 = quantize_uint8(hr)
            bic = quantize_uint8(imresize_np(lr8.astype(np.float32) / 255.0, s))
            scores["bicubic"].append(psnr(bic, hr8, crop_border=s))
            for k, up in models.items():
                scores[k].append(psnr(up(lr8), hr8, crop_border=s))
        row = {"degradation": name, **{k: float(np.mean(v)) for k, v in scores.items()}}
        rows.append(row)
        print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    names = list(models)
    head = f"{f'degradation (x{s})':<32}{'bicubic':>9}" + "".join(f"{k:>12}{'Δ':>7}" for k in names)
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['degradation']:<32}{r['bicubic']:9.2f}"
              + "".join(f"{r[k]:12.2f}{r[k] - r['bicubic']:+7.2f}" for k in names))
    worst = {k: min(r[k] - r["bicubic"] for r in rows) for k in names}
    print("Y-PSNR (dB), mean over images; Δ = model - bicubic. Worst Δ: "
          + ", ".join(f"{k} {v:+.2f}" for k, v in worst.items()))
    if args.json:
        import sst_cli

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "sst_version": sst_cli.__version__, "scale": s, "images": [n for n, _ in images], "seed": args.seed,
            "models": {k: {"name": m.name, "source": m.source} for k, m in models.items()}, "rows": rows,
        }, indent=2))


if __name__ == "__main__":
    main()
