"""Checkpoints: BasicSR .pth layouts, our safetensors format, plain safetensors, refusing code-running
pickles, readable mismatch summaries, variant/scale detection, upsampler re-sampling, finding and
downloading weights."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import pickle
import threading
from functools import partial
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import data_path, manifest, manifest_names
from sst_cli import build_model, create_model
from sst_cli.errors import SSTError
from sst_cli.model.network import SST
from sst_cli.model.registry import VARIANTS, get_variant
from sst_cli.model.weights import (
    HF_COLLECTION,
    Checkpoint,
    describe_network,
    fetch,
    find_official,
    infer_network_g,
    load_checkpoint,
    load_into,
    missing_weights_message,
    model_from_checkpoint,
    resample_upsampler,
    save_checkpoint,
)

OFFICIAL_TO_OURS = {v.official: v.name for v in VARIANTS.values()}
MANIFESTS = manifest_names()


def _tiny(scale: int = 2, upsampler: str = "pixelshuffle", seed: int = 0) -> SST:
    torch.manual_seed(seed)
    return build_model({"dim": 8, "window_sizes": [4, 8], "num_heads": 2, "ranks": 4, "n_blocks": 2,
                        "exp_ratio": 1.5, "upscaling_factor": scale, "upsampler_type": upsampler,
                        "intermediate_dim": 8})


def _light_sd(scale: int = 2) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return create_model("sst-light", scale).state_dict()


def _same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _one_sentence(msg: str) -> None:
    assert "\n" not in msg and msg.endswith(".") and "Traceback" not in msg, msg


def _normalised(network_g: dict) -> dict:
    """Constructor keywords with defaults made explicit (intermediate_dim is 64 unless given)."""
    cfg = {k: v for k, v in network_g.items() if k != "type"}
    if cfg["upsampler_type"] == "pixelshuffle":
        cfg.setdefault("intermediate_dim", 64)
    return cfg


# ------------------------------------------------------------------------------------- BasicSR .pth
@pytest.mark.parametrize("layout", ["params_ema", "params", "bare", "module_prefix"])
def test_basicsr_pth_layouts(tmp_path: Path, layout: str) -> None:
    sd = _light_sd()
    other = {k: v + 1 for k, v in sd.items()}  # the non-EMA weights, which must not be picked
    obj = {
        "params_ema": {"params_ema": sd, "params": other},
        "params": {"params": sd},
        "bare": sd,
        "module_prefix": {"params_ema": {f"module.{k}": v for k, v in sd.items()}},
    }[layout]
    path = tmp_path / "SSTlight_DIV2K_X2.pth"  # the official file name: detection needs no --model
    torch.save(obj, path)
    ckpt = load_checkpoint(path)
    assert _same_tensors(ckpt.state_dict, sd)
    assert ckpt.network_g is None
    model = model_from_checkpoint(ckpt)
    assert model.config == build_model(get_variant("sst-light").network_g(2)).config
    assert _same_tensors(model.state_dict(), sd)


def test_official_fixture_weights_load_from_a_basicsr_file(tmp_path: Path) -> None:
    import numpy as np

    data = np.load(data_path("fixtures", "fixture_SSTlight_X4_45x70.npz"))
    meta = json.loads(str(data["meta_json"]))
    sd = {k.removeprefix("state_dict/"): torch.from_numpy(data[k]) for k in data.files if k.startswith("state_dict/")}
    path = tmp_path / "SSTlight_DFLIP_X4.pth"
    torch.save({"params_ema": sd}, path)
    model = model_from_checkpoint(load_checkpoint(path))
    assert _normalised(model.config) == _normalised(meta["network_g"])
    assert _same_tensors(model.state_dict(), sd)


# ------------------------------------------------------------------------------- safetensors formats
def test_our_format_round_trips_config_and_meta(tmp_path: Path) -> None:
    model = _tiny().eval()  # windows 4/8 leave no trace in the weights: only the header knows them
    path = save_checkpoint(tmp_path / "run" / "tiny.safetensors", model, meta={"iter": 7, "name": "tiny"})
    assert sorted(os.listdir(path.parent)) == ["tiny.safetensors"]  # no temp file left behind
    ckpt = load_checkpoint(path)
    assert ckpt.network_g == model.config and ckpt.meta == {"iter": 7, "name": "tiny"}
    loaded = model_from_checkpoint(ckpt).eval()
    assert loaded.window_sizes == (4, 8)
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_our_format_in_bf16_loads_into_float32(tmp_path: Path) -> None:
    model = _tiny()
    path = save_checkpoint(tmp_path / "half.safetensors", model, dtype=torch.bfloat16)
    assert path.stat().st_size < 0.6 * save_checkpoint(tmp_path / "full.safetensors", model).stat().st_size
    loaded = model_from_checkpoint(load_checkpoint(path))
    for k, v in loaded.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, model.state_dict()[k].bfloat16().float()), k


def test_plain_safetensors_and_content_sniffing(tmp_path: Path) -> None:
    sd = _light_sd(3)
    plain = tmp_path / "SSTlight_Plus_DFLIP_X3.safetensors"
    save_file(sd, str(plain))
    ckpt = load_checkpoint(plain)
    assert ckpt.network_g is None and _same_tensors(ckpt.state_dict, sd)
    model = model_from_checkpoint(ckpt)
    assert model.scale == 3 and model.window_sizes == get_variant("sst-light+").window_sizes  # "Plus" in the name
    # A safetensors file with a .pth name is recognised by its content, not its extension.
    disguised = tmp_path / "SSTlight_DIV2K_X3.pth"
    disguised.write_bytes(plain.read_bytes())
    assert _same_tensors(load_checkpoint(disguised).state_dict, sd)


# ----------------------------------------------------------------------------------------- refusals
class _RunsCode:
    """Unpickling this calls os.mkdir(marker): exactly what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickle_that_would_run_code_is_refused(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "SSTlight_DIV2K_X4.pth"
    if writer == "torch.save":
        torch.save({"params_ema": {"proj.weight": torch.zeros(1)}, "extra": _RunsCode(marker)}, path)
    else:  # a plain pickle (no tensors, whose own reducer would be refused first)
        path.write_bytes(pickle.dumps({"params_ema": {"proj.weight": [0.0]}, "extra": _RunsCode(marker)}, protocol=2))
    with pytest.raises(SSTError) as info:
        load_checkpoint(path)
    assert not marker.exists()  # nothing ran
    msg = str(info.value)
    _one_sentence(msg)
    assert "refused" in msg and "arbitrary code" in msg and "Weights only load failed" not in msg
    assert "mkdir" in msg  # names what it would have called


@pytest.mark.parametrize(("content", "words"), [
    (b"", "empty"),
    (b"this is not a checkpoint at all", "not a readable"),
    (None, "does not exist"),
])
def test_unreadable_files_are_one_sentence_errors(tmp_path: Path, content: bytes | None, words: str) -> None:
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SSTError, match=words) as info:
        load_checkpoint(path)
    _one_sentence(str(info.value))


def test_pth_without_a_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.pth"
    torch.save({"params": [1, 2, 3]}, path)
    with pytest.raises(SSTError, match="no state dict"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------- mismatch summary
def test_mismatch_lists_missing_unexpected_and_misshaped_keys() -> None:
    model = _tiny()
    sd = dict(model.state_dict())
    del sd["body.0.0.attn.to_q"]
    sd["body.0.0.attn.rpb_table"] = torch.zeros(49, 2)
    sd["proj.weight"] = torch.zeros(16, 3, 3, 3)
    with pytest.raises(SSTError) as info:
        load_into(_tiny(), Checkpoint(sd, "broken.pth"))
    msg = str(info.value)
    _one_sentence(msg)
    assert "broken.pth" in msg
    assert "1 missing key(s): body.0.0.attn.to_q" in msg
    assert "1 unexpected key(s): body.0.0.attn.rpb_table" in msg
    assert "1 mis-shaped key(s): proj.weight (file [16, 3, 3, 3], model [8, 3, 3, 3])" in msg
    assert "Error(s) in loading state_dict" not in msg  # no raw PyTorch dump


def test_wrong_variant_names_what_the_file_looks_like() -> None:
    with torch.device("meta"):  # shapes are all the summary needs
        light = create_model("sst-light", 4).state_dict()
        target = create_model("sst", 4)
    with pytest.raises(SSTError) as info:
        load_into(target, Checkpoint(light, "SSTlight_DIV2K_X4.pth"))
    msg = str(info.value)
    _one_sentence(msg)
    assert "does not fit sst x4" in msg and "looks like sst-light x4" in msg
    assert "missing" in msg and "unexpected" in msg and "mis-shaped" in msg and " more" in msg


def test_not_an_sst_file_says_so() -> None:
    with pytest.raises(SSTError, match="not look like an SST network"):
        infer_network_g({"fc.weight": torch.zeros(2, 2)})
    with pytest.raises(SSTError, match="does not look like an SST network"):
        load_into(_tiny(), Checkpoint({"fc.weight": torch.zeros(2, 2)}, "resnet.pth"))


# --------------------------------------------------------------------------------------- detection
def _manifest_shapes(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    m = manifest(name)
    return m, {k: torch.empty(shape, device="meta") for k, shape in m["state_dict"]}


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_variant_and_scale_detected_for_every_manifest(manifest: str) -> None:
    m, sd = _manifest_shapes(manifest)
    official, scale = m["config"].rsplit("_X", 1)
    variant = get_variant(OFFICIAL_TO_OURS[official])
    for file_name in variant.checkpoint_names(int(scale)):  # e.g. SSTLarge_Plus_DF2K_X4.pth
        cfg = infer_network_g(sd, f"/some/dir/{file_name}")
        assert _normalised(cfg) == _normalised(m["network_g"]), file_name
        assert describe_network(cfg, file_name) == f"{variant.name} x{scale}"


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_plus_variants_need_plus_in_the_file_name(manifest: str) -> None:
    """RIB weights carry no window size, so SST+ and SST have identical tensors: without "Plus" (or "+")
    in the name the classic twin is assumed; sst-xl+ has no twin and is always found."""
    m, sd = _manifest_shapes(manifest)
    official = m["config"].rsplit("_X", 1)[0]
    ours = OFFICIAL_TO_OURS[official]
    cfg = infer_network_g(sd, "downloaded_weights.pth")
    expect = ours if ours == "sst-xl+" else ours.removesuffix("+")
    assert cfg["window_sizes"] == list(get_variant(expect).window_sizes)
    assert describe_network(cfg) == f"{expect} x{m['scale']}"
    assert infer_network_g(sd, f"my-{ours}.pth")["window_sizes"] == list(get_variant(ours).window_sizes)


# ------------------------------------------------------------------------------ upsampler re-sampling
@pytest.mark.parametrize("upsampler", ["pixelshuffle", "pixelshuffle_direct"])
def test_upsampler_resampled_from_x2_to_x4_only_when_asked(tmp_path: Path, upsampler: str) -> None:
    src = _tiny(2, upsampler)
    groups = 8 if upsampler == "pixelshuffle" else 3  # channels per sub-pixel position
    with torch.no_grad():  # sub-pixel-constant weights: value c for every output channel of group c
        w = src.upsampler.up_conv.weight
        w.copy_(torch.arange(groups, dtype=torch.float32).repeat_interleave(4).view(-1, 1, 1, 1).expand_as(w))
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "x2.safetensors", src))

    with pytest.raises(SSTError, match="x2 model, not x4") as info:
        model_from_checkpoint(ckpt, scale=4)
    _one_sentence(str(info.value))

    model = model_from_checkpoint(ckpt, scale=4, resample_scale=True).eval()
    assert model.scale == 4
    new_w = model.upsampler.up_conv.weight
    assert new_w.shape == (groups * 16, *w.shape[1:])
    # A constant grid stays constant, and each group stays in its own block of s*s channels.
    want = torch.arange(groups, dtype=torch.float32).repeat_interleave(16).view(-1, 1, 1, 1).expand_as(new_w)
    assert torch.allclose(new_w, want, atol=1e-6)
    for k, v in src.state_dict().items():
        if not k.startswith("upsampler.up_conv"):
            assert torch.equal(model.state_dict()[k], v), k
    with torch.no_grad():
        assert model(torch.rand(1, 3, 6, 5)).shape == (1, 3, 24, 20)


def test_resampling_to_the_same_scale_is_the_identity() -> None:
    sd = _tiny(2).state_dict()
    assert resample_upsampler(sd, 2) is sd
    model = model_from_checkpoint(Checkpoint(sd, "x.pth", _tiny(2).config), scale=2, resample_scale=True)
    assert _same_tensors(model.state_dict(), sd)


# ------------------------------------------------------------------------- finding and fetching files
@pytest.fixture
def isolated_search(tmp_path: Path, monkeypatch) -> Path:
    """No real cache, weights dir or checkpoints/ folder leaks into the search."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SST_WEIGHTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_weights_found_in_sst_weights_dir(isolated_search: Path, monkeypatch) -> None:
    variant = get_variant("sst-l+")
    assert find_official(variant, 4) is None
    weights_dir = isolated_search / "weights"
    weights_dir.mkdir()
    (weights_dir / "SSTLarge_Plus_DFLIP_X4.pth").write_bytes(b"x")
    monkeypatch.setenv("SST_WEIGHTS_DIR", str(weights_dir))
    assert find_official(variant, 4) == weights_dir / "SSTLarge_Plus_DFLIP_X4.pth"
    assert find_official(variant, 2) is None
    # The user cache is searched too (after $SST_WEIGHTS_DIR).
    cache = isolated_search / "cache" / "sst"
    cache.mkdir(parents=True)
    (cache / "SSTLarge_Plus_DF2K_X2.pth").write_bytes(b"x")
    assert find_official(variant, 2) == cache / "SSTLarge_Plus_DF2K_X2.pth"


def test_missing_official_weights_message(isolated_search: Path) -> None:
    msg = missing_weights_message(get_variant("sst"), 3)
    _one_sentence(msg)
    assert "SST_DF2K_X3.pth" in msg and HF_COLLECTION == "dslisleedh/sst" and "dslisleedh/sst" in msg
    assert "http" not in msg  # no invented download URL
    from sst_cli.upscale.upscaler import load_upscaler

    with pytest.raises(SSTError) as info:
        load_upscaler(model="sst", scale=3, device="cpu")
    assert str(info.value) == msg


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture
def http_root(tmp_path: Path):
    root = tmp_path / "served"
    root.mkdir()
    handler = type("Handler", (_CountingHandler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    finally:
        server.shutdown()
        server.server_close()


def test_url_weights_downloaded_once_with_sha256(tmp_path: Path, http_root) -> None:
    root, base, requests = http_root
    model = _tiny()
    save_checkpoint(root / "tiny_x2.safetensors", model)
    digest = hashlib.sha256((root / "tiny_x2.safetensors").read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    seen: list[tuple[int, int | None]] = []

    path = fetch(f"{base}/tiny_x2.safetensors", sha256=digest.upper(), cache=cache,
                 progress=lambda done, total: seen.append((done, total)))
    assert path == cache / "tiny_x2.safetensors"
    assert path.read_bytes() == (root / "tiny_x2.safetensors").read_bytes()
    assert seen and seen[-1][0] == seen[-1][1] == path.stat().st_size
    again = fetch(f"{base}/tiny_x2.safetensors", sha256=digest, cache=cache)
    assert again == path and requests == ["/tiny_x2.safetensors"]  # the second call used the cache
    assert _same_tensors(model_from_checkpoint(load_checkpoint(path)).state_dict(), model.state_dict())


def test_url_with_wrong_sha256_is_removed(tmp_path: Path, http_root) -> None:
    root, base, _ = http_root
    (root / "w.pth").write_bytes(b"not what you expected")
    cache = tmp_path / "cache"
    with pytest.raises(SSTError, match="sha256") as info:
        fetch(f"{base}/w.pth", sha256="0" * 64, cache=cache)
    _one_sentence(str(info.value))
    assert not (cache / "w.pth").exists() and not [p for p in cache.iterdir() if p.is_file()]


def test_unreachable_url_is_one_sentence(tmp_path: Path, http_root) -> None:
    _, base, _ = http_root
    with pytest.raises(SSTError, match="could not download") as info:
        fetch(f"{base}/missing.pth", cache=tmp_path / "cache")
    _one_sentence(str(info.value))
    assert not (tmp_path / "cache" / "missing.pth").exists()


def test_engine_loads_weights_from_a_url(isolated_search: Path, http_root) -> None:
    from sst_cli.upscale.upscaler import load_upscaler

    root, base, requests = http_root
    model = _tiny()
    save_checkpoint(root / "tiny_x2.safetensors", model)
    up = load_upscaler(weights=f"{base}/tiny_x2.safetensors", device="cpu")
    assert up.scale == 2 and (isolated_search / "cache" / "sst" / "tiny_x2.safetensors").is_file()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert (up(x) - model.eval()(x)).abs().max() < 1e-5
    load_upscaler(weights=f"{base}/tiny_x2.safetensors", device="cpu")
    assert len(requests) == 1
