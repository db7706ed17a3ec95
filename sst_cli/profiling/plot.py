"""``--plot FILE``: a grouped bar chart of a comparison (latency above, peak memory below), PNG or SVG.

matplotlib is an optional extra (``pip install 'sst-cli[plot]'``): it is imported only when a plot is
drawn, through its object-oriented API (no pyplot, so no GUI backend is chosen or changed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..io.files import atomic_write
from .compare import Comparison, config_words
from .schema import CONFIG_KEYS
from .table import letters, num, short_status, split_keys

FORMATS = {".png": "png", ".svg": "svg"}
MISSING = "--plot needs matplotlib, an optional extra that is not installed: pip install 'sst-cli[plot]', or drop --plot."


def plot_format(path: str | Path) -> str:
    """'png' or 'svg' from the file's extension; anything else is a usage error (checked before measuring)."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UsageError(f"--plot writes PNG or SVG: name the file *.png or *.svg (got '{path}').")
    return fmt


def require_matplotlib() -> None:
    """Refuse ``--plot`` at once, in one sentence, when matplotlib is not installed.

    A usage error (exit 2), checked before any measuring: the command as given cannot complete here, and
    it is better told in a second than after minutes of measurements (install the extra or drop --plot)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(MISSING) from None


def _bar_label(comp: Comparison, key: tuple[Any, ...], col: int, field: str) -> str:
    row = comp.cells[key][col]
    if row is None:
        return "–"
    if row.get("status", "ok") != "ok":
        return short_status(row["status"])
    return num(comp.value(key, col, field))


def plot(comp: Comparison, path: str | Path, title: str = "sst profile") -> Path:
    """Draw ``comp`` to ``path`` (format from its extension), written atomically."""
    fmt = plot_format(path)
    require_matplotlib()
    from matplotlib.figure import Figure

    configs = [comp.config(k) for k in comp.keys]
    varying, shared = split_keys(configs, CONFIG_KEYS)
    groups = ["\n".join(config_words(c, varying)) for c in configs]
    n_cols, n_groups = len(comp.columns), len(comp.keys)
    width = 0.8 / n_cols
    fig = Figure(figsize=(max(6.0, 1.0 + n_groups * (0.6 + 0.35 * n_cols)), 6.5), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    panels = (("latency_ms_median", "median latency (ms)"), ("peak_mem_mb", "peak memory (MB)"))
    names = letters(n_cols)
    for ax, (field, ylabel) in zip(axes, panels, strict=True):
        for i, column in enumerate(comp.columns):
            xs = [g + (i - (n_cols - 1) / 2) * width for g in range(n_groups)]
            heights = [comp.value(k, i, field) for k in comp.keys]
            bars = ax.bar(xs, [h or 0 for h in heights], width * 0.92, label=f"{names[i]}: {column.label}",
                          color=f"C{i % 10}")
            ax.bar_label(bars, [_bar_label(comp, k, i, field) for k in comp.keys], fontsize=8, padding=2)
        ax.set_ylabel(ylabel)
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[1].set_xticks(range(n_groups), groups, fontsize=8)
    settings = " · ".join(config_words(configs[0], shared) if configs else [])
    fig.suptitle(title + (f"\n{settings}" if settings else ""), fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", fontsize=8, frameon=False)

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format=fmt, dpi=150)

    return atomic_write(path, write)
