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


# ------------------------------------------------------------------------------------ devices (15.11)
def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert runtime.resolve_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.resolve_device("auto").type == "cpu"


def test_explicit_devices_are_checked(monkeypatch) -> None:
    import torch

    from sst_cli.errors import SSTError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SSTError, match="no CUDA GPU"):
        runtime.resolve_device("cuda:0")
    with pytest.raises(SSTError, match="not a device"):
        runtime.resolve_device("tpu!")


def test_dtype_names_round_trip() -> None:
    for name in runtime.DTYPE_NAMES:  # tf32 tensors are float32: the TF32 setting is recorded beside them
        assert runtime.dtype_name(runtime.torch_dtype(name)) == ("fp32" if name == "tf32" else name)


def test_liveness_check_never_signals_on_windows(monkeypatch) -> None:
    """On Windows os.kill(pid, 0) would terminate the process; the check must ask the OS instead."""
    import os

    from sst_cli.io import files

    monkeypatch.setattr(files.os, "kill", lambda *a: (_ for _ in ()).throw(AssertionError("os.kill called")))
    monkeypatch.setattr(files.sys, "platform", "win32")

    class _Kernel32:
        def OpenProcess(self, access, inherit, pid):  # noqa: N802 - the Win32 name
            return 1 if pid == os.getpid() else 0

        def CloseHandle(self, handle):  # noqa: N802
            return 1

    import ctypes

    monkeypatch.setattr(ctypes, "windll", type("W", (), {"kernel32": _Kernel32()})(), raising=False)
    assert files._pid_alive(os.getpid()) is True
    assert files._pid_alive(2**22 + 12345) is False
