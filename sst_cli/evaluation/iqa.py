"""pyiqa's metrics (LPIPS, DISTS, MUSIQ, MANIQA, CLIPIQA) for ``sst eval``: the optional extra ``sst-cli[iqa]``.

STAND-IN: the ``niqe`` branch needs this module's contract, and the ``iqa`` branch writes the real adapter (its
own venv, the weights-cache check). This file does the contract's error path for a missing pyiqa and a plain
``pyiqa.create_metric`` otherwise; the ``iqa`` branch's file replaces it whole.

Importing this module never imports pyiqa or torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import SSTError

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True)
class IqaMetric:
    name: str  # "lpips"
    full_reference: bool  # lpips, dists: True; musiq, maniqa, clipiqa: False
    lower_better: bool  # lpips, dists: True; the others False
    pyiqa_name: str  # the name pyiqa.create_metric takes


PYIQA_METRICS: dict[str, IqaMetric] = {m.name: m for m in (
    IqaMetric("lpips", True, True, "lpips"),
    IqaMetric("dists", True, True, "dists"),
    IqaMetric("musiq", False, False, "musiq"),
    IqaMetric("maniqa", False, False, "maniqa"),
    IqaMetric("clipiqa", False, False, "clipiqa"),
)}


def load_scorer(name: str, device: torch.device | str) -> Callable[[np.ndarray, np.ndarray | None], float]:
    """A scorer for one metric: ``scorer(sr, hr)`` with uint8 HxWx3 RGB arrays (hr None for no-reference
    metrics), returning a float. Raises SSTError in one sentence when pyiqa is not installed."""
    metric = PYIQA_METRICS[name]
    try:
        import pyiqa
    except ImportError:
        raise SSTError(f"{name} is computed by pyiqa, which is not installed; install the extra with "
                       "pip install 'sst-cli[iqa]'.") from None
    import numpy as np
    import torch

    net = pyiqa.create_metric(metric.pyiqa_name, device=torch.device(device), as_loss=False)

    def to_tensor(img: Any) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div(255).to(device)

    def score(sr: np.ndarray, hr: np.ndarray | None) -> float:
        with torch.no_grad():
            out = net(to_tensor(sr), to_tensor(hr)) if metric.full_reference else net(to_tensor(sr))
        return float(out.item())

    return score
