"""`sst models` (table, --json, --backends), `sst models download` and `python -m sst_cli`."""

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
from hub_server import fake_hub, set_offline  # noqa: F401 - fake_hub is a fixture
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


def _squash(text: str) -> str:
    """Text without any white space, to find a long path that the console folded over lines."""
    return "".join(text.split())


def _run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().out


def test_models_table(no_local_weights: Path, capsys) -> None:
    code, out = _run(["models"], capsys)
    assert code == 0
    for v in VARIANTS.values():
        assert v.name in out
    flat = " ".join(out.split())
    assert "SSTLarge_Plus_{DF2K,DFLIP}" in out and "https://huggingface.co/collections/dslisleedh/sst" in flat
    assert "No official weights here yet" in out and "sst models download NAME" in flat
    assert "$SST_WEIGHTS_DIR (not set)" in flat


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
    assert light["cached"] == {"SSTlight_DFLIP_X4.pth": str(weights / "SSTlight_DFLIP_X4.pth")}
    assert rows["sst-light+"]["local_weights"] == {} == rows["sst-light+"]["cached"]
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
    assert code == 0 and _squash(f"sst+ x3 DF2K: {no_local_weights / 'SST_Plus_DF2K_X3.pth'}") in _squash(out)
    assert "Official weights here" in out and "No official weights here yet" not in out


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


# ----------------------------------------------------------------------------------- models download
@pytest.fixture
def hub_with_light_plus(fake_hub):  # noqa: F811 - fake_hub is a fixture
    fake_hub.repos = {"dslisleedh/SST-Light": {"SSTlight_Plus_DIV2K_X4.pth": b"stand-in weights",
                                               "SSTlight_Plus_DIV2K_X2.pth": b"x2 stand-in"}}
    return fake_hub


def test_models_download_fetches_once_and_models_lists_it(hub_with_light_plus, tmp_path: Path, capsys) -> None:
    code, out = _run(["models", "download", "sst-light+", "--scale", "2,4"], capsys)
    assert code == 0, out
    flat = " ".join(out.split())
    assert "SSTlight_Plus_DIV2K_X2.pth (sst-light+ x2, DIV2K" in flat and "downloaded" in flat
    cached = list((tmp_path / "hf" / "hub").rglob("SSTlight_Plus_DIV2K_X4.pth"))
    assert len(cached) == 1 and cached[0].read_bytes() == b"stand-in weights"
    hub_with_light_plus.requests.clear()
    code, out = _run(["models", "download", "sst-light+", "-s", "4", "--trained-on", "div2k"], capsys)
    assert code == 0 and "already here" in out and hub_with_light_plus.requests == []
    code, out = _run(["models"], capsys)
    assert code == 0 and _squash(f"sst-light+ x4 DIV2K: {cached[0]}") in _squash(out)  # long paths fold
    assert hub_with_light_plus.requests == []  # listing never asks the Hub


@pytest.mark.parametrize(("args", "words"), [
    (["sst-tiny"], "sst-tiny is bundled with sst; nothing to download"),
    (["bicubic"], "the bicubic baseline has no weights"),
    (["sst-light+", "--set", "DF2K"], "sst-light+ was not published trained on DF2K (choose from: DIV2K, DFLIP)"),
    (["sst-light+", "--set", "ImageNet"], "'ImageNet' is not a training set"),
    (["sst-huge"], "'sst-huge' is not a model"),
    (["sst", "-s", "5"], "scale must be one of 2, 3, 4"),
])
def test_models_download_usage_errors(hub_with_light_plus, capsys, args: list[str], words: str) -> None:
    code = main(["models", "download", *args])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and words in err, err
    assert hub_with_light_plus.requests == []


def test_models_download_offline_says_where_to_put_the_file(hub_with_light_plus, monkeypatch, capsys) -> None:
    set_offline(monkeypatch)
    code = main(["models", "download", "sst-l+"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "SSTLarge_Plus_DF2K_X4.pth" in err and "HF_HUB_OFFLINE" in err
    assert "https://huggingface.co/collections/dslisleedh/sst" in err and "$SST_WEIGHTS_DIR" in err
    assert "Traceback" not in err and hub_with_light_plus.requests == []


def test_models_download_names_every_file_it_could_not_have(hub_with_light_plus, monkeypatch, capsys) -> None:
    """Issue 23: `sst models download sst-l+ -s 2,4` offline names the X2 and the X4 file, then exits 1."""
    set_offline(monkeypatch)
    code = main(["models", "download", "sst-l+", "-s", "2,4"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "Traceback" not in err
    for name in ("SSTLarge_Plus_DF2K_X2.pth", "SSTLarge_Plus_DF2K_X4.pth"):
        assert f"error: {name} (sst-l+ x" in err, err
    assert "2 of 2 files could not be had: SSTLarge_Plus_DF2K_X2.pth, SSTLarge_Plus_DF2K_X4.pth." in err
