"""NIQE (sst_cli/evaluation/niqe.py) against BasicSR's calculate_niqe: stored values always, the official code live
when the reference folder is beside the repository (``../shared/reference/official``; skipped otherwise)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import data_path
from make_niqe_fixtures import CASES, basicsr_niqe, bicubic_sr, case_image
from sst_cli.evaluation import niqe as N

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = REPO.parent / "shared" / "reference" / "official"
REF = json.loads(data_path("metrics", "niqe_basicsr.json").read_text())
STORED = {c["id"]: c for c in REF["cases"]}


@pytest.fixture(scope="module")
def official():
    """BasicSR's calculate_niqe, imresize and to_y_channel, run from the reference folder as they are."""
    if not (OFFICIAL / "basicsr" / "metrics" / "niqe.py").is_file():
        pytest.skip(f"the official reference code is not at {OFFICIAL}")
    pytest.importorskip("scipy")
    pytest.importorskip("cv2")
    sys.path.insert(0, str(OFFICIAL))
    try:
        from basicsr.metrics.metric_util import to_y_channel
        from basicsr.metrics.niqe import calculate_niqe
        from basicsr.utils.matlab_functions import imresize
    finally:
        sys.path.remove(str(OFFICIAL))
    return {"niqe": calculate_niqe, "imresize": imresize, "to_y": to_y_channel}


def test_case_list_matches_the_stored_values() -> None:
    """The stored file was made from exactly these cases (re-run tests/make_niqe_fixtures.py after editing them)."""
    assert [(c["id"], c["image"], c["crop_border"]) for c in REF["cases"]] == CASES


@pytest.mark.parametrize("case_id", [c[0] for c in CASES])
def test_niqe_equals_basicsr_stored(case_id: str) -> None:
    """sst's NIQE equals the value BasicSR's calculate_niqe gave (stored in tests/data) to 1e-6; the images BasicSR
    cannot score (one 96x96 block, none with texture, under 96 rows) are refused in one sentence."""
    case = STORED[case_id]
    img = case_image(case["image"])
    if case["niqe"] is None:
        with pytest.raises(N.NiqeUndefined, match=r"^NIQE (needs at least two 96x96 blocks|is undefined)"):
            N.niqe(img, case["crop_border"])
    else:
        assert N.niqe(img, case["crop_border"]) == pytest.approx(case["niqe"], abs=1e-6, rel=0)


def test_niqe_equals_basicsr_live(official) -> None:
    """The same cases and two more seeded random images, through the official code in this process."""
    rng = np.random.default_rng(7)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8), 5, 0), 5, 1)
    extra = [("noise", rng.integers(0, 256, (193, 250, 3), dtype=np.uint8), 2),
             ("blocky", np.clip(smooth.astype(int) + rng.integers(-9, 10, smooth.shape), 0, 255).astype(np.uint8), 4)]
    cases = [(cid, case_image(spec), crop) for cid, spec, crop in CASES] + extra
    for cid, img, crop in cases:
        try:
            want = basicsr_niqe(official["niqe"], img, crop)
        except Exception:  # noqa: BLE001 - BasicSR fails inside numpy/torch where NIQE is undefined
            with pytest.raises(N.NiqeUndefined):
                N.niqe(img, crop)
            continue
        assert N.niqe(img, crop) == pytest.approx(want, abs=1e-6, rel=0), cid
        if cid in STORED:  # and the stored file still says what the official code says
            assert STORED[cid]["niqe"] == pytest.approx(want, abs=1e-9, rel=0), cid


def test_y_channel_is_basicsrs_bit_for_bit(official) -> None:
    """Y from RGB in BasicSR's BGR order and float64/float32 steps: equal, before rounding too."""
    for spec in ("Set5/HR/baby.png", "Set14/HR/bridge.png", "pattern:203x299:1"):
        img = case_image(spec)
        want = official["to_y"](img[..., ::-1].astype(np.float32))[..., 0]
        got = N.y_channel(img)
        assert got.dtype == np.float32 and np.array_equal(got, want), spec


def test_y_channel_is_bt601() -> None:
    """Independently of BasicSR: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 on [0, 255]."""
    img = case_image("pattern:64x80:9")
    rgb = img.astype(np.float64)
    want = 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0
    assert np.abs(N.y_channel(img) - want).max() < 1e-4
    grey = img[..., 0]
    assert np.array_equal(N.y_channel(grey), grey.astype(np.float32))  # a (H, W) image is its own Y


def test_half_scale_resize_is_basicsrs_imresize(official) -> None:
    """NIQE's second scale uses sst's MATLAB-style bicubic; it equals BasicSR's imresize bit for bit on NIQE's
    inputs (float32 Y / 255, halved with antialiasing), odd sizes included."""
    from sst_cli.model.bicubic import imresize_np

    for spec, crop in (("Set5/HR/baby.png", 0), ("pattern:203x299:1", 3), ("pattern:291x197:2", 4)):
        y = N.y_channel(case_image(spec))
        if crop:
            y = y[crop:-crop, crop:-crop]
        y = y.round()[: y.shape[0] // 96 * 96, : y.shape[1] // 96 * 96] / 255.0
        want = official["imresize"](y, scale=0.5, antialiasing=True)
        got = imresize_np(y, 0.5, antialias=True)
        assert got.dtype == want.dtype == np.float32 and np.array_equal(got, want), spec


def test_smoothing_is_scipy_convolve_bit_for_bit() -> None:
    """The 7x7 local mean equals scipy.ndimage.convolve(mode='nearest') exactly (scipy: a test witness only)."""
    ndimage = pytest.importorskip("scipy.ndimage")
    w = N.gaussian_window()
    for spec in ("Set5/HR/bird.png", "pattern:203x299:1"):
        y = N.y_channel(case_image(spec)).round()
        for img in (y, np.square(y)):
            want = ndimage.convolve(img, w, mode="nearest")
            got = N._smooth(img, w)
            assert got.dtype == want.dtype == np.float32 and np.array_equal(got, want), spec


def test_gaussian_window_equals_basicsrs() -> None:
    """sst computes the 7x7 window (sigma 7/6); BasicSR ships it. Equal to float64 rounding (BasicSR's sum was
    taken in another order: at most 2 units in the last place)."""
    w, stored = N.gaussian_window(), np.array(REF["gaussian_window"])
    assert w.shape == (7, 7) and np.abs(w - stored).max() < 5e-17
    assert w.sum() == pytest.approx(1.0, abs=1e-15) and np.array_equal(w, w.T) and np.array_equal(w, w[::-1, ::-1])
    assert w[3, 3] / w[3, 4] == pytest.approx(np.exp(1 / (2 * (7 / 6) ** 2)), rel=1e-14)  # the sigma, independently
    if (OFFICIAL / "basicsr" / "metrics" / "niqe_pris_params.npz").is_file():
        live = np.load(OFFICIAL / "basicsr" / "metrics" / "niqe_pris_params.npz")["gaussian_window"]
        assert np.array_equal(live, stored)


def test_pristine_model_is_the_published_one() -> None:
    """The shipped npz holds BasicSR's two arrays unchanged (their sha256, stored from the official file)."""
    mu, cov = N.pristine_model()
    assert mu.shape == (1, 36) and cov.shape == (36, 36) and mu.dtype == cov.dtype == np.float64
    for key, arr in (("mu_pris_param", mu), ("cov_pris_param", cov)):
        assert hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest() == REF["pristine_sha256"][key]
    assert np.allclose(cov, cov.T) and np.linalg.eigvalsh(cov).min() > 0
    official_npz = OFFICIAL / "basicsr" / "metrics" / "niqe_pris_params.npz"
    if official_npz.is_file():
        live = np.load(official_npz)
        assert np.array_equal(live["mu_pris_param"], mu) and np.array_equal(live["cov_pris_param"], cov)


def test_bicubic_set5_sr_values_are_basicsrs(official) -> None:
    """The stored bicubic x4 Set5 values (the CLI acceptance in test_eval.py) are BasicSR's on BasicSR's own SR."""
    want = REF["bicubic_x4_set5"]
    for name, value in want["images"].items():
        sr = bicubic_sr(official["imresize"], case_image(f"Set5/LR_bicubic/X4/{name}x4.png"), 4)
        assert basicsr_niqe(official["niqe"], sr, 4) == pytest.approx(value, abs=1e-9, rel=0), name


def test_size_rule() -> None:
    """At least two whole 96x96 blocks after the crop border, as BasicSR needs (it fails inside numpy otherwise)."""
    N.check_size(96, 192)
    N.check_size(200, 104, 4)
    for h, w, crop in ((96, 96, 0), (95, 400, 0), (200, 200, 5), (192, 100, 4), (8, 8, 4)):
        with pytest.raises(N.NiqeUndefined, match="needs at least two 96x96 blocks"):
            N.check_size(h, w, crop)


def test_lower_for_a_sharper_image() -> None:
    """A sanity check independent of BasicSR: the bicubic x4 of Set5's LR scores worse (higher) than the HR."""
    from sst_cli.model.bicubic import imresize_np, quantize_uint8

    for name in ("baby", "bird", "woman"):
        hr = case_image(f"Set5/HR/{name}.png")
        sr = quantize_uint8(imresize_np(case_image(f"Set5/LR_bicubic/X4/{name}x4.png") / 255.0, 4))
        assert N.niqe(hr, 4) + 1 < N.niqe(sr, 4), name


def test_importing_niqe_needs_neither_scipy_nor_torch() -> None:
    """NIQE works in every install: scipy is not a dependency of sst, and torch only comes for the resize."""
    code = ("import sys; import sst_cli.evaluation.niqe\n"
            "print('scipy' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["False", "False"], out.stderr
