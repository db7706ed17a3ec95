"""Process-wide settings that make CPU inference faster without changing any result."""

from __future__ import annotations

import ctypes
import os
import platform
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit


def keep_freed_memory(retain_mb: int = 256) -> bool:
    """Let glibc keep freed blocks of up to 32 MB for reuse instead of handing them back to the OS.

    By default glibc unmaps large freed blocks and trims its heap, so every forward pass faults its
    activations' pages in afresh: one sst-light x4 pass at 256x256 took 1.3 million minor page faults
    (5 GB of fresh pages). With a fixed 32 MB mmap threshold and ``retain_mb`` of retained heap, the
    same pass takes a few thousand (numbers in benchmarks/RESULTS.md). Only glibc has these knobs: elsewhere, or with ``SST_DEFAULT_MALLOC=1`` in
    the environment, nothing changes. Returns whether the setting was applied.
    """
    if os.environ.get("SST_DEFAULT_MALLOC") == "1":
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
        return ok and libc.mallopt(_M_TRIM_THRESHOLD, retain_mb << 20) == 1
    except (OSError, AttributeError):
        return False
