"""SSTReal (type EDMUNet) against the official network (fixtures made from the official code, the released
state-dict layout), its keywords, its detection and its cost model."""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_archs import _measured_peak
from torch.utils.flop_counter import FlopCounterMode

import sst_cli
from conftest import data_path
from hub_server import FakeHub, fake_hub  # noqa: F401 - fake_hub is a fixture
from sst_cli.cli import main
from sst_cli.errors import SSTError
from sst_cli.model import archs, placement, registry
from sst_cli.model.archs import ARCHS, build_model, config_of, cost_of
from sst_cli.model.archs.sst_real import SSTRealConfig
from sst_cli.model.archs.sst_real.detect import exp_ratio_of
from sst_cli.model.archs.sst_real.network import EDMUNet
from sst_cli.model.archs.sst_real.sampling import Sampler, hashed_normal, placed_noise
from sst_cli.model.attention import BACKENDS, unavailable_reason
from sst_cli.model.identify import identify
from sst_cli.model.registry import Variant, create_model, get_variant
from sst_cli.model.weights import Checkpoint
from sst_cli.profiling import grid
from sst_cli.upscale import tiling
from sst_cli.upscale.tiling import plan_tiles, upscale_tensor
from sst_cli.upscale.upscaler import Upscaler, load_upscaler

FIXTURES = ["fixture_sstreal_forward_14x19_b2", "fixture_sstreal_sampling_40x45"]
# The released structure at a tiny width (the fixtures' is dim 16, 3 blocks): for the slower paths
TINY = {"type": "EDMUNet", "img_resolution": 64, "img_channels": 3, "dim": 8, "intermediate_dim": 8,
        "emb_channels": 16, "noise_channels": 8, "num_blocks": 2, "fuse_lr_till": 0, "ig_idx": 0, "attn_type": "RIB",
        "window_sizes": [4, 8], "num_heads": [2, 2], "ranks": [4, 4], "rib_hidden_dim": 8, "exp_ratio": 3,
        "gate_type": "DWC", "sampling_ig_lambda": 2.0}


def load_fixture(name: str) -> tuple[EDMUNet, dict[str, torch.Tensor], dict]:
    data = np.load(data_path("fixtures", f"{name}.npz"))
    meta = json.loads(str(data["meta_json"]))
    model = build_model(meta["network_g"]).eval()
    assert isinstance(model, EDMUNet)
    sd = {k.removeprefix("state_dict/"): torch.from_numpy(data[k]) for k in data.files if k.startswith("state_dict/")}
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    arrays = {k: torch.from_numpy(data[k]) for k in data.files if not k.startswith("state_dict/") and k != "meta_json"}
    return model, arrays, meta


def official_steps(model: EDMUNet, image: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """What the sampling fixture ran: [-1, 1], reflect pad to 64, bicubic x4, + latent at sigma 1, crop."""
    h, w = image.shape[-2:]
    lq = F.pad(image * 2 - 1, (0, -w % 64, 0, -h % 64), mode="reflect")
    lq_up = F.interpolate(lq, scale_factor=4, mode="bicubic")
    return model(lq_up + latent, torch.tensor(1.0), lq, lq_up)[:, :, : 4 * h, : 4 * w]


def run_fixture(model: EDMUNet, arrays: dict[str, torch.Tensor], meta: dict, **kw: bool) -> torch.Tensor:
    with torch.no_grad():
        if meta["mode"] == "forward":
            lq = arrays["lq"]
            return model(arrays["input"], arrays["sigma"], lq, F.interpolate(lq, scale_factor=4, mode="bicubic"), **kw)
        return official_steps(model, arrays["input"], arrays["latent"].float())


def tolerance(want: torch.Tensor) -> float:
    """1e-4 relative to the output's scale (these outputs spread over several units)."""
    return 1e-4 * max(1.0, want.std().item())


def manifest() -> dict:
    with gzip.open(data_path("manifests_sstreal.json.gz"), "rt") as f:
        return json.load(f)["SSTReal_X4.json"]


# --------------------------------------------------------------------------- against the official code
@pytest.mark.parametrize("backend", [pytest.param(b, marks=[pytest.mark.slow] if b == "flex" else []) for b in BACKENDS])
@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_matches_official_output(fixture: str, backend: str) -> None:
    reason = unavailable_reason(backend, "cpu", torch.float32)
    if reason is not None:
        pytest.skip(reason)
    model, arrays, meta = load_fixture(fixture)
    model.set_backend(backend)
    got, want = run_fixture(model, arrays, meta), arrays["output"]
    assert got.shape == want.shape
    diff = (got - want).abs().max().item()
    assert diff <= tolerance(want), f"{fixture} with {backend}: max |ours - official| = {diff:.3g}"


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_format(fixture: str) -> None:
    """What the fixtures claim (tests/data/README.md): shapes, ranges, padding at every window, RIB mattering."""
    _, arrays, meta = load_fixture(fixture)
    cfg = config_of(meta["network_g"])
    out, bf16 = arrays["output"], arrays["output_bf16attn"]
    assert out.dtype == bf16.dtype == torch.float32 and out.shape == bf16.shape
    assert (out - bf16).abs().max().item() == pytest.approx(meta["bf16_vs_fp32_max_abs_diff"])
    assert meta["without_rib_max_abs_diff"] > 0.05 and meta["official_commit"].startswith("bcd6132")
    if meta["mode"] == "forward":
        lq = arrays["lq"]
        assert lq.shape[0] == 2 and lq.min() >= -1 and lq.max() <= 1 and arrays["sigma"].shape == (2,)
        assert out.shape == arrays["input"].shape == arrays["output_i"].shape == (2, 3, 4 * lq.shape[2], 4 * lq.shape[3])
        assert not cfg.use_skip
        assert all(lq.shape[2] % w and lq.shape[3] % w for w in cfg.windows)  # every window pads the input
    else:
        x = arrays["input"]
        assert 0 <= x.min() and x.max() <= 1 and x.shape[2] % 64 and x.shape[3] % 64 and cfg.use_skip
        assert arrays["latent"].dtype == torch.float16 and arrays["latent"].shape == (1, 3, 256, 256)
        assert out.shape == (1, 3, 4 * x.shape[2], 4 * x.shape[3])


def test_the_pair_and_the_guidance_match_the_official_ones() -> None:
    model, arrays, meta = load_fixture(FIXTURES[0])
    d_i, d_f = run_fixture(model, arrays, meta, return_pair=True)
    for got, key in ((d_i, "output_i"), (d_f, "output_f")):
        assert (got - arrays[key]).abs().max().item() <= tolerance(arrays[key]), key
    guided = d_i + meta["network_g"]["sampling_ig_lambda"] * (d_f - d_i)  # what eval mode returns
    assert (guided - arrays["output"]).abs().max().item() <= tolerance(arrays["output"])
    model.train()  # training mode returns the pair, as the official network does
    assert isinstance(run_fixture(model, arrays, meta), tuple)


@pytest.mark.parametrize("fixture", FIXTURES)
def test_every_branch_of_the_fixtures_matters(fixture: str) -> None:
    """The re-drawn weights make a wrong RIB term, LR fusion, modulation, block scale or branch point fail."""
    model, arrays, meta = load_fixture(fixture)
    want = arrays["output"]
    sd = model.state_dict()
    knocked_out = {"RIB position term": [k for k in sd if k.endswith("attn.to_q")],
                   "LR fusion": [k for k in sd if ".fuse_lr." in k],
                   "adaLN modulation": [k for k in sd if ".adaLN_modulation." in k],
                   "intermediate output": [k for k in sd if k.startswith("model.up_i.")]}
    for branch, keys in knocked_out.items():
        probe = load_fixture(fixture)[0]
        probe.load_state_dict({**sd, **{k: torch.zeros_like(sd[k]) for k in keys}})
        diff = (run_fixture(probe, arrays, meta) - want).abs().max().item()
        assert diff > 50 * tolerance(want), f"{fixture}: dropping the {branch} changes the output by only {diff:.3g}"
    other = load_fixture(fixture)[0]
    other.model.ig_idx += 1  # the intermediate output taken one block later
    assert (run_fixture(other, arrays, meta) - want).abs().max().item() > 50 * tolerance(want)


def test_official_options_build_the_official_layout() -> None:
    m = manifest()
    assert m["weights"] == "SSTReal_X4.pth" and m["param_key_g"] == "params_ema" and m["sigma_max"] == 1
    with torch.device("meta"):
        model = sst_cli.build_model(m["network_g"])  # the network_g of options/test/SSTReal_X4.yaml, as is
    assert isinstance(model, EDMUNet) and model.scale == 4
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == m["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == m["params"]  # 55M
    assert model.cfg.sampling_ig_lambda == 2.0  # the options file's guidance
    assert config_of(model.config) == model.cfg == config_of(m["network_g"])


# ------------------------------------------------------------------------------------------- keywords
def test_config_round_trips_and_refuses_what_sst_does_not_build() -> None:
    cfg = config_of(TINY)
    assert isinstance(cfg, SSTRealConfig) and SSTRealConfig.from_network_g(cfg.to_network_g()) == cfg
    assert cfg.scale == 4 and cfg.windows == (4, 8) and cfg.bias == "rib" and cfg.at_scale(4) is cfg
    assert cfg.sigma_max == float("inf") and cfg.use_skip  # the official defaults
    assert config_of({**TINY, "upscaling_factor": 4}) == cfg  # sst's name for the scale elsewhere
    refused = {
        "unknown EDMUNet keyword\\(s\\): window_size \\(did you mean window_sizes\\?\\)": {**TINY, "window_size": 8},
        "needs the keyword\\(s\\) ig_idx": {k: v for k, v in TINY.items() if k != "ig_idx"},
        "needs the keyword\\(s\\) gate_type": {k: v for k, v in TINY.items() if k != "gate_type"},  # official: no gate
        "gate_type must be DWC": {**TINY, "gate_type": "Linear"},
        "x4 network": {**TINY, "scale": 2},
        "attn_type must be RIB": {**TINY, "attn_type": "NoPE"},
        "shifted windows": {**TINY, "window_sizes": [8, 8]},
        "ig_idx must name one of the 2 blocks": {**TINY, "ig_idx": 2},
    }
    for message, network_g in refused.items():
        with pytest.raises(ValueError, match=message):
            config_of(network_g)
    with pytest.raises(ValueError, match="x4 network"):
        cfg.at_scale(2)


def test_a_new_network_is_initialised_like_the_official_one() -> None:
    torch.manual_seed(0)
    net = build_model(TINY)
    block = net.model.proj_body[0]
    assert not block.adaLN_modulation.weight.any() and torch.all(block.gamma == 1e-3)
    attn = block.blocks[0].attn
    assert abs(attn.to_q.std().item() - 0.05) < 0.01 and not attn.hidden_b.any()
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_any_input_size_and_gradients() -> None:
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    for h, w in [(1, 1), (7, 13), (8, 8)]:
        lq = torch.rand(1, 3, h, w) * 2 - 1
        with torch.no_grad():
            assert model(torch.rand(1, 3, 4 * h, 4 * w), 1.0, lq).shape == (1, 3, 4 * h, 4 * w)
    model.train()
    d_i, d_f = model(torch.rand(2, 3, 24, 24), torch.tensor([0.5, 1.0]), torch.rand(2, 3, 6, 6))
    (d_i.mean() + d_f.mean()).backward()
    assert model.model.proj_body[0].adaLN_modulation.weight.grad is not None


# ------------------------------------------------------------------------------------------ detection
def test_detection_reads_every_recorded_keyword_and_only_its_own_weights() -> None:
    model, _, meta = load_fixture(FIXTURES[0])
    sd = model.state_dict()
    detected = archs.detect(sd)
    want = config_of(meta["network_g"]).to_network_g()
    unrecorded = {"window_sizes", "ig_idx", "img_resolution", "img_channels", "sigma_min", "sigma_max", "sigma_data",
                  "up_list", "down_list", "use_skip", "sampling_ig_lambda", "drop_p"}
    assert detected == {k: v for k, v in want.items() if k not in unrecorded}
    assert archs.fits(detected, meta["network_g"]) and archs.scale_of(detected) == 4
    assert archs.unrecorded(detected) == ["window_sizes", "ig_idx"]
    for arch in ARCHS.values():
        assert (arch.detect(sd) is not None) == (arch.type == "EDMUNet")
    with torch.device("meta"):
        others = [build_model({"dim": 8, "window_sizes": [4, 8], "num_heads": 2, "ranks": 4, "n_blocks": 1}),
                  build_model({"type": "ESCRIB", "dim": 16, "pdim": 8, "n_blocks": 1, "conv_blocks": 1})]
    assert all(ARCHS["EDMUNet"].detect(m.state_dict()) is None for m in others)


@pytest.mark.parametrize(("dim", "ratio"), [(192, 3), (24, 3), (16, 2), (48, 2.5), (20, 1.5)])
def test_the_ffn_ratio_is_read_back_from_its_width(dim: int, ratio: float) -> None:
    hidden = SSTRealConfig.from_network_g({**TINY, "dim": dim, "num_heads": [1, 1], "exp_ratio": ratio}).ffn_hidden
    assert exp_ratio_of(hidden, dim) == ratio


# ------------------------------------------------------------------------------------------ cost model
def test_cost_flops_are_what_the_flop_counter_counts() -> None:
    # Counted on the meta device, where no convolution runs fused with what follows it (uncounted)
    model = build_model({**TINY, "fuse_lr_till": 0, "num_blocks": 3, "ig_idx": 1}).set_backend("naive").to("meta")
    cost = cost_of(model)
    a = cost.align

    def counted(h: int, w: int) -> int:
        x, lq = torch.empty(1, 3, 4 * h, 4 * w, device="meta"), torch.empty(1, 3, h, w, device="meta")
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x, torch.ones(1, device="meta"), lq)
        return counter.get_total_flops()

    counted(a, a)  # the first pass computes (and caches) the per-layer RIB vectors: a constant
    assert (counted(2 * a, 3 * a) - counted(a, a)) / (5 * a * a) == cost.flops
    released = archs.network_cost(manifest()["network_g"])
    assert released.align == 64 and released.flops > 200e6  # ~250 MFLOP per LR pixel


# ------------------------------------------------------------------------------------------- sampling
def tiny_sampler(seed: int = 0, guidance: float | None = None, weights_seed: int = 0) -> Sampler:
    torch.manual_seed(weights_seed)
    return build_model(TINY).eval().sampler(seed, guidance)


def test_sampling_matches_the_authors_steps_on_the_official_network() -> None:
    """The sampling fixture: the official network after the authors' steps, given the stored latent."""
    model, arrays, _ = load_fixture(FIXTURES[1])
    sampler = model.sampler(guidance=None)
    assert sampler.guidance == 2.0  # the network config's sampling_ig_lambda
    with torch.no_grad():
        got = sampler(arrays["input"], noise=arrays["latent"].float()) * 2 - 1  # [0, 1] -> the fixture's [-1, 1]
    want = arrays["output"]
    assert got.shape == want.shape == (1, 3, 160, 180)
    assert (got - want).abs().max().item() <= tolerance(want)


def test_guidance_mixes_the_pair_and_defaults_to_the_config() -> None:
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        outs = {g: tiny_sampler(guidance=g)(x) for g in (0.0, 1.0, 3.0)}
        default = tiny_sampler()(x)
    assert torch.allclose(outs[3.0], outs[0.0] + 3 * (outs[1.0] - outs[0.0]), atol=1e-5)  # D_i + g (D_f - D_i)
    assert torch.equal(default, tiny_sampler(guidance=TINY["sampling_ig_lambda"])(x))
    assert tiny_sampler(5, 1.5).recipe == {"seed": 5, "guidance": 1.5}


def test_the_noise_is_seeded_and_standard_normal() -> None:
    rows, cols = torch.arange(256)[:, None], torch.arange(256)[None, :]
    z = hashed_normal(0, 0, rows, cols)
    assert torch.equal(z, hashed_normal(0, 0, rows, cols))
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01
    assert abs((z > 1.96).float().mean().item() - 0.025) < 0.003  # Gaussian tails, not uniform
    others = [hashed_normal(1, 0, rows, cols), hashed_normal(0, 1, rows, cols), z[1:], z[:, 1:]]
    pairs = [(z, others[0]), (z, others[1]), (z[:-1], others[2]), (z[:, :-1], others[3])]  # seed, channel, neighbours
    for a, b in pairs:
        assert abs(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()) < 0.01
    far = hashed_normal(0, 0, rows + 10**6, cols - 10**6)  # any coordinate, negative ones included
    assert abs(far.std().item() - 1) < 0.01 and not torch.equal(far, z)


@pytest.mark.parametrize(("transpose", "flips"), [(False, 0), (False, 1), (False, 2), (True, 3), (True, 0)])
def test_a_tile_sees_the_whole_images_noise_at_its_pixels(transpose: bool, flips: int) -> None:
    """Drawn by output pixel: a tile at (y0, x0), even transposed or flipped for TTA, gets the whole image's
    noise there (its padding takes pixels it does not stand for)."""
    whole = placed_noise(7, 1, (40, 50), (64, 64), torch.device("cpu"))[0]  # (3, 256, 256)
    y0, x0, h, w = 8, 16, 24, 20
    want = whole[:, 4 * y0 : 4 * (y0 + h), 4 * x0 : 4 * (x0 + w)]  # (3, 96, 80)
    want = want.transpose(-1, -2) if transpose else want
    want = want.flip([d for d, bit in ((-1, 1), (-2, 2)) if flips & bit]) if flips else want
    seen = want.shape[-2] // 4, want.shape[-1] // 4
    with placement.tiles_at([(0, 0), (y0, x0)]), placement.transformed(transpose, flips):
        tiles = placed_noise(7, 2, seen, (64, 64), torch.device("cpu"))  # tile 1 at (y0, x0); padded to 64
    assert torch.equal(tiles[1, :, : 4 * seen[0], : 4 * seen[1]], want)
    assert not torch.equal(tiles[0, :, : 4 * seen[0], : 4 * seen[1]], want)


def test_same_seed_same_image_and_tiles_keep_the_untiled_noise() -> None:
    up = Upscaler(tiny_sampler(), "tiny", 4, torch.device("cpu"), torch.float32, "sdpa", "test")
    x = torch.rand(1, 3, 72, 88)
    whole = upscale_tensor(up, x)
    assert torch.equal(whole, upscale_tensor(up, x))
    assert whole.shape == (1, 3, 288, 352)
    tiled = upscale_tensor(up, x, tile=48, overlap=16)
    assert plan_tiles(up, 72, 88, 48, 16).count > 2
    other = upscale_tensor(replace(up, model=tiny_sampler(seed=1)), x)
    # the tiles see the untiled noise: they differ from it only near their seams, far less than another seed
    assert psnr(tiled, whole) > psnr(other, whole) + 15


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean().item())


@pytest.mark.parametrize("network_g", [
    {**TINY, "dim": 32, "intermediate_dim": 8, "num_heads": [2, 4]},  # the body's FFN is the widest
    {**TINY, "dim": 16, "intermediate_dim": 16},  # the 4x upsampler is (as in the released network)
], ids=["ffn", "upsampler"])
def test_memory_estimates_bound_what_a_sampling_step_allocates(network_g: dict) -> None:
    torch.manual_seed(0)
    sampler = build_model(network_g).eval().sampler()
    cost = cost_of(sampler)
    side = 64  # the sampler's padding unit: no padding
    peak, largest = _measured_peak(sampler, torch.rand(1, 3, side, side))
    per_pixel = peak / side**2
    activations = per_pixel - 3 * 16 * 4  # the output is counted apart by the tile planner
    assert activations <= 4 * cost.activation_elems <= 8 * activations, (activations, cost.activation_elems)
    up = Upscaler(sampler, "m", 4, torch.device("cpu"), torch.float32, "sdpa", "test")
    assert per_pixel <= tiling.bytes_per_pixel(up)
    assert largest <= tiling.widest_activation(up) * side**2


# ------------------------------------------------------------------------------- registry and commands
def test_the_released_weights_are_known_by_name_and_by_their_tensors() -> None:
    variant = get_variant("sst-real")
    assert registry.official_file_for(variant, 4).name == "SSTReal_X4.pth" == manifest()["weights"]
    assert config_of(variant.network_g(4)) == config_of(manifest()["network_g"])  # the options file's network
    with pytest.raises(KeyError, match="published at x4 only"):
        registry.official_file_for(variant, 2)
    with pytest.raises(KeyError, match="one file, named without a training set: drop --trained-on"):
        registry.official_file_for(variant, 4, "DF2K")
    with torch.device("meta"):
        sd = create_model("sst-real", 4).state_dict()
    by_name = identify(Checkpoint(sd, "/w/SSTReal_X4.pth"))
    assert by_name.name == "sst-real" and by_name.basis == "its official file name"
    bare = identify(Checkpoint(sd, "/w/renamed.pth"))  # the one registry network with these tensors
    assert bare.name == "sst-real" and bare.basis == "its tensor shapes"
    assert config_of(bare.network_g) == config_of(manifest()["network_g"])
    assert bare.assumed.startswith("windows 16,32,64,16,32,64 assumed: those of sst-real")
    small = load_fixture(FIXTURES[0])[0].state_dict()  # a custom SSTReal: its windows are not in the file
    with pytest.raises(SSTError, match="window sizes are not stored in the file"):
        identify(Checkpoint(small, "/w/net_g_latest.pth"))


@pytest.fixture
def reduced_sst_real(monkeypatch: pytest.MonkeyPatch) -> Variant:
    """The registry's sst-real (and its official file name) standing for a tiny network of the same structure:
    the released one costs ~1 TFLOP per 64x64-pixel tile, minutes on a CPU."""
    real = get_variant("sst-real")
    small = Variant(real.name, real.official, {k: v for k, v in TINY.items() if k != "scale"}, real.checkpoint_sets,
                    notes=real.notes, scales=real.scales)
    monkeypatch.setitem(registry.VARIANTS, small.name, small)
    monkeypatch.setitem(registry.BY_OFFICIAL, small.official, small)
    monkeypatch.setitem(registry.OFFICIAL_FILES, "SSTReal_X4.pth", registry.OfficialFile(small, "", 4))
    return small


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SST_WEIGHTS_DIR", raising=False)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    return tmp_path


def _upscale(*args: str) -> tuple[int, dict]:
    code = main(["upscale", "img.png", *args, "--weights", "SSTReal_X4.pth", "--device", "cpu", "--json", "run.json"])
    return code, json.loads(Path("run.json").read_text())


def test_cli_upscale_with_the_official_file(workdir: Path, reduced_sst_real: Variant,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    model = build_model(reduced_sst_real.network_g(4)).eval()
    torch.save({"params_ema": model.state_dict()}, workdir / "SSTReal_X4.pth")  # as the official code saves it
    code, report = _upscale("a/")
    assert code == 0, capsys.readouterr().err
    assert report["model"] == "sst-real" and report["seed"] == 0 and report["guidance"] == 2.0
    got = np.asarray(Image.open(workdir / "a" / "img.png")).astype(np.float64)
    x = torch.from_numpy(np.array(Image.open(workdir / "img.png"))).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        want = (model.sampler(0)(x).clamp(0, 1) * 255)[0].permute(1, 2, 0).numpy()
    assert got.shape == (32, 40, 3) and np.abs(got - want).max() <= 0.51  # these weights, this sampling, rounded
    assert _upscale("b/", "--seed", "0")[0] == 0
    assert _upscale("c/", "--seed", "1")[0] == 0
    first, same, other = ((workdir / d / "img.png").read_bytes() for d in "abc")
    assert first == same and first != other
    # seed and guidance are part of an output's recipe: the same run skips it, another keeps it (not replaced)
    code, report = _upscale("a/")
    assert code == 0 and report["results"][0]["status"] == "skipped"
    code, report = _upscale("a/", "--guidance", "1.0")
    assert code == 1 and report["results"][0]["status"] == "kept"
    assert (workdir / "a" / "img.png").read_bytes() == first


def test_official_file_by_name_through_the_hub(fake_hub: FakeHub, reduced_sst_real: Variant,  # noqa: F811
                                               tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(reduced_sst_real.network_g(4))
    torch.save({"params_ema": model.state_dict()}, tmp_path / "w.pth")
    fake_hub.repos = {"dslisleedh/SSTReal": {"README.md": b"# SSTReal", "SSTReal_X4.pth": (tmp_path / "w.pth").read_bytes()}}
    up = load_upscaler("sst-real", device="cpu", noise_seed=3, guidance=1.5)
    assert up.name == "sst-real" and up.scale == 4 and up.source.endswith("SSTReal_X4.pth")
    assert isinstance(up.model, Sampler) and up.model.recipe == {"seed": 3, "guidance": 1.5}
    assert all(torch.equal(a, b) for a, b in zip(up.model.net.state_dict().values(), model.state_dict().values(),
                                                 strict=True))
    assert tiling.window_align(up) == 8 and up.window_max == 8  # tiles start on its window grid


def test_sampling_options_are_refused_for_other_models(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["upscale", "img.png", "out/", "--model", "bicubic", "--seed", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "--seed and --guidance apply to networks sampled from noise (sst-real)" in err
    with pytest.raises(SSTError, match="sst-real is published at x4 only"):
        load_upscaler("sst-real", 2, device="cpu")


def test_models_lists_sst_real_at_x4() -> None:
    """What `sst models` shows of it (its row alone: the whole table builds every variant)."""
    from sst_cli.cli.models import _costs, _params

    variant = get_variant("sst-real")
    assert variant.type == "EDMUNet" and variant.scales == (4,) and variant.checkpoint_names(4) == ["SSTReal_X4.pth"]
    assert variant.checkpoint_names(2) == []
    assert _params(variant) == {4: manifest()["params"]}
    costs = _costs(variant)
    assert costs["windows"] == [16, 32, 64, 16, 32, 64] and list(costs["flops_per_pixel"]) == [4]
    assert costs["flops_per_pixel"][4] > 200e6


def test_train_refuses_sst_real_in_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "hr"
    data.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(data / "a.png")
    tiny = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")
    network = "network={" + ", ".join(f"{k}: {v}" for k, v in TINY.items()) + "}"
    for chosen in (["--set", "model=sst-real", "--set", "network=null"], ["--set", network]):
        code = main(["train", "--config", tiny, "--set", f"train_hr=[{data}]", "--set", "scale=4", *chosen,
                     "--run-dir", str(tmp_path / "run")])
        err = capsys.readouterr().err
        assert code == 1, err
        assert "sst train cannot train SSTReal (type EDMUNet)" in err and "Traceback" not in err
        assert err.count(". ") == 0  # one sentence
    assert not list((tmp_path / "run").glob("*.pt"))


def test_profile_measures_the_sampling_step() -> None:
    """`sst profile` runs sst-real as upscale does (through its sampler): FLOPs of one step as its cost model
    counts them (on the 64-padded input), and refuses scales it is not built at in one sentence."""
    config = grid.ProfileConfig("sst-real", 4, "naive", "rib", "fp32", "cpu", (64, 64), network_g=TINY)
    params, flops = grid.count_flops(config)
    model = grid.build(config)
    assert isinstance(model, Sampler) and params == sum(p.numel() for p in model.parameters())
    per_pixel = cost_of(model).flops
    assert 64 * 64 * per_pixel <= flops <= 64 * 64 * per_pixel * 1.01  # + the per-layer RIB vectors
    with pytest.raises(SSTError, match="sst-real is built at x4 only; pass --scale 4"):
        grid.build_grid(["sst-real"], [2], ["sdpa"], ["rib"], ["fp32"], ["cpu"])


def test_tiles_side_by_side_draw_the_same_noise_as_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The noise is placed from a context variable: tiles running in worker threads must see their own place.
    Side by side, each tile runs on one intra-op thread: bitwise what one tile at a time gives on one thread, and
    within float rounding of two threads (some reductions split differently); another seed is far away."""
    from sst_cli.upscale import tiling

    up = Upscaler(tiny_sampler(), "tiny", 4, torch.device("cpu"), torch.float32, "sdpa", "test")
    x = torch.rand(1, 3, 72, 88)
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(tiling, "CONCURRENT_CPU_TILES", False)
        torch.set_num_threads(1)
        one_thread = upscale_tensor(up, x, tile=48, overlap=16, tta=True)
        torch.set_num_threads(2)
        two_threads = upscale_tensor(up, x, tile=48, overlap=16, tta=True)
        monkeypatch.setattr(tiling, "CONCURRENT_CPU_TILES", True)
        assert tiling.tile_workers(up.device, 4) == 2
        side_by_side = upscale_tensor(up, x, tile=48, overlap=16, tta=True)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one_thread, side_by_side)
    assert (two_threads - side_by_side).abs().max() < 1e-5
