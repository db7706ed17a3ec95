"""Every metric ``sst eval`` knows, in one table (plain data: the CLI checks ``--metrics`` with it before torch).

Each metric says whether it needs ground truth (full-reference) or scores the SR image alone (no-reference),
which way is better, how many digits the table shows, and who computes it: sst itself (``metrics.py``,
``niqe.py``: BasicSR's conventions, after the crop border) or pyiqa through ``iqa.py`` (the optional extra
``sst-cli[iqa]``; on the whole image, as pyiqa scores it). Results and JSON/CSV use the names here
(``psnr_y``, ``niqe``, ...); ``psnr`` and ``ssim`` are aliases of the Y-channel ones, as the field means them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class Metric:
    name: str  # the key in results, JSON and CSV
    label: str  # the table's column, without the direction arrow
    full_reference: bool  # needs the ground truth (HR) image
    lower_better: bool
    digits: int  # decimals in the table
    computed_by: str  # "sst" or "pyiqa"
    in_paper: bool = False  # the SST paper's tables report it (--compare-paper)

    @property
    def column(self) -> str:
        """The table header: the label and which way is better ("NIQE ↓"). PSNR and SSIM stay unmarked, as in
        every SR table (and as sst's table has always shown them)."""
        if self.name.startswith(("psnr", "ssim")):
            return self.label
        return f"{self.label} {'↓' if self.lower_better else '↑'}"

    @property
    def better(self) -> str:
        return "lower" if self.lower_better else "higher"

    def info(self) -> dict[str, object]:
        """What the JSON's settings say about this metric."""
        return {"label": self.label, "better": self.better,
                "reference": "full-reference" if self.full_reference else "no-reference",
                "computed_by": self.computed_by,
                "measured_on": "the uint8 SR image after the crop border" if self.computed_by == "sst"
                               else "the whole uint8 SR image (pyiqa's own conventions)"}


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("psnr_y", "PSNR-Y", True, False, 4, "sst", in_paper=True),
    Metric("ssim_y", "SSIM-Y", True, False, 5, "sst", in_paper=True),
    Metric("psnr_rgb", "PSNR-RGB", True, False, 4, "sst"),
    Metric("ssim_rgb", "SSIM-RGB", True, False, 5, "sst"),
    Metric("niqe", "NIQE", False, True, 4, "sst"),
    Metric("lpips", "LPIPS", True, True, 4, "pyiqa"),
    Metric("dists", "DISTS", True, True, 4, "pyiqa"),
    Metric("musiq", "MUSIQ", False, False, 2, "pyiqa"),
    Metric("maniqa", "MANIQA", False, False, 4, "pyiqa"),
    Metric("clipiqa", "CLIPIQA", False, False, 4, "pyiqa"),
)}
ALIASES = {"psnr": "psnr_y", "ssim": "ssim_y"}
# The names --help and error messages offer: the short names first, then the explicit ones.
OFFERED = ("psnr", "ssim", "lpips", "dists", "niqe", "musiq", "maniqa", "clipiqa", "psnr_y", "ssim_y", "psnr_rgb",
           "ssim_rgb")
DEFAULT_METRICS = ("psnr_y", "ssim_y")
DEFAULT_LQ_METRICS = ("niqe",)  # a folder of low-quality inputs has no ground truth
NO_REFERENCE = tuple(m.name for m in METRICS.values() if not m.full_reference)


def canonical(name: str) -> str | None:
    """'PSNR' -> 'psnr_y', 'niqe' -> 'niqe'; None for a name that is no metric."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in METRICS else None


def parse_metrics(value: str | Iterable[str] | None, lq_only: bool = False) -> tuple[str, ...]:
    """A ``--metrics`` value (comma list or names) -> canonical names, in order, without repeats.

    Empty or None gives the default (PSNR/SSIM on Y; NIQE for ``lq_only`` datasets). An unknown name, or a
    full-reference one for a dataset without ground truth, is a :class:`UsageError` in one sentence.
    """
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value or []) if v.strip()]
    if not names:
        return DEFAULT_LQ_METRICS if lq_only else DEFAULT_METRICS
    unknown = [n for n in names if canonical(n) is None]
    if unknown:
        raise UsageError(f"unknown metric '{unknown[0]}': metrics are a comma list of {', '.join(OFFERED)}.")
    out = tuple(dict.fromkeys(canonical(n) for n in names))  # type: ignore[misc]
    if lq_only:
        needs_gt = [n for n in out if METRICS[n].full_reference]
        if needs_gt:
            raise UsageError(f"{', '.join(needs_gt)} {'compares' if len(needs_gt) == 1 else 'compare'} with ground "
                             f"truth, which --lq-only datasets do not have; choose from {', '.join(NO_REFERENCE)}.")
    return out


def pyiqa_metrics(names: Iterable[str]) -> tuple[str, ...]:
    """The names among ``names`` that pyiqa computes (loaded once per run through ``iqa.load_scorer``)."""
    return tuple(n for n in names if METRICS[n].computed_by == "pyiqa")
