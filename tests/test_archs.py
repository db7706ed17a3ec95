"""Architectures: dispatch on the official type, one config per network, detection from state dicts (and the
refusal of twins), cost models against measurement, no import cycle, and the keyword names in one place."""

from __future__ import annotations

import ast
import gzip
import json
import re
import weakref
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

import sst_cli
from conftest import data_path, manifest, manifest_names
from sst_cli.errors import SSTError
from sst_cli.model import archs, registry
from sst_cli.model.archs import ARCHS, build_model, config_of, cost_of
from sst_cli.model.archs.esc_rib import ESCRIBConfig
from sst_cli.model.archs.esc_rib.network import ESCRIB
from sst_cli.model.archs.sst import SSTConfig
from sst_cli.model.archs.sst.network import SST
from sst_cli.model.identify import describe_network, detect_network, identify
from sst_cli.model.loading import load_into, model_from_checkpoint, resample_upsampler
from sst_cli.model.registry import VARIANTS, Variant, create_model, get_variant
from sst_cli.model.weights import Checkpoint
from sst_cli.upscale import tiling
from sst_cli.upscale.upscaler import Upscaler

REPO = Path(__file__).resolve().parents[1]
SMALL_ESC = {"type": "ESCRIB", "dim": 16, "pdim": 8, "kernel_size": 7, "n_blocks": 2, "conv_blocks": 2, "window_size": 16,
             "num_heads": 2, "rank": 8, "rib_hidden_dim": 16, "upscaling_factor": 3, "upsampler_type": "pixelshuffle",
             "intermediate_dim": 8, "use_ln": True}
SMALL_SST = {"dim": 8, "window_sizes": [4, 8], "num_heads": 2, "ranks": 4, "n_blocks": 2, "exp_ratio": 1.5,
             "upscaling_factor": 3, "upsampler_type": "pixelshuffle", "intermediate_dim": 8}


def escrib_manifests() -> dict[str, dict]:
    with gzip.open(data_path("manifests_escrib.json.gz"), "rt") as f:
        return json.load(f)


def _bare(name: str, scale: int = 4) -> dict[str, torch.Tensor]:
    with torch.device("meta"):  # shapes are all detection needs
        return create_model(name, scale).state_dict()


# ------------------------------------------------------------------------------------------ dispatch
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_escrib_options_build_escrib_through_the_package_api(scale: int) -> None:
    m = escrib_manifests()[f"ESCRIB_X{scale}.json"]
    assert m["network_g"]["type"] == "ESCRIB"
    with torch.device("meta"):
        net = sst_cli.build_model(m["network_g"])  # the network_g of options/test/ESCRIB_X{scale}.yaml, as is
    assert isinstance(net, ESCRIB) and net.scale == scale
    assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == m["state_dict"]
    assert registry.official_file_for(get_variant("esc-rib"), scale).name == m["weights"]  # ESCRIB_DFLIP_X{s}.pth
    assert config_of(get_variant("esc-rib").network_g(scale)) == config_of(m["network_g"])


def test_missing_type_is_sst_and_unknown_types_are_named() -> None:
    g = manifest(manifest_names()[0])["network_g"]
    del g["type"]
    with torch.device("meta"):
        assert isinstance(build_model(g), SST)
    with pytest.raises(ValueError, match="unknown network type 'SwinIR' \\(sst builds: SST, ESCRIB, EDMUNet\\)"):
        build_model({"type": "SwinIR"})
    with pytest.raises(ValueError, match=r"unknown SST keyword\(s\): window_size \(did you mean window_sizes\?\)"):
        build_model({"type": "SST", "window_size": 8})
    with pytest.raises(ValueError, match=r"unknown ESCRIB keyword\(s\): window_sizes \(did you mean window_size\?\)"):
        build_model({"type": "ESCRIB", "window_sizes": [64]})


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_config_round_trips(name: str) -> None:
    scales = get_variant(name).scales
    g = get_variant(name).network_g(scales[0])
    cfg = config_of(g)
    assert type(cfg).TYPE == g["type"] == get_variant(name).type
    assert config_of(cfg.to_network_g()) == cfg and cfg.scale == scales[0] and cfg.at_scale(scales[-1]).scale == scales[-1]
    assert cfg.bias == "rib"
    if type(cfg).TYPE != "EDMUNet":  # SSTReal is RIB only, as released
        assert cfg.with_bias("rpb").bias == "rpb"


def test_sst_config_is_the_one_home_of_its_keywords() -> None:
    one = SSTConfig.from_network_g({"window_sizes": [8, 16], "num_heads": 2, "ranks": 4})
    per_layer = SSTConfig.from_network_g({"window_sizes": [8, 16], "num_heads": [2, 2], "ranks": [4, 4]})
    assert one == per_layer and one.to_network_g()["num_heads"] == [2, 2]  # the same network compares equal
    net = build_model(SMALL_SST)
    assert net.cfg == config_of(SMALL_SST) and net.config == config_of(SMALL_SST).to_network_g()
    assert "intermediate_dim" not in SSTConfig().to_network_g()  # only where the upsampler uses it
    with pytest.raises(ValueError, match="one entry per layer"):
        SSTConfig(window_sizes=(8, 16), num_heads=(2, 2, 2))
    with pytest.raises(ValueError, match="attn_type"):
        ESCRIBConfig(attn_type="ALiBi")


# ---------------------------------------------------------------------------------------- detection
@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_architecture_detects_only_its_own_state_dicts(name: str) -> None:
    scale = get_variant(name).scales[0]  # 2 where it exists
    sd = _bare(name, scale)
    kind = get_variant(name).type
    for arch in ARCHS.values():
        found = arch.detect(sd)
        assert (found is not None) == (arch.type == kind), (name, arch.type)
    detected = detect_network(sd)
    assert archs.fits(detected, get_variant(name).network_g(scale)) and archs.scale_of(detected) == scale
    assert archs.unrecorded(detected) == list(type(config_of(get_variant(name).network_g(scale))).WINDOW_KEYS)


def test_escrib_is_told_from_sst_by_its_keys() -> None:
    sd = _bare("esc-rib")
    assert "plk_filter" in sd and any(re.match(r"blocks\.\d+\.pconvs\.", k) for k in sd)
    assert not any(k.startswith("body.") for k in sd)
    assert ARCHS["SST"].detect(sd) is None and ARCHS["ESCRIB"].detect(_bare("sst-light")) is None


def test_escrib_fixture_weights_are_detected_with_every_recorded_keyword() -> None:
    data = np.load(data_path("fixtures", "fixture_escrib_w64_pixelshuffle_X3_40x36_b2.npz"))
    meta = json.loads(str(data["meta_json"]))
    sd = {k.removeprefix("state_dict/"): torch.from_numpy(data[k]) for k in data.files if k.startswith("state_dict/")}
    detected = detect_network(sd)
    want = config_of(meta["network_g"]).to_network_g()
    assert detected == {k: v for k, v in want.items() if k != "window_size"}  # RIB weights keep no window
    assert describe_network(detected) == "a custom ESC-RIB (dim 16, 1 blocks) x3"
    with pytest.raises(SSTError, match="window sizes are not stored in the file"):
        identify(Checkpoint(sd, "net_g_latest.pth"))
    rpb = build_model({**SMALL_ESC, "attn_type": "RPB", "window_size": 8}).state_dict()
    assert detect_network(rpb)["window_size"] == 8  # RPB tables record their window


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_escrib_by_official_name_and_by_its_tensors(scale: int) -> None:
    sd = _bare("esc-rib", scale)
    by_name = identify(Checkpoint(sd, f"/w/ESCRIB_DFLIP_X{scale}.pth"))
    assert by_name.name == "esc-rib" and by_name.basis == "its official file name"
    assert config_of(by_name.network_g).windows == (64,)
    # A bare state dict: the one registry network with these tensors, and the answer says what it assumed
    bare = identify(Checkpoint(sd, "/w/renamed.pth"))
    assert bare.name == "esc-rib" and bare.basis == "its tensor shapes" and config_of(bare.network_g).windows == (64,)
    assert bare.assumed == "windows 64 assumed: those of esc-rib, the only known network with these tensors"
    with pytest.raises(SSTError, match="--model sst-light contradicts .* esc-rib x"):
        identify(Checkpoint(sd, "/w/renamed.pth"), "sst-light")


def test_two_escrib_variants_differing_only_in_window_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Today's "+" rule holds for every architecture: equal tensors, other windows, no name: ask."""
    w32 = Variant("esc-rib-w32", "ESCRIB_W32", {**get_variant("esc-rib").network, "window_size": 32}, ("DFLIP",))
    monkeypatch.setitem(VARIANTS, w32.name, w32)
    ckpt = Checkpoint(_bare("esc-rib"), "/w/renamed.pth")
    with pytest.raises(SSTError) as info:
        identify(ckpt)
    msg = str(info.value)
    assert "pass --model esc-rib or --model esc-rib-w32" in msg and "differ only in window sizes" in msg
    assert config_of(identify(ckpt, "esc-rib-w32").network_g).windows == (32,)


@pytest.mark.parametrize("bias", ["RIB", "RPB"])
def test_a_new_escrib_is_initialised_like_the_official_one(bias: str) -> None:
    """As the official ESCRIB starts: RIB vectors' MLP normal (std 0.05), dynamic-kernel predictor zero. The
    positional parameters are created empty: left so, training or --random-weights would start from whatever
    memory held."""
    torch.manual_seed(0)
    net = build_model({**get_variant("esc-rib").network_g(2), "attn_type": bias})
    assert all(torch.isfinite(p).all() for p in net.parameters())
    attn = net.blocks[0].attn
    dynamic = net.blocks[0].pconvs[0].plk.dwc_proj[3]  # zero: no dynamic kernel until trained
    assert not dynamic.weight.any() and not dynamic.bias.any()
    if bias == "RIB":
        assert abs(attn.to_q.std().item() - 0.05) < 0.005 and torch.equal(attn.hidden_b, torch.zeros_like(attn.hidden_b))
    else:
        assert abs(attn.rpb_table.std().item() - 0.02) < 0.002


def test_escrib_from_x2_to_x4_resamples_the_shared_upsampler() -> None:
    torch.manual_seed(0)
    x2 = build_model({**SMALL_ESC, "upscaling_factor": 2}).eval()
    ckpt = Checkpoint(x2.state_dict(), "x2.safetensors", x2.config)
    with pytest.raises(SSTError, match="x2 model, not x4"):
        model_from_checkpoint(ckpt, scale=4)
    x4 = model_from_checkpoint(ckpt, scale=4, resample_scale=True).eval()
    assert isinstance(x4, ESCRIB) and x4.scale == 4
    up = resample_upsampler(x2.state_dict(), 4)["upsampler.up_conv.weight"]
    assert torch.equal(x4.state_dict()["upsampler.up_conv.weight"], up) and up.shape[0] == 8 * 16
    for k, v in x2.state_dict().items():
        if not k.startswith("upsampler.up_conv"):
            assert torch.equal(x4.state_dict()[k], v), k
    with torch.no_grad():
        assert x4(torch.rand(1, 3, 5, 6)).shape == (1, 3, 20, 24)
    with pytest.raises(SSTError, match="does not fit a custom ESC-RIB"):
        load_into(build_model(SMALL_ESC), Checkpoint(_bare("sst-tiny"), "tiny.pth"))


# ---------------------------------------------------------------------------------------- cost model
def _old_bytes_per_pixel(up: Upscaler) -> float:
    """tiling.bytes_per_pixel as it was before the cost models (sst 0.4.0), reading the network's keywords."""
    cfg = up.model.config
    elem = torch.finfo(up.dtype).bits // 8
    scale, dim = up.scale, cfg["dim"]
    out = 3 * scale * scale * 4 * 3
    hidden = dim * float(cfg.get("exp_ratio", 2))
    act = elem * (8 * dim + 3 * hidden)
    up_bytes = elem * int(cfg.get("intermediate_dim", dim) or dim) * scale * scale * 2
    if up.backend in ("naive", "sdpa-math"):
        act += elem * max(cfg["num_heads"]) * max(cfg["window_sizes"]) ** 2 * 2
    return float(act + up_bytes + out)


def _old_widest(up: Upscaler) -> int:
    cfg, s = up.model.config, up.scale
    elem = torch.finfo(up.dtype).bits // 8
    dim = cfg["dim"]
    inter = cfg["intermediate_dim"] * s * s if cfg["upsampler_type"] == "pixelshuffle" else 3 * s * s
    return max(dim, int(dim * float(cfg["exp_ratio"])), inter, 3 * s * s) * elem


@pytest.mark.parametrize("name", [n for n, v in VARIANTS.items() if v.type == "SST"])
def test_sst_tile_sizing_is_unchanged_by_the_cost_models(name: str) -> None:
    with torch.device("meta"):
        built = create_model(name, 4)
    for scale in (2, 3, 4):
        # What a network built at ``scale`` carries for sizing, without building it again (slow on meta)
        cfg = config_of(get_variant(name).network_g(scale))
        net = built if scale == 4 else SimpleNamespace(cfg=cfg, config=cfg.to_network_g())
        assert net.cfg == cfg and net.config == cfg.to_network_g()
        for dtype in (torch.float32, torch.bfloat16):
            for backend in ("sdpa", "naive"):
                up = Upscaler(net, name, scale, torch.device("cpu"), dtype, backend, "test")
                assert tiling.bytes_per_pixel(up) == _old_bytes_per_pixel(up), (scale, dtype, backend)
                assert tiling.widest_activation(up) == _old_widest(up)
                assert tiling.window_align(up) == max(config_of(net.config).windows) == up.window_max


def _counted_flops(model: torch.nn.Module, h: int, w: int) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, 3, h, w, device="meta"))
    return counter.get_total_flops()


@pytest.mark.parametrize("network_g", [SMALL_SST, {**SMALL_SST, "attn_type": "RPB", "upsampler_type": "pixelshuffle_direct"},
                                       SMALL_ESC, {**SMALL_ESC, "upsampler_type": "pixelshuffle_direct", "use_ln": False}],
                         ids=["sst", "sst-rpb-direct", "escrib", "escrib-direct"])
def test_cost_flops_are_what_the_flop_counter_counts(network_g: dict) -> None:
    with torch.device("meta"):
        model = build_model(network_g).set_backend("naive")
    cost = cost_of(model)
    a = cost.align
    _counted_flops(model, a, a)  # the first pass computes (and caches) the per-layer RIB vectors: a constant
    per_pixel = (_counted_flops(model, 2 * a, 3 * a) - _counted_flops(model, a, a)) / (5 * a * a)
    assert per_pixel == cost.flops


def _measured_peak(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(peak bytes of tensors alive at once, largest single tensor) allocated by ``model(x)``: every tensor
    an op creates is counted until its storage is freed (storages keep their Python object, so a
    finalizer fires exactly then)."""
    state = {"live": 0, "peak": 0, "largest": 0}
    seen: set[int] = set()

    def freed(key: int, n: int) -> None:
        seen.discard(key)
        state["live"] -= n

    class Track(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and (st := t.untyped_storage()).data_ptr() not in seen:
                    key, n = st.data_ptr(), st.nbytes()
                    seen.add(key)
                    state["live"] += n
                    state["peak"] = max(state["peak"], state["live"])
                    state["largest"] = max(state["largest"], n)
                    weakref.finalize(st, freed, key, n)
            return out

    with torch.inference_mode(), Track():
        model(x)
    return state["peak"], state["largest"]


@pytest.mark.parametrize("network_g", [
    {"dim": 32, "window_sizes": [8, 16], "num_heads": 2, "ranks": 8, "n_blocks": 2, "exp_ratio": 2, "upscaling_factor": 4},
    {**SMALL_SST, "dim": 24, "n_blocks": 1, "exp_ratio": 1.25, "upscaling_factor": 2},
    {**SMALL_ESC, "dim": 32, "upscaling_factor": 4, "upsampler_type": "pixelshuffle_direct"},
    SMALL_ESC,
], ids=["sst-direct", "sst-pixelshuffle", "escrib-direct", "escrib-pixelshuffle"])
def test_memory_estimates_bound_what_a_forward_allocates(network_g: dict) -> None:
    torch.manual_seed(0)
    model = build_model(network_g).eval()
    cost = cost_of(model)
    side = 4 * cost.align  # many windows: per-layer constants (RIB vectors, masks) weigh little per pixel
    peak, largest = _measured_peak(model, torch.rand(1, 3, side, side))
    per_pixel = peak / side**2
    # the output (float32, s^2 x 3 per pixel) is counted by the tile planner apart from the activations
    activations = per_pixel - 3 * model.scale**2 * 4
    assert activations <= 4 * cost.activation_elems <= 8 * activations, (activations, cost.activation_elems)
    up = Upscaler(model, "m", model.scale, torch.device("cpu"), torch.float32, "sdpa", "test")
    assert per_pixel <= tiling.bytes_per_pixel(up)
    assert largest <= tiling.widest_activation(up) * side**2


def test_receptive_field_bounds_what_one_pixel_reaches() -> None:
    torch.manual_seed(0)
    sst = build_model({"dim": 8, "window_sizes": [4, 8], "num_heads": 2, "ranks": 4, "n_blocks": 1,
                       "upscaling_factor": 2}).eval()
    reach = cost_of(sst).receptive_field
    x = torch.rand(1, 3, 64, 64)
    poked = x.clone()
    poked[:, :, 32, 32] += 0.5
    with torch.no_grad():
        moved = (sst(poked) - sst(x)).abs().amax(dim=(0, 1)) > 0  # (128, 128): output pixels that changed
    ys, xs = moved.nonzero(as_tuple=True)
    assert len(ys) and reach is not None and reach < 32
    assert (ys // 2 - 32).abs().max() <= reach and (xs // 2 - 32).abs().max() <= reach
    # ESC-RIB predicts its dynamic kernels from the mean of the whole image: one pixel reaches every output
    data = np.load(data_path("fixtures", "fixture_escrib_w16_X2_20x27.npz"))
    esc = build_model(json.loads(str(data["meta_json"]))["network_g"]).eval()
    esc.load_state_dict({k.removeprefix("state_dict/"): torch.from_numpy(data[k]) for k in data.files
                         if k.startswith("state_dict/")})
    assert cost_of(esc).receptive_field is None
    x = torch.rand(1, 3, 64, 64)
    poked = x.clone()
    poked[:, :, 0, 0] += 0.5
    with torch.no_grad():
        assert (esc(poked) - esc(x))[..., -8:, -8:].abs().max() > 0  # the far corner, beyond any window


def test_a_batch_limit_in_the_cost_model_bounds_the_tiles_run_together(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    up = SimpleNamespace(scale=2, device=torch.device("cpu"))  # supplies the scale; ``run`` does the work
    plan = tiling.run_tiled(up, lambda y, x, h, w: torch.rand(1, 3, h, w), 40, 40, lambda r, b: None, tile=16,
                            fn=run, batch=4)
    assert plan.count > 4 and max(seen) == 3  # three tiles to a row, run together
    limited = archs.Cost(align=1, window=1, receptive_field=0, flops=0.0, activation_elems=0.0, attention_elems=0.0,
                         widest_elems=1, max_batch=1)
    monkeypatch.setattr(tiling, "model_cost", lambda _up: limited)
    seen.clear()
    tiling.run_tiled(up, lambda y, x, h, w: torch.rand(1, 3, h, w), 40, 40, lambda r, b: None, tile=16, fn=run, batch=4)
    assert seen and max(seen) == 1


# ------------------------------------------------------------------------------------- module layout
def _module_imports(path: Path, package: str) -> set[str]:
    """sst_cli.model modules that ``path`` imports at import time (not inside functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    here = package.split(".")
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)

    visit(tree.body)
    return {m for m in found if m.startswith("sst_cli.model")}


def test_no_import_cycle_in_the_model_package() -> None:
    root = REPO / "sst_cli"
    modules = {}
    for path in (root / "model").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if parts[-1] == "__init__" else name.rsplit(".", 1)[0]
        modules[name] = _module_imports(path, package)
    graph = {m: {d for d in deps if d in modules and d != m} for m, deps in modules.items()}
    assert "sst_cli.model.archs" in graph and "sst_cli.model.identify" in graph
    state: dict[str, int] = {}

    def walk(m: str, trail: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if d.startswith(m + "."):
                continue  # a package importing its own submodules is not a cycle
            assert state.get(d) != 1, "import cycle: " + " -> ".join([*trail, m, d])
            if d not in state:
                walk(d, [*trail, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m, [])


def test_the_registry_and_configs_import_without_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, sst_cli.model.registry, sst_cli.model.archs; "
            "print('torch' in sys.modules, len(sst_cli.model.archs.ARCHS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False", "3"]


KEYWORDS = re.compile(r"\b(exp_ratio|intermediate_dim|window_sizes|pdim)\b")  # not keepdim


def test_network_keywords_are_read_only_by_their_architecture() -> None:
    """No module outside sst_cli/model/archs/ (and the plain-data registry) names a network's keywords."""
    root = REPO / "sst_cli"
    allowed = (root / "model" / "archs", root / "model" / "registry.py")
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in sorted(root.rglob("*.py"))
                 if not any(p == a or a in p.parents for a in allowed)
                 for i, line in enumerate(p.read_text().splitlines(), 1) if KEYWORDS.search(line)]
    assert offenders == []
