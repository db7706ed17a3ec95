"""The tables ``sst profile`` prints, as plain cells (the CLI renders them; no torch, no rich here).

Built to fit 80 columns: settings shared by every row move from the columns into the caption, headers
are short with the unit in them, and long reasons become numbered footnotes. Sizes read WxH.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

from .compare import Comparison, config_words, short_device_name
from .schema import CONFIG_KEYS, wxh

HEADERS = {"model": "model", "scale": "x", "backend": "backend", "bias": "bias", "dtype": "dtype", "device": "device",
           "input_hw": "input", "batch": "batch", "mode": "mode"}
# The kinds of status, shortened for a cell; the full reason goes to a footnote.
SHORT_STATUS = {"backend unavailable": "n/a", "bias unsupported by backend": "n/a", "device unavailable": "no device",
                "dtype unsupported": "n/a", "out of memory": "OOM", "failed": "failed"}
MEMORY_NOTE = "MB: peak memory (CPU: peak RSS of the worker; CUDA: max allocated)"


@dataclass
class TextTable:
    title: str
    columns: list[str]
    numeric: list[bool]
    rows: list[list[str]] = field(default_factory=list)
    caption: list[str] = field(default_factory=list)  # settings shared by every row, units, legend
    notes: list[str] = field(default_factory=list)  # numbered footnotes, printed below the table


def num(v: float | None) -> str:
    """3 significant digits, no decimals from 100 up; '–' for a missing figure."""
    if v is None:
        return "–"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def short_status(status: str) -> str:
    head = status.split(":")[0]
    return SHORT_STATUS.get(head, "timeout" if head.startswith("timed out") else head[:10])


class _Notes:
    """Footnotes numbered in order of first use; one number per distinct text."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"

    def lines(self) -> list[str]:
        return [f"[{i + 1}] {t}" for i, t in enumerate(self.texts)]


def _cell(key: str, v: Any) -> str:
    if v is None:
        return "–"
    return (wxh(v) or "–") if key == "input_hw" else str(v)


def split_keys(configs: list[dict[str, Any]], keys: tuple[str, ...],
               keep: tuple[str, ...] = ("model", "backend")) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(keys whose value varies between rows: columns; keys every row shares: the caption). ``keep`` stay
    columns when nothing varies, so a one-row table still says what it measured."""
    varying = tuple(k for k in keys if len({repr(c.get(k)) for c in configs}) > 1) or tuple(k for k in keys if k in keep)
    return varying, tuple(k for k in keys if k not in varying)


def _device(row: dict[str, Any]) -> str:
    name = row.get("device_name")
    return row["device"] if row.get("device") == "cpu" or not name else f"{row['device']} {short_device_name(name)}"


def _padding(rows: list[dict[str, Any]]) -> str | None:
    """'windows pad the input: 8x4 to 64x64 (...)' where a row's input is not a multiple of its largest
    attention window (results of older sst versions do not record it)."""
    pairs = {(wxh(r["input_hw"]), wxh(r["padded_hw"])) for r in rows
             if r.get("padded_hw") and r.get("input_hw") and list(r["padded_hw"]) != list(r["input_hw"])}
    if not pairs:
        return None
    sizes = ", ".join(f"{i} to {p}" for i, p in sorted(pairs))
    return f"windows pad the input: {sizes} (costs are those of the padded size)"


def run_table(result: dict[str, Any], compare_paper: bool = False) -> TextTable:
    """One ``sst profile`` run: a row per configuration."""
    env, rows = result.get("environment") or {}, result["rows"]
    title = f"sst profile · sst {env.get('sst', '?')} · torch {env.get('torch', '?')}"
    if env.get("cuda"):
        title += f" · CUDA {env['cuda']}"
    configs = [{**r, "device": _device(r)} for r in rows]
    keys = (*CONFIG_KEYS[:5], "device", *CONFIG_KEYS[5:])
    varying, shared = split_keys(configs, keys)
    cols = [HEADERS[k] for k in varying]
    numeric = [k in ("scale", "batch") for k in varying]
    show_status = any(r["status"] != "ok" for r in rows)
    has_cpu_ms = any(r.get("cpu_ms_median") is not None for r in rows)
    has_peak = any(r.get("peak_fraction") is not None for r in rows)
    paper = compare_paper and any(r.get("paper") for r in rows)
    gflop = {num(r["flops"] / 1e9) if r.get("flops") else "–" for r in rows}
    same_gflop = gflop.pop() if len(gflop) == 1 else None  # then said once, in the caption
    figures = ["ms", "p90 ms"] + ["CPU ms"] * has_cpu_ms + ["MB"] + ["GFLOP"] * (same_gflop is None) + ["TFLOP/s"]
    figures += ["%peak"] * has_peak
    figures += ["paper ms", "paper MB"] * paper
    cols += ["status"] * show_status + figures
    numeric += [False] * show_status + [True] * len(figures)
    t = TextTable(title, cols, numeric)
    words = config_words(configs[0], shared) if configs else []
    out_sizes = {wxh(r.get("output_hw")) for r in rows}
    if "input_hw" in shared and len(out_sizes) == 1 and None not in out_sizes:
        i = [k for k in shared if configs[0].get(k) is not None].index("input_hw")
        words[i] += f" → output {out_sizes.pop()}"
    if same_gflop not in (None, "–"):
        words.append(f"{same_gflop} GFLOP per pass")
    if words:
        t.caption.append(" · ".join(words))
    padded = _padding(rows)
    if padded:
        t.caption.append(padded)
    t.caption.append("ms: median latency" + ("; CPU ms: CPU time per pass, all threads" if has_cpu_ms else ""))
    t.caption.append(MEMORY_NOTE)
    notes = _Notes()
    for r, c in zip(rows, configs, strict=True):
        cells = [_cell(k, c.get(k)) for k in varying]
        if show_status:
            cells.append("ok" if r["status"] == "ok" else f"{short_status(r['status'])} {notes.ref(r['status'])}")
        flops = r.get("flops")
        figs = {"ms": num(r.get("latency_ms_median")), "p90 ms": num(r.get("latency_ms_p90")),
                "CPU ms": num(r.get("cpu_ms_median")), "MB": num(r.get("peak_mem_mb")),
                "GFLOP": num(flops / 1e9 if flops else None), "TFLOP/s": num(r.get("tflops_per_s")),
                "%peak": num(r["peak_fraction"] * 100 if r.get("peak_fraction") is not None else None)}
        ref = r.get("paper") or {}
        figs["paper ms"], figs["paper MB"] = num(ref.get("latency_ms")), num(ref.get("mem_mb"))
        if paper and not ref and r.get("paper_missing"):
            figs["paper ms"] = notes.ref("no paper figure: " + r["paper_missing"])
        t.rows.append(cells + [figs[f] for f in figures])
    if compare_paper:
        refs = [r["paper"] for r in rows if r.get("paper")]
        if refs:
            sources = ", ".join(dict.fromkeys(f"{p['table']} on {p['gpu']}" for p in refs))
            t.caption.append(f"paper: the SST paper's {sources}")
        else:
            reasons = sorted({r["paper_missing"] for r in rows if r.get("paper_missing")})
            t.caption.append("paper: no row matches a paper figure (model, scale, bias, size, backend)")
            for text in reasons:
                notes.ref("no paper figure: " + text)
    t.notes = notes.lines()
    return t


def letters(n: int) -> list[str]:
    """Short column names A, B, ..., Z, AA, AB, ..."""
    abc = string.ascii_uppercase
    return [abc[i] if i < 26 else abc[i // 26 - 1] + abc[i % 26] for i in range(n)]


def width(t: TextTable) -> int:
    """Characters the table takes unfolded (the CLI's box: a blank line under the header, 2 spaces between)."""
    widths = [max([len(h), *(len(r[i]) for r in t.rows)]) for i, h in enumerate(t.columns)]
    return sum(widths) + 2 * (len(widths) - 1)


def _ratio(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}" if r < 10 else num(r)


def compare_tables(comp: Comparison, max_width: int = 80) -> list[TextTable]:
    """Result files side by side: configurations as rows; per column latency, its ratio to A, peak memory.

    One table; two (latency, then peak memory) when one would be wider than ``max_width``. The legend,
    the shared settings and the footnotes follow the last.
    """
    names = letters(len(comp.columns))
    configs = [comp.config(k) for k in comp.keys]
    varying, shared = split_keys(configs, CONFIG_KEYS)
    head = [HEADERS[k] for k in varying]
    head_numeric = [k in ("scale", "batch") for k in varying]
    lat_cols = [c for i, n in enumerate(names) for c in ([f"{n} ms", f"{n}/A"] if i else [f"{n} ms"])]
    mem_cols = [f"{n} MB" for n in names]
    notes = _Notes()
    heads, lats, mems = [], [], []
    for key, config in zip(comp.keys, configs, strict=True):
        heads.append([_cell(k, config.get(k)) for k in varying])
        lat = []
        for i in range(len(names)):
            row = comp.cells[key][i]
            if row is not None and row.get("status", "ok") != "ok":
                lat.append(f"{short_status(row['status'])} {notes.ref(row['status'])}")
            else:
                lat.append(num(comp.value(key, i, "latency_ms_median")))
            if i:
                lat.append(_ratio(comp.ratio(key, i)))
        lats.append(lat)
        mems.append([num(comp.value(key, i, "peak_mem_mb")) for i in range(len(names))])

    def table(title: str, cols: list[str], body: list[list[str]]) -> TextTable:
        return TextTable(title, head + cols, head_numeric + [True] * len(cols), [h + b for h, b in zip(heads, body, strict=True)])

    one = table("sst profile compare", lat_cols + mem_cols, [a + b for a, b in zip(lats, mems, strict=True)])
    tables = [one] if width(one) <= max_width else [table("sst profile compare: latency", lat_cols, lats),
                                                    table("sst profile compare: peak memory", mem_cols, mems)]
    last = tables[-1]
    last.caption += [f"{n}: {c.label}" + (f", sst {c.sst}" if c.sst else ", sst version not recorded")
                     for n, c in zip(names, comp.columns, strict=True)]
    if shared and configs:
        last.caption.append(" · ".join(config_words(configs[0], shared)))
    last.caption.append("ms: median latency; B/A: latency over A's; '–': not in that file")
    last.caption.append(MEMORY_NOTE)
    last.notes = notes.lines()
    return tables
