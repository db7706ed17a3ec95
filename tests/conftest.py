"""Shared test helpers: where the read-only shared data lives, and skipping cleanly without it."""

from __future__ import annotations

from pathlib import Path

import pytest

# ../shared next to the repository (never copied into it).
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "reference"


def need_shared(*parts: str) -> Path:
    """The path SHARED/parts..., or skip the calling test with a clear reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data {path} is not available (expected the read-only ../shared folder)")
    return path
