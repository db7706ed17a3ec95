"""The ``sst profile --json`` result file: its keys, its version, and reading one back (no torch import).

A result is ``{"environment": {...}, "rows": [...]}``. ``environment["schema_version"]`` numbers the
layout: files written before it existed (sst 0.2.0 and older) read as version 0, whose rows have the
same keys. A later version this sst does not know is refused by name rather than misread.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import SSTError

SCHEMA_VERSION = 1
COMPARE_KIND = "sst profile compare"  # the "kind" of a merged table (`sst profile compare --json`)

# What identifies a configuration (the device is where it ran, not what it is).
CONFIG_KEYS = ("model", "scale", "backend", "bias", "dtype", "input_hw", "batch", "mode")
ROW_KEYS = (
    "model", "scale", "backend", "bias", "dtype", "device", "input_hw", "batch", "mode", "status",
    "latency_ms_median", "latency_ms_p90", "peak_mem_mb", "params", "flops", "tflops_per_s",
)


def wxh(hw: Any) -> str | None:
    """[h, w] (as stored) -> 'WxH' (as sst shows sizes everywhere); None for a missing or odd value."""
    if isinstance(hw, list | tuple) and len(hw) == 2:
        return f"{hw[1]}x{hw[0]}"
    return None


def schema_version(result: dict[str, Any]) -> int:
    version = (result.get("environment") or {}).get("schema_version", 0)
    return version if isinstance(version, int) else -1


def check_result(result: Any, name: str) -> dict[str, Any]:
    """``result`` if it is a profile result this sst can read; else an SSTError naming ``name``."""
    if isinstance(result, dict) and result.get("kind") == COMPARE_KIND:
        raise SSTError(f"{name} is a merged table written by `sst profile compare`; compare the result files of "
                       "`sst profile --json` it was made from.")
    if not isinstance(result, dict) or not isinstance(result.get("rows"), list):
        raise SSTError(f"{name} is not an `sst profile --json` result (it has no list of rows).")
    if not isinstance(result.get("environment", {}), dict) or not all(isinstance(r, dict) for r in result["rows"]):
        raise SSTError(f"{name} is not an `sst profile --json` result (its environment or rows are not objects).")
    version = schema_version(result)
    if version < 0 or version > SCHEMA_VERSION:
        from .. import __version__

        writer = (result.get("environment") or {}).get("sst", "a newer sst")
        raise SSTError(f"{name} uses result schema {version!r} (written by sst {writer}); this sst ({__version__}) "
                       f"reads schemas 0 to {SCHEMA_VERSION}: upgrade sst to compare it.")
    return result


def read_result(path: str | Path) -> dict[str, Any]:
    """Read and check one result file; every failure is one sentence naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SSTError(f"{path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SSTError(f"cannot read {path}: {exc}.") from None
    try:
        result = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SSTError(f"{path} is not JSON ({exc.msg} at line {exc.lineno}); expected an `sst profile --json` "
                       "result.") from None
    return check_result(result, str(path))
