"""``sst profile compare``: result files from several machines merged into one table (no torch import).

Rows are configurations (``schema.CONFIG_KEYS``); columns are where they ran: one per device of each
file, labelled by device name, host and (for CPUs) thread count, with the file name added where two
labels would otherwise read the same. A configuration absent from a column, or a field a file does not
have (older files, rows that did not run), is ``None`` here and '–' in every view. Ratios are to the
first column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from .schema import COMPARE_KIND, CONFIG_KEYS, SCHEMA_VERSION, check_result, schema_version, wxh

Key = tuple[Any, ...]


@dataclass
class Column:
    """One device of one result file."""

    source: str  # the file as the user named it
    device: str  # as rows record it: cpu, cuda:0, ...
    name: str  # short device name: "H100 80GB HBM3", "Xeon Platinum 8481C"
    host: str | None
    threads: int | None
    sst: str | None  # the sst version that wrote the file (None: before sst recorded it)
    schema: int
    label: str = ""


@dataclass
class Comparison:
    columns: list[Column]
    keys: list[Key]  # configurations, in the order first seen
    cells: dict[Key, list[dict[str, Any] | None]] = field(default_factory=dict)  # key -> row per column

    def value(self, key: Key, col: int, field_name: str) -> float | None:
        """A figure of a row that ran ('ok'), or None."""
        row = self.cells[key][col]
        if row is None or row.get("status", "ok") != "ok":
            return None
        v = row.get(field_name)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    def ratio(self, key: Key, col: int, field_name: str = "latency_ms_median") -> float | None:
        """This column's figure over the first column's, or None when either is missing."""
        base, v = self.value(key, 0, field_name), self.value(key, col, field_name)
        return v / base if base and v is not None else None

    def config(self, key: Key) -> dict[str, Any]:
        return dict(zip(CONFIG_KEYS, key, strict=True))


def short_device_name(name: str) -> str:
    """Decoration off a device name: 'Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz' -> 'Intel Xeon Platinum 8481C'."""
    text = re.sub(r"\((R|TM|tm|r)\)", "", name)
    text = re.sub(r"\s*@.*$", "", text)
    text = re.sub(r"\b(CPU|Processor|NVIDIA|GeForce)\b", "", text)
    return " ".join(text.split()) or name


def _device_name(row: dict[str, Any], env: dict[str, Any]) -> str:
    device = str(row.get("device") or "?")
    name = row.get("device_name")
    if not name and device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        name = next((g.get("name") for g in env.get("gpus") or [] if g.get("index") == index), None)
    if not name and device == "cpu":
        name = env.get("cpu")
    return short_device_name(str(name)) if name else device


def _key(row: dict[str, Any]) -> Key:
    return tuple(tuple(v) if isinstance(v, list) else v for v in (row.get(k) for k in CONFIG_KEYS))


def _label(c: Column) -> str:
    label = c.name + (f", {c.threads} threads" if c.device == "cpu" and c.threads else "")
    return label + (f" · {c.host}" if c.host else "")


def _unique_labels(columns: list[Column]) -> None:
    """Label every column; where labels repeat, add the file's name (its path where names repeat too), then
    a counter for a file given twice."""
    for c in columns:
        c.label = _label(c)
    groups: dict[str, list[Column]] = {}
    for c in columns:
        groups.setdefault(c.label, []).append(c)
    for group in (g for g in groups.values() if len(g) > 1):
        for c in group:
            name = Path(c.source).name
            clash = {o.source for o in group if Path(o.source).name == name}
            c.label += f" ({name if len(clash) == 1 else c.source})"
    counts: dict[str, int] = {}
    for c in columns:
        counts[c.label] = counts.get(c.label, 0) + 1
        if counts[c.label] > 1:
            c.label += f" #{counts[c.label]}"


def merge(results: list[tuple[str, dict[str, Any]]]) -> Comparison:
    """Merge ``(name, result)`` pairs into one comparison; a file's repeat of a configuration keeps the first."""
    columns: list[Column] = []
    placed: list[tuple[int, Key, dict[str, Any]]] = []
    for source, result in results:
        check_result(result, source)
        env = result.get("environment") or {}
        index: dict[str, int] = {}
        for row in result["rows"]:
            device = str(row.get("device") or "?")
            if device not in index:
                index[device] = len(columns)
                threads = row.get("threads") if row.get("threads") is not None else env.get("cpu_threads")
                columns.append(Column(source, device, _device_name(row, env), env.get("host"), threads,
                                      env.get("sst"), schema_version(result)))
            placed.append((index[device], _key(row), row))
    _unique_labels(columns)
    comp = Comparison(columns, [])
    for col, key, row in placed:
        if key not in comp.cells:
            comp.keys.append(key)
            comp.cells[key] = [None] * len(columns)
        if comp.cells[key][col] is None:
            comp.cells[key][col] = row
    return comp


def config_words(config: dict[str, Any], keys: tuple[str, ...] = CONFIG_KEYS) -> list[str]:
    """A configuration in a few words, e.g. ['sst-light', 'x4', 'sdpa', 'rib', 'fp32', 'input 64x64', 'batch 1']."""
    words = {"scale": lambda v: f"x{v}", "input_hw": lambda v: f"input {wxh(v)}", "batch": lambda v: f"batch {v}"}
    return [str(words.get(k, str)(config[k])) for k in keys if config.get(k) is not None]


# ------------------------------------------------------------------------------------------ output
def _result(comp: Comparison, key: Key, i: int) -> dict[str, Any]:
    row = comp.cells[key][i]
    return {
        "column": comp.columns[i].label,
        "status": None if row is None else row.get("status"),
        "latency_ms": comp.value(key, i, "latency_ms_median"),
        "latency_ms_p90": comp.value(key, i, "latency_ms_p90"),
        "peak_mem_mb": comp.value(key, i, "peak_mem_mb"),
        "latency_ratio": comp.ratio(key, i),
        "peak_mem_ratio": comp.ratio(key, i, "peak_mem_mb"),
    }


def to_json(comp: Comparison) -> dict[str, Any]:
    """The merged table as data: the columns, then per configuration one result per column (None: absent)."""
    return {
        "kind": COMPARE_KIND,
        "schema_version": SCHEMA_VERSION,
        "sst": __version__,
        "columns": [{"label": c.label, "file": c.source, "device": c.device, "device_name": c.name, "host": c.host,
                     "threads": c.threads, "sst": c.sst, "schema_version": c.schema} for c in comp.columns],
        "ratios_to": comp.columns[0].label if comp.columns else None,
        "rows": [{**comp.config(k), "input_wxh": wxh(k[CONFIG_KEYS.index("input_hw")]),
                  "results": [_result(comp, k, i) for i in range(len(comp.columns))]} for k in comp.keys],
    }


CSV_COLUMNS = (*(k if k != "input_hw" else "input_wxh" for k in CONFIG_KEYS), "column", "file", "device",
               "status", "latency_ms", "latency_ms_p90", "peak_mem_mb", "latency_ratio", "peak_mem_ratio")


def csv_rows(comp: Comparison) -> list[dict[str, Any]]:
    """One line per configuration and column (long format: easy to pivot), absent pairs left out."""
    out = []
    for key in comp.keys:
        config = comp.config(key)
        config["input_wxh"] = wxh(config.pop("input_hw"))
        for i, c in enumerate(comp.columns):
            if comp.cells[key][i] is not None:
                out.append({**config, **_result(comp, key, i), "file": c.source, "device": c.device})
    return out
