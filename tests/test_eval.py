"""`sst eval`: dataset layouts, shipped vs generated LR, metrics, output schemas, models, the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DATA, data_path
from hub_server import fake_hub, set_offline  # noqa: F401 - fake_hub is a fixture
from sst_cli import build_model
from sst_cli.cli import main
from sst_cli.errors import SSTError
from sst_cli.evaluation.datasets import canonical_name, discover, generate_lr, mod_crop, resolve_dataset
from sst_cli.evaluation.metrics import measure, parse_metrics
from sst_cli.evaluation.report import EvalOptions, EvalReport, EvalResult, ImageResult
from sst_cli.evaluation.runner import paper_comparison, paper_variant, run_eval
from sst_cli.model.bicubic import imresize, quantize_uint8
from sst_cli.model.weights import save_checkpoint
from sst_cli.paper import quality


# ------------------------------------------------------------------------------------------ helpers
def _image(h: int, w: int, seed: int) -> np.ndarray:
    """A textured uint8 RGB test image (smooth random colours, like a photo more than like noise)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray((rng.random((h // 4 + 2, w // 4 + 2, 3)) * 255).astype(np.uint8))
    return np.array(small.resize((w, h), Image.BICUBIC))


def _save(img: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def _bicubic_metrics(lr: np.ndarray, hr: np.ndarray, s: int, names=("psnr_y", "ssim_y")) -> dict[str, float]:
    """What eval must report for the bicubic model: upscale ``lr``, quantise, measure against mod-cropped HR."""
    x = torch.from_numpy(lr).permute(2, 0, 1).float() / 255
    sr = quantize_uint8(imresize(x, s).permute(1, 2, 0))
    return measure(sr, mod_crop(hr, s), s, names)


def _run(tmp_path: Path, *datasets: str, scales=(2,), **kw) -> list[EvalResult]:
    opts = EvalOptions(datasets=list(datasets), scales=list(scales), data_root=str(tmp_path), model="bicubic",
                       device="cpu", **kw)
    return run_eval(opts).results


HR_SIZES = [(50, 38), (41, 45)]  # not multiples of 2, 3 or 4: exercises mod-crop


def _hr_set(folder: Path, n: int = 2) -> list[np.ndarray]:
    imgs = [_image(h, w, seed) for seed, (h, w) in enumerate(HR_SIZES[:n])]
    for i, img in enumerate(imgs):
        _save(img, folder / f"im{i}.png")
    return imgs


# ------------------------------------------------------------------------------------------ acceptance
def test_cli_bicubic_reproduces_basicsr_reference(tmp_path: Path, capsys) -> None:
    data = DATA
    ref = {n: json.loads(data_path("metrics", f"bicubic_{n}.json").read_text())[n] for n in ("Set5", "Set14")}
    out = tmp_path / "bicubic.json"
    rc = main(["eval", "--model", "bicubic", "--dataset", "Set5,Set14", "--scale", "2,3,4", "--data-root", str(data),
               "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert [(r["dataset"], r["scale"]) for r in report["results"]] == [(d, s) for d in ("Set5", "Set14") for s in (2, 3, 4)]
    for r in report["results"]:
        want = ref[r["dataset"]][f"x{r['scale']}"]
        assert r["lr_source"] == "shipped" and r["model"] == "bicubic"
        assert {im["name"] for im in r["images"]} == set(want["images"])
        for im in r["images"]:
            assert abs(im["psnr_y"] - want["images"][im["name"]]["psnr_y"]) < 1e-3, im
            assert abs(im["ssim_y"] - want["images"][im["name"]]["ssim_y"]) < 1e-4, im
        assert abs(r["psnr_y"] - want["mean_psnr_y"]) < 1e-4
        assert abs(r["ssim_y"] - want["mean_ssim_y"]) < 1e-5
    set14 = [r for r in report["results"] if r["dataset"] == "Set14"]
    assert all(r["grayscale_images"] == ["bridge"] for r in set14)
    assert "BasicSR" in report["settings"]["grayscale"]
    text = capsys.readouterr().out
    # Set5 x2's mean sits on a rounding boundary at 4 decimals (33.67795): either neighbour is right
    assert ("33.6779" in text or "33.6780" in text) and "26.0899" in text and "bridge" in text


def test_generated_lr_on_shared_set5_reproduces_basicsr_regeneration(tmp_path: Path) -> None:
    """Without LR files eval makes LR like BasicSR; the result differs from the MATLAB-LR one."""
    hr_dir = data_path("Set5", "HR")
    (tmp_path / "Set5").symlink_to(hr_dir, target_is_directory=True)  # a plain folder of HR images
    res = _run(tmp_path, "Set5", scales=(4,))[0]
    assert res.layout == "folder" and res.lr_source == "generated" and res.dataset == "Set5"
    shipped = {im.name: im for im in _run(DATA, "Set5", scales=(4,))[0].images}
    for im in res.images:
        hr = np.array(Image.open(hr_dir / f"{im.name}.png").convert("RGB"))
        lr = generate_lr(mod_crop(hr, 4), 4)
        assert im.metrics == _bicubic_metrics(lr, hr, 4)
        assert im.metrics["psnr_y"] != shipped[im.name].metrics["psnr_y"]


# ------------------------------------------------------------------------------------------ layouts
def test_basicsr_layout_uses_shipped_lr_files(tmp_path: Path) -> None:
    hrs = _hr_set(tmp_path / "Mine" / "HR")
    lrs = []
    for i, hr in enumerate(hrs):
        lr = generate_lr(mod_crop(hr, 2), 2)
        lr[::3, ::2] = 255 - lr[::3, ::2]  # a "shipped" LR that our generator would not produce
        lrs.append(_save(lr, tmp_path / "Mine" / "LR_bicubic" / "X2" / f"im{i}x2.png"))
    res = _run(tmp_path, "Mine")[0]
    assert (res.layout, res.lr_source, res.dataset) == ("basicsr", "shipped", "Mine")
    for im, hr, lr_path in zip(res.images, hrs, lrs, strict=True):
        assert im.lr_source == "shipped"
        assert im.hr_size == mod_crop(hr, 2).shape[:2]
        assert im.metrics == _bicubic_metrics(np.array(Image.open(lr_path)), hr, 2)
        assert im.metrics != _bicubic_metrics(generate_lr(mod_crop(hr, 2), 2), hr, 2)


def test_basicsr_layout_without_lr_generates_and_mixed_is_reported(tmp_path: Path) -> None:
    hrs = _hr_set(tmp_path / "Mine" / "HR")
    res = _run(tmp_path, "Mine", scales=(3,))[0]
    assert res.lr_source == "generated"
    for im, hr in zip(res.images, hrs, strict=True):
        assert im.metrics == _bicubic_metrics(generate_lr(mod_crop(hr, 3), 3), hr, 3)
    _save(generate_lr(mod_crop(hrs[0], 3), 3), tmp_path / "Mine" / "LR_bicubic" / "X3" / "im0x3.png")
    res = _run(tmp_path, "Mine", scales=(3,))[0]
    assert res.lr_source == "mixed"
    assert [im.lr_source for im in res.images] == ["shipped", "generated"]


def test_hat_layout_gtmod_and_lrbicx(tmp_path: Path) -> None:
    root = tmp_path / "Hat"
    hr = mod_crop(_image(50, 62, 7), 12)  # BasicSR test sets ship GTmod12, valid for x2, x3, x4
    _save(hr, root / "GTmod12" / "a.png")
    lr3 = generate_lr(hr, 3)
    lr3[0, 0] = 0
    _save(lr3, root / "LRbicx3" / "a.png")
    hr4 = mod_crop(_image(40, 44, 8), 4)  # HAT ships one GTmod<s> per scale
    _save(hr4, root / "GTmod4" / "a.png")
    res = {r.scale: r for r in _run(tmp_path, str(root), scales=(2, 3, 4))}
    assert all(r.layout == "hat" for r in res.values())
    assert res[3].lr_source == "shipped" and res[2].lr_source == "generated" and res[4].lr_source == "generated"
    assert res[3].images[0].metrics == _bicubic_metrics(lr3, hr, 3)
    # GTmod<s> first, else the smallest multiple of s: x2 and x4 read GTmod4, x3 GTmod12
    assert res[2].images[0].metrics == _bicubic_metrics(generate_lr(hr4, 2), hr4, 2)
    assert res[4].images[0].hr_size == hr4.shape[:2] and res[3].images[0].hr_size == hr.shape[:2]
    with pytest.raises(SSTError, match="GTmod"):
        discover(resolve_dataset(str(root), tmp_path), 5)


def test_div2k_style_layout(tmp_path: Path) -> None:
    root = tmp_path / "DIV2K"
    hr = _image(48, 40, 3)
    _save(hr, root / "DIV2K_valid_HR" / "0801.png")
    lr = generate_lr(hr, 4)
    lr[1, 1] = 7
    _save(lr, root / "DIV2K_valid_LR_bicubic" / "X4" / "0801x4.png")
    res = _run(tmp_path, "DIV2K-val", scales=(4,))[0]
    assert (res.dataset, res.layout, res.lr_source) == ("DIV2K-val", "basicsr", "shipped")
    assert res.images[0].metrics == _bicubic_metrics(lr, hr, 4)


def test_plain_folder_by_path_and_name(tmp_path: Path, monkeypatch) -> None:
    hrs = _hr_set(tmp_path / "photos")
    by_path = _run(tmp_path / "elsewhere", str(tmp_path / "photos"), scales=(2,))[0]
    by_name = _run(tmp_path, "photos", scales=(2,))[0]
    assert by_path.dataset == by_name.dataset == "photos"
    assert by_path.layout == "folder" and by_path.lr_source == "generated"
    assert [im.metrics for im in by_path.images] == [im.metrics for im in by_name.images]
    assert [im.name for im in by_path.images] == ["im0", "im1"]
    assert by_path.images[1].metrics == _bicubic_metrics(generate_lr(mod_crop(hrs[1], 2), 2), hrs[1], 2)
    # a path to an HR folder names the dataset after its parent
    _hr_set(tmp_path / "Urban100" / "HR", 1)
    ds = resolve_dataset(str(tmp_path / "Urban100" / "HR"), "nowhere")
    assert (ds.name, ds.known, ds.path) == ("Urban100", True, tmp_path / "Urban100")


def test_aliases_and_case(tmp_path: Path) -> None:
    assert canonical_name("bsd100") == canonical_name("B100") == canonical_name("BSDS100") == "B100"
    assert canonical_name("div2k_valid") == "DIV2K-val"
    assert canonical_name("holiday-pics") is None
    _hr_set(tmp_path / "bsd100" / "HR", 1)
    ds = resolve_dataset("B100", tmp_path)
    assert ds.name == "B100" and ds.known and ds.path == tmp_path / "bsd100"
    assert _run(tmp_path, "BSD100")[0].dataset == "B100"


def test_missing_dataset_is_one_sentence_with_the_layout(fake_hub, tmp_path: Path, monkeypatch,  # noqa: F811
                                                         capsys) -> None:
    set_offline(monkeypatch)  # Set5 could be downloaded otherwise (tests/test_datasets.py)
    with pytest.raises(SSTError) as exc:
        resolve_dataset("Urban100", tmp_path)
    msg = str(exc.value)
    assert "Urban100" in msg and "HR" in msg and "LR_bicubic" in msg and msg.count(". ") == 0
    _hr_set(tmp_path / "Set14" / "HR", 1)
    rc = main(["eval", "--model", "bicubic", "--dataset", "Set5,Set14,Manga109", "--data-root", str(tmp_path),
               "--json", "report.json"])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 1 and "Traceback" not in err
    # Every missing dataset at once, why sst cannot download it, and how to point sst at them.
    squashed = "".join(err.split())  # a long path may be folded over lines
    assert "".join(f"2 datasets not found under {tmp_path}: Set5 (".split()) in squashed
    assert "Set5 (it cannot be downloaded now, as HF_HUB_OFFLINE is set)" in err
    assert "Manga109 (sst does not download it: request it" in err and err.count(". ") == 0
    assert "--data-root" in err and "$SST_DATA_ROOT" in err and "LR_bicubic" in err
    assert fake_hub.requests == []
    assert not (tmp_path / "report.json").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SSTError, match="no images"):
        _run(tmp_path, "empty")


def test_bad_images_are_reported_and_the_batch_continues(tmp_path: Path) -> None:
    root = tmp_path / "Set"
    hrs = _hr_set(root / "HR")
    (root / "HR" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    _save(_image(10, 10, 9), root / "LR_bicubic" / "X2" / "im1x2.png")  # wrong size for im1
    _save(_image(9, 8, 5), root / "HR" / "tiny.png")  # smaller than SSIM's window after the border crop
    res = _run(tmp_path, "Set")[0]
    assert [im.name for im in res.images] == ["im0"]
    reasons = {s["name"]: s["reason"] for s in res.skipped}
    assert set(reasons) == {"broken", "im1", "tiny"}
    assert "unreadable" in reasons["broken"] and "LR" in reasons["im1"] and "too small" in reasons["tiny"]
    assert "8x9, 8x8 after the crop to a multiple of 2, needs at least 15 a side" in reasons["tiny"]
    assert res.images[0].metrics == _bicubic_metrics(generate_lr(mod_crop(hrs[0], 2), 2), hrs[0], 2)


def test_grayscale_and_rgba_images(tmp_path: Path) -> None:
    root = tmp_path / "G"
    rgb = _image(40, 40, 11)
    gray = np.array(Image.fromarray(rgb).convert("L"))
    _save(gray, root / "g.png")
    Image.fromarray(rgb).convert("RGBA").save(root / "rgba.png")
    res = _run(tmp_path, "G")[0]
    assert res.to_dict()["grayscale_images"] == ["g"]
    g3 = np.repeat(gray[..., None], 3, 2)
    assert res.images[0].metrics == _bicubic_metrics(generate_lr(mod_crop(g3, 2), 2), g3, 2)
    assert res.images[1].metrics == _bicubic_metrics(generate_lr(mod_crop(rgb, 2), 2), rgb, 2)


# ------------------------------------------------------------------------------------------ options
def test_crop_border_and_metric_selection(tmp_path: Path) -> None:
    hrs = _hr_set(tmp_path / "S" / "HR", 1)
    default = _run(tmp_path, "S", scales=(4,))[0]
    zero = _run(tmp_path, "S", scales=(4,), crop_border=0, metrics=("psnr_y", "psnr_rgb", "ssim_rgb"))[0]
    assert default.crop_border == 4 and zero.crop_border == 0
    assert set(zero.images[0].metrics) == {"psnr_y", "psnr_rgb", "ssim_rgb"}
    lr = generate_lr(mod_crop(hrs[0], 4), 4)
    x = torch.from_numpy(lr).permute(2, 0, 1).float() / 255
    sr = quantize_uint8(imresize(x, 4).permute(1, 2, 0))
    assert zero.images[0].metrics == measure(sr, mod_crop(hrs[0], 4), 0, ("psnr_y", "psnr_rgb", "ssim_rgb"))
    assert zero.images[0].metrics["psnr_y"] != default.images[0].metrics["psnr_y"]
    assert parse_metrics("PSNR_Y, ssim_y,psnr_y") == ("psnr_y", "ssim_y")
    assert parse_metrics("") == ("psnr_y", "ssim_y")
    assert parse_metrics("psnr,ssim") == ("psnr_y", "ssim_y")  # the field's names for the Y-channel ones
    with pytest.raises(SSTError, match="unknown metric 'nosuch'"):
        parse_metrics("psnr_y,nosuch")


def _tiny_checkpoint(path: Path, scale: int = 2) -> Path:
    cfg = {"dim": 8, "window_sizes": [4, 8], "num_heads": 2, "ranks": 4, "n_blocks": 1, "exp_ratio": 1.5,
           "attn_type": "RIB", "upscaling_factor": scale, "upsampler_type": "pixelshuffle", "intermediate_dim": 8}
    torch.manual_seed(0)
    return save_checkpoint(path, build_model(cfg), {"name": "tiny-test"})


def test_model_from_weights_with_tiles_tta_and_saved_images(tmp_path: Path) -> None:
    from sst_cli.evaluation.metrics import psnr

    hrs = _hr_set(tmp_path / "S" / "HR")
    ckpt = _tiny_checkpoint(tmp_path / "tiny.safetensors")
    base = {"datasets": ["S"], "data_root": str(tmp_path), "weights": str(ckpt), "device": "cpu"}
    whole = run_eval(EvalOptions(**base, tile=0))
    assert whole.settings["scales"] == [2]  # the checkpoint's own scale when --scale is not given
    tiled = run_eval(EvalOptions(**base, tile=16, overlap=4, tta=True, save_dir=str(tmp_path / "out")))
    r, w = tiled.results[0], whole.results[0]
    assert r.model == "tiny-test" and r.scale == 2 and len(r.images) == 2
    assert r.to_dict()["tiled_images"] == 2 and w.to_dict()["tiled_images"] == 0
    assert tiled.settings["tta"] is True and tiled.settings["tile"] == 16
    for im, hr in zip(r.images, hrs, strict=True):
        saved = np.array(Image.open(tmp_path / "out" / "S" / "X2" / f"{im.name}.png"))
        assert saved.shape == mod_crop(hr, 2).shape
        assert psnr(saved, mod_crop(hr, 2), 2) == im.metrics["psnr_y"]  # metrics are on the saved uint8 image
    assert [im.metrics["psnr_y"] for im in r.images] != [im.metrics["psnr_y"] for im in w.images]
    with pytest.raises(SSTError, match="x2 model"):
        run_eval(EvalOptions(**base, scales=[3]))


def test_compare_paper_for_official_variants() -> None:
    assert paper_variant(EvalOptions(datasets=[], model="SSTlight"), None) == "sst-light"
    assert paper_variant(EvalOptions(datasets=[], model="bicubic"), None) is None
    assert paper_variant(EvalOptions(datasets=[]), None) is None  # the bundled model is not in the paper
    paper = quality("sst-light", "Set5", 4)
    assert paper is not None
    res = EvalResult("sst-light", "Set5", 4, "p", "basicsr", 4, ("psnr_y", "ssim_y"))
    res.images = [ImageResult("a", {"psnr_y": 32.0, "ssim_y": 0.9}, "shipped", (8, 8), False, 1, 0.1),
                  ImageResult("b", {"psnr_y": 33.0, "ssim_y": 0.92}, "shipped", (8, 8), False, 1, 0.1)]
    cmp = paper_comparison("sst-light", res)
    assert cmp["psnr_y"] == paper["psnr_y"]
    assert cmp["delta_psnr_y"] == pytest.approx(32.5 - paper["psnr_y"])
    assert cmp["delta_ssim_y"] == pytest.approx(0.91 - paper["ssim_y"])
    res.dataset = "DIV2K-val"
    assert paper_comparison("sst-light", res) is None
    assert paper_comparison(None, res) is None


# ------------------------------------------------------------------------------------------ output
def test_json_and_csv_schema(tmp_path: Path, capsys) -> None:
    hrs = _hr_set(tmp_path / "data" / "Set5" / "HR")
    _save(np.full((24, 24, 3), 128, np.uint8), tmp_path / "data" / "Set5" / "HR" / "flat.png")  # identical SR: +inf
    _hr_set(tmp_path / "data" / "other")
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    rc = main(["eval", "--model", "bicubic", "--dataset", "Set5,other", "--scale", "2,4",
               "--data-root", str(tmp_path / "data"), "--metrics", "psnr_y,ssim_y,psnr_rgb",
               "--json", str(js), "--csv", str(cs), "--compare-paper"])
    assert rc == 0

    def strict(name: str):
        raise AssertionError(f"non-standard JSON constant {name}")

    report = json.loads(js.read_text(), parse_constant=strict)
    assert set(report) == {"results", "settings"}
    results = report["results"]
    assert [(r["dataset"], r["scale"]) for r in results] == [("Set5", 2), ("Set5", 4), ("other", 2), ("other", 4)]
    for r in results:
        for key, typ in (("model", str), ("dataset", str), ("scale", int), ("lr_source", str), ("images", list),
                         ("num_images", int), ("seconds", float), ("crop_border", int), ("skipped", list)):
            assert isinstance(r[key], typ), key
        assert r["lr_source"] in ("shipped", "generated") and r["model"] == "bicubic"
        assert r["psnr_y"] == "inf" if r["dataset"] == "Set5" else isinstance(r["psnr_y"], float)
        assert isinstance(r["ssim_y"], float) and "psnr_rgb" in r and "paper" not in r  # bicubic: no paper row
        for im in r["images"]:
            assert {"name", "psnr_y", "ssim_y", "psnr_rgb", "lr_source", "hr_size", "seconds"} <= set(im)
    flat = next(im for im in results[0]["images"] if im["name"] == "flat")
    assert flat["psnr_y"] == "inf" and flat["ssim_y"] == pytest.approx(1.0)
    im0 = results[0]["images"][1]
    assert im0["name"] == "im0" and im0["psnr_y"] == _bicubic_metrics(generate_lr(mod_crop(hrs[0], 2), 2), hrs[0], 2)["psnr_y"]
    settings = report["settings"]
    for key in ("model", "device", "dtype", "tile", "tta", "crop_border", "metrics", "grayscale", "y_channel",
                "quantization", "lr_generation", "data_root", "scales", "datasets"):
        assert key in settings, key
    assert settings["crop_border"] == "scale" and settings["scales"] == [2, 4]
    # any number traces back to its weights and the sst that made it
    from sst_cli import __version__

    assert settings["sst_version"] == __version__
    assert set(settings["weights_sha256"]) == {"2", "4"} and all(len(h) == 64 for h in settings["weights_sha256"].values())

    with cs.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["model", "dataset", "scale", "image", "psnr_y", "ssim_y", "psnr_rgb", "lr_source",
                             "height", "width", "seconds"]
    assert len(rows) == sum(len(r["images"]) for r in results) == 2 * 3 + 2 * 2
    first = rows[1]
    assert (first["dataset"], first["scale"], first["image"]) == ("Set5", "2", "im0")
    assert float(first["psnr_y"]) == im0["psnr_y"]
    assert math.isinf(float(rows[0]["psnr_y"]))
    out = capsys.readouterr().out
    assert "inf" in out and "generated" in out


def test_json_to_stdout(tmp_path: Path, capsys) -> None:
    _hr_set(tmp_path / "S", 1)
    rc = main(["eval", "--model", "bicubic", "--dataset", str(tmp_path / "S"), "--scale", "3", "--json", "-"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["results"][0]["scale"] == 3 and report["results"][0]["lr_source"] == "generated"


def test_cli_rejects_bad_options(tmp_path: Path, capsys) -> None:
    _hr_set(tmp_path / "S", 1)
    for args, words in ((["--scale", "x4"], "--scale"), (["--metrics", "psnr_z"], "psnr_y"),
                        (["--tile", "big"], "--tile"), (["--crop-border", "-1"], "crop-border"),
                        (["--scale", "5"], "scale must be one of 2, 3, 4")):
        rc = main(["eval", "--model", "bicubic", "--dataset", "S", "--data-root", str(tmp_path), *args])
        err = capsys.readouterr().err
        assert rc == 2 and words in err and "Traceback" not in err, (args, err)  # usage errors exit 2


def test_data_root_from_environment(tmp_path: Path, monkeypatch, capsys) -> None:
    _hr_set(tmp_path / "Set14" / "HR", 1)
    monkeypatch.setenv("SST_DATA_ROOT", str(tmp_path))
    assert main(["eval", "--model", "bicubic", "--dataset", "set14", "--scale", "2", "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["data_root"] == str(tmp_path) and report["results"][0]["dataset"] == "Set14"


# ------------------------------------------------------------------------------------------ defaults
def test_dtype_auto_is_fp32_and_help_says_so(tmp_path: Path, monkeypatch, capsys) -> None:
    """`auto` asks the loader for fp32 on every device (a GPU included): the papers' tables are fp32."""
    import sst_cli.upscale.upscaler as upscaler_mod

    real, asked = upscaler_mod.load_upscaler, []

    def spy(*args, **kw):
        asked.append(kw["dtype"])
        return real(*args, **{**kw, "device": "cpu"})

    monkeypatch.setattr(upscaler_mod, "load_upscaler", spy)
    _hr_set(tmp_path / "S" / "HR", n=1)
    assert main(["eval", "--dataset", str(tmp_path / "S"), "--model", "bicubic", "--device", "cuda",
                 "--json", "-"]) == 0
    assert asked == ["fp32"]
    assert json.loads(capsys.readouterr().out)["settings"]["dtype"] == "float32"
    assert main(["eval", "--dataset", str(tmp_path / "S"), "--model", "bicubic", "--device", "cpu", "--dtype", "bf16"]) == 0
    assert asked[-1] == "bf16"
    assert "not float32" in capsys.readouterr().out  # an opt-in lower precision is labelled
    assert main(["eval", "--help"]) == 0
    assert "auto = fp32" in " ".join(capsys.readouterr().out.split())


def test_random_weights_are_seeded(tmp_path: Path, capsys) -> None:
    _hr_set(tmp_path / "S" / "HR", n=1)

    def scores(*extra: str) -> float:
        assert main(["eval", "--dataset", str(tmp_path / "S"), "--model", "sst-tiny", "--random-weights",
                     "--scale", "2", "--device", "cpu", "--json", "-", *extra]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["settings"]["seed"] == (int(extra[-1]) if extra else 0)
        return report["results"][0]["psnr_y"]

    torch.manual_seed(123)  # the global RNG does not decide the weights ...
    first = scores()
    torch.manual_seed(456)
    assert scores() == first  # ... the seed does: two runs agree
    assert scores("--seed", "1") != first
    state = torch.get_rng_state()
    scores()
    assert torch.equal(torch.get_rng_state(), state)  # and the caller's RNG is left as it was


def test_missing_weights_and_dataset_are_both_named(tmp_path: Path, capsys) -> None:
    """Issue 23: `sst eval --weights W --dataset Urban100` with neither there names both in one answer."""
    rc = main(["eval", "--weights", str(tmp_path / "W.pth"), "--dataset", "Urban100", "--data-root", str(tmp_path)])
    err = "".join(capsys.readouterr().err.split())  # long paths may be folded over lines
    assert rc == 1 and "Traceback" not in err
    assert "".join(f"weights file {tmp_path / 'W.pth'} does not exist".split()) in err
    assert "".join(f"Also, dataset Urban100 not found under {tmp_path}".split()) in err


def test_table_title_tells_weights_of_one_network_apart(tmp_path: Path, capsys) -> None:
    """Issue 23: the bundled sst-tiny and a user's own sst-tiny weights get different titles."""
    from sst_cli.cli.evaluate import render
    from sst_cli.model.weights import bundled_path

    _hr_set(tmp_path / "S", 1)
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(bundled_path(2).read_bytes())
    titles = []
    for extra in ([], ["--weights", str(mine)]):
        assert main(["eval", "--dataset", str(tmp_path / "S"), "-s", "2", "--json", "-", *extra]) == 0
        settings = json.loads(capsys.readouterr().out)["settings"]
        titles.append(render(EvalReport([], settings)).title)
    bundled, own = titles
    digest = settings["weights_sha256"]["2"][:8]
    assert bundled.startswith(f"sst-tiny (bundled sst-tiny x2 #{digest}) on cpu")
    assert own.startswith(f"sst-tiny ({mine} #{digest}) on cpu")  # same tensors, told apart by the file

