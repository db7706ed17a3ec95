"""Shared test helpers: the test data that ships in tests/data (see tests/data/README.md)."""

from __future__ import annotations

import copy
import functools
import gzip
import json
import os
from pathlib import Path

import pytest
import torch

# Everything the tests read lives here, in the repository: nothing is skipped for want of data.
DATA = Path(__file__).resolve().parent / "data"

# The test models are small: one intra-op thread is as fast as two on an idle machine and several times
# faster on a busy one (OpenMP threads stall waiting for a core). SST_TEST_THREADS=N overrides.
torch.set_num_threads(int(os.environ.get("SST_TEST_THREADS", "1")))


def data_path(*parts: str) -> Path:
    """DATA/parts...; fails (never skips) when it is missing, since the data ships with the repository."""
    path = DATA.joinpath(*parts)
    assert path.exists(), f"test data {path} is missing: it ships with the repository (see tests/data/README.md)"
    return path


@functools.cache
def _manifests() -> dict[str, dict]:
    with gzip.open(data_path("manifests.json.gz"), "rt", encoding="utf-8") as f:
        return json.load(f)


def manifest_names() -> list[str]:
    """The official reference manifests by file name, e.g. "SSTlight_X4.json" (21: 7 variants x 3 scales)."""
    return sorted(_manifests())


def manifest(name: str) -> dict:
    """One manifest (a fresh copy): config, scale, network_g, param_count, state_dict [[key, shape], ...], ..."""
    return copy.deepcopy(_manifests()[name])


@pytest.fixture
def strict_kernels(monkeypatch: pytest.MonkeyPatch):
    """The strict stand-ins of tests/kernels.py installed, CPU tensors counting as CUDA ones (fa2, fa3,
    fa4, sdpa-flash/-efficient/-cudnn then run on the CPU and refuse what the real kernels refuse)."""
    import kernels

    from sst_cli.model import attention

    kernels.install(monkeypatch)
    yield kernels
    attention._probe.cache_clear()  # answers given under the doubles must not outlive them
