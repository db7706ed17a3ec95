"""The paper's result tables, shipped with the package as CSV (sst_cli/data/paper/)."""

from __future__ import annotations

import csv
import functools
from importlib import resources
from typing import Any

TABLES = {
    "classic": "table2_df2k_classic.csv",
    "dflip": "table3_dflip.csv",
    "lightweight": "tableS5_S6_lightweight.csv",
    "inference_hd": "tableS4_inference_hd.csv",
    "costs_x2": "table1_costs_x2.csv",
    "bias_ablation": "table4_bias_ablation.csv",
    "fa2_vs_fa3": "tableS3_fa2_vs_fa3.csv",
}
DATASET_COLUMNS = {"Set5": "Set5", "Set14": "Set14", "B100": "BSD100", "BSD100": "BSD100",
                   "Urban100": "Urban100", "Manga109": "Manga109", "DIV2K-val": "DIV2K-val",
                   "LSDIR-val": "LSDIR-val"}


@functools.cache
def table(key: str) -> tuple[dict[str, str], ...]:
    """Rows of one paper table as dicts of strings."""
    text = resources.files("sst_cli.data.paper").joinpath(TABLES[key]).read_text(encoding="utf-8")
    return tuple(csv.DictReader(text.splitlines()))


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def quality(method: str, dataset: str, scale: int) -> dict[str, Any] | None:
    """The paper's Y-PSNR/SSIM for ``method`` (our variant name) on ``dataset`` at ``scale``.

    Looks in the DF2K classic table, then the lightweight table (DIV2K-trained rows), then DFLIP.
    Returns {"psnr_y", "ssim_y", "table", "training_set"} or None.
    """
    col = DATASET_COLUMNS.get(dataset)
    if col is None:
        return None
    for key, train_set in (("classic", "DF2K"), ("lightweight", "DIV2K"), ("dflip", "DFLIP")):
        for row in table(key):
            if row.get("method") != method or str(row.get("scale")) != str(scale):
                continue
            if key == "lightweight" and row.get("training_set") != train_set:
                continue
            p, s = _float(row.get(f"{col}_psnr")), _float(row.get(f"{col}_ssim"))
            if p is not None:
                return {"psnr_y": p, "ssim_y": s, "table": TABLES[key], "training_set": train_set}
    return None
