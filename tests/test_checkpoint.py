"""Checkpoints: BasicSR .pth layouts, our safetensors and .pth formats, plain safetensors, refusing
code-running pickles, naming files that are not checkpoints, readable mismatch summaries, deciding the
network (stored config, official name, --model), upsampler re-sampling. Finding and downloading weights:
test_hub.py."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import data_path, manifest, manifest_names
from sst_cli import build_model, create_model
from sst_cli.errors import SSTError
from sst_cli.model.archs.sst.network import SST
from sst_cli.model.identify import describe_network, detect_network, identify
from sst_cli.model.loading import load_into, model_from_checkpoint, resample_upsampler
from sst_cli.model.registry import VARIANTS, get_variant
from sst_cli.model.weights import Checkpoint, load_checkpoint, save_basicsr, save_checkpoint

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


def _windows(name: str) -> list[int]:
    return get_variant(name).network_g(4)["window_sizes"]


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
    assert model.scale == 3 and list(model.window_sizes) == _windows("sst-light+")  # "Plus" in the name
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
    (b"this is not a checkpoint at all", "is a text file (starting 'this is not a checkpoint at all'), not a checkpoint"),
    (b"PK\x03\x04 a zip cut short", "not a readable PyTorch checkpoint"),
    (None, "does not exist"),
])
def test_unreadable_files_are_one_sentence_errors(tmp_path: Path, content: bytes | None, words: str) -> None:
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SSTError, match=re.escape(words)) as info:
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
    assert "does not fit sst x4" in msg and "looks like sst-light or sst-light+ x4" in msg
    assert "missing" in msg and "unexpected" in msg and "mis-shaped" in msg and " more" in msg


def test_not_an_sst_file_says_so() -> None:
    with pytest.raises(SSTError, match="not look like any network sst knows \\(SST or ESC-RIB or SSTReal\\)"):
        detect_network({"fc.weight": torch.zeros(2, 2)})
    with pytest.raises(SSTError, match="does not look like any network sst knows"):
        load_into(_tiny(), Checkpoint({"fc.weight": torch.zeros(2, 2)}, "resnet.pth"))


# ------------------------------------------------------------------------------ not a checkpoint
@pytest.mark.parametrize(("content", "words"), [
    ("<!DOCTYPE html>\n<html><head><title>Sign in - Hugging Face</title></head><body>...</body></html>",
     ["is an HTML page titled 'Sign in - Hugging Face'", "not a checkpoint", "--model NAME"]),
    ("  <html lang=en><body>404</body></html>", ["is an HTML page", "not a checkpoint"]),
    ('{"error": "Repository Not Found for url: https://huggingface.co/x/y/resolve/main/SST_DF2K_X4.pth."}',
     ["is a JSON file saying 'Repository Not Found", "not a checkpoint"]),
    ("[1, 2, 3]", ["is a JSON file", "not a checkpoint"]),
    ("version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 7351234\n",
     ["is a Git LFS pointer for a 7,351,234-byte file", "git lfs pull", "not a checkpoint"]),
    ("e" * 40, ["is a text file", "not a checkpoint"]),  # once "KeyError: 101" (101 is 'e')
])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_what_a_failed_download_leaves_is_named(tmp_path: Path, content: str, words: list[str], suffix: str) -> None:
    path = tmp_path / f"SSTLarge_Plus_DF2K_X4{suffix}"
    path.write_text(content)
    with pytest.raises(SSTError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    _one_sentence(msg)
    for w in words:
        assert w in msg, msg
    assert "arbitrary code" not in msg and "KeyError" not in msg and "safetensors file" not in msg


def test_binary_files_still_go_to_the_pytorch_reader(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SSTError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(path)


# -------------------------------------------------------------------------- which network a file holds
def _bare(name: str, scale: int = 4) -> dict[str, torch.Tensor]:
    with torch.device("meta"):  # shapes are all identification needs
        return create_model(name, scale).state_dict()


@pytest.mark.parametrize(("base", "plus"), [("sst-light", "sst-light+"), ("sst", "sst+"), ("sst-l", "sst-l+")])
def test_plus_twins_share_every_tensor_shape(base: str, plus: str) -> None:
    a, b = _bare(base), _bare(plus)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert _windows(base) != _windows(plus)


@pytest.mark.parametrize("name", ["sst-light", "sst-light+", "sst", "sst+", "sst-l", "sst-l+"])
def test_a_bare_state_dict_of_a_twin_needs_model(name: str) -> None:
    ckpt = Checkpoint(_bare(name), "/downloads/renamed.pth")
    with pytest.raises(SSTError) as info:
        identify(ckpt)
    msg = str(info.value)
    _one_sentence(msg)
    base = name.removesuffix("+")
    assert f"pass --model {base} or --model {base}+" in msg and "renamed.pth" in msg
    # --model decides between the twins, and is what runs
    net = identify(ckpt, name)
    assert net.name == name and net.basis == "--model"
    assert net.network_g["window_sizes"] == _windows(name)


@pytest.mark.parametrize("name", ["sst-xl+", "sst-tiny"])
def test_a_bare_state_dict_without_a_twin_is_recognised(name: str) -> None:
    net = identify(Checkpoint(_bare(name, 3), "weights.pth"))
    assert net.name == name and net.basis == "its tensor shapes" and net.network_g["upscaling_factor"] == 3


@pytest.mark.parametrize("file_name", ["SSTlight_Plus_DIV2K_X4.pth", "SSTlight_Plus_DIV2K_X4.safetensors"])
def test_the_official_file_name_decides(file_name: str) -> None:
    ckpt = Checkpoint(_bare("sst-light"), f"/w/{file_name}")  # the "+" file: same tensors as sst-light
    net = identify(ckpt)
    assert net.name == "sst-light+" and net.basis == "its official file name"
    assert identify(ckpt, "sst-light+").name == "sst-light+"
    with pytest.raises(SSTError) as info:
        identify(ckpt, "sst-light")
    msg = str(info.value)
    _one_sentence(msg)
    assert "--model sst-light contradicts" in msg and "sst-light+ x4" in msg and "official file name" in msg


@pytest.mark.parametrize("file_name", ["my-sst-light+.pth", "SSTlight_Plus_DIV2K_X4 (1).pth", "sstlight_plus_div2k_x4.pth",
                                       "SSTlight_Plus_X4.pth", "Plus.pth"])
def test_only_exact_official_names_count(file_name: str) -> None:
    with pytest.raises(SSTError, match="pass --model sst-light or --model sst-light\\+"):
        identify(Checkpoint(_bare("sst-light"), file_name))


def test_the_stored_config_decides_over_name_and_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("sst-light+", 2)
    path = save_checkpoint(tmp_path / "SSTlight_DIV2K_X2.safetensors", model)  # a misleading name
    ckpt = load_checkpoint(path)
    net = identify(ckpt)
    assert net.name == "sst-light+" and net.basis == "the config stored in it"
    with pytest.raises(SSTError, match="--model sst-light contradicts .* sst-light\\+ x2 \\(from the config stored in it\\)"):
        identify(ckpt, "sst-light")
    custom = load_checkpoint(save_checkpoint(tmp_path / "tiny.safetensors", _tiny()))
    assert identify(custom).name is None and identify(custom).network_g["window_sizes"] == [4, 8]
    with pytest.raises(SSTError, match="--model sst contradicts .* a custom SST \\(dim 8, 2 blocks\\) x2"):
        identify(custom, "sst")


def test_model_contradicting_the_tensors_names_both() -> None:
    with pytest.raises(SSTError) as info:
        identify(Checkpoint(_bare("sst-light"), "w.pth"), "sst-l+")
    msg = str(info.value)
    _one_sentence(msg)
    assert "--model sst-l+ contradicts w.pth" in msg and "sst-light or sst-light+ x4" in msg


def test_unknown_model_and_custom_bare_dicts_are_refused() -> None:
    with pytest.raises(SSTError, match="unknown model 'sst-huge'.*sst-tiny"):
        identify(Checkpoint(_bare("sst"), "w.pth"), "sst-huge")
    with pytest.raises(SSTError, match="window sizes are not stored in the file"):
        identify(Checkpoint(_tiny().state_dict(), "custom.pth"))


def test_our_basicsr_export_keeps_the_config(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("sst-light+", 2).eval()
    path = save_basicsr(tmp_path / "final_basicsr.pth", model)
    raw = torch.load(path, weights_only=True)  # BasicSR reads params_ema; the config is plain data
    assert set(raw) == {"params_ema", "network_g"} and _same_tensors(raw["params_ema"], model.state_dict())
    ckpt = load_checkpoint(path)
    assert identify(ckpt).name == "sst-light+"
    loaded = model_from_checkpoint(ckpt).eval()
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def _manifest_shapes(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    m = manifest(name)
    return m, {k: torch.empty(shape, device="meta") for k, shape in m["state_dict"]}


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_variant_and_scale_detected_for_every_manifest(manifest: str) -> None:
    m, sd = _manifest_shapes(manifest)
    official, scale = m["config"].rsplit("_X", 1)
    variant = get_variant(OFFICIAL_TO_OURS[official])
    for file_name in variant.checkpoint_names(int(scale)):  # e.g. SSTLarge_Plus_DF2K_X4.pth
        net = identify(Checkpoint(sd, f"/some/dir/{file_name}"))
        assert _normalised(net.network_g) == _normalised(m["network_g"]), file_name
        assert describe_network(net.network_g) == f"{variant.name} x{scale}"
    shapes = detect_network(sd)
    assert "window_sizes" not in shapes  # RIB weights do not record them
    assert _normalised(shapes) == {k: v for k, v in _normalised(m["network_g"]).items() if k != "window_sizes"}


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


# -------------------------------------------------------------------------------- through the CLI
@pytest.fixture
def one_image(tmp_path: Path, monkeypatch) -> Path:
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SST_WEIGHTS_DIR", raising=False)
    Image.new("RGB", (10, 8), (200, 30, 90)).save(tmp_path / "in.png")
    return tmp_path


def _upscale(args: list[str], capsys) -> tuple[int, str]:
    from sst_cli.cli import main

    code = main(["upscale", "in.png", "out", "--device", "cpu", *args])
    return code, " ".join(capsys.readouterr().err.split())


def _light_file(path: Path) -> Path:
    torch.manual_seed(0)
    torch.save({"params_ema": create_model("sst-light", 4).state_dict()}, path)
    return path


def test_cli_model_contradicting_the_file_is_refused(one_image: Path, capsys) -> None:
    plus = _light_file(one_image / "SSTlight_Plus_DIV2K_X4.pth")  # the name says sst-light+
    code, err = _upscale(["--model", "sst-light", "--weights", str(plus)], capsys)
    assert code == 1 and "--model sst-light contradicts" in err and "sst-light+ x4" in err
    assert "official file name" in err and "Traceback" not in err
    assert not (one_image / "out" / "in.png").exists()


def test_cli_a_bare_twin_without_model_asks_for_it(one_image: Path, capsys) -> None:
    renamed = _light_file(one_image / "renamed.pth")
    code, err = _upscale(["--weights", str(renamed)], capsys)
    assert code == 1 and "pass --model sst-light or --model sst-light+" in err
    assert not (one_image / "out" / "in.png").exists()


def test_cli_sst_tiny_by_name_and_the_label_names_what_ran(one_image: Path, capsys) -> None:
    import json as json_module

    from sst_cli.model.weights import bundled_path

    code, err = _upscale(["--model", "sst-tiny", "--scale", "2", "--json", "a.json"], capsys)
    assert code == 0, err
    assert json_module.loads((one_image / "a.json").read_text())["model"] == "sst-tiny"
    (one_image / "my-model.safetensors").write_bytes(bundled_path(2).read_bytes())
    code, err = _upscale(["--weights", "my-model.safetensors", "--json", "b.json", "--overwrite"], capsys)
    assert code == 0, err
    assert json_module.loads((one_image / "b.json").read_text())["model"] == "sst-tiny"  # not the file's stem


@pytest.mark.parametrize(("content", "what"), [
    ("<!doctype html><html><head><title>404</title></head></html>", "is an HTML page titled '404'"),
    ("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 12\n", "is a Git LFS pointer"),
    ('{"error": "Invalid username or password."}', "is a JSON file saying 'Invalid username or password.'"),
])
def test_cli_a_failed_download_is_named(one_image: Path, capsys, content: str, what: str) -> None:
    (one_image / "SSTLarge_Plus_DF2K_X4.pth").write_text(content)
    code, err = _upscale(["--weights", "SSTLarge_Plus_DF2K_X4.pth"], capsys)
    assert code == 1 and what in err and "not a checkpoint" in err and "--model NAME" in err, err
    assert "arbitrary code" not in err and not (one_image / "out" / "in.png").exists()


def test_cli_bicubic_takes_no_weights(one_image: Path, capsys) -> None:
    code, err = _upscale(["--model", "bicubic", "--weights", "any.pth"], capsys)
    assert code == 2 and "--model bicubic" in err and "takes no --weights" in err
    assert not (one_image / "out" / "in.png").exists()


def test_a_custom_network_never_borrows_a_registry_name(tmp_path: Path) -> None:
    from sst_cli.upscale.upscaler import load_upscaler

    path = save_checkpoint(tmp_path / "run.safetensors", _tiny(), meta={"name": "sst-light"})  # trained from a recipe
    assert load_upscaler(weights=str(path), device="cpu").name == "custom sst-light"
    path = save_checkpoint(tmp_path / "run2.safetensors", _tiny(), meta={"name": "my-sr"})
    assert load_upscaler(weights=str(path), device="cpu").name == "my-sr"
