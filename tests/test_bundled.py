"""The bundled sst-tiny weights: present, described by their config, and better than bicubic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from conftest import data_path
from sst_cli.evaluation.datasets import mod_crop, read_rgb_u8, to_tensor
from sst_cli.evaluation.metrics import psnr
from sst_cli.model.bicubic import Bicubic, quantize_uint8
from sst_cli.model.loading import model_from_checkpoint
from sst_cli.model.registry import BUNDLED, create_model
from sst_cli.model.weights import bundled_path, load_checkpoint
from sst_cli.upscale.upscaler import load_upscaler

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {"dim": 32, "window_sizes": [8], "num_heads": [2], "ranks": [8],
            "n_blocks": 2, "exp_ratio": 2, "upsampler_type": "pixelshuffle_direct", "attn_type": "RIB"}


def test_bundled_weights_carry_their_config() -> None:
    total = sum(p.stat().st_size for p in (REPO / "checkpoints").rglob("*") if p.is_file())
    assert total < 10 * 2**20
    for scale in (2, 3, 4):
        ckpt = load_checkpoint(bundled_path(scale))
        assert ckpt.network_g is not None
        assert {k: ckpt.network_g[k] for k in EXPECTED} == EXPECTED
        assert ckpt.network_g["upscaling_factor"] == scale
        # the registry's sst-tiny (random weights, `sst profile`, `-m sst-tiny`) has the files' shape
        assert create_model(BUNDLED, scale).config == model_from_checkpoint(ckpt).config
        assert ckpt.meta["train_config"]["train_hr"]  # the recipe travels with the weights
        assert all(v.dtype == torch.float16 for v in ckpt.state_dict.values())


def test_default_model_beats_bicubic_on_set5_x4() -> None:
    """Fast sanity check on the two smallest Set5 images (the full figures are in checkpoints/README.md)."""
    data = data_path("Set5")
    up = load_upscaler(scale=4, device="cpu")  # no --model: the bundled model
    assert up.name == "sst-tiny" and up.scale == 4
    for name in ("butterfly", "woman"):
        hr = mod_crop(read_rgb_u8(data / "HR" / f"{name}.png")[0], 4)
        lr = to_tensor(read_rgb_u8(data / "LR_bicubic" / "X4" / f"{name}x4.png")[0])
        ours = psnr(quantize_uint8(up(lr)[0].clamp(0, 1).permute(1, 2, 0)), hr, 4)
        base = psnr(quantize_uint8(Bicubic(4)(lr)[0].clamp(0, 1).permute(1, 2, 0)), hr, 4)
        assert ours > base + 0.5, f"{name}: {ours:.2f} dB vs bicubic {base:.2f} dB"
        assert np.isfinite(ours)


def test_default_overlap_keeps_tiles_within_a_level_of_the_whole_image() -> None:
    """The bundled network reaches 21 input pixels, so tiles overlap by 24 (its 8-pixel window grid), not 32;
    its tiled output must stay within one 8-bit level of the whole-image output on a real photo."""
    from sst_cli.upscale.tiling import default_overlap, plan_tiles, upscale_tensor

    up = load_upscaler(scale=4, device="cpu")
    lr = to_tensor(read_rgb_u8(data_path("Set14") / "LR_bicubic" / "X2" / "baboonx2.png")[0])  # 250x240
    assert default_overlap(up, 128) == 24 and plan_tiles(up, *lr.shape[-2:], 128).count >= 4
    with torch.inference_mode():
        whole = upscale_tensor(up, lr).clamp(0, 1)
        tiled = upscale_tensor(up, lr, tile=128).clamp(0, 1)
    assert (tiled - whole).abs().max().item() * 255 < 1.0
