"""The [iqa] extra (sst_cli.evaluation.iqa): LPIPS, DISTS, MUSIQ, MANIQA and CLIPIQA through pyiqa.

In .venv (no pyiqa) these check the missing-extra sentence, the table, the conversion to pyiqa's input and
the no-network guard (against a stand-in pyiqa). The tests marked by the ``pyiqa`` fixture run where pyiqa is
installed (`make iqa-test`, .venv-extras): the missing-weights sentence with empty caches, and the real scoring
path with weight files of the right shapes and random values (pyiqa's weights cannot be downloaded here),
saved where pyiqa, torchvision and timm look for them. Every test runs with the network blocked."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from sst_cli.errors import SSTError, UsageError
from sst_cli.evaluation import iqa

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {  # name: (full_reference, lower_better), as the contract with `sst eval --metrics` states it
    "lpips": (True, True),
    "dists": (True, True),
    "musiq": (False, False),
    "maniqa": (False, False),
    "clipiqa": (False, False),
}


def _one_sentence(msg: str) -> None:
    assert "\n" not in msg and msg.endswith(".") and not re.search(r"[.!?]\s+[A-Z]", msg), msg
    assert "Traceback" not in msg, msg


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every connection and DNS lookup fails, and is recorded: no test may reach the network."""
    tried: list[str] = []

    def connect(self: socket.socket, address: object) -> None:
        tried.append(str(address))
        raise OSError(f"test: network blocked ({address})")

    def getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> list:
        tried.append(f"{host}:{port}")
        raise OSError(f"test: network blocked ({host})")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return tried


def _image(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pair(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An "SR" and its "HR" whose channels differ (red ramp, green ramp, dark blue), so channel order matters."""
    y, x = np.mgrid[0:h, 0:w]
    hr = np.stack([255 * x / (w - 1), 255 * y / (h - 1), 40 + 20 * np.sin(x / 3)], axis=-1)
    noise = np.random.default_rng(0).normal(0, 12, (h, w, 3)) * np.array([1.0, 0.5, 0.2])
    return np.clip(hr + noise, 0, 255).round().astype(np.uint8), hr.round().astype(np.uint8)


# ------------------------------------------------------------------------------------- every install
def test_table_is_the_contract() -> None:
    assert set(iqa.PYIQA_METRICS) == set(EXPECTED)
    for name, (fr, lower) in EXPECTED.items():
        m = iqa.PYIQA_METRICS[name]
        assert (m.name, m.full_reference, m.lower_better, m.pyiqa_name) == (name, fr, lower, name)


def test_import_loads_neither_torch_nor_pyiqa() -> None:
    code = "import sys, sst_cli.evaluation.iqa; print(sorted(m for m in ('torch', 'pyiqa', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_missing_pyiqa_is_one_sentence_naming_the_extra(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "pyiqa" else real(n, *a))
    with pytest.raises(SSTError) as err:
        iqa.load_scorer(name, "cpu")
    msg = str(err.value)
    _one_sentence(msg)
    assert "pip install 'sst-cli[iqa]'" in msg and iqa.PYIQA_METRICS[name].title in msg
    assert err.value.exit_code == 1


def test_unknown_metric_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="choose from lpips, dists, musiq, maniqa, clipiqa"):
        iqa.load_scorer("psnr", "cpu")


def test_uint8_hwc_rgb_becomes_pyiqa_input() -> None:
    """(1, 3, H, W) float32 in [0, 1], channel c = the array's channel c (RGB stays RGB), value / 255."""
    img = _image(5, 7, 0)
    x = iqa._to_tensor(img, torch.device("cpu"))
    assert x.shape == (1, 3, 5, 7) and x.dtype == torch.float32
    for c in range(3):
        np.testing.assert_array_equal(x[0, c].numpy(), img[..., c].astype(np.float32) / np.float32(255))
    with pytest.raises(ValueError, match="uint8"):
        iqa._to_tensor(img.astype(np.float32), torch.device("cpu"))


# The guard, against a stand-in pyiqa whose create_metric does what a real one might.
def _stand_in(monkeypatch: pytest.MonkeyPatch, create_metric) -> None:
    monkeypatch.setitem(sys.modules, "pyiqa", types.SimpleNamespace(create_metric=create_metric))


def test_build_keeps_pyiqa_chatter_off_stdout(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def create_metric(name, as_loss, device):
        print(f"Loading pretrained model {name} from somewhere")
        return "net"

    _stand_in(monkeypatch, create_metric)
    assert iqa._build(iqa.PYIQA_METRICS["musiq"], torch.device("cpu"), allow_download=False) == "net"
    assert capsys.readouterr().out == ""


def test_a_download_sst_did_not_expect_is_refused_not_made(monkeypatch: pytest.MonkeyPatch, no_network) -> None:
    """A newer pyiqa wanting a file the table does not list: an error naming where it reached, and the
    connection never left the process (the test's own blocker saw nothing)."""
    def create_metric(name, as_loss, device):
        socket.create_connection(("huggingface.co", 443), timeout=1)

    _stand_in(monkeypatch, create_metric)
    with pytest.raises(SSTError) as err:
        iqa._build(iqa.PYIQA_METRICS["musiq"], torch.device("cpu"), allow_download=False)
    _one_sentence(str(err.value))
    assert "huggingface.co:443" in str(err.value) and "SST_IQA_DOWNLOAD=1" in str(err.value)
    assert no_network == []


def test_a_network_attempt_that_pyiqa_survives_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def create_metric(name, as_loss, device):
        try:
            socket.create_connection(("huggingface.co", 443), timeout=1)
        except OSError:
            pass  # e.g. the hub client falling back to a cached copy
        return "net"

    _stand_in(monkeypatch, create_metric)
    with pytest.raises(SSTError, match="reached for the network"):
        iqa._build(iqa.PYIQA_METRICS["musiq"], torch.device("cpu"), allow_download=False)


def test_the_guard_is_lifted_after_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in(monkeypatch, lambda name, as_loss, device: "net")
    connect = socket.socket.connect
    iqa._build(iqa.PYIQA_METRICS["lpips"], torch.device("cpu"), allow_download=False)
    assert socket.socket.connect is connect


# ------------------------------------------------------------------------------------ with pyiqa (.venv-iqa)
@pytest.fixture
def pyiqa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """pyiqa with every cache it reads moved to empty folders under tmp_path: torch hub (torchvision, CLIP),
    pyiqa's own folder (fixed when pyiqa is imported, so patched where its loader reads it) and the HF hub."""
    if os.environ.get("SST_REQUIRE_PYIQA") == "1":  # `make iqa-test`: a pyiqa that does not import is an error
        import pyiqa as mod
    else:
        mod = pytest.importorskip("pyiqa", reason="pyiqa is not installed here: `make iqa-test` runs these in "
                                  ".venv-extras")
    import huggingface_hub.constants
    import pyiqa.utils.download_util

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(pyiqa.utils.download_util, "DEFAULT_CACHE_DIR", str(tmp_path / "torch" / "hub" / "pyiqa"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv(iqa.DOWNLOAD_ENV, raising=False)
    return mod


def test_pyiqa_agrees_with_the_table(pyiqa) -> None:
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    for name, m in iqa.PYIQA_METRICS.items():
        cfg = DEFAULT_CONFIGS[m.pyiqa_name]
        assert cfg.get("lower_better", False) == m.lower_better, name
        assert cfg["metric_mode"] == ("FR" if m.full_reference else "NR"), name


# What each metric loads, written out by hand from pyiqa 0.1.16, torchvision and timm (not from sst's table).
HUB = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"
FILES = {
    "lpips": [("torch/hub/checkpoints/alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/"),
              ("torch/hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth", HUB)],
    "dists": [("torch/hub/checkpoints/vgg16-397923af.pth", "https://download.pytorch.org/models/"),
              ("torch/hub/pyiqa/DISTS_weights-f5e65c96.pth", HUB)],
    "musiq": [("torch/hub/pyiqa/musiq_koniq_ckpt-e95806b9.pth", HUB)],
    "maniqa": [("hf/models--timm--vit_base_patch8_224.augreg2_in21k_ft_in1k",
                "https://huggingface.co/timm/vit_base_patch8_224.augreg2_in21k_ft_in1k/resolve/main/"),
               ("torch/hub/pyiqa/ckpt_koniq10k.pt", HUB)],
    "clipiqa": [("torch/hub/clip/RN50.pt", "https://openaipublic.azureedge.net/clip/models/"
                 "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/")],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_missing_weights_is_one_sentence_naming_files_urls_and_folders(pyiqa, tmp_path: Path, name: str,
                                                                       no_network) -> None:
    with pytest.raises(SSTError) as err:
        iqa.load_scorer(name, "cpu")
    msg = str(err.value)
    _one_sentence(msg)
    assert msg.startswith(f"{iqa.PYIQA_METRICS[name].title} needs weights that are not cached yet")
    assert "downloads on first use" in msg and "SST_IQA_DOWNLOAD=1" in msg
    for rel, url in FILES[name]:
        file = "model.safetensors" if name == "maniqa" and rel.startswith("hf/") else Path(rel).name
        assert f"{file} from {url}{file} into " in msg, (file, msg)
        folder = tmp_path / "hf" if rel.startswith("hf/") else (tmp_path / rel).parent
        assert str(folder) in msg
    assert no_network == []
    assert not (tmp_path / "torch").exists()  # not even a folder made: nothing started


def test_clip_weights_failing_their_checksum_count_as_missing(pyiqa, tmp_path: Path) -> None:
    """pyiqa's CLIP loader downloads RN50.pt again when its sha256 differs, so a wrong file is not 'cached'."""
    bad = tmp_path / "torch/hub/clip/RN50.pt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the CLIP weights")
    (missing,) = iqa.missing_weights("clipiqa")
    assert missing.path == bad and missing.sha256 == missing.url.split("/")[-2]
    with pytest.raises(SSTError, match="RN50.pt from https://openaipublic"):
        iqa.load_scorer("clipiqa", "cpu")


def test_an_unlisted_file_is_refused_not_downloaded(pyiqa, monkeypatch: pytest.MonkeyPatch, no_network) -> None:
    """With sst's table emptied, pyiqa's own loader reaches for the network: refused, naming the host."""
    monkeypatch.setattr(iqa, "weight_files", lambda name: [])
    with pytest.raises(SSTError) as err:
        iqa.load_scorer("musiq", "cpu")
    _one_sentence(str(err.value))
    assert "huggingface.co" in str(err.value) and "does not know it needs" in str(err.value)
    assert no_network == []


# Random weights of the right shapes where pyiqa, torchvision and timm look for them.
def _save(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)


def _random_lpips(root: Path) -> None:
    import torchvision
    from pyiqa.archs.lpips_arch import LPIPS

    torch.manual_seed(1)
    _save(torchvision.models.alexnet(weights=None).state_dict(), root / FILES["lpips"][0][0])
    lpips = LPIPS(pretrained=False)  # builds AlexNet from the file above; the linear heads are random
    for p in lpips.lins.parameters():
        p.data.uniform_(0.0, 1.0)  # trained LPIPS heads are non-negative; any values do for the comparison
    _save(lpips.state_dict(), root / FILES["lpips"][1][0])


def _random_dists(root: Path) -> None:
    import torchvision
    from pyiqa.archs.dists_arch import DISTS

    torch.manual_seed(2)
    _save(torchvision.models.vgg16(weights=None).state_dict(), root / FILES["dists"][0][0])
    dists = DISTS(pretrained=False)
    _save({"alpha": dists.alpha.data.clone(), "beta": dists.beta.data.clone()}, root / FILES["dists"][1][0])


def _random_musiq(root: Path) -> None:
    from pyiqa.archs.musiq_arch import MUSIQ

    torch.manual_seed(3)
    _save(MUSIQ(pretrained=False).state_dict(), root / FILES["musiq"][0][0])  # koniq10k: one output


def _random_maniqa(root: Path) -> None:
    """timm's ViT as the hub cache holds it (refs/main -> snapshots/<commit>/model.safetensors), then MANIQA."""
    from unittest import mock

    import huggingface_hub.constants
    import safetensors.torch
    import timm
    from pyiqa.archs.maniqa_arch import MANIQA

    torch.manual_seed(4)
    repo = root / FILES["maniqa"][0][0]
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    vit = timm.create_model("vit_base_patch8_224", pretrained=False)
    safetensors.torch.save_file(vit.state_dict(), repo / "snapshots" / commit / "model.safetensors")
    with mock.patch.object(huggingface_hub.constants, "HF_HUB_OFFLINE", True):  # MANIQA asks timm for the ViT
        _save(MANIQA(pretrained=False).state_dict(), root / FILES["maniqa"][1][0])


RANDOM = {"lpips": _random_lpips, "dists": _random_dists, "musiq": _random_musiq}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_scorer_equals_pyiqa_on_the_same_images(pyiqa, tmp_path: Path, name: str, no_network, capsys) -> None:
    """The scorer's value is pyiqa's own on the same pair read by pyiqa (PIL -> to_tensor, RGB) to 1e-6;
    on the pair with red and blue swapped pyiqa gives another value, so a channel-order slip would fail."""
    from PIL import Image

    RANDOM[name](tmp_path)
    assert [f.path for f in iqa.weight_files(name)] == [tmp_path / rel for rel, _ in FILES[name]]
    assert iqa.missing_weights(name) == []
    scorer = iqa.load_scorer(name, "cpu")
    assert capsys.readouterr().out == ""
    sr, hr = _pair(48, 40)
    got = scorer(sr, hr if iqa.PYIQA_METRICS[name].full_reference else None)

    reference = pyiqa.create_metric(name, device="cpu")
    pair = [Image.fromarray(sr), Image.fromarray(hr)] if iqa.PYIQA_METRICS[name].full_reference else [Image.fromarray(sr)]
    want = float(reference(*pair).item())
    swapped = float(reference(*[Image.fromarray(np.asarray(p)[..., ::-1].copy()) for p in pair]).item())
    assert isinstance(got, float) and np.isfinite(got)
    assert abs(got - want) <= 1e-6, (got, want)
    assert abs(got - swapped) > max(20e-6, 0.05 * abs(got)), (got, swapped)
    assert no_network == []


def test_full_reference_scorer_needs_hr_of_the_same_shape(pyiqa, tmp_path: Path) -> None:
    _random_lpips(tmp_path)
    scorer = iqa.load_scorer("lpips", "cpu")
    with pytest.raises(ValueError, match="full-reference"):
        scorer(_image(16, 16, 0), None)
    with pytest.raises(ValueError, match="differ in shape"):
        scorer(_image(16, 16, 0), _image(16, 18, 0))
    assert scorer(_image(32, 32, 5), _image(32, 32, 5)) == pytest.approx(0.0, abs=1e-6)  # identical images


def test_maniqa_builds_from_cached_files_alone(pyiqa, tmp_path: Path, no_network) -> None:
    """MANIQA's two files (timm's ViT in the HF cache, pyiqa's checkpoint) are all it needs: built with the
    network off. Its forward pass (20 ViT-B/8 crops) is left out: minutes on a 2-core CPU."""
    _random_maniqa(tmp_path)
    assert iqa.missing_weights("maniqa") == []
    scorer = iqa.load_scorer("maniqa", "cpu")
    assert scorer.net.metric_name == "maniqa" and no_network == []
