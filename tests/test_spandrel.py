"""sst in spandrel (sst_cli.spandrel) and the ComfyUI node, against spandrel from the registry.

spandrel imports torchvision, whose registry build needs its own torch, so these tests run in a venv of their
own (`make spandrel-test`, .venv-spandrel); in .venv they are skipped."""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

# `make spandrel-test` sets SST_REQUIRE_SPANDREL=1: in the venv made for these tests a spandrel that does not
# import is an error, never a module of silent skips (tests/test_ci.py checks both ways).
if os.environ.get("SST_REQUIRE_SPANDREL") == "1":
    import spandrel
else:
    spandrel = pytest.importorskip("spandrel", reason="spandrel is not installed in this venv; `make spandrel-test` "
                                   "runs these tests in .venv-extras")

import sst_cli.spandrel as sst_spandrel  # noqa: E402  (needs spandrel)
from sst_cli.cli import main  # noqa: E402
from sst_cli.errors import SSTError  # noqa: E402
from sst_cli.io import images  # noqa: E402
from sst_cli.model.archs import ARCHS, build_model, cost_of  # noqa: E402
from sst_cli.model.registry import create_model  # noqa: E402
from sst_cli.model.weights import bundled_path, load_checkpoint, save_checkpoint  # noqa: E402
from sst_cli.upscale.array import upscale_array  # noqa: E402
from sst_cli.upscale.upscaler import load_upscaler  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def installed() -> None:
    sst_spandrel.install()


def official(folder: Path, variant: str, name: str, seed: int = 0) -> Path:
    """A random ``variant`` x4 saved as the official code saves it ({"params_ema": ...}) under ``name``."""
    torch.manual_seed(seed)
    path = folder / name
    torch.save({"params_ema": create_model(variant, 4).eval().state_dict()}, path)
    return path


def image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------- acceptance
def test_official_sst_light_x4_equals_sst_upscale_untiled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Acceptance: spandrel loads an official-format sst-light x4 .pth; its output equals `sst upscale -m sst-light
    --weights FILE --tile 0`'s to 1e-5 (as floats; and the PNG that command writes, pixel for pixel)."""
    path = official(tmp_path, "sst-light", "SSTlight_DIV2K_X4.pth")
    sr = spandrel.ModelLoader().load_from_file(path)
    assert isinstance(sr, spandrel.ImageModelDescriptor) and sr.architecture.id == "SST" and sr.tags == ["sst-light"]
    x = image(37, 45)
    got = sr(x)
    up = load_upscaler("sst-light", weights=str(path), device="cpu")
    hwc = x[0].permute(1, 2, 0).numpy()
    want = upscale_array(hwc, up, tile=0)  # sst upscale --tile 0, before the output is quantised
    assert got.shape == (1, 3, 148, 180)
    assert np.abs(got[0].permute(1, 2, 0).numpy() - want).max() <= 1e-5

    src, out = tmp_path / "in.png", tmp_path / "out.png"
    images.save_array(src, images.from_float(hwc, 8))
    assert main(["upscale", str(src), str(out), "-m", "sst-light", "--weights", str(path), "--tile", "0",
                 "--device", "cpu"]) == 0, capsys.readouterr().err
    pixels = torch.from_numpy(images.to_float(images.from_float(hwc, 8))).permute(2, 0, 1)[None]
    mine = images.from_float(sr(pixels)[0].permute(1, 2, 0).numpy(), 8)
    assert np.array_equal(images.read_image(out).pixels, mine)


@pytest.mark.parametrize(("name", "variant", "window"), [
    ("SSTlight_DIV2K_X4.pth", "sst-light", 64), ("SSTlight_Plus_DIV2K_X4.pth", "sst-light+", 96),
    ("SSTLarge_Plus_DF2K_X4.pth", "sst-l+", 96), ("ESCRIB_DFLIP_X4.pth", "esc-rib", 64),
])
def test_official_names_decide_the_network_as_sst_does(tmp_path: Path, name: str, variant: str, window: int) -> None:
    """The "+" twins have the same tensors: the official file name tells them apart, as in `sst upscale`."""
    sr = spandrel.ModelLoader().load_from_file(official(tmp_path, variant, name))
    assert sr.tags == [variant] and sr.scale == 4 and cost_of(sr.model).window == window
    assert sr.architecture.id == ARCHS[create_model(variant, 4).cfg.TYPE].type


def test_outputs_equal_sst_at_any_size_with_no_padding_by_spandrel() -> None:
    sr = spandrel.ModelLoader().load_from_file(bundled_path(4))
    up = load_upscaler(device="cpu")
    assert sr.size_requirements.none  # the network pads to its windows itself; spandrel must not pad for it
    for h, w in [(1, 1), (5, 7), (50, 31)]:
        x = image(h, w, seed=h)
        assert (sr(x) - up.forward(x).clamp(0, 1)).abs().max() <= 1e-5, (h, w)


# ---------------------------------------------------------------------------------- deciding the network
def test_a_bare_twin_state_dict_is_refused_in_one_sentence(tmp_path: Path) -> None:
    path = official(tmp_path, "sst-light", "mine.pth")  # not an official name: sst-light or sst-light+?
    for load in (lambda: spandrel.ModelLoader().load_from_file(path),
                 lambda: spandrel.ModelLoader().load_from_state_dict(torch.load(path)["params_ema"])):
        with pytest.raises(SSTError) as err:
            load()
        text = str(err.value)
        assert "sst-light or sst-light+ x4, which have the same tensors" in text and "model=" in text
        assert "\n" not in text and "name the variant (sst-light or sst-light+)" in text and text.endswith("Model.")
    # sst_cli.spandrel.load takes the variant, as `sst upscale --model` does
    plus = sst_spandrel.load(path, model="sst-light+")
    assert plus.tags == ["sst-light+"] and cost_of(plus.model).window == 96
    sr = sst_spandrel.load(path, model="sst-light")
    assert sr.tags == ["sst-light"] and cost_of(sr.model).window == 64
    x = image(20, 24)
    assert (sr(x) - load_upscaler("sst-light", weights=str(path), device="cpu").forward(x).clamp(0, 1)).abs().max() <= 1e-5


def test_state_dicts_the_tensors_decide_load_without_their_file(tmp_path: Path) -> None:
    """ComfyUI's own loader hands spandrel a state dict: the bundled model and ESC-RIB need no file name."""
    sd = load_checkpoint(bundled_path(4)).state_dict
    sr = spandrel.ModelLoader().load_from_state_dict(sd)
    assert sr.tags == ["sst-tiny"] and sr.scale == 4
    x = image(16, 20)
    assert (sr(x) - load_upscaler(device="cpu").forward(x).clamp(0, 1)).abs().max() <= 1e-5
    torch.manual_seed(3)
    esc = spandrel.ModelLoader().load_from_state_dict(create_model("esc-rib", 2).state_dict())
    assert esc.tags == ["esc-rib"] and esc.scale == 2 and esc.architecture.id == "ESCRIB"


def test_sst_files_keep_their_stored_config(tmp_path: Path) -> None:
    """sst's own .safetensors carries its network: a custom one loads with its own windows."""
    torch.manual_seed(0)
    net = build_model({"dim": 8, "window_sizes": [4, 12], "num_heads": 2, "ranks": 4, "n_blocks": 1,
                       "upscaling_factor": 3})
    path = save_checkpoint(tmp_path / "custom.safetensors", net)
    sr = spandrel.ModelLoader().load_from_file(path)
    assert sr.scale == 3 and cost_of(sr.model).window == 12 and sr.tags == ["a custom SST (dim 8, 1 blocks) x3"]
    x = image(13, 17)
    with torch.no_grad():
        assert (sr(x) - net.eval()(x).clamp(0, 1)).abs().max() <= 1e-5


# ---------------------------------------------------------------------------------------- descriptor
def test_descriptor_states_what_the_network_does(tmp_path: Path) -> None:
    sst = spandrel.ModelLoader().load_from_file(official(tmp_path, "sst-light", "SSTlight_DIV2K_X4.pth"))
    esc = spandrel.ModelLoader().load_from_file(official(tmp_path, "esc-rib", "ESCRIB_DFLIP_X4.pth"))
    for sr in (sst, esc):
        assert sr.purpose == "SR" and sr.input_channels == sr.output_channels == 3 and sr.scale == 4
        assert sr.supports_half and sr.supports_bfloat16
    assert sst.tiling == spandrel.ModelTiling.SUPPORTED
    assert esc.tiling == spandrel.ModelTiling.DISCOURAGED  # its dynamic kernels read the whole image


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
def test_half_and_bfloat16_really_run(tmp_path: Path, dtype: torch.dtype, tolerance: float) -> None:
    """supports_half/supports_bfloat16 are true statements: the network runs in them, close to float32."""
    sr = spandrel.ModelLoader().load_from_file(official(tmp_path, "sst-light", "SSTlight_DIV2K_X4.pth"))
    x = image(24, 20)
    want = sr(x)
    got = sr.to(dtype)(x.to(dtype))
    assert got.dtype == dtype and (got.float() - want).abs().max() <= tolerance


# ------------------------------------------------------------------------------------------ registry
def test_install_registers_every_architecture_once() -> None:
    ids = {a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures()}
    assert {arch.type for arch in ARCHS.values()} <= ids
    before = len(spandrel.MAIN_REGISTRY)
    assert sst_spandrel.install() == [] and len(spandrel.MAIN_REGISTRY) == before
    read = spandrel.ModelLoader.load_state_dict_from_file
    assert getattr(read, "_sst_notes_path", False) and not getattr(read.__wrapped__, "_sst_notes_path", False)


def test_no_spandrel_architecture_claims_sst_weights_and_sst_claims_none_of_theirs() -> None:
    torch.manual_seed(0)
    ours = {name: create_model(name, 4).state_dict() for name in ("sst-light", "sst-l", "esc-rib")}
    ours["rpb"] = build_model({"dim": 8, "window_sizes": [4], "num_heads": 2, "ranks": 4, "n_blocks": 1,
                               "attn_type": "RPB"}).state_dict()
    theirs = [s for s in spandrel.MAIN_REGISTRY.architectures() if not isinstance(s.architecture,
                                                                                 sst_spandrel.SSTArchitecture)]
    for name, sd in ours.items():
        assert [s.architecture.id for s in theirs if s.detect(sd)] == [], name
    # a foreign state dict sharing a few key names is a plain no, never an exception
    foreign = {"proj.weight": torch.zeros(8, 3, 3, 3), "body.0.0.norm_attn.weight": torch.zeros(8),
               "upsampler.up_conv.weight": torch.zeros(12, 8, 3, 3)}
    assert not any(spandrel.MAIN_REGISTRY[arch.type].detect(foreign) for arch in ARCHS.values())


# ------------------------------------------------------------------------------------------ ComfyUI
class FolderPaths(types.ModuleType):
    """ComfyUI's ``folder_paths`` as the node uses it: one "upscale_models" folder; an unknown folder kind is a
    KeyError and a missing file a FileNotFoundError, as in ComfyUI."""

    def __init__(self, folder: Path) -> None:
        super().__init__("folder_paths")
        self.folders = {"upscale_models": folder}

    def get_filename_list(self, kind: str) -> list[str]:
        return sorted(p.name for p in self.folders[kind].iterdir() if p.is_file())

    def get_full_path_or_raise(self, kind: str, name: str) -> str:
        path = self.folders[kind] / name
        if not path.is_file():
            raise FileNotFoundError(f"Model in folder '{kind}' with filename '{name}' not found.")
        return str(path)


def test_comfyui_node_loads_sst_models_by_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "upscale_models"
    models.mkdir()
    official(models, "sst-light+", "SSTlight_Plus_DIV2K_X4.pth")
    official(models, "sst-light", "renamed.pth", seed=1)
    monkeypatch.setitem(sys.modules, "folder_paths", FolderPaths(models))
    spec = importlib.util.spec_from_file_location("sst_comfyui", REPO / "integrations" / "comfyui" / "__init__.py")
    assert spec is not None and spec.loader is not None
    node_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(node_module)  # imports nothing from ComfyUI; installs sst into spandrel

    node = node_module.NODE_CLASS_MAPPINGS["SSTUpscaleModelLoader"]
    assert node_module.NODE_DISPLAY_NAME_MAPPINGS["SSTUpscaleModelLoader"] == "Load SST Upscale Model"
    inputs = node.INPUT_TYPES()["required"]
    assert inputs["model_name"][0] == ["SSTlight_Plus_DIV2K_X4.pth", "renamed.pth"]
    assert inputs["variant"][0][0] == "auto" and "sst-light" in inputs["variant"][0]
    assert node.RETURN_TYPES == ("UPSCALE_MODEL",) and callable(getattr(node(), node.FUNCTION))

    (plus,) = node().load_model("SSTlight_Plus_DIV2K_X4.pth", "auto")
    assert isinstance(plus, spandrel.ImageModelDescriptor) and plus.tags == ["sst-light+"] and not plus.model.training
    with pytest.raises(SSTError, match="same tensors"):
        node().load_model("renamed.pth", "auto")
    (light,) = node().load_model("renamed.pth", "sst-light")
    x = image(19, 23)
    want = load_upscaler("sst-light", weights=str(models / "renamed.pth"), device="cpu").forward(x).clamp(0, 1)
    assert (light(x) - want).abs().max() <= 1e-5
    # ComfyUI's own "Load Upscale Model" goes through spandrel's registry: after the node's import, it knows SST
    assert spandrel.ModelLoader().load_from_file(models / "SSTlight_Plus_DIV2K_X4.pth").tags == ["sst-light+"]
