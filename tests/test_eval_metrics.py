"""`sst eval --metrics` beyond PSNR/SSIM: the metric registry, NIQE through the command (the issue's acceptance),
pyiqa's metrics through a strict stand-in of ``iqa.load_scorer``, the missing extra, and ``--lq-only`` folders."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DATA, data_path
from sst_cli.cli import main
from sst_cli.errors import SSTError, UsageError
from sst_cli.evaluation import iqa
from sst_cli.evaluation.datasets import generate_lr, mod_crop, read_rgb_u8
from sst_cli.evaluation.metrics import psnr
from sst_cli.evaluation.niqe import niqe
from sst_cli.evaluation.registry import METRICS, parse_metrics
from sst_cli.evaluation.report import EvalOptions
from sst_cli.evaluation.runner import run_eval
from sst_cli.model.bicubic import imresize, quantize_uint8
from test_eval import _image, _save

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "official"
NIQE_REF = json.loads(data_path("metrics", "niqe_basicsr.json").read_text())


def _bicubic_sr(lr: np.ndarray, s: int) -> np.ndarray:
    """The `bicubic` model's uint8 output, computed here without the runner."""
    x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1).float() / 255
    return quantize_uint8(imresize(x, s).permute(1, 2, 0))


# ------------------------------------------------------------------------------------------ a strict pyiqa stand-in
def _fake_value(name: str, sr: np.ndarray, hr: np.ndarray | None) -> float:
    """What the stand-in scores: simple statistics of the whole images, different for every metric."""
    a = sr.astype(np.float64) / 255
    if hr is not None:
        diff = np.abs(a - hr.astype(np.float64) / 255).mean()
        return {"lpips": diff, "dists": diff / 2}[name]
    return {"musiq": 100 * a.mean(), "maniqa": a.std(), "clipiqa": a[..., 1].mean()}[name]


class FakeIqa:
    """``iqa.load_scorer`` as its contract says, refusing what the real adapter would refuse: unknown names, a
    missing HR for LPIPS/DISTS, an HR for the no-reference ones, anything but uint8 HxWx3 RGB, HR and SR of
    different sizes. Counts the loads (once per run, not per image)."""

    def __init__(self) -> None:
        self.loads: list[tuple[str, str]] = []
        self.calls: dict[str, int] = {}

    def load_scorer(self, name: str, device: torch.device | str):
        metric = iqa.PYIQA_METRICS[name]  # KeyError for a name pyiqa's adapter does not have
        torch.device(device)  # a device torch understands
        self.loads.append((name, str(device)))

        def check(img: object, what: str) -> None:
            if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3):
                raise TypeError(f"{name}: {what} must be a uint8 HxWx3 array, got {type(img)} "
                                f"{getattr(img, 'dtype', None)} {getattr(img, 'shape', None)}")

        def score(sr: np.ndarray, hr: np.ndarray | None) -> float:
            check(sr, "sr")
            if metric.full_reference:
                if hr is None:
                    raise ValueError(f"{name} is full-reference: hr is required")
                check(hr, "hr")
                if hr.shape != sr.shape:
                    raise ValueError(f"{name}: sr {sr.shape} and hr {hr.shape} differ")
            elif hr is not None:
                raise ValueError(f"{name} is no-reference: hr must be None")
            self.calls[name] = self.calls.get(name, 0) + 1
            return _fake_value(name, sr, hr)

        return score


@pytest.fixture
def fake_iqa(monkeypatch: pytest.MonkeyPatch) -> FakeIqa:
    fake = FakeIqa()
    monkeypatch.setattr(iqa, "load_scorer", fake.load_scorer)
    return fake


# ------------------------------------------------------------------------------------------ the registry
def test_registry_names_aliases_and_directions() -> None:
    assert parse_metrics("psnr,ssim") == ("psnr_y", "ssim_y")  # the field's PSNR/SSIM are the Y-channel ones
    assert parse_metrics("PSNR, niqe,psnr_y ,LPIPS") == ("psnr_y", "niqe", "lpips")
    assert parse_metrics(None) == parse_metrics("") == ("psnr_y", "ssim_y")  # today's default
    assert parse_metrics(None, lq_only=True) == ("niqe",)
    assert parse_metrics(["musiq", "niqe"], lq_only=True) == ("musiq", "niqe")
    with pytest.raises(UsageError, match=r"^unknown metric 'psnr_z': metrics are a comma list of psnr, ssim, lpips"):
        parse_metrics("psnr,psnr_z")
    with pytest.raises(UsageError, match=r"^lpips, psnr_y compare with ground truth, which --lq-only datasets do "
                                         r"not have; choose from niqe, musiq, maniqa, clipiqa\.$"):
        parse_metrics("lpips,niqe,psnr", lq_only=True)
    assert {n: (m.full_reference, m.lower_better, m.computed_by) for n, m in METRICS.items()} == {
        "psnr_y": (True, False, "sst"), "ssim_y": (True, False, "sst"), "psnr_rgb": (True, False, "sst"),
        "ssim_rgb": (True, False, "sst"), "niqe": (False, True, "sst"), "lpips": (True, True, "pyiqa"),
        "dists": (True, True, "pyiqa"), "musiq": (False, False, "pyiqa"), "maniqa": (False, False, "pyiqa"),
        "clipiqa": (False, False, "pyiqa")}
    assert METRICS["niqe"].column == "NIQE ↓" and METRICS["musiq"].column == "MUSIQ ↑"
    assert METRICS["psnr_y"].column == "PSNR-Y"  # today's table, unchanged


def test_registry_agrees_with_the_pyiqa_adapter() -> None:
    """One fact, two places must not drift: what iqa.py says of each pyiqa metric is what the registry says."""
    assert set(iqa.PYIQA_METRICS) == {n for n, m in METRICS.items() if m.computed_by == "pyiqa"}
    for name, m in iqa.PYIQA_METRICS.items():
        assert (m.name, m.full_reference, m.lower_better) == (name, METRICS[name].full_reference,
                                                              METRICS[name].lower_better)


def test_options_resolve_names_for_the_library() -> None:
    assert EvalOptions(datasets=[], metrics=("psnr", "SSIM")).metrics == ("psnr_y", "ssim_y")
    assert EvalOptions(datasets=[], lq_only=True).metrics == ("niqe",)
    assert EvalOptions(datasets=[], lq_only=True).crop_for(4) == 0 and EvalOptions(datasets=[]).crop_for(4) == 4
    with pytest.raises(UsageError, match="compares with ground truth"):
        EvalOptions(datasets=[], lq_only=True, metrics=("dists",))


# ------------------------------------------------------------------------------------------ NIQE: the acceptance
def test_cli_niqe_on_set5_equals_basicsr(tmp_path: Path, capsys) -> None:
    """`sst eval -m bicubic --dataset Set5 -s 4 --metrics niqe` gives BasicSR's NIQE of every SR image (stored from
    the official code; live too when the reference folder is there) and their mean."""
    out = tmp_path / "r.json"
    rc = main(["eval", "-m", "bicubic", "--dataset", "Set5", "-s", "4", "--metrics", "niqe", "--data-root", str(DATA),
               "--json", str(out), "--save-dir", str(tmp_path / "sr")])
    assert rc == 0
    text = capsys.readouterr().out
    want = NIQE_REF["bicubic_x4_set5"]
    r = json.loads(out.read_text())["results"][0]
    assert (r["dataset"], r["scale"], r["crop_border"], r["lr_source"]) == ("Set5", 4, 4, "shipped")
    assert {im["name"]: im["niqe"] for im in r["images"]} == pytest.approx(want["images"], abs=1e-6, rel=0)
    assert r["niqe"] == pytest.approx(want["mean"], abs=1e-6, rel=0)
    assert "NIQE ↓" in text and f"{want['mean']:.4f}" in text and "calculate_niqe" in text
    if (OFFICIAL / "basicsr" / "metrics" / "niqe.py").is_file():  # BasicSR on the very images sst measured
        import cv2

        sys.path.insert(0, str(OFFICIAL))
        try:
            from basicsr.metrics.niqe import calculate_niqe
        finally:
            sys.path.remove(str(OFFICIAL))
        for im in r["images"]:
            bgr = cv2.imread(str(tmp_path / "sr" / "Set5" / "X4" / f"{im['name']}.png"))
            with np.errstate(all="ignore"):
                assert calculate_niqe(bgr, 4) == pytest.approx(im["niqe"], abs=1e-6, rel=0), im["name"]


def test_niqe_beside_psnr_and_compare_paper_says_the_paper_has_none(tmp_path: Path, capsys) -> None:
    hr = _image(200, 300, 4)
    _save(hr, tmp_path / "S" / "HR" / "big.png")
    _save(_image(40, 30, 5), tmp_path / "S" / "HR" / "small.png")  # too small for NIQE: skipped with the reason
    rc = main(["eval", "-m", "bicubic", "--dataset", "S", "--data-root", str(tmp_path), "-s", "2",
               "--metrics", "psnr,niqe", "--compare-paper", "--json", str(tmp_path / "r.json")])
    assert rc == 0
    text = " ".join(capsys.readouterr().out.split())
    r = json.loads((tmp_path / "r.json").read_text())["results"][0]
    sr = _bicubic_sr(generate_lr(mod_crop(hr, 2), 2), 2)
    assert [im["name"] for im in r["images"]] == ["big"]
    assert r["images"][0]["niqe"] == niqe(sr, 2) and r["images"][0]["psnr_y"] == psnr(sr, mod_crop(hr, 2), 2)
    assert r["skipped"] == [{"name": "small", "reason": "NIQE needs at least two 96x96 blocks and this image is "
                                                        "26x36 after a crop border of 2."}]
    assert "the SST paper reports Y-PSNR/SSIM only; it has no NIQE figures" in text


# ------------------------------------------------------------------------------------------ pyiqa's metrics
def test_pyiqa_metrics_load_once_per_run_and_fill_table_json_csv(tmp_path: Path, fake_iqa: FakeIqa, capsys) -> None:
    hrs = {name: _image(h, w, seed) for name, (h, w, seed) in {"a": (42, 50, 1), "b": (37, 44, 2)}.items()}
    for name, img in hrs.items():
        _save(img, tmp_path / "One" / "HR" / f"{name}.png")
        _save(img, tmp_path / "Two" / f"{name}.png")
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    rc = main(["eval", "-m", "bicubic", "--dataset", "One,Two", "--data-root", str(tmp_path), "-s", "2,4",
               "--metrics", "psnr,lpips,dists,musiq,maniqa,clipiqa", "--json", str(js), "--csv", str(cs)])
    assert rc == 0
    text = capsys.readouterr().out
    # loaded once for the run (2 datasets x 2 scales x 2 images), on the evaluation device
    assert sorted(fake_iqa.loads) == [(n, "cpu") for n in ("clipiqa", "dists", "lpips", "maniqa", "musiq")]
    assert fake_iqa.calls == dict.fromkeys(("lpips", "dists", "musiq", "maniqa", "clipiqa"), 8)
    for header in ("PSNR-Y", "LPIPS ↓", "DISTS ↓", "MUSIQ ↑", "MANIQA ↑", "CLIPIQA ↑"):
        assert header in text, header
    assert "by pyiqa, on the whole SR image" in " ".join(text.split())
    report = json.loads(js.read_text())
    info = report["settings"]["metric_info"]
    assert {n: (i["better"], i["reference"], i["computed_by"]) for n, i in info.items()} == {
        "psnr_y": ("higher", "full-reference", "sst"), "lpips": ("lower", "full-reference", "pyiqa"),
        "dists": ("lower", "full-reference", "pyiqa"), "musiq": ("higher", "no-reference", "pyiqa"),
        "maniqa": ("higher", "no-reference", "pyiqa"), "clipiqa": ("higher", "no-reference", "pyiqa")}
    for r in report["results"]:
        s = r["scale"]
        for im in r["images"]:
            hr = mod_crop(hrs[im["name"]], s)
            sr = _bicubic_sr(generate_lr(hr, s), s)
            assert im["psnr_y"] == psnr(sr, hr, s)  # sst's metrics after the crop border ...
            for name in ("lpips", "dists"):  # ... pyiqa's on the whole image
                assert im[name] == _fake_value(name, sr, hr), (name, im["name"])
            for name in ("musiq", "maniqa", "clipiqa"):
                assert im[name] == _fake_value(name, sr, None), (name, im["name"])
        assert r["lpips"] == pytest.approx(np.mean([im["lpips"] for im in r["images"]]))
    with cs.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[4:10] == ["psnr_y", "lpips", "dists", "musiq", "maniqa", "clipiqa"] and len(rows) == 8
    assert float(rows[0]["musiq"]) == report["results"][0]["images"][0]["musiq"]


def test_missing_pyiqa_is_one_sentence_naming_the_extra(tmp_path: Path, monkeypatch, capsys) -> None:
    """With sst-cli[iqa] absent, `--metrics lpips` ends in one sentence, before any model runs."""
    import sst_cli.upscale.upscaler as upscaler_mod

    monkeypatch.setitem(sys.modules, "pyiqa", None)  # what Python does for a package that is not installed
    monkeypatch.setattr(upscaler_mod, "load_upscaler", lambda *a, **k: pytest.fail("a model was loaded"))
    _save(_image(40, 40, 1), tmp_path / "S" / "a.png")
    for metrics in ("lpips", "psnr,musiq"):
        rc = main(["eval", "-m", "bicubic", "--dataset", str(tmp_path / "S"), "--metrics", metrics])
        err = capsys.readouterr().err
        assert rc == 1 and "Traceback" not in err, err
        assert "sst-cli[iqa]" in err and err.count("error:") == 1 and err.strip().count(". ") == 0, err


# ------------------------------------------------------------------------------------------ --lq-only
def _lq_folder(root: Path) -> dict[str, np.ndarray]:
    imgs = {"p1": _image(60, 70, 11), "p2": _image(50, 99, 12), "tiny": _image(20, 20, 13)}
    for name, img in imgs.items():
        _save(img, root / f"{name}.png")
    return imgs


def test_lq_only_scores_each_upscaled_input_without_ground_truth(tmp_path: Path, capsys) -> None:
    lq = _lq_folder(tmp_path / "RealSet")
    rc = main(["eval", "-m", "bicubic", "--dataset", str(tmp_path / "RealSet"), "--lq-only", "-s", "4",
               "--json", str(tmp_path / "r.json"), "--save-dir", str(tmp_path / "sr")])
    assert rc == 0
    text = " ".join(capsys.readouterr().out.split())
    report = json.loads((tmp_path / "r.json").read_text())
    r = report["results"][0]
    assert report["settings"]["metrics"] == ["niqe"] and report["settings"]["lq_only"] is True
    assert (r["dataset"], r["layout"], r["lr_source"], r["crop_border"]) == ("RealSet", "lq", "lq", 0)
    assert [im["name"] for im in r["images"]] == ["p1", "p2"]
    for im in r["images"]:
        sr = _bicubic_sr(lq[im["name"]], 4)
        assert im["niqe"] == niqe(sr, 0) and im["hr_size"] == list(sr.shape[:2])
        saved, _ = read_rgb_u8(tmp_path / "sr" / "RealSet" / "X4" / f"{im['name']}.png")
        assert np.array_equal(saved, sr)
    assert r["skipped"][0]["name"] == "tiny" and "two 96x96 blocks" in r["skipped"][0]["reason"]
    assert "NIQE ↓" in text and "crop border = 0" in text and "--lq-only: no ground truth" in text
    # a crop border, when given, applies as for benchmarks
    res = run_eval(EvalOptions(datasets=[str(tmp_path / "RealSet")], scales=[4], model="bicubic", device="cpu",
                               lq_only=True, crop_border=4)).results[0]
    assert res.images[0].metrics == {"niqe": niqe(_bicubic_sr(lq["p1"], 4), 4)}


def test_lq_only_with_pyiqa_no_reference_metrics(tmp_path: Path, fake_iqa: FakeIqa) -> None:
    lq = _lq_folder(tmp_path / "LQ")
    res = run_eval(EvalOptions(datasets=[str(tmp_path / "LQ")], scales=[2], model="bicubic", device="cpu",
                               lq_only=True, metrics=("musiq", "clipiqa"))).results[0]
    assert [im.name for im in res.images] == ["p1", "p2", "tiny"]  # no NIQE: no size rule
    for im in res.images:
        sr = _bicubic_sr(lq[im.name], 2)
        assert im.metrics == {"musiq": _fake_value("musiq", sr, None), "clipiqa": _fake_value("clipiqa", sr, None)}
    assert fake_iqa.loads == [("musiq", "cpu"), ("clipiqa", "cpu")]


def test_lq_only_refusals(tmp_path: Path, capsys) -> None:
    _lq_folder(tmp_path / "LQ")
    rc = main(["eval", "-m", "bicubic", "--dataset", str(tmp_path / "LQ"), "--lq-only", "--metrics", "niqe,lpips"])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2 and "lpips compares with ground truth, which --lq-only datasets do not have" in err
    # a benchmark has ground truth: say so rather than score nothing
    rc = main(["eval", "-m", "bicubic", "--dataset", "Set5", "--data-root", str(DATA), "--lq-only"])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 1 and "drop --lq-only to measure against it" in err and "Traceback" not in err
    with pytest.raises(SSTError, match="no images"):
        run_eval(EvalOptions(datasets=[str(tmp_path)], model="bicubic", device="cpu", lq_only=True))


def test_a_dataset_given_as_dot_is_named_after_its_folder(tmp_path, monkeypatch) -> None:
    from sst_cli.evaluation.datasets import resolve_dataset

    folder = tmp_path / "holiday_photos"
    folder.mkdir()
    monkeypatch.chdir(folder)
    assert resolve_dataset(".").name == "holiday_photos"
    assert resolve_dataset(f"../{folder.name}").name == "holiday_photos"
