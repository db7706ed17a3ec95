"""The data in tests/data: complete, in the formats the tests assume, and what the fixtures claim to cover."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import DATA, data_path, manifest, manifest_names
from sst_cli.model.archs import config_of

SETS = {"Set5": 5, "Set14": 14}
FIXTURES = sorted(p.name for p in data_path("fixtures").glob("*.npz")
                  if "escrib" not in p.name and "sstreal" not in p.name)  # SST (SSTReal's: test_sstreal.py)
ESC_FIXTURES = sorted(p.name for p in data_path("fixtures").glob("fixture_escrib_*.npz"))
PLUS_WINDOWS = [16, 32, 48, 32, 48, 96]  # sst-light+, sst+, sst-l+, sst-xl+


def _meta(name: str) -> dict:
    return json.loads(str(np.load(data_path("fixtures", name))["meta_json"]))


def test_the_data_fits_its_budget() -> None:
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total <= 20 * 2**20, f"tests/data holds {total / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", sorted(SETS))
def test_benchmark_sets_are_complete(name: str) -> None:
    """HR images plus MATLAB-bicubic LR at x2/x3/x4 of floor(HR/s), the layout eval and the metric tests read."""
    hr_files = sorted(data_path(name, "HR").glob("*.png"))
    assert len(hr_files) == SETS[name]
    reference = json.loads(data_path("metrics", f"bicubic_{name}.json").read_text())[name]
    for s in (2, 3, 4):
        assert set(reference[f"x{s}"]["images"]) == {p.stem for p in hr_files}
        for hr_path in hr_files:
            lr_path = data_path(name, "LR_bicubic", f"X{s}", f"{hr_path.stem}x{s}.png")
            with Image.open(hr_path) as hr, Image.open(lr_path) as lr:
                assert lr.size == (hr.size[0] // s, hr.size[1] // s), lr_path
                # Set14's bridge is the one grayscale image (it tests eval's grayscale handling).
                want = "L" if hr_path.stem == "bridge" else "RGB"
                assert hr.mode == lr.mode == want, lr_path
    assert name != "Set14" or "bridge" in {p.stem for p in hr_files}


def test_manifests_unpack_to_the_official_configs() -> None:
    names = manifest_names()
    assert len(names) == 21
    for name in names:
        m = manifest(name)
        assert name == f"{m['config']}.json" and m["config"].endswith(f"_X{m['scale']}")
        assert len(m["state_dict"]) == m["n_state_dict_keys"]
        assert sum(int(np.prod(shape)) for _, shape in m["state_dict"]) == m["state_dict_numel"]
    assert manifest(names[0]) is not manifest(names[0])  # a fresh copy each time: tests may change it


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_format(name: str) -> None:
    data = np.load(data_path("fixtures", name))
    meta = json.loads(str(data["meta_json"]))
    g = meta["network_g"]
    cfg = config_of(g)  # SST or ESCRIB (ESC-RIB's branches: test_escrib.py)
    assert g["type"] in ("SST", "ESCRIB") and cfg.bias == "rib"
    x, out, bf16 = data["input"], data["output"], data["output_bf16attn"]
    assert x.dtype == out.dtype == bf16.dtype == np.float32
    assert list(x.shape) == meta["input_shape"] and 0 <= x.min() and x.max() <= 1
    s = cfg.scale
    assert out.shape == bf16.shape == (x.shape[0], 3, x.shape[2] * s, x.shape[3] * s)
    assert np.abs(out - bf16).max() == pytest.approx(meta["bf16_vs_fp32_max_abs_diff"])
    if g["type"] == "SST":
        assert meta["without_rib_max_abs_diff"] > 0.05  # RIB matters: a wrong position term cannot pass
    assert any(k.startswith("state_dict/") for k in data.files)
    # Every window size pads the input (reflect padding is part of what is compared).
    assert all(x.shape[2] % w and x.shape[3] % w for w in cfg.windows)


def test_fixtures_cover_the_plus_windows_x2_and_both_upsamplers() -> None:
    metas = [g for name in FIXTURES if (g := _meta(name)["network_g"])["type"] == "SST"]
    assert any(g["window_sizes"] == PLUS_WINDOWS for g in metas)
    assert {w for g in metas for w in g["window_sizes"]} >= {8, 16, 32, 48, 64, 96}
    assert {g["upscaling_factor"] for g in metas} == {2, 3, 4}
    x2 = {g["upsampler_type"] for g in metas if g["upscaling_factor"] == 2}
    assert x2 == {"pixelshuffle", "pixelshuffle_direct"}


@pytest.mark.parametrize("name", ESC_FIXTURES)
def test_escrib_fixture_format(name: str) -> None:
    data = np.load(data_path("fixtures", name))
    meta = json.loads(str(data["meta_json"]))
    g = meta["network_g"]
    assert g["type"] == "ESCRIB" and g["attn_type"] == "RIB"
    x, out = data["input"], data["output"]
    s = g["upscaling_factor"]
    assert list(x.shape) == meta["input_shape"] and out.shape == (x.shape[0], 3, x.shape[2] * s, x.shape[3] * s)
    assert meta["without_rib_max_abs_diff"] > 0.05  # RIB matters
    assert x.shape[2] % g["window_size"] and x.shape[3] % g["window_size"]  # the window pads the input


def test_escrib_fixtures_cover_the_released_window_and_batches() -> None:
    metas = [json.loads(str(np.load(data_path("fixtures", n))["meta_json"])) for n in ESC_FIXTURES]
    assert any(m["network_g"]["window_size"] == 64 and m["network_g"]["kernel_size"] == 13 for m in metas)
    assert {m["input_shape"][0] for m in metas} == {1, 2}
