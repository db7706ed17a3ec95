"""runtime.keep_freed_memory: the glibc settings it makes, and when it makes none.

Its effect (page faults and time per forward pass) is measured in benchmarks/cpu_inference.py, not here:
how many pages glibc re-faults depends on its dynamic thresholds and the kernel's huge pages."""

from __future__ import annotations

import platform
import sys

import pytest

from sst_cli import runtime


class _FakeLibc:
    def __init__(self, result: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.result = result

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.result


@pytest.fixture
def fake_glibc(monkeypatch) -> _FakeLibc:
    libc = _FakeLibc()
    monkeypatch.delenv("SST_DEFAULT_MALLOC", raising=False)
    monkeypatch.setattr(runtime.sys, "platform", "linux")
    monkeypatch.setattr(runtime.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda name: libc)
    return libc


def test_sets_a_fixed_32mb_mmap_threshold_and_a_large_trim_threshold(fake_glibc) -> None:
    assert runtime.keep_freed_memory(retain_mb=300) is True
    # M_MMAP_THRESHOLD (-3) at glibc's 64-bit ceiling, which also stops its dynamic adjustment;
    # M_TRIM_THRESHOLD (-1) so freed activations stay in the heap between passes.
    assert fake_glibc.calls == [(-3, 32 << 20), (-1, 300 << 20)]


def test_environment_variable_turns_it_off(fake_glibc, monkeypatch) -> None:
    monkeypatch.setenv("SST_DEFAULT_MALLOC", "1")
    assert runtime.keep_freed_memory() is False and fake_glibc.calls == []


def test_does_nothing_without_glibc(fake_glibc, monkeypatch) -> None:
    monkeypatch.setattr(runtime.platform, "libc_ver", lambda: ("", ""))
    assert runtime.keep_freed_memory() is False and fake_glibc.calls == []
    monkeypatch.setattr(runtime.sys, "platform", "darwin")
    assert runtime.keep_freed_memory() is False and fake_glibc.calls == []


def test_reports_a_refusal(fake_glibc) -> None:
    fake_glibc.result = 0  # mallopt returns 0 when it rejects a value
    assert runtime.keep_freed_memory() is False


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"), reason="needs glibc")
def test_the_real_glibc_accepts_the_settings() -> None:
    assert runtime.keep_freed_memory() is True
