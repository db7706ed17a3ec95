"""benchmarks/side_by_side.py: one panel per model plus the input, each panel the model's whole-image result at
the crop, the settings recorded beside the picture, a missing weights file refused in one sentence; and the
placement offset that lets a region of a photo see the photo's noise (sst-real)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shlex
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

import sst_cli
from sst_cli.model import placement, registry
from sst_cli.model.archs import build_model
from sst_cli.model.archs.sst_real.sampling import placed_noise
from sst_cli.model.registry import Variant, get_variant
from sst_cli.model.weights import bundled_path
from sst_cli.upscale.tiling import window_align

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "side_by_side.py"
# sst-real's structure at a tiny width (the released network costs ~1 TFLOP per 64x64 input tile)
TINY_REAL = {"type": "EDMUNet", "img_resolution": 64, "img_channels": 3, "dim": 8, "intermediate_dim": 8,
             "emb_channels": 16, "noise_channels": 8, "num_blocks": 2, "fuse_lr_till": 0, "ig_idx": 0,
             "attn_type": "RIB", "window_sizes": [4, 8], "num_heads": [2, 2], "ranks": [4, 4], "rib_hidden_dim": 8,
             "exp_ratio": 3, "gate_type": "DWC", "sampling_ig_lambda": 2.0}


@pytest.fixture(scope="module")
def sbs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("side_by_side", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def photo(h: int = 70, w: int = 90) -> np.ndarray:
    """Smooth gradients with a noisy square (texture) and a hard edge: every model gives something different."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=2)
    img[40:, 60:] = 230
    img[10:34, 20:44] += rng.normal(0, 60, (24, 24, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SST_WEIGHTS_DIR", raising=False)
    Image.fromarray(photo()).save(tmp_path / "photo.png")
    return tmp_path


def whole_then_cropped(up: sst_cli.Upscaler, pixels: np.ndarray, crop: list[int]) -> np.ndarray:
    x, y, w, h = crop
    return up(pixels)[4 * y : 4 * (y + h), 4 * x : 4 * (x + w)].astype(int)


def in_picture(picture: np.ndarray, box: list[int]) -> np.ndarray:
    x, y, w, h = box
    return picture[y : y + h, x : x + w].astype(int)


# ------------------------------------------------------------------------------------------- the picture
@pytest.mark.parametrize("crop", [(30, 12, 24, 28), (0, 42, 20, 28)], ids=["inside", "at-the-border"])
def test_one_panel_per_model_each_the_whole_images_result_at_the_crop(sbs: ModuleType, workdir: Path,
                                                                       crop: tuple[int, ...]) -> None:
    text = ",".join(map(str, crop))
    assert sbs.main(["photo.png", "--crop", text, "--model", "bicubic", "--model", "sst-tiny", "--device", "cpu",
                     "--out", "pic.png"]) == 0
    picture = np.asarray(Image.open(workdir / "pic.png").convert("RGB"))
    settings = json.loads((workdir / "pic.json").read_text())
    pixels = photo()
    x, y, w, h = crop
    assert settings["crop"] == list(crop) and settings["crop_chosen"] == "given"
    assert [p["model"] for p in settings["panels"]] == ["bicubic", "sst-tiny"]  # one per model, in order
    boxes = [settings["input_panel"]["box"]] + [p["box"] for p in settings["panels"]]
    assert all(b[2:] == [4 * w, 4 * h] for b in boxes)  # 1:1 at x4
    assert picture.shape[1] == sum(b[2] for b in boxes) + sbs.GAP * 2  # the input and two panels, in one row
    assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)
    # the input: the crop, each pixel a 4x4 block
    want = np.asarray(Image.fromarray(pixels[y : y + h, x : x + w]).resize((4 * w, 4 * h), Image.NEAREST))
    assert np.array_equal(in_picture(picture, boxes[0]), want.astype(int))
    # each model's panel: that model on the whole image (untiled), then cropped, within one level
    for panel, name in zip(settings["panels"], ["bicubic", None], strict=True):
        up = sst_cli.load_upscaler(name, 4, device="cpu", tile=0)
        diff = np.abs(in_picture(picture, panel["box"]) - whole_then_cropped(up, pixels, list(crop)))
        assert diff.max() <= 1, (panel["model"], diff.max())
    # and the models differ there, so the comparison compared something
    assert np.abs(in_picture(picture, boxes[1]) - in_picture(picture, boxes[2])).max() > 10


def test_the_settings_beside_the_picture_remake_it(sbs: ModuleType, workdir: Path) -> None:
    assert sbs.main(["photo.png", "--crop-size", "24", "--device", "cpu", "--out", "pic.png",
                     "--model", "bicubic", "--model", "sst-tiny", "--seed", "5"]) == 0
    settings = json.loads((workdir / "pic.json").read_text())
    assert settings["crop"] == [20, 10, 24, 24]  # the noisy square: the most texture
    assert settings["crop_chosen"] == "most gradient energy, 24 square"
    assert settings["image_size"] == [90, 70] and settings["scale"] == 4 and settings["seed"] == 5
    bicubic, tiny = settings["panels"]
    assert bicubic["weights"] is None and bicubic["sha256"] is None and "built in" in bicubic["label"]
    bundled = bundled_path(4)
    assert tiny["weights"] == bundled.name and tiny["weights"] in tiny["label"]
    assert tiny["sha256"] == hashlib.sha256(bundled.read_bytes()).hexdigest()[:16]
    assert settings["image_sha256"] == hashlib.sha256((workdir / "photo.png").read_bytes()).hexdigest()[:16]
    assert Image.open(workdir / "pic.png").size == tuple(settings["picture_size"])
    # the recorded command, run again, makes the same picture
    first = (workdir / "pic.png").read_bytes()
    args = shlex.split(settings["command"])
    assert args[:2] == ["python", "benchmarks/side_by_side.py"] and "--crop" in args
    (workdir / "pic.png").unlink()
    assert sbs.main(args[2:] + ["--device", "cpu"]) == 0
    assert (workdir / "pic.png").read_bytes() == first


def test_a_missing_weights_file_is_one_sentence(sbs: ModuleType, workdir: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        sbs.main(["photo.png", "--model", "bicubic", "--model", "sst-l=SSTLarge_DF2K_X4.pth", "--out", "pic.png"])
    message = str(exc.value.code)
    assert message.startswith("weights file SSTLarge_DF2K_X4.pth for sst-l does not exist (looked in ")
    assert message.endswith(".") and "\n" not in message and message.count(". ") == 0
    assert not (workdir / "pic.png").exists() and not (workdir / "pic.json").exists()
    with pytest.raises(SystemExit, match=r"^--model nonsense: unknown model 'nonsense' \(choose from: .*\)\.$"):
        sbs.main(["photo.png", "--model", "nonsense"])
    with pytest.raises(SystemExit, match="does not lie inside the 90x70 image"):
        sbs.main(["photo.png", "--crop", "80,60,20,20", "--model", "bicubic"])


def test_defaults_show_the_official_models_only_when_their_files_are_here(sbs: ModuleType, workdir: Path) -> None:
    assert sbs.default_columns() == [sbs.Column("bicubic"), sbs.Column("sst-tiny")]
    (workdir / "checkpoints").mkdir()
    (workdir / "checkpoints" / "SSTReal_X4.pth").write_bytes(b"x")  # a search folder (sst_cli.model.hub)
    assert sbs.default_columns()[-1] == sbs.Column("sst-real", workdir / "checkpoints" / "SSTReal_X4.pth")
    assert sbs.parse_column("sst-real=SSTReal_X4.pth").weights == workdir / "checkpoints" / "SSTReal_X4.pth"


# ------------------------------------------------------------------------------- sst-real: noise by position
def test_a_region_sees_the_larger_images_noise() -> None:
    """placement.region_at: the noise of a region (and of its tiles) is the larger image's there; offsets add."""
    whole = placed_noise(3, 1, (40, 50), (64, 64), torch.device("cpu"))[0]
    with placement.region_at(8, 4), placement.region_at(2, 12):  # nested: the region at (10, 16)
        region = placed_noise(3, 1, (20, 24), (64, 64), torch.device("cpu"))[0]
        with placement.tiles_at([(4, 8)]):  # a tile of that region
            tile = placed_noise(3, 1, (8, 8), (64, 64), torch.device("cpu"))[0]
    assert torch.equal(region[:, : 4 * 20, : 4 * 24], whole[:, 40:120, 64:160])
    assert torch.equal(tile[:, :32, :32], whole[:, 56:88, 96:128])
    assert placement.current() == placement.WHOLE  # left as it was


@pytest.fixture
def tiny_sst_real(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The registry's sst-real standing for a tiny network of its structure, saved as the official code saves it."""
    real = get_variant("sst-real")
    small = Variant(real.name, real.official, TINY_REAL, real.checkpoint_sets, notes=real.notes, scales=real.scales)
    monkeypatch.setitem(registry.VARIANTS, small.name, small)
    monkeypatch.setitem(registry.BY_OFFICIAL, small.official, small)
    monkeypatch.setitem(registry.OFFICIAL_FILES, "SSTReal_X4.pth", registry.OfficialFile(small, "", 4))
    torch.manual_seed(0)
    model = build_model(small.network_g(4)).eval()
    torch.save({"params_ema": model.state_dict()}, workdir / "SSTReal_X4.pth")
    return workdir / "SSTReal_X4.pth"


def test_sst_real_panels_carry_the_photos_noise_seed_and_guidance(sbs: ModuleType, workdir: Path,
                                                                  tiny_sst_real: Path) -> None:
    crop = [40, 30, 20, 24]  # the region starts at (0, 0) only if it reaches the corner: here it does not
    assert sbs.main(["photo.png", "--crop", ",".join(map(str, crop)), "--model", "sst-real=SSTReal_X4.pth",
                     "--seed", "3", "--guidance", "1.5", "--device", "cpu", "--margin", "16", "--out", "pic.png"]) == 0
    settings = json.loads((workdir / "pic.json").read_text())
    (panel,) = settings["panels"]
    assert panel["model"] == "sst-real" and panel["seed"] == 3 and panel["guidance"] == 1.5
    assert panel["label"] == "sst-real x4\nSSTReal_X4.pth\nseed 3, guidance 1.5"
    assert panel["sha256"] == hashlib.sha256(tiny_sst_real.read_bytes()).hexdigest()[:16]
    got = in_picture(np.asarray(Image.open(workdir / "pic.png").convert("RGB")), panel["box"])
    up = sst_cli.load_upscaler("sst-real", 4, weights=str(tiny_sst_real), device="cpu", tile=0, noise_seed=3,
                               guidance=1.5)
    pixels = photo()
    assert np.abs(got - whole_then_cropped(up, pixels, crop)).max() <= 1
    # the same region upscaled as an image of its own (its noise drawn from (0, 0)) is another picture
    x0, y0, x1, y1 = sbs.region_around(crop, 90, 70, window_align(up), 16)
    assert (x0, y0) != (0, 0)
    alone = up(pixels[y0:y1, x0:x1])[4 * (30 - y0) : 4 * (30 - y0 + 24), 4 * (40 - x0) : 4 * (40 - x0 + 20)]
    assert np.abs(alone.astype(int) - got).max() > 10


def test_a_network_that_sees_the_whole_image_is_given_the_whole_image(sbs: ModuleType) -> None:
    """esc-rib predicts kernels from the image's mean (no finite receptive field): it is given the whole image,
    a windowed network only the region around the crop."""
    torch.manual_seed(0)
    net = build_model({"type": "ESCRIB", "dim": 8, "pdim": 4, "kernel_size": 5, "n_blocks": 1, "conv_blocks": 1,
                       "window_size": 16, "num_heads": 2, "rank": 4, "rib_hidden_dim": 8, "upscaling_factor": 4})
    escrib = sst_cli.Upscaler(net.eval(), "esc-rib", 4, torch.device("cpu"), torch.float32, "sdpa", "test", tile=0)
    tiny = sst_cli.load_upscaler(None, 4, device="cpu", tile=0)
    pixels, crop = photo(), (56, 40, 24, 24)
    for up, shape in [(escrib, (70, 90, 3)), (tiny, (62, 66, 3))]:  # tiny: 32 px of context on its 8-px grid
        recorder = Recorder(up)
        got = sbs.upscale_crop(recorder, pixels, crop).astype(int)
        assert recorder.seen == [shape]
        assert np.abs(got - whole_then_cropped(up, pixels, list(crop))).max() <= 1


class Recorder:
    """An upscaler that records the shapes of the arrays it is given."""

    def __init__(self, up: sst_cli.Upscaler) -> None:
        self.up, self.model, self.scale = up, up.model, up.scale
        self.seen: list[tuple[int, ...]] = []

    def __call__(self, a: np.ndarray) -> np.ndarray:
        self.seen.append(a.shape)
        return self.up(a)


# ------------------------------------------------------------------------------------ the README's picture
DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_readme_picture_shows_what_its_record_says(sbs: ModuleType) -> None:
    """docs/side_by_side_bsd200.png: bicubic and the bundled model as it is now (a changed bundled model means a
    picture to re-make), panels where the record puts them; with ../shared here, re-made within one level."""
    settings = json.loads((DOCS / "side_by_side_bsd200.json").read_text())
    picture = np.asarray(Image.open(DOCS / "side_by_side_bsd200.png").convert("RGB"))
    assert picture.shape[1::-1] == tuple(settings["picture_size"])
    assert [p["model"] for p in settings["panels"]] == ["bicubic", "sst-tiny"]  # no official weights were here
    assert settings["panels"][1]["sha256"] == hashlib.sha256(bundled_path(4).read_bytes()).hexdigest()[:16]
    x, y, w, h = settings["crop"]
    for box in [settings["input_panel"]["box"]] + [p["box"] for p in settings["panels"]]:
        assert box[2:] == [4 * w, 4 * h] and box[0] + box[2] <= picture.shape[1] and box[1] + box[3] == picture.shape[0]
    photo_path = DOCS.parent / settings["image"]  # ../shared/data/BSD200/HR/...: recorded from the repository
    if not photo_path.is_file():
        pytest.skip(f"{settings['image']} is not here (../shared)")
    assert hashlib.sha256(photo_path.read_bytes()).hexdigest()[:16] == settings["image_sha256"]
    pixels = sbs.read_photo(photo_path)
    crop = tuple(settings["crop"])
    for panel, name in zip(settings["panels"], ["bicubic", None], strict=True):
        want = sbs.upscale_crop(sst_cli.load_upscaler(name, 4, device="cpu"), pixels, crop).astype(int)
        assert np.abs(in_picture(picture, panel["box"]) - want).max() <= 1
    x0, y0, bw, bh = settings["input_panel"]["box"]
    assert np.array_equal(picture[y0 : y0 + bh, x0 : x0 + bw], sbs.enlarged(pixels[y : y + h, x : x + w], 4))
