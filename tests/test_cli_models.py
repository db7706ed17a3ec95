"""`sst models` (table, --json, --backends) and `python -m sst_cli`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from rich.console import Console

from conftest import manifest, manifest_names
from sst_cli.cli import main
from sst_cli.cli import models as models_module
from sst_cli.model import attention
from sst_cli.model.attention import BACKENDS
from sst_cli.model.registry import VARIANTS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_local_weights(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SST_WEIGHTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().out


def test_models_table(no_local_weights: Path, capsys) -> None:
    code, out = _run(["models"], capsys)
    assert code == 0
    for v in VARIANTS.values():
        assert v.name in out
    assert "SSTLarge_Plus_{DF2K,DFLIP}" in out and "dslisleedh/sst" in out
    assert "No official weights found" in out


def test_models_json_matches_the_reference(no_local_weights: Path, monkeypatch, capsys) -> None:
    weights = no_local_weights / "weights"
    weights.mkdir()
    (weights / "SSTlight_DFLIP_X4.pth").write_bytes(b"x")
    monkeypatch.setenv("SST_WEIGHTS_DIR", str(weights))
    code, out = _run(["models", "--json", "-"], capsys)
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)["variants"]}
    assert list(rows) == list(VARIANTS)
    light = rows["sst-light"]
    assert light["checkpoints"]["4"] == ["SSTlight_DIV2K_X4.pth", "SSTlight_DFLIP_X4.pth"]
    assert light["local_weights"] == {"4": str(weights / "SSTlight_DFLIP_X4.pth")}
    assert rows["sst-light+"]["local_weights"] == {}
    assert rows["sst-l+"]["windows"] == [16, 32, 48, 32, 48, 96]
    assert rows["sst"]["paper_urban100_psnr"]["2"] == pytest.approx(34.61)
    # Parameter counts at every scale equal the official code's (from the reference manifests).
    official = {v.official: v.name for v in VARIANTS.values()}
    for name in manifest_names():
        m = manifest(name)
        name, scale = m["config"].rsplit("_X", 1)
        assert rows[official[name]]["params"][scale] == m["param_count"], m["config"]


def test_models_table_lists_local_weights(no_local_weights: Path, monkeypatch, capsys) -> None:
    (no_local_weights / "SST_Plus_DF2K_X3.pth").write_bytes(b"x")
    monkeypatch.setenv("SST_WEIGHTS_DIR", str(no_local_weights))
    code, out = _run(["models"], capsys)
    assert code == 0 and "Found locally: sst+ x3" in out.replace("\n", " ")


def test_models_backends(capsys) -> None:
    code, out = _run(["models", "--backends", "--device", "cpu"], capsys)
    assert code == 0
    for name in BACKENDS:
        assert name in out
    assert "needs a CUDA GPU" in out
    code, out = _run(["models", "--backends", "--device", "cpu", "--json", "-"], capsys)
    assert code == 0
    data = json.loads(out)
    by_name = {r["backend"]: r for r in data["backends"]}
    assert data["device"] == "cpu" and list(by_name) == list(BACKENDS)
    assert by_name["naive"]["fp32"] == by_name["sdpa"]["fp32"] == "ok"
    assert "CUDA" in by_name["fa3"]["bf16"]


def test_python_m_help() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "sst_cli", "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "models" in proc.stdout and "Usage" in proc.stdout


@pytest.mark.parametrize("args", [["models"], ["models", "--backends", "--device", "cpu"]])
def test_models_output_fits_80_columns(no_local_weights: Path, monkeypatch, args: list[str]) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(models_module, "console", Console(file=buffer, width=80))
    attention._probe.cache_clear()  # probe again, so any warning it prints would show up here...
    from torch.nn.attention import flex_attention as flex_module

    getattr(flex_module, "_WARNINGS_SHOWN", set()).discard("flex_attention_performance")  # ...even once-only ones
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(args) == 0
    assert not caught, [str(w.message)[:80] for w in caught]  # e.g. FlexAttention's torch.compile notice
    lines = buffer.getvalue().splitlines()
    assert not [line for line in lines if len(line) > 80]
    if args == ["models"]:  # one line per variant: nothing wrapped inside the table
        rows = [line for line in lines if line.split(" ")[0] in VARIANTS]
        assert len(rows) == len(VARIANTS)
        assert "SSTlight_Plus_{DIV2K,DFLIP}" in buffer.getvalue()
