"""Shared test helpers: where the read-only shared data lives, and skipping cleanly without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# ../shared next to the repository (never copied into it).
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "reference"

# The test models are small: one intra-op thread is as fast as two on an idle machine and several times
# faster on a busy one (OpenMP threads stall waiting for a core). SST_TEST_THREADS=N overrides.
torch.set_num_threads(int(os.environ.get("SST_TEST_THREADS", "1")))


def need_shared(*parts: str) -> Path:
    """The path SHARED/parts..., or skip the calling test with a clear reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data {path} is not available (expected the read-only ../shared folder)")
    return path
