"""Regenerate the derived files in tests/data from the official SST code. Not a test: pytest never runs it.

    .venv/bin/pip install einops            # the official code needs it; the project does not
    .venv/bin/python tests/make_fixtures.py [--shared ../shared] [--only NAME ...]

Needs the read-only reference folder next to the repository (``../shared``, or ``--shared PATH``):

- ``reference/official`` — the authors' network code (MIT licence, commit in ``reference/official/COMMIT``).
  It is put on ``sys.path`` and run as it is; nothing of it is copied into this repository.
- ``reference/manifests/*.json`` — packed losslessly into ``tests/data/manifests.json.gz``.

What it writes (see tests/data/README.md for the formats):

- ``tests/data/fixtures/<name>.npz`` for each entry of ``FIXTURES`` below: the official network with
  re-drawn weights, run on a random input, with the same keys as the two fixtures copied from
  ``../shared/reference/fixtures`` (``meta_json``, ``input``, ``output``, ``output_bf16attn``,
  ``state_dict/<key>``). ``output`` is the official forward with its attention in float32 (its
  ``.to(torch.bfloat16)`` casts are made to mean float32 inside this process only), ``output_bf16attn``
  the official default.
- ``tests/data/manifests.json.gz``.
- ``tests/data/fixtures/<name>.npz`` for each entry of ``SSTREAL_FIXTURES``: the official ``EDMUNet`` (SSTReal)
  with re-drawn weights, called directly or through the authors' one-step sampling (see ``make_sstreal_fixture``),
  and ``tests/data/manifests_sstreal.json.gz``: the key/shape manifest of the released ``SSTReal_X4.yaml`` network.

The Set5/Set14 images, the two shared fixtures and the metric references are plain copies of
``../shared/data`` and ``../shared/reference`` (see tests/data/README.md); this script does not touch them.
The output is deterministic for a given torch build (the fixtures were made with torch 2.13.0 on CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import importlib
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"

# name -> (network_g without "type", seed, input (H, W)). Small networks that still cover what the two
# copied fixtures do not: the "+" windows (48 and 96 wide), x2, and reflect padding at every window size.
FIXTURES: dict[str, tuple[dict, int, tuple[int, int]]] = {
    # Half of the "+" window list, two blocks, the pixelshuffle upsampler (intermediate 16) at x2.
    # 40x52 pads to 48x64 (w16), 64x64 (w32) and 48x96 (w48).
    "fixture_tinyplus_pixelshuffle_X2_40x52": (
        {"dim": 24, "window_sizes": [16, 32, 48], "num_heads": [3, 3, 3], "ranks": [8, 8, 12], "n_blocks": 2,
         "exp_ratio": 2, "attn_type": "RIB", "rib_hidden_dim": 32, "rib_n_freqs": 10, "upscaling_factor": 2,
         "upsampler_type": "pixelshuffle", "gate_type": "DWC", "intermediate_dim": 16},
        3, (40, 52)),
    # The full "+" window list of sst-light+/sst+/sst-l+/sst-xl+ (up to 96x96), pixelshuffle_direct at x2,
    # head dim 12 (not a multiple of 8). 50x61 is the smallest kind of input the official reflect padding
    # accepts for 96-wide windows (each side > 48); it pads to 96x96 for w48 and w96.
    "fixture_plus96_pixelshuffledirect_X2_50x61": (
        {"dim": 24, "window_sizes": [16, 32, 48, 32, 48, 96], "num_heads": [2, 2, 2, 2, 2, 2],
         "ranks": [8, 8, 8, 12, 12, 12], "n_blocks": 1, "exp_ratio": 1.5, "attn_type": "RIB", "rib_hidden_dim": 32,
         "rib_n_freqs": 10, "upscaling_factor": 2, "upsampler_type": "pixelshuffle_direct", "gate_type": "DWC"},
        4, (50, 61)),
}
# ESC-RIB (type ESCRIB): name -> (network_g without "type", seed, input (H, W), batch). Batch 2 runs the
# official network in training mode (its inference path only takes batch 1; the arithmetic is the same).
ESC_FIXTURES: dict[str, tuple[dict, int, tuple[int, int], int]] = {
    # Two blocks of two conv blocks, windows 16 (20x27 pads to 32x32), x2, pixelshuffle_direct, batch 1.
    "fixture_escrib_w16_X2_20x27": (
        {"dim": 16, "pdim": 8, "kernel_size": 7, "n_blocks": 2, "conv_blocks": 2, "window_size": 16,
         "num_heads": 2, "upscaling_factor": 2, "exp_ratio": 1.25, "attn_type": "RIB", "rank": 8,
         "rib_hidden_dim": 16, "rib_n_freqs": 10, "gate_type": "DWC", "upsampler_type": "pixelshuffle_direct"},
        5, (20, 27), 1),
    # The released window (64) and kernel (13), pixelshuffle x3 (intermediate 8), batch 2, LayerNorms in
    # the conv blocks (use_ln); 40x36 pads to 64x64.
    "fixture_escrib_w64_pixelshuffle_X3_40x36_b2": (
        {"dim": 16, "pdim": 8, "kernel_size": 13, "n_blocks": 1, "conv_blocks": 2, "window_size": 64,
         "num_heads": 2, "upscaling_factor": 3, "exp_ratio": 1.25, "attn_type": "RIB", "rank": 8,
         "rib_hidden_dim": 16, "rib_n_freqs": 10, "gate_type": "DWC", "upsampler_type": "pixelshuffle",
         "intermediate_dim": 8, "use_ln": True},
        6, (40, 36), 2),
}
# SSTReal (type EDMUNet): name -> (network_g without "type", seed, LR (H, W), batch, mode). The released
# structure at a small width: 6 layers of windows w, 2w, 4w twice, block 0 fusing the LR features in, the
# intermediate output after block 1 (not the last), guidance 2.0, exp_ratio 3.
_SSTREAL_SMALL = {"img_resolution": 64, "img_channels": 3, "scale": 4, "sigma_data": 0.5, "sigma_min": 0,
                  "use_skip": True, "sampling_ig_lambda": 2.0, "dim": 16, "intermediate_dim": 8, "emb_channels": 32,
                  "noise_channels": 16, "num_blocks": 3, "fuse_lr_till": 0, "ig_idx": 1, "attn_type": "RIB",
                  "window_sizes": [4, 8, 16, 4, 8, 16], "num_heads": [2, 2, 2, 2, 2, 2], "ranks": [4, 4, 4, 8, 8, 8],
                  "rib_hidden_dim": 16, "rib_n_freqs": 10, "exp_ratio": 3, "gate_type": "DWC", "drop_p": 0.05}
SSTREAL_FIXTURES: dict[str, tuple[dict, int, tuple[int, int], int, str]] = {
    # The network called directly, batch 2 with one noise level per image, without the EDM skip (use_skip
    # false): outputs the guided mix and the (D_i, D_f) pair. LR 14x19 is padded at every window size.
    "fixture_sstreal_forward_14x19_b2": ({**_SSTREAL_SMALL, "use_skip": False}, 7, (14, 19), 2, "forward"),
    # The authors' sampling (EdmUNetRealModel.test): LR 40x45 in [-1, 1] reflect-padded to 64x64, bicubic x4,
    # plus the stored Gaussian latent at sigma_max = 1, one guided forward, cropped to 160x180.
    "fixture_sstreal_sampling_40x45": (_SSTREAL_SMALL, 8, (40, 45), 1, "sampling"),
}
NOTE = "official SST forward; output = fp32 attention; output_bf16attn = official default bf16 attention"


def load_official(shared: Path):
    """The official modules (sst_arch, arch_utils), imported from shared/reference/official."""
    root = shared / "reference" / "official"
    if not (root / "sst" / "archs" / "sst_arch.py").is_file():
        sys.exit(f"official SST code not found under {root} (pass --shared PATH)")
    sys.path.insert(0, str(root))
    try:
        arch = importlib.import_module("sst.archs.sst_arch")
    except ModuleNotFoundError as exc:
        sys.exit(f"cannot import the official code ({exc}); install einops: .venv/bin/pip install einops")
    return arch, importlib.import_module("sst.archs.arch_utils")


class _TorchWithFloat32ForBfloat16:
    """``torch`` as seen by arch_utils while computing ``output``: ``torch.bfloat16`` is float32."""

    bfloat16 = torch.float32

    def __getattr__(self, name: str):
        return getattr(torch, name)


@contextlib.contextmanager
def float32_attention(arch_utils) -> Iterator[None]:
    """Within the block the official attention casts q/k/v and the RIB vectors to float32, not bfloat16."""
    saved = arch_utils.torch
    arch_utils.torch = _TorchWithFloat32ForBfloat16()
    try:
        yield
    finally:
        arch_utils.torch = saved


def redraw_weights(model: nn.Module, seed: int) -> None:
    """Replace every parameter with a draw wider than training-time init.

    Wide q/k projections make q.k/sqrt(d) logits of a few units, so softmax is peaked (an implementation
    that mixes up windows, heads or scales fails by far more than 1e-4); wide RIB weights make the
    position term comparable to the content term, so dropping or misplacing RIB shows in the output.
    Convolutions otherwise get N(0, 1/fan_in) (3x3 body convolutions half that, to keep the residual
    stream bounded), biases U(-0.1, 0.1), LayerNorm scales 1 + U(-0.15, 0.15); SSTReal's linear layers
    N(0, 0.25/fan_in) (modulations of a few tenths) and its block scales ``gamma`` U(0.3, 0.7).
    """
    gen = torch.Generator().manual_seed(seed)

    def normal(shape: torch.Size, std: float) -> torch.Tensor:
        return torch.randn(shape, generator=gen) * std

    def uniform(shape: torch.Size, half_width: float) -> torch.Tensor:
        return (torch.rand(shape, generator=gen) * 2 - 1) * half_width

    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            if leaf == "to_hidden":
                new = normal(p.shape, 0.5)
            elif leaf in ("to_q", "to_k"):
                new = normal(p.shape, 0.6)
            elif leaf == "plk_filter":  # ESC-RIB's large kernel (P, P, k, k), not a Conv2d's
                new = normal(p.shape, 1 / math.sqrt(p.shape[1] * p.shape[2] * p.shape[3]))
            elif leaf == "hidden_b" or leaf == "bias":
                new = uniform(p.shape, 0.1)
            elif isinstance(owner, nn.Conv2d):
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                body_3x3 = name.startswith("body.") and owner.kernel_size == (3, 3) and owner.groups == 1
                gain = 1.5 if name.endswith("to_qkv.weight") else 0.5 if body_3x3 else 1.0
                new = normal(p.shape, gain / math.sqrt(fan_in))
            elif isinstance(owner, nn.Linear):  # SSTReal's noise embedding and adaLN modulation
                new = normal(p.shape, 0.5 / math.sqrt(p.shape[1]))
            elif leaf == "gamma":  # SSTReal's block output scale (1e-3 at init would hide the blocks)
                new = 0.3 + 0.4 * torch.rand(p.shape, generator=gen)
            elif leaf == "weight" and p.ndim == 1:  # LayerNorm scale
                new = 1 + uniform(p.shape, 0.15)
            else:
                raise ValueError(f"no rule to re-draw parameter {name} {tuple(p.shape)}")
            p.copy_(new)


def make_fixture(arch, arch_utils, name: str, network_g: dict, seed: int, hw: tuple[int, int], commit: str) -> Path:
    torch.manual_seed(seed)
    model = arch.SST(**network_g).eval()
    redraw_weights(model, seed)
    x = torch.rand((1, 3, *hw), generator=torch.Generator().manual_seed(seed + 1000))
    with torch.no_grad():
        out_bf16 = model(x)
        with float32_attention(arch_utils):
            out = model(x)
            # The same pass without the RIB term (zero query-side position vectors): how much RIB matters.
            saved = {n: p.clone() for n, p in model.named_parameters() if n.endswith(".to_q")}
            for n in saved:
                model.get_parameter(n).zero_()
            out_no_rib = model(x)
            for n, p in saved.items():
                model.get_parameter(n).copy_(p)
    scale = network_g["upscaling_factor"]
    assert out.shape == (1, 3, hw[0] * scale, hw[1] * scale), out.shape
    meta = {
        "network_g": {"type": "SST", **network_g},
        "seed": seed,
        "input_shape": list(x.shape),
        "note": NOTE,
        "bf16_vs_fp32_max_abs_diff": (out_bf16 - out).abs().max().item(),
        "without_rib_max_abs_diff": (out_no_rib - out).abs().max().item(),
        "official_commit": commit,
        "torch": torch.__version__,
        "generator": "tests/make_fixtures.py",
    }
    arrays = {"input": x.numpy(), "output": out.numpy(), "output_bf16attn": out_bf16.numpy(),
              "meta_json": np.array(json.dumps(meta))}
    arrays.update({f"state_dict/{k}": v.numpy() for k, v in model.state_dict().items()})
    path = DATA / "fixtures" / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    print(f"{path.relative_to(REPO)}: output {tuple(out.shape)} range [{out.min():.3f}, {out.max():.3f}], "
          f"bf16 vs fp32 {meta['bf16_vs_fp32_max_abs_diff']:.2g}, without RIB {meta['without_rib_max_abs_diff']:.3g}")
    return path


def make_esc_fixture(name: str, network_g: dict, seed: int, hw: tuple[int, int], batch: int, commit: str) -> Path:
    esc = importlib.import_module("sst.archs.esc_rib_arch")
    arch_utils = importlib.import_module("sst.archs.arch_utils")
    torch.manual_seed(seed)
    model = esc.ESCRIB(**network_g)
    redraw_weights(model, seed)
    model.train(batch > 1)  # the official inference path only takes batch 1; training mode, same arithmetic
    x = torch.rand((batch, 3, *hw), generator=torch.Generator().manual_seed(seed + 1000))
    with torch.no_grad():
        out_bf16 = model(x)
        with float32_attention(arch_utils):
            out = model(x)
            saved = {n: p.clone() for n, p in model.named_parameters() if n.endswith(".to_q")}
            for n in saved:  # the same pass without the RIB term: how much RIB matters
                model.get_parameter(n).zero_()
            out_no_rib = model(x)
            for n, p in saved.items():
                model.get_parameter(n).copy_(p)
    scale = network_g["upscaling_factor"]
    assert out.shape == (batch, 3, hw[0] * scale, hw[1] * scale), out.shape
    meta = {"network_g": {"type": "ESCRIB", **network_g}, "seed": seed, "input_shape": list(x.shape),
            "note": NOTE.replace("SST", "ESCRIB") + ("; training-mode forward (batch > 1)" if batch > 1 else ""),
            "bf16_vs_fp32_max_abs_diff": (out_bf16 - out).abs().max().item(),
            "without_rib_max_abs_diff": (out_no_rib - out).abs().max().item(), "official_commit": commit,
            "torch": torch.__version__, "generator": "tests/make_fixtures.py"}
    arrays = {"input": x.numpy(), "output": out.numpy(), "output_bf16attn": out_bf16.numpy(),
              "meta_json": np.array(json.dumps(meta))}
    arrays.update({f"state_dict/{k}": v.numpy() for k, v in model.state_dict().items()})
    path = DATA / "fixtures" / f"{name}.npz"
    np.savez_compressed(path, **arrays)
    print(f"{path.relative_to(REPO)}: output {tuple(out.shape)} range [{out.min():.3f}, {out.max():.3f}], "
          f"bf16 vs fp32 {meta['bf16_vs_fp32_max_abs_diff']:.2g}")
    return path


def make_sstreal_fixture(name: str, network_g: dict, seed: int, hw: tuple[int, int], batch: int, mode: str,
                         commit: str) -> Path:
    """The official EDMUNet with re-drawn weights on random input, in one of two modes.

    ``forward``: the network called directly, ``model(x, sigma, lq, lq_up)`` with lq uniform in [-1, 1], lq_up
    its bicubic x4 (``F.interpolate``) and x = lq_up + sigma * noise, one sigma per image; stores the guided
    output and the (D_i, D_f) pair. ``sampling``: the steps of the authors' ``EdmUNetRealModel.test``
    (``sst/models/edm_real_unet_model.py``, whose base class is not published, so the steps are spelled out
    here): an image in [0, 1] normalised to [-1, 1] (the options' mean 0.5, std 0.5), reflect-padded on the
    bottom/right to a multiple of 64, bicubic x4, plus a Gaussian latent (stored, float16 values) at
    sigma_max = 1, one forward, cropped to 4x the image; ``output`` is that crop, in [-1, 1].
    """
    real = importlib.import_module("sst.archs.sst_real_arch")
    arch_utils = importlib.import_module("sst.archs.arch_utils")
    torch.manual_seed(seed)
    model = real.EDMUNet(**network_g).eval()
    redraw_weights(model, seed)
    gen = torch.Generator().manual_seed(seed + 1000)
    h, w = hw
    arrays: dict[str, np.ndarray] = {}
    if mode == "forward":
        lq = torch.rand((batch, 3, h, w), generator=gen) * 2 - 1
        lq_up = F.interpolate(lq, scale_factor=4, mode="bicubic")
        sigma = torch.linspace(0.6, 1.0, batch)
        x = lq_up + sigma.view(-1, 1, 1, 1) * torch.randn(lq_up.shape, generator=gen)
        arrays.update(input=x.numpy(), lq=lq.numpy(), sigma=sigma.numpy())  # lq_up: the bicubic of lq

        def run() -> torch.Tensor:
            return model(x, sigma=sigma, lq=lq, lq_up=lq_up)
    else:
        image = torch.rand((batch, 3, h, w), generator=gen)
        lq = (image - 0.5) / 0.5
        pad_h, pad_w = (64 - h % 64) % 64, (64 - w % 64) % 64
        lq = F.pad(lq, (0, pad_w, 0, pad_h), mode="reflect")
        lq_up = F.interpolate(lq, scale_factor=4, mode="bicubic")
        # float16 values (stored as such, half the bytes), used in float32 like any latent
        latent = torch.randn(lq_up.shape, generator=gen).half().float()
        sigma = torch.as_tensor(1)  # train.consistency_opt.sigma_max of options/test/SSTReal_X4.yaml
        x = lq_up + sigma * latent
        arrays.update(input=image.numpy(), latent=latent.half().numpy())

        def run() -> torch.Tensor:
            return model(x, sigma=sigma, lq=lq, lq_up=lq_up)[:, :, : 4 * h, : 4 * w]
    with torch.no_grad():
        out_bf16 = run()
        with float32_attention(arch_utils):
            out = run()
            if mode == "forward":
                out_i, out_f = model(x, sigma=sigma, lq=lq, lq_up=lq_up, return_pair=True)
                arrays.update(output_i=out_i.numpy(), output_f=out_f.numpy())
            saved = {n: p.clone() for n, p in model.named_parameters() if n.endswith(".to_q")}
            for n in saved:  # the same pass without the RIB term: how much RIB matters
                model.get_parameter(n).zero_()
            out_no_rib = run()
            for n, p in saved.items():
                model.get_parameter(n).copy_(p)
    assert out.shape == (batch, 3, 4 * h, 4 * w), out.shape
    meta = {"network_g": {"type": "EDMUNet", **network_g}, "seed": seed, "input_shape": list(arrays["input"].shape),
            "mode": mode, "note": NOTE.replace("SST", "EDMUNet"),
            "bf16_vs_fp32_max_abs_diff": (out_bf16 - out).abs().max().item(),
            "without_rib_max_abs_diff": (out_no_rib - out).abs().max().item(), "official_commit": commit,
            "torch": torch.__version__, "generator": "tests/make_fixtures.py"}
    arrays.update(output=out.numpy(), output_bf16attn=out_bf16.numpy(), meta_json=np.array(json.dumps(meta)))
    arrays.update({f"state_dict/{k}": v.numpy() for k, v in model.state_dict().items()})
    path = DATA / "fixtures" / f"{name}.npz"
    np.savez_compressed(path, **arrays)
    print(f"{path.relative_to(REPO)}: output {tuple(out.shape)} range [{out.min():.3f}, {out.max():.3f}], "
          f"bf16 vs fp32 {meta['bf16_vs_fp32_max_abs_diff']:.2g}, without RIB {meta['without_rib_max_abs_diff']:.3g}")
    return path


def sstreal_manifest(shared: Path) -> Path:
    """The key/shape manifest of the released SSTReal network (network_g of options/test/SSTReal_X4.yaml), built
    shape-only from the official code, with its parameter count, weight file name and param_key_g."""
    import yaml

    real = importlib.import_module("sst.archs.sst_real_arch")
    opts = yaml.safe_load((shared / "reference" / "official" / "options" / "test" / "SSTReal_X4.yaml").read_text())
    g = dict(opts["network_g"])
    with torch.device("meta"):
        model = real.EDMUNet(**{k: v for k, v in g.items() if k != "type"})
    packed = {"SSTReal_X4.json": {
        "network_g": g, "params": sum(p.numel() for p in model.parameters()),
        "weights": opts["path"]["pretrain_network_g"].rsplit("/", 1)[-1], "param_key_g": opts["path"]["param_key_g"],
        "sigma_max": opts["train"]["consistency_opt"]["sigma_max"],
        "state_dict": [[k, list(v.shape)] for k, v in model.state_dict().items()]}}
    path = DATA / "manifests_sstreal.json.gz"
    with open(path, "wb") as raw, gzip.GzipFile("manifests_sstreal.json", "wb", 9, raw, mtime=0) as gz:
        gz.write(json.dumps(packed, separators=(",", ":"), sort_keys=True).encode())
    print(f"{path.relative_to(REPO)}: {packed['SSTReal_X4.json']['params']} parameters, {path.stat().st_size} bytes")
    return path


def escrib_manifests(shared: Path) -> Path:
    """Key/shape manifests of the official ESCRIB_X{2,3,4} networks (as shared/reference/manifests has for SST),
    built from the official code and the network_g of options/test/ESCRIB_X*.yaml."""
    import yaml

    esc = importlib.import_module("sst.archs.esc_rib_arch")
    packed = {}
    for s in (2, 3, 4):
        opts = yaml.safe_load((shared / "reference" / "official" / "options" / "test" / f"ESCRIB_X{s}.yaml").read_text())
        g = dict(opts["network_g"])
        model = esc.ESCRIB(**{k: v for k, v in g.items() if k != "type"})
        sd = model.state_dict()
        packed[f"ESCRIB_X{s}.json"] = {
            "network_g": g, "params": sum(p.numel() for p in model.parameters()),
            "weights": opts["path"]["pretrain_network_g"].rsplit("/", 1)[-1],
            "state_dict": [[k, list(v.shape)] for k, v in sd.items()]}
    path = DATA / "manifests_escrib.json.gz"
    with open(path, "wb") as raw, gzip.GzipFile("manifests_escrib.json", "wb", 9, raw, mtime=0) as gz:
        gz.write(json.dumps(packed, separators=(",", ":"), sort_keys=True).encode())
    print(f"{path.relative_to(REPO)}: {len(packed)} manifests, {path.stat().st_size} bytes")
    return path


def pack_manifests(shared: Path) -> Path:
    """All reference manifests in one gzipped JSON object, file name -> manifest (content unchanged)."""
    files = sorted((shared / "reference" / "manifests").glob("*.json"))
    if not files:
        sys.exit(f"no manifests under {shared / 'reference' / 'manifests'}")
    packed = {p.name: json.loads(p.read_text()) for p in files}
    path = DATA / "manifests.json.gz"
    # mtime=0 and a fixed file name in the header: the same manifests give the same bytes.
    with open(path, "wb") as raw, gzip.GzipFile("manifests.json", "wb", 9, raw, mtime=0) as gz:
        gz.write(json.dumps(packed, separators=(",", ":"), sort_keys=True).encode())
    print(f"{path.relative_to(REPO)}: {len(packed)} manifests, {path.stat().st_size} bytes")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the reference folder")
    parser.add_argument("--only", nargs="*", choices=[*FIXTURES, *ESC_FIXTURES, *SSTREAL_FIXTURES, "manifests"],
                        help="regenerate only these")
    args = parser.parse_args(argv)
    wanted = set(args.only or [*FIXTURES, *ESC_FIXTURES, *SSTREAL_FIXTURES, "manifests"])
    torch.set_num_threads(1)  # deterministic reductions, whatever the core count
    if "manifests" in wanted:
        pack_manifests(args.shared)
    names = [n for n in FIXTURES if n in wanted]
    if names:
        arch, arch_utils = load_official(args.shared)
        commit = (args.shared / "reference" / "official" / "COMMIT").read_text().strip()
        for name in names:
            network_g, seed, hw = FIXTURES[name]
            make_fixture(arch, arch_utils, name, network_g, seed, hw, commit)
    esc_names = [n for n in ESC_FIXTURES if n in wanted]
    if esc_names:
        load_official(args.shared)
        commit = (args.shared / "reference" / "official" / "COMMIT").read_text().strip()
        for name in esc_names:
            make_esc_fixture(name, *ESC_FIXTURES[name], commit)
    real_names = [n for n in SSTREAL_FIXTURES if n in wanted]
    if real_names:
        load_official(args.shared)
        commit = (args.shared / "reference" / "official" / "COMMIT").read_text().strip()
        for name in real_names:
            make_sstreal_fixture(name, *SSTREAL_FIXTURES[name], commit)
    if "manifests" in wanted:
        load_official(args.shared)
        escrib_manifests(args.shared)
        sstreal_manifest(args.shared)


if __name__ == "__main__":
    main()
