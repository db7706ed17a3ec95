"""ESC-RIB against the official network (fixtures, official layouts, any batch size, config round trips) and
through every command: upscale by official file and by name, eval, profile, models, train across scales."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import data_path
from hub_server import FakeHub, fake_hub  # noqa: F401 - fake_hub is a fixture
from sst_cli.cli import main
from sst_cli.model.archs import build_model
from sst_cli.model.archs.esc_rib import ESCRIBConfig
from sst_cli.model.archs.esc_rib.network import ESCRIB, geo_ensemble
from sst_cli.model.attention import BACKENDS, unavailable_reason
from sst_cli.model.loading import model_from_checkpoint
from sst_cli.model.registry import create_model
from sst_cli.model.weights import load_checkpoint, save_checkpoint
from sst_cli.training.config import load_config
from sst_cli.training.loop import network_config, train
from sst_cli.upscale import tiling
from sst_cli.upscale.upscaler import load_upscaler

REPO = Path(__file__).resolve().parents[1]
# A small ESC-RIB (window 16) for the slower paths: TTA, training
SMALL = {"type": "ESCRIB", "dim": 8, "pdim": 4, "kernel_size": 5, "n_blocks": 1, "conv_blocks": 1, "window_size": 16,
         "num_heads": 2, "rank": 4, "rib_hidden_dim": 8, "upscaling_factor": 2}

FIXTURES = ["fixture_escrib_w16_X2_20x27", "fixture_escrib_w64_pixelshuffle_X3_40x36_b2"]


def load_fixture(name: str) -> tuple[ESCRIB, torch.Tensor, torch.Tensor]:
    data = np.load(data_path("fixtures", f"{name}.npz"))
    meta = json.loads(str(data["meta_json"]))
    model = ESCRIB(**meta["network_g"]).eval()
    sd = {k.removeprefix("state_dict/"): torch.from_numpy(data[k]) for k in data.files if k.startswith("state_dict/")}
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model, torch.from_numpy(data["input"]), torch.from_numpy(data["output"])


def manifests() -> dict[str, dict]:
    with gzip.open(data_path("manifests_escrib.json.gz"), "rt") as f:
        return json.load(f)


# Eager flex on the CPU materialises every logit unblocked (20-35 s here): under `pytest -m slow`.
@pytest.mark.parametrize("backend", [pytest.param(b, marks=[pytest.mark.slow] if b == "flex" else []) for b in BACKENDS])
@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_matches_official_output(fixture: str, backend: str) -> None:
    reason = unavailable_reason(backend, "cpu", torch.float32)
    if reason is not None:
        pytest.skip(reason)
    model, x, want = load_fixture(fixture)
    model.set_backend(backend)
    with torch.no_grad():
        got = model(x)
    assert got.shape == want.shape
    diff = (got - want).abs().max().item()
    assert diff <= 1e-4, f"{fixture} with {backend}: max |ours - official| = {diff:.3g}"


@pytest.mark.parametrize("fixture", FIXTURES)
def test_every_branch_of_the_fixtures_matters(fixture: str) -> None:
    """The fixtures' weights were re-drawn so that a wrong RIB term, dynamic kernel or large kernel cannot pass."""
    model, x, want = load_fixture(fixture)
    sd = model.state_dict()
    knocked_out = {"RIB position term": [k for k in sd if k.endswith("attn.to_q")],
                   "dynamic 3x3 kernels": [k for k in sd if k.endswith("dwc_proj.3.weight") or k.endswith("dwc_proj.3.bias")],
                   "large kernel": ["plk_filter"]}
    for branch, keys in knocked_out.items():
        changed = model.state_dict()
        changed.update({k: torch.zeros_like(sd[k]) for k in keys})
        probe = load_fixture(fixture)[0]
        probe.load_state_dict(changed)
        with torch.no_grad():
            diff = (probe(x) - want).abs().max().item()
        assert diff > 0.05, f"{fixture}: dropping the {branch} changes the output by only {diff:.3g}"


def test_batch_entries_are_independent() -> None:
    """The official inference path takes only batch 1; ours gives each image what batch 1 gives it."""
    model, x, want = load_fixture(FIXTURES[1])
    assert x.shape[0] == 2
    with torch.no_grad():
        alone = torch.cat([model(x[i:i + 1]) for i in range(2)])
        together = model(x)
    assert (alone - together).abs().max().item() <= 1e-5
    assert (together - want).abs().max().item() <= 1e-4


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_options_build_the_official_layout(scale: int) -> None:
    m = manifests()[f"ESCRIB_X{scale}.json"]
    assert m["weights"] == f"ESCRIB_DFLIP_X{scale}.pth"
    model = ESCRIB(**m["network_g"])
    got = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert got == m["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == m["params"]
    # written back as the official keywords, defaults spelled out
    assert model.config == {**m["network_g"], "use_ln": False, "upsampler_type": "pixelshuffle_direct"}


def test_config_round_trips_and_refuses_unknown_keywords() -> None:
    cfg = ESCRIBConfig.from_network_g({"type": "ESCRIB", "dim": 32, "window_size": 32})
    assert ESCRIBConfig.from_network_g(cfg.to_network_g()) == cfg
    assert ESCRIBConfig.from_network_g({"flashbias_rank": 12}).rank == 12  # the official alias of rank
    with pytest.raises(ValueError, match=r"window_sizes \(did you mean window_size\?\)"):
        ESCRIBConfig.from_network_g({"window_sizes": [64]})
    with pytest.raises(ValueError, match="gate_type"):
        ESCRIBConfig(gate_type="Linear")


def test_large_kernel_ensemble_is_symmetric_and_idempotent() -> None:
    """The official convert() stores the averaged filter; averaging it again changes nothing, so weights
    saved either way give the same output."""
    k = torch.randn(4, 4, 7, 7)
    e = geo_ensemble(k)
    assert torch.allclose(geo_ensemble(e), e, atol=1e-6)
    assert torch.allclose(e, e.flip(3), atol=1e-6) and torch.allclose(e, torch.rot90(e, 1, (2, 3)), atol=1e-6)


def test_any_input_size_and_gradients() -> None:
    torch.manual_seed(0)
    model = ESCRIB(dim=16, pdim=8, kernel_size=5, n_blocks=1, conv_blocks=1, window_size=16, num_heads=2,
                   upscaling_factor=2, rank=8, rib_hidden_dim=16)
    for h, w in [(1, 1), (7, 33), (16, 16)]:
        with torch.no_grad():
            assert model.eval()(torch.rand(1, 3, h, w)).shape == (1, 3, 2 * h, 2 * w)
    model.train()
    model(torch.rand(2, 3, 12, 12)).mean().backward()
    assert model.plk_filter.grad is not None and model.blocks[0].pconvs[0].plk.dwc_proj[3].weight.grad is not None


# ------------------------------------------------------------------------------------- every command
@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SST_WEIGHTS_DIR", raising=False)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    return tmp_path


def _official_file(folder: Path, scale: int, seed: int = 0) -> tuple[Path, ESCRIB]:
    """A randomly initialised esc-rib saved as the official code saves it, under its official name."""
    torch.manual_seed(seed)
    model = create_model("esc-rib", scale).eval()
    path = folder / f"ESCRIB_DFLIP_X{scale}.pth"
    torch.save({"params_ema": model.state_dict()}, path)
    return path, model


def test_cli_upscale_with_the_official_file_by_path(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, model = _official_file(workdir, 4)
    code = main(["upscale", "img.png", "out/", "--weights", "ESCRIB_DFLIP_X4.pth", "--device", "cpu",
                 "--json", "run.json"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((workdir / "run.json").read_text())["model"] == "esc-rib"
    got = np.asarray(Image.open(workdir / "out" / "img.png")).astype(np.float64)
    x = torch.from_numpy(np.array(Image.open(workdir / "img.png"))).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        want = (model(x).clamp(0, 1) * 255)[0].permute(1, 2, 0).numpy()
    assert got.shape == (32, 40, 3) and np.abs(got - want).max() <= 0.51  # these weights, this network, rounded


def test_official_file_by_name_through_the_hub(fake_hub: FakeHub, tmp_path: Path) -> None:  # noqa: F811
    path, model = _official_file(tmp_path, 2)
    fake_hub.repos = {"dslisleedh/ESC-RIB": {"README.md": b"# ESC-RIB", path.name: path.read_bytes()}}
    up = load_upscaler("esc-rib", 2, device="cpu")
    assert up.name == "esc-rib" and up.scale == 2 and up.source.endswith(path.name) and isinstance(up.model, ESCRIB)
    assert all(torch.equal(a, b) for a, b in zip(up.model.state_dict().values(), model.state_dict().values(),
                                                 strict=True))
    assert tiling.window_align(up) == 64 and up.window_max == 64  # tiles start on its 64-pixel window grid


def test_cli_upscale_tiled_with_tta(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    save_checkpoint(workdir / "small.safetensors", build_model(SMALL))
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(workdir / "big.png")
    code = main(["upscale", "big.png", "out/", "--weights", "small.safetensors", "--device", "cpu", "--tta",
                 "--tile", "32"])
    assert code == 0, capsys.readouterr().err
    assert Image.open(workdir / "out" / "big.png").size == (96, 128)
    up = load_upscaler(weights="small.safetensors", device="cpu")
    plan = tiling.plan_tiles(up, 64, 48, 32)  # starts on the window grid (16 here; 64 for the published esc-rib)
    assert plan.count > 1 and all(y % 16 == 0 for y in plan.ys[:-1]) and all(x % 16 == 0 for x in plan.xs[:-1])


def test_cli_eval_and_models(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _official_file(workdir, 2)
    hr = workdir / "HR"
    hr.mkdir()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(hr / "a.png")
    code = main(["eval", "--weights", "ESCRIB_DFLIP_X2.pth", "--dataset", str(hr), "--scale", "2", "--device", "cpu",
                 "--json", "-"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    (result,) = report["results"]
    assert result["model"] == "esc-rib" and result["scale"] == 2 and result["num_images"] == 1
    assert isinstance(result["psnr_y"], float) and 0 < result["psnr_y"] < 100
    assert main(["models", "--json", "-"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["variants"]}
    esc = rows["esc-rib"]
    assert esc["architecture"] == "ESCRIB" and esc["windows"] == [64] and esc["official"] == "ESCRIB"
    assert esc["flops_per_pixel"]["4"] > esc["flops_per_pixel"]["2"] > 10e6  # 64x64 attention: ~12 MFLOP a pixel
    assert esc["checkpoints"]["4"] == ["ESCRIB_DFLIP_X4.pth"]
    with gzip.open(data_path("manifests_escrib.json.gz"), "rt") as f:
        official = json.load(f)
    assert {s: esc["params"][s] for s in ("2", "3", "4")} == {str(s): official[f"ESCRIB_X{s}.json"]["params"]
                                                              for s in (2, 3, 4)}


def test_cli_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.json"
    code = main(["profile", "-m", "esc-rib", "-s", "4", "--size", "32x32", "--backend", "sdpa", "--device", "cpu",
                 "--warmup", "0", "--repeat", "1", "--threads", "1", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    (row,) = json.loads(out.read_text())["rows"]
    assert row["model"] == "esc-rib" and row["status"] == "ok" and row["input_hw"] == [8, 8]
    assert row["params"] == sum(p.numel() for p in create_model("esc-rib", 4).parameters())
    assert row["flops"] > row["attention_flops"] > 0


def test_shipped_configs_fine_tune_x3_and_x4_from_x2() -> None:
    for scale in (2, 3, 4):
        cfg = load_config(REPO / "configs" / f"esc-rib_x{scale}.yaml")
        net = network_config(cfg)
        assert net["type"] == "ESCRIB" and net["upscaling_factor"] == scale and net["window_size"] == 64
        assert (cfg.init_from is None) == (scale == 2)
        if cfg.init_from:
            assert cfg.init_from.endswith("runs/esc-rib_x2/final.safetensors")


def test_train_x2_then_fine_tune_x4(tmp_path: Path) -> None:
    data = tmp_path / "hr"
    data.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(data / f"{i}.png")
    network = "network={" + ", ".join(f"{k}: {v}" for k, v in SMALL.items() if k != "upscaling_factor") + "}"
    common = [f"train_hr=[{data}]", "iters=2", network, "patch=16", "batch=2"]
    x2 = train(load_config(REPO / "configs" / "tiny.yaml", common), tmp_path / "x2", log=lambda _m: None)
    result = train(load_config(REPO / "configs" / "tiny.yaml", [*common, "scale=4", f"init_from={x2.export}"]),
                   tmp_path / "x4", log=lambda _m: None)
    model = model_from_checkpoint(load_checkpoint(result.export))
    assert isinstance(model, ESCRIB) and model.scale == 4 and model.cfg.window_size == 16
    raw = torch.load(tmp_path / "x4" / "final_basicsr.pth", weights_only=True)  # the official layout + its config
    assert raw["network_g"]["type"] == "ESCRIB" and "plk_filter" in raw["params_ema"]
