"""The training degradation mix: config, each degradation's effect, determinism, and the dataset using it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sst_cli.errors import SSTError
from sst_cli.model.bicubic import imresize_np
from sst_cli.training.config import from_dict, load_config, to_dict
from sst_cli.training.data import SRTrainSet
from sst_cli.training.degrade import KERNELS, DegradationMix, add_noise, blur, degrade, jpeg, resize


def stripes(period: int = 3, size: int = 96) -> np.ndarray:
    """Vertical black/white stripes: a pattern above the LR Nyquist rate that only antialiasing removes."""
    row = ((np.arange(size) // 1) % period == 0).astype(np.float32)
    return np.repeat(np.tile(row, (size, 1))[..., None], 3, axis=2)


def photo(size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.random((size // 8, size // 8, 3), dtype=np.float32)
    return np.clip(np.asarray(imresize_np(base, 8)), 0, 1).astype(np.float32)


def test_mixed_is_the_documented_defaults_and_mappings_override() -> None:
    assert from_dict({"model": "sst-light", "degradation": "mixed"}).degradation == DegradationMix()
    cfg = from_dict({"model": "sst-light", "degradation": {"jpeg": 0.5, "resize": {"cubic": 1}}})
    assert cfg.degradation.jpeg == 0.5 and cfg.degradation.resize == {"cubic": 1.0}
    assert cfg.degradation.noise == DegradationMix().noise  # the rest keep their defaults
    assert from_dict({"model": "sst-light"}).degradation is None  # default: MATLAB bicubic, the paper's recipe
    assert from_dict({"model": "sst-light", "degradation": "bicubic"}).degradation is None
    # The run's config round-trips (checkpoints store it as plain data)
    assert from_dict(to_dict(from_dict({"model": "sst-light", "degradation": "mixed"}))).degradation == DegradationMix()


@pytest.mark.parametrize("value, says", [
    ({"jpeg": 2}, "config key 'degradation.jpeg' must be less than or equal to 1"),
    ({"resize": {"bicubik": 1}}, "config key 'degradation.resize.bicubik' must be 'matlab'"),
    ({"noise_sigma": [5, 1]}, "config key 'degradation.noise_sigma' must be [low, high]"),
    ({"resize": {"cubic": 0}}, "resize needs at least one kernel with a positive weight"),
    ({"sharpen": 1}, "config key 'degradation.sharpen' is not a setting there"),
    ("fancy", "must be 'mixed', 'bicubic' or a mapping"),
])
def test_bad_mix_settings_are_one_sentence_naming_the_key(value: object, says: str) -> None:
    with pytest.raises(SSTError) as err:
        from_dict({"model": "sst-light", "degradation": value})
    assert says in str(err.value) and "Value error" not in str(err.value)


def test_mix_cannot_be_combined_with_paired_lr(tmp_path) -> None:
    with pytest.raises(SSTError, match="cannot be combined with paired LR"):
        from_dict({"model": "sst-light", "degradation": "mixed", "train_hr": ["a"], "train_lr": ["b"]})


def test_every_kernel_gives_the_lr_size() -> None:
    hr = photo(64)
    for k in KERNELS:
        out = resize(hr, (16, 16), k)
        assert out.shape == (16, 16, 3) and out.dtype == np.float32, k
    np.testing.assert_array_equal(resize(hr, (16, 16), "matlab"), imresize_np(hr, 1 / 4))


def test_antialiased_kernels_remove_what_the_others_alias() -> None:
    """Stripes of period 3 px at x4: antialiased kernels average them to grey, OpenCV's plain ones alias
    (the box of INTER_AREA lies between)."""
    hr = stripes()
    spread = {k: float(resize(hr, (24, 24), k).std()) for k in KERNELS}
    for k in ("matlab", "cubic_aa", "linear_aa", "lanczos_aa"):
        assert spread[k] < 0.05, (k, spread[k])
    for k in ("cubic", "linear", "lanczos"):
        assert spread[k] > 0.2, (k, spread[k])
    assert spread["matlab"] < spread["area"] < spread["linear"]


def test_blur_noise_and_jpeg_each_do_what_they_say() -> None:
    hr = stripes(period=4, size=64)
    assert blur(hr, 1.0).std() < hr.std()  # blur lowers contrast of fine detail
    np.testing.assert_allclose(blur(hr, 1.0)[8:-8, 8:-8].mean(), hr[8:-8, 8:-8].mean(), atol=1e-3)  # keeps the mean
    grey = np.full((128, 128, 3), 0.5, np.float32)
    for poisson in (False, True):
        noisy = add_noise(grey, 4.0, poisson, np.random.default_rng(0))
        assert abs(float(noisy.std()) * 255 - 4.0) < 0.4, poisson  # std at mid-grey is what was asked
    img8 = (photo(64) * 255).round().astype(np.uint8)
    low, high = jpeg(img8, 60), jpeg(img8, 95)
    assert low.shape == img8.shape and low.dtype == np.uint8
    err = lambda a: np.abs(a.astype(int) - img8).mean()  # noqa: E731
    assert err(high) < err(low)  # quality means what it says


def test_degrade_is_deterministic_8bit_and_draws_every_setting() -> None:
    hr = photo(64)
    mix = DegradationMix()
    a = degrade(hr, 4, mix, np.random.default_rng(7))
    b = degrade(hr, 4, mix, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (16, 16, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a * 255, np.round(a * 255))  # on the 8-bit grid, as test-time LR files are
    # With everything forced on, the result differs from plain MATLAB bicubic; with everything off it equals it.
    plain = np.round(np.clip(imresize_np(hr, 1 / 4), 0, 1) * 255) / 255
    off = DegradationMix(resize={"matlab": 1}, blur=0, noise=0, jpeg=0)
    np.testing.assert_array_equal(degrade(hr, 4, off, np.random.default_rng(0)), plain)
    on = DegradationMix(resize={"matlab": 1}, blur=1, noise=1, jpeg=1)
    assert np.abs(degrade(hr, 4, on, np.random.default_rng(0)) - plain).mean() > 1 / 255


def test_dataset_with_the_mix_repeats_per_counter(tmp_path) -> None:
    for i in range(2):
        Image.fromarray((photo(96, seed=i) * 255).round().astype(np.uint8)).save(tmp_path / f"{i}.png")
    files = sorted(tmp_path.glob("*.png"))
    ds = SRTrainSet(files, 2, 16, seed=3, degradation=DegradationMix())
    lr1, hr1 = ds[5]
    lr2, hr2 = SRTrainSet(files, 2, 16, seed=3, degradation=DegradationMix())[5]
    assert lr1.shape == (3, 16, 16) and hr1.shape == (3, 32, 32)
    assert (lr1 == lr2).all() and (hr1 == hr2).all()
    assert not (ds[6][0].shape != lr1.shape)  # every sample has the LR patch size


def test_bundled_configs_use_the_mix() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    for s in (2, 3, 4):
        assert load_config(root / f"sst-tiny_x{s}.yaml").degradation == DegradationMix()


def test_the_kernel_names_are_the_filters_io_provides() -> None:
    from sst_cli.io.resample import CV2_FILTERS, PIL_FILTERS

    assert set(KERNELS) == {"matlab", *CV2_FILTERS, *PIL_FILTERS}
