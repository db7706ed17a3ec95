"""ESC-RIB against the official network: fixtures, official layouts, any batch size, config round trips."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from conftest import data_path
from sst_cli.model.archs.esc_rib import ESCRIBConfig
from sst_cli.model.archs.esc_rib.network import ESCRIB, geo_ensemble
from sst_cli.model.attention import BACKENDS, unavailable_reason

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
    assert torch.allclose(e, e.flip(3)) and torch.allclose(e, torch.rot90(e, 1, (2, 3)), atol=1e-6)


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
