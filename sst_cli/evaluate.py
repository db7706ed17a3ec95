"""Benchmark evaluation with the field's conventions (``sst eval``; see shared/design/METRICS.md).

Finds a dataset (name, alias or folder) and its layout, gets each image's LR (the shipped file when
there is one, else our MATLAB-style bicubic of the mod-cropped HR, rounded to uint8), runs the model
through the shared tiler, quantises the output to uint8 and measures Y-PSNR / Y-SSIM (optionally RGB)
with border crop = scale. A dataset's score is the mean of its per-image values.

Layouts understood, for scale ``s``:

* BasicSR / SwinIR: ``<set>/HR/<stem>.png`` + ``<set>/LR_bicubic/X<s>/<stem>x<s>.png``
  (also DIV2K's ``<prefix>_HR`` + ``<prefix>_LR_bicubic/X<s>``);
* HAT / BasicSR test sets: ``<set>/GTmod<k>/<stem>.png`` (k a multiple of s) + ``<set>/LRbicx<s>/<stem>.png``;
* a plain folder of HR images (LR always generated).

JSON: floats are plain numbers except non-finite ones (identical images give PSNR +inf), which are
written as the string ``"inf"`` so the file stays strict JSON. A result's ``lr_source`` is "shipped" or
"generated", or "mixed" when only some images have an LR file (each image says which it used).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from . import metrics
from .checkpoint import atomic_write
from .errors import SSTError
from .resize import imresize, quantize_uint8
from .tiling import plan_tiles, resolve_tile, upscale_tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")
DEFAULT_METRICS = ("psnr_y", "ssim_y")

# Canonical benchmark names and the folder names they go by in the wild (matched case-insensitively).
DATASETS: dict[str, tuple[str, ...]] = {
    "Set5": ("Set5",),
    "Set14": ("Set14",),
    "B100": ("B100", "BSD100", "BSDS100"),
    "Urban100": ("Urban100",),
    "Manga109": ("Manga109",),
    "DIV2K-val": ("DIV2K-val", "DIV2K_val", "DIV2K-valid", "DIV2K_valid", "DIV2K"),
    "LSDIR-val": ("LSDIR-val", "LSDIR_val", "LSDIR-valid", "LSDIR_valid", "LSDIR"),
}

SETTINGS_TEXT = {
    "quantization": "SR clamped to [0, 1], x255, rounded to uint8 before measuring",
    "y_channel": "BT.601 'MATLAB' Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, not rounded",
    "ssim": "11x11 Gaussian window, sigma 1.5, valid region, C1=(0.01*255)^2, C2=(0.03*255)^2",
    "grayscale": "grayscale images are read as 3-channel RGB and go through the Y formula (BasicSR "
                 "convention, as the compared papers); MATLAB-era tables used the grey value directly",
    "lr_generation": "when no LR file is shipped: MATLAB-style bicubic (antialiased, sst_cli.resize.imresize) "
                     "of the mod-cropped HR, rounded to uint8",
    "dataset_score": "mean of per-image values",
}


def _key(name: str) -> str:
    return name.lower().replace("_", "-")


_ALIASES = {_key(alias): canon for canon, aliases in DATASETS.items() for alias in aliases}


def canonical_name(name: str) -> str | None:
    """'bsd100' -> 'B100'; None for names that are not a known benchmark."""
    return _ALIASES.get(_key(name))


# ------------------------------------------------------------------------------------------ discovery
@dataclass(frozen=True)
class Dataset:
    name: str  # canonical benchmark name, or the folder's own name
    path: Path
    known: bool  # a benchmark we know (paper tables may have it)


@dataclass(frozen=True)
class Pair:
    name: str  # image stem
    hr: Path
    lr: Path | None  # shipped LR, or None: generated


@dataclass(frozen=True)
class Layout:
    kind: str  # "basicsr", "hat" or "folder"
    hr_dir: Path
    lr_dir: Path | None
    pairs: tuple[Pair, ...]


def expected_layout(name: str = "<Name>", scale: int | str = "<s>") -> str:
    return (f"<root>/{name}/HR/*.png with optional <root>/{name}/LR_bicubic/X{scale}/<stem>x{scale}.png, "
            f"HAT's {name}/GTmod{scale}/ + {name}/LRbicx{scale}/, or a folder of HR images")


def _find_child(parent: Path, names: Iterable[str]) -> Path | None:
    """The first sub-folder of ``parent`` whose name matches one of ``names`` (case-insensitive)."""
    if not parent.is_dir():
        return None
    children = {_key(p.name): p for p in sorted(parent.iterdir()) if p.is_dir()}
    for n in names:
        if (hit := children.get(_key(n))) is not None:
            return hit
    return None


def resolve_dataset(spec: str, data_root: str | os.PathLike[str]) -> Dataset:
    """A --dataset entry (benchmark name, alias, folder under the data root, or a path) -> Dataset."""
    root = Path(data_root)
    canon = canonical_name(spec)
    if canon is not None:
        hit = _find_child(root, DATASETS[canon])
        if hit is not None:
            return Dataset(canon, hit, True)
        if not Path(spec).is_dir():
            looked = ", ".join(DATASETS[canon])
            raise SSTError(f"dataset {canon} not found under {root} (looked for {looked}); expected "
                           f"{expected_layout(canon)}.")
    path = Path(spec).expanduser()
    if not path.is_dir() and not path.is_absolute():
        path = root / spec
    if not path.is_dir():
        raise SSTError(f"dataset '{spec}' is neither a known benchmark nor a folder (also looked in {root}); "
                       f"expected {expected_layout()}.")
    folder = path.parent if path.name.upper() in ("HR", "GT") else path
    canon = canonical_name(folder.name)
    return Dataset(canon or folder.name, folder, canon is not None)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _lr_lookup(lr_dir: Path | None, stem: str, scale: int) -> Path | None:
    if lr_dir is None:
        return None
    for cand in (f"{stem}x{scale}", f"{stem}_x{scale}", f"{stem}X{scale}", stem):
        for suffix in IMAGE_SUFFIXES:
            p = lr_dir / f"{cand}{suffix}"
            if p.is_file():
                return p
    return None


def _hat_gt_dir(path: Path, scale: int) -> Path | None:
    """HAT's GTmod<k> with k a multiple of ``scale``: GTmod<s> first, else the smallest such k (BasicSR's GTmod12)."""
    mods = {}
    for p in path.iterdir():
        m = re.fullmatch(r"gtmod(\d+)", p.name.lower())
        if m and p.is_dir():
            mods[int(m.group(1))] = p
    for k in sorted(mods, key=lambda k: (k != scale, k)):
        if k % scale == 0:
            return mods[k]
    return None


def discover(ds: Dataset, scale: int) -> Layout:
    """The HR images of ``ds`` and, per image, its shipped LR file at ``scale`` if any."""
    path = ds.path
    hr_dir = _find_child(path, ("HR",))
    lr_dir: Path | None = None
    kind = "basicsr"
    if hr_dir is not None:
        lr_dir = _find_child(path / "LR_bicubic", (f"X{scale}",))
    elif (div2k := [p for p in sorted(path.iterdir()) if p.is_dir() and p.name.upper().endswith("_HR")]):
        hr_dir = div2k[0]
        lr_dir = _find_child(path / (hr_dir.name[:-3] + "_LR_bicubic"), (f"X{scale}",))
    elif any(re.fullmatch(r"gtmod\d+", p.name.lower()) for p in path.iterdir()):
        kind = "hat"
        hr_dir = _hat_gt_dir(path, scale)
        if hr_dir is None:
            have = ", ".join(sorted(p.name for p in path.iterdir() if p.name.lower().startswith("gtmod")))
            raise SSTError(f"dataset {ds.name} at {path} has {have} but no GTmod folder usable at x{scale}; "
                           f"expected {expected_layout(ds.name, scale)}.")
        lr_dir = _find_child(path, (f"LRbicx{scale}",))
    else:
        kind, hr_dir = "folder", path
    images = _images(hr_dir)
    if not images:
        raise SSTError(f"dataset {ds.name} has no images in {hr_dir}; expected {expected_layout(ds.name, scale)}.")
    pairs = tuple(Pair(p.stem, p, _lr_lookup(lr_dir, p.stem, scale)) for p in images)
    return Layout(kind, hr_dir, lr_dir, pairs)


# ------------------------------------------------------------------------------------------ images
def read_rgb_u8(path: Path) -> tuple[np.ndarray, bool]:
    """An image as uint8 (H, W, 3) RGB and whether it was grayscale (grey is repeated, alpha dropped)."""
    with Image.open(path) as im:
        im.load()
        gray = im.mode in ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L")
        if im.mode.startswith("I"):  # 16-bit grey: PIL's convert("RGB") would clip it, so scale to 8 bits
            arr = np.asarray(im, dtype=np.float64)
            arr = np.clip(np.round(arr / 257.0 if arr.max() > 255 else arr), 0, 255).astype(np.uint8)
            return np.repeat(arr[:, :, None], 3, axis=2), True
        return np.array(im.convert("RGB")), gray  # a writable copy (torch.from_numpy warns on read-only)


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[0] // scale * scale, img.shape[1] // scale * scale
    return img[:h, :w]


def generate_lr(hr_u8: np.ndarray, scale: int) -> np.ndarray:
    """LR uint8 (h, w, 3) from a mod-cropped HR uint8: MATLAB-style bicubic by 1/scale, rounded.

    Reproduces BasicSR's regeneration bit for bit (the same float32 operations and rounding)."""
    x = torch.from_numpy(np.ascontiguousarray(hr_u8)).permute(2, 0, 1).float() / 255.0
    return quantize_uint8(imresize(x, 1 / scale).permute(1, 2, 0))


def to_tensor(img_u8: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img_u8)).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def measure(sr_u8: np.ndarray, hr_u8: np.ndarray, crop_border: int, names: Iterable[str] = DEFAULT_METRICS) -> dict[str, float]:
    """The requested metrics of one quantised SR image against its (mod-cropped) HR."""
    fns: dict[str, Callable[[], float]] = {
        "psnr_y": lambda: metrics.psnr(sr_u8, hr_u8, crop_border, y_channel=True),
        "ssim_y": lambda: metrics.ssim(sr_u8, hr_u8, crop_border, y_channel=True),
        "psnr_rgb": lambda: metrics.psnr(sr_u8, hr_u8, crop_border, y_channel=False),
        "ssim_rgb": lambda: metrics.ssim(sr_u8, hr_u8, crop_border, y_channel=False),
    }
    return {n: fns[n]() for n in names}


def parse_metrics(value: str | Iterable[str] | None) -> tuple[str, ...]:
    names = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value or []) if v.strip()]
    if not names:
        return DEFAULT_METRICS
    bad = [n for n in names if n not in METRICS]
    if bad:
        raise SSTError(f"unknown metric '{bad[0]}' (choose from {', '.join(METRICS)}).")
    return tuple(dict.fromkeys(names))


# ------------------------------------------------------------------------------------------ results
@dataclass
class ImageResult:
    name: str
    metrics: dict[str, float]
    lr_source: str  # "shipped" | "generated"
    hr_size: tuple[int, int]  # mod-cropped (H, W)
    grayscale: bool
    tiles: int
    seconds: float  # model time


@dataclass
class EvalResult:
    model: str
    dataset: str
    scale: int
    path: str
    layout: str
    crop_border: int
    metric_names: tuple[str, ...]
    images: list[ImageResult] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"name", "reason"}
    seconds: float = 0.0  # wall time for this dataset and scale
    paper: dict[str, Any] | None = None  # the paper's values and our delta (--compare-paper)

    @property
    def lr_source(self) -> str:
        kinds = {im.lr_source for im in self.images}
        return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "none")

    def mean(self, metric: str) -> float:
        vals = [im.metrics[metric] for im in self.images if metric in im.metrics]
        return float(np.mean(vals)) if vals else math.nan

    @property
    def means(self) -> dict[str, float]:
        return {m: self.mean(m) for m in self.metric_names}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"model": self.model, "dataset": self.dataset, "scale": self.scale}
        d.update(self.means)
        d.update({
            "lr_source": self.lr_source, "layout": self.layout, "path": self.path,
            "crop_border": self.crop_border, "num_images": len(self.images), "seconds": round(self.seconds, 3),
            "model_seconds": round(sum(im.seconds for im in self.images), 3),
            "grayscale_images": [im.name for im in self.images if im.grayscale],
            "tiled_images": sum(im.tiles > 1 for im in self.images),
            "images": [{"name": im.name, **im.metrics, "lr_source": im.lr_source, "hr_size": list(im.hr_size),
                        "seconds": round(im.seconds, 4)} for im in self.images],
            "skipped": list(self.skipped),
        })
        if self.paper is not None:
            d["paper"] = self.paper
        return d


@dataclass
class EvalOptions:
    datasets: list[str]
    scales: list[int] | None = None  # None: the checkpoint's scale with --weights, else 4
    data_root: str = "datasets"
    model: str | None = None  # None = the bundled model; "bicubic" = the baseline
    weights: str | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    crop_border: int | None = None  # None = scale
    tile: int | str = "auto"
    overlap: int | None = None
    tta: bool = False
    device: str = "auto"
    dtype: str = "auto"
    backend: str = "auto"
    save_dir: str | None = None
    compare_paper: bool = False
    random_weights: bool = False


@dataclass
class EvalReport:
    results: list[EvalResult]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"results": [r.to_dict() for r in self.results], "settings": self.settings}


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return "inf" if obj > 0 else "-inf" if obj < 0 else "nan"
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def to_json(report: EvalReport) -> str:
    return json.dumps(_json_safe(report.to_dict()), indent=1, allow_nan=False)


def csv_rows(report: EvalReport) -> tuple[list[str], list[list[Any]]]:
    names = list(dict.fromkeys(m for r in report.results for m in r.metric_names))
    header = ["model", "dataset", "scale", "image", *names, "lr_source", "height", "width", "seconds"]
    rows = []
    for r in report.results:
        for im in r.images:
            vals = [im.metrics.get(m, "") for m in names]
            rows.append([r.model, r.dataset, r.scale, im.name, *vals, im.lr_source, *im.hr_size, round(im.seconds, 4)])
    return header, rows


def write_json(report: EvalReport, path: str | os.PathLike[str]) -> Path:
    text = to_json(report)
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))


def write_csv(report: EvalReport, path: str | os.PathLike[str]) -> Path:
    header, rows = csv_rows(report)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)  # csv writes float('inf') as "inf"
    return atomic_write(Path(path), lambda tmp: tmp.write_text(buf.getvalue(), encoding="utf-8"))


def save_png(img_u8: np.ndarray, path: Path) -> Path:
    return atomic_write(path, lambda tmp: Image.fromarray(img_u8).save(tmp, format="PNG"))


# ------------------------------------------------------------------------------------------ running
@dataclass(frozen=True)
class Task:
    dataset: Dataset
    scale: int
    layout: Layout


def plan(datasets: Iterable[str], scales: Iterable[int], data_root: str | os.PathLike[str]) -> list[Task]:
    """Resolve every dataset and layout up front, so a missing one fails before any model work."""
    resolved = [resolve_dataset(spec, data_root) for spec in datasets]
    if not resolved:
        raise SSTError("no dataset given; pass --dataset Set5,Set14,... or a folder.")
    return [Task(ds, s, discover(ds, s)) for ds in resolved for s in scales]


def paper_variant(options: EvalOptions, upscaler: Any) -> str | None:
    """Our variant name when the model evaluated is an official SST variant, else None."""
    from .checkpoint import is_plus_name, match_variant
    from .zoo import get_variant

    if options.model and options.model != "bicubic":
        try:
            return get_variant(options.model).name
        except KeyError:
            return None
    if options.weights:
        cfg = getattr(upscaler.model, "config", None) or {}
        if cfg.get("type") == "SST":
            v = match_variant(cfg, plus=is_plus_name(options.weights))
            return v.name if v is not None else None
    return None


def paper_comparison(variant: str | None, result: EvalResult) -> dict[str, Any] | None:
    """The paper's PSNR/SSIM for this variant, dataset and scale, and our delta; None if not published."""
    from .paper import quality

    if variant is None:
        return None
    q = quality(variant, result.dataset, result.scale)
    if q is None:
        return None
    ours = result.means
    out = dict(q, method=variant)
    if "psnr_y" in ours and q.get("psnr_y") is not None:
        out["delta_psnr_y"] = ours["psnr_y"] - q["psnr_y"]
    if "ssim_y" in ours and q.get("ssim_y") is not None:
        out["delta_ssim_y"] = ours["ssim_y"] - q["ssim_y"]
    return out


ImageCallback = Callable[[Task, str], None]


def evaluate_task(upscaler: Any, task: Task, options: EvalOptions, on_image: ImageCallback | None = None) -> EvalResult:
    """Run one dataset at one scale; unreadable or mismatched images are skipped and reported."""
    s = task.scale
    cb = s if options.crop_border is None else options.crop_border
    res = EvalResult(upscaler.name, task.dataset.name, s, str(task.dataset.path), task.layout.kind, cb,
                     tuple(options.metrics))
    min_side = 2 * cb + (11 if any(m.startswith("ssim") for m in options.metrics) else 1)
    start = time.perf_counter()
    for pair in task.layout.pairs:
        try:
            res.images.append(_evaluate_image(upscaler, pair, s, cb, min_side, options, task.dataset.name))
        except _Skip as exc:
            res.skipped.append({"name": pair.name, "reason": str(exc)})
        if on_image is not None:
            on_image(task, pair.name)
    res.seconds = time.perf_counter() - start
    return res


class _Skip(Exception):
    """This image cannot be evaluated; the reason is reported and the batch goes on."""


def _evaluate_image(upscaler: Any, pair: Pair, s: int, cb: int, min_side: int, options: EvalOptions,
                    dataset: str) -> ImageResult:
    try:
        hr, gray = read_rgb_u8(pair.hr)
        hr = mod_crop(hr, s)
        if pair.lr is not None:
            lr, _ = read_rgb_u8(pair.lr)
            source = "shipped"
        else:
            lr, source = None, "generated"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _Skip(f"unreadable image ({exc.__class__.__name__})") from None
    if min(hr.shape[:2]) < max(min_side, s):
        raise _Skip(f"too small ({hr.shape[1]}x{hr.shape[0]}) for x{s} with crop border {cb}")
    if lr is None:
        lr = generate_lr(hr, s)
    elif lr.shape[:2] != (hr.shape[0] // s, hr.shape[1] // s):
        raise _Skip(f"LR {lr.shape[1]}x{lr.shape[0]} is not HR {hr.shape[1]}x{hr.shape[0]} / {s}")
    x = to_tensor(lr)
    tile = resolve_tile(upscaler, options.tile, x.shape[2], x.shape[3])
    tiles = plan_tiles(upscaler, x.shape[2], x.shape[3], tile, options.overlap).count
    t0 = time.perf_counter()
    sr = upscale_tensor(upscaler, x, tile=tile, overlap=options.overlap, tta=options.tta)
    seconds = time.perf_counter() - t0
    sr_u8 = quantize_uint8(sr[0].permute(1, 2, 0))
    if sr_u8.shape != hr.shape:
        raise SSTError(f"the model returned {sr_u8.shape[1]}x{sr_u8.shape[0]} for a x{s} input of "
                       f"{lr.shape[1]}x{lr.shape[0]}; is it really a x{s} model?")
    if options.save_dir:
        save_png(sr_u8, Path(options.save_dir) / dataset / f"X{s}" / f"{pair.name}.png")
    vals = measure(sr_u8, hr, cb, options.metrics)
    return ImageResult(pair.name, vals, source, (hr.shape[0], hr.shape[1]), gray, tiles, seconds)


def _settings(options: EvalOptions, upscalers: dict[int, Any], tasks: list[Task]) -> dict[str, Any]:
    from . import __version__ as sst_version

    first = next(iter(upscalers.values()), None)
    return {
        "model": first.name if first else options.model,
        "model_source": {str(s): u.source for s, u in upscalers.items()},
        "weights": options.weights,
        "random_weights": options.random_weights,
        "datasets": list(dict.fromkeys(t.dataset.name for t in tasks)),
        "scales": sorted(upscalers),
        "data_root": str(options.data_root),
        "metrics": list(options.metrics),
        "crop_border": "scale" if options.crop_border is None else options.crop_border,
        "device": str(first.device) if first else options.device,
        "dtype": str(first.dtype).removeprefix("torch.") if first else options.dtype,
        "backend": first.backend if first else options.backend,
        "tile": options.tile,
        "overlap": options.overlap,
        "tta": options.tta,
        **SETTINGS_TEXT,
        "sst_version": sst_version,
        "torch_version": torch.__version__,
    }


def run_eval(
    options: EvalOptions,
    on_image: ImageCallback | None = None,
    on_plan: Callable[[list[Task]], None] | None = None,
    on_model: Callable[[Any], None] | None = None,
) -> EvalReport:
    """Evaluate every dataset at every scale, one model in memory at a time (scales outer)."""
    from .engine import load_upscaler

    def load(scale: int | None) -> Any:
        return load_upscaler(model=options.model, weights=options.weights, scale=scale, device=options.device,
                             dtype=options.dtype, backend=options.backend, random_weights=options.random_weights)

    preloaded = None
    scales = list(dict.fromkeys(options.scales or []))
    if not scales:
        if options.weights and options.model != "bicubic":
            preloaded = load(None)  # a checkpoint knows its own scale
            scales = [preloaded.scale]
        else:
            scales = [4]
    tasks = plan(options.datasets, scales, options.data_root)
    if on_plan is not None:
        on_plan(tasks)
    results: list[EvalResult] = []
    upscalers: dict[int, Any] = {}
    for s in scales:
        upscaler = preloaded if preloaded is not None and preloaded.scale == s else load(s)
        upscalers[s] = _Info.of(upscaler)
        if on_model is not None:
            on_model(upscaler)
        variant = paper_variant(options, upscaler) if options.compare_paper else None
        for task in (t for t in tasks if t.scale == s):
            res = evaluate_task(upscaler, task, options, on_image)
            if options.compare_paper:
                res.paper = paper_comparison(variant, res)
            results.append(res)
        del upscaler
        preloaded = None
    order = {spec: i for i, spec in enumerate(dict.fromkeys(t.dataset.name for t in tasks))}
    results.sort(key=lambda r: (order[r.dataset], r.scale))
    settings = _settings(options, upscalers, tasks)
    settings["compare_paper"] = options.compare_paper
    return EvalReport(results, settings)


@dataclass(frozen=True)
class _Info:
    """What the settings record about a loaded model, without keeping the model alive."""

    name: str
    source: str
    device: Any
    dtype: Any
    backend: str
    scale: int

    @classmethod
    def of(cls, u: Any) -> _Info:
        return cls(u.name, u.source, u.device, u.dtype, u.backend, u.scale)


__all__ = [
    "DATASETS", "METRICS", "Dataset", "EvalOptions", "EvalReport", "EvalResult", "ImageResult", "Layout",
    "Pair", "Task", "canonical_name", "discover", "evaluate_task", "generate_lr", "measure", "mod_crop",
    "parse_metrics", "plan", "read_rgb_u8", "resolve_dataset", "run_eval", "to_json", "write_csv", "write_json",
]
