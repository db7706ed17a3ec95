"""Evaluation results: per image, per dataset and scale, the whole report; JSON and CSV.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import images
from ..io.files import atomic_write_text
from .registry import parse_metrics

SETTINGS_TEXT = {
    "quantization": "SR clamped to [0, 1], x255, rounded to uint8 before measuring",
    "y_channel": "BT.601 'MATLAB' Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, not rounded",
    "ssim": "11x11 Gaussian window, sigma 1.5, valid region, C1=(0.01*255)^2, C2=(0.03*255)^2",
    "grayscale": "grayscale images are read as 3-channel RGB and go through the Y formula (BasicSR "
                 "convention, as the compared papers); MATLAB-era tables used the grey value directly",
    "lr_generation": "when no LR file is shipped: MATLAB-style bicubic (antialiased, sst_cli.model.bicubic.imresize) "
                     "of the mod-cropped HR, rounded to uint8",
    "dataset_score": "mean of per-image values",
}
NIQE_TEXT = ("BasicSR's calculate_niqe: Y as above of the uint8 SR image, crop border, rounded; 96x96 blocks at two "
             "scales; the NIQE authors' pristine model (Mittal et al. 2013)")
LQ_TEXT = ("--lq-only: each image is a low-quality input without ground truth, upscaled and scored by no-reference "
           "metrics; hr_size is the SR image's size")



# ------------------------------------------------------------------------------------------ results
@dataclass
class ImageResult:
    name: str
    metrics: dict[str, float]
    lr_source: str  # "shipped" | "generated" | "lq" (an LQ-only dataset's input)
    hr_size: tuple[int, int]  # mod-cropped (H, W); for an LQ-only dataset, the SR image's
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
    metrics: tuple[str, ...] | None = None  # names or aliases of registry.METRICS; None = the default for the data
    crop_border: int | None = None  # None = scale (0 with lq_only)
    tile: int | str = "auto"
    overlap: int | None = None
    tta: bool = False
    device: str = "auto"
    dtype: str = "auto"
    backend: str = "auto"
    save_dir: str | None = None
    compare_paper: bool = False
    random_weights: bool = False
    seed: int = 0  # initialises --random-weights
    lq_only: bool = False  # the datasets are folders of low-quality inputs without ground truth

    def __post_init__(self) -> None:
        # canonical names (psnr -> psnr_y), the default for the kind of data, and one sentence for a wrong one
        self.metrics = parse_metrics(self.metrics, self.lq_only)

    def crop_for(self, scale: int) -> int:
        """The crop border at ``scale``: as given, else the scale (BasicSR's convention for benchmarks), else 0
        for LQ-only data (no-reference scores of real-world sets are reported on the whole image)."""
        if self.crop_border is not None:
            return self.crop_border
        return 0 if self.lq_only else scale


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
    return atomic_write_text(path, text + "\n")


def write_csv(report: EvalReport, path: str | os.PathLike[str]) -> Path:
    header, rows = csv_rows(report)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)  # csv writes float('inf') as "inf"
    return atomic_write_text(path, buf.getvalue())


def save_png(img_u8: np.ndarray, path: Path) -> Path:
    images.save_array(path, img_u8, "png")
    return path


