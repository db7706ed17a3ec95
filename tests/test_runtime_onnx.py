"""`sst upscale --runtime onnxruntime|openvino` and sst_cli.export.runner/cache/sessions: the graph runtimes run
the same tiling as PyTorch and give its output (within 1e-4, at most one 8-bit level), with and without TTA;
graphs are exported once per tile size, cached by weights and size, re-exported when damaged; the options a
graph cannot honour are refused in one sentence. ONNX Runtime tests need the [onnx] extra, OpenVINO tests the
[openvino] extra (each skipped without it, except the tests of what happens without them)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sst_cli.cli import main
from sst_cli.errors import SSTError, UsageError
from sst_cli.model.archs import build_model
from sst_cli.model.weights import save_checkpoint
from sst_cli.upscale.array import upscale_array
from sst_cli.upscale.tiling import plan_tiles, upscale_tensor
from sst_cli.upscale.upscaler import Upscaler, load_upscaler

HAVE_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
HAVE_OV = all(importlib.util.find_spec(m) is not None for m in ("onnx", "openvino"))
needs_ort = pytest.mark.skipif(not HAVE_ORT, reason="onnx and onnxruntime are not installed "
                               "(pip install 'sst-cli[onnx]'; `make test` installs them)")
needs_ov = pytest.mark.skipif(not HAVE_OV, reason="openvino is not installed "
                              "(pip install 'sst-cli[openvino]'; `make test` installs it)")

# sst-light's shape at a fraction of its width: three window sizes (each layer pads to its own), RIB, x4 through
# pixelshuffle_direct. Aligned to 16: tiles whose sides 16 does not divide are padded inside every layer.
LIGHTISH = {"type": "SST", "dim": 12, "window_sizes": [4, 8, 16], "num_heads": 3, "ranks": 4, "n_blocks": 1,
            "exp_ratio": 1.5, "rib_hidden_dim": 8, "upscaling_factor": 4, "upsampler_type": "pixelshuffle_direct"}


def lightish_weights(folder: Path, seed: int = 0) -> str:
    torch.manual_seed(seed)
    path = save_checkpoint(folder / f"lightish-{seed}.safetensors", build_model(LIGHTISH), meta={"name": "lightish"})
    return str(path)


def image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def graphs_in(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob("*.onnx")) if cache.is_dir() else []


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty sst cache of this test's own; returns its graph folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "sst" / "graphs"


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory):
    """One sst cache for the tests of a module that only compare outputs: each graph is exported once."""
    root = tmp_path_factory.mktemp("xdg")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root))
        yield root / "sst" / "graphs"


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The sizes traced to ONNX while the test runs (every export traces exactly once)."""
    from sst_cli.export import onnx as onnx_export

    calls: list[tuple[int, int]] = []
    real = onnx_export.trace

    def counted(model, tile, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(tuple(tile) if not isinstance(tile, int) else (tile, tile))
        return real(model, tile, *args, **kwargs)

    monkeypatch.setattr(onnx_export, "trace", counted)
    return calls


def check_equal(ref: Upscaler, run: Upscaler, x: torch.Tensor, tile: int, tta: bool) -> None:
    """The runtime's tiled output within 1e-4 of PyTorch's (float) and within one level as 8-bit images."""
    want, got = upscale_tensor(ref, x, tile=tile, tta=tta), upscale_tensor(run, x, tile=tile, tta=tta)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-4
    pixels = as_uint8(x)
    levels = np.abs(upscale_array(pixels, run, tile=tile, tta=tta).astype(int)
                    - upscale_array(pixels, ref, tile=tile, tta=tta).astype(int))
    assert levels.max() <= 1


def expected_graphs(ref: Upscaler, h: int, w: int, tile: int, tta: bool) -> list[tuple[int, int]]:
    """Every tile of a plan has one size; TTA's transposes add the transposed size."""
    plan = plan_tiles(ref, h, w, tile)
    return sorted({(plan.th, plan.tw), *([(plan.tw, plan.th)] if tta else [])})


# ----------------------------------------------------------------------------------- same output as torch
@needs_ort
@pytest.mark.parametrize("tta", [False, True])
def test_bundled_x4_in_onnxruntime_equals_torch_through_the_tiles(shared_cache: Path, exports: list,
                                                                  tta: bool) -> None:
    ref = load_upscaler(device="cpu", dtype="fp32")
    run = load_upscaler(runtime="onnxruntime")
    assert run.runtime == "onnxruntime" and ref.runtime == "torch" and run.runner is not None
    h, w, tile = 52, 70, 40
    plan = plan_tiles(ref, h, w, tile)
    # several tiles each way; the edge tiles end at the border and their sides (36, 38) are not multiples of
    # the windows (16): the model pads them inside, and so must the graph
    assert min(len(plan.ys), len(plan.xs)) >= 2 and plan.xs[-1] + plan.tw == w and plan.ys[-1] + plan.th == h
    assert plan.th % 16 and plan.tw % 16
    check_equal(ref, run, image(h, w), tile, tta)
    sizes = expected_graphs(ref, h, w, tile, tta)
    assert sorted(run.runner.graphs) == sizes  # type: ignore[union-attr]
    assert len(exports) == len(set(exports)) and set(exports) <= set(sizes)  # each size exported at most once
    assert len(graphs_in(shared_cache)) >= len(sizes)


@needs_ort
@pytest.mark.parametrize("tta", [False, True])
def test_small_sst_light_like_model_in_onnxruntime_equals_torch(shared_cache: Path, tmp_path: Path,
                                                               tta: bool) -> None:
    weights = lightish_weights(tmp_path)
    ref = load_upscaler(weights=weights, device="cpu", dtype="fp32")
    run = load_upscaler(weights=weights, runtime="onnxruntime")
    check_equal(ref, run, image(40, 52, seed=1), 24, tta)
    assert sorted(run.runner.graphs) == expected_graphs(ref, 40, 52, 24, tta)  # type: ignore[union-attr]
    # an image run whole, smaller than half the largest window: sst mirror-tiles its padding, and the fixed
    # graph of that size records it
    check_equal(ref, run, image(7, 11, seed=2), 0, tta=False)
    assert (7, 11) in run.runner.graphs  # type: ignore[union-attr]


@needs_ov
@pytest.mark.parametrize(("model", "tta"), [("bundled", True), ("lightish", False)])
def test_openvino_equals_torch(shared_cache: Path, tmp_path: Path, model: str, tta: bool) -> None:
    weights = lightish_weights(tmp_path) if model == "lightish" else None
    ref = load_upscaler(weights=weights, device="cpu", dtype="fp32")
    run = load_upscaler(weights=weights, runtime="openvino")
    check_equal(ref, run, image(44, 60, seed=3), 32, tta)
    assert sorted(run.runner.graphs) == expected_graphs(ref, 44, 60, 32, tta)  # type: ignore[union-attr]
    assert all(g.key.runtime == "openvino" for g in run.runner.graphs.values())  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------- sessions
@needs_ort
def test_onnxruntime_session_uses_sst_threads_and_all_optimisations_one_per_size(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    from sst_cli.export import cache as graph_cache

    opened: list[Path] = []
    real = graph_cache.open_session
    monkeypatch.setattr(graph_cache, "open_session", lambda rt, path, n: opened.append(path) or real(rt, path, n))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)  # what --threads sets
    run = load_upscaler(weights=lightish_weights(tmp_path), runtime="onnxruntime")
    upscale_tensor(run, image(40, 52), tile=24)  # six tiles, one size
    assert len(opened) == 1 and len(run.runner.graphs) == 1  # type: ignore[union-attr]
    options = next(iter(run.runner.graphs.values())).session.handle.get_session_options()  # type: ignore[union-attr]
    assert options.intra_op_num_threads == 3
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


@needs_ov
def test_openvino_compiles_float32_with_sst_threads_and_latency_hint(cache: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import openvino as ov

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    run = load_upscaler(weights=lightish_weights(tmp_path), runtime="openvino")
    upscale_tensor(run, image(20, 20), tile=0)
    compiled = next(iter(run.runner.graphs.values())).session.handle.get_compiled_model()  # type: ignore[union-attr]
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32  # never bf16, even where the CPU has it
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 2
    assert str(compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"


# ------------------------------------------------------------------------------------------------- cache
@needs_ort
def test_graphs_are_cached_and_keyed_by_weights_and_size(cache: Path, tmp_path: Path, exports: list) -> None:
    first, other = lightish_weights(tmp_path, 0), lightish_weights(tmp_path, 1)
    x = image(40, 52)
    up = load_upscaler(weights=first, runtime="onnxruntime")
    want = upscale_tensor(up, x, tile=24)
    plan = plan_tiles(up, 40, 52, 24)
    assert plan.count > 1 and exports == [(plan.th, plan.tw)] and len(graphs_in(cache)) == 1
    (graph,) = up.runner.graphs.values()  # type: ignore[union-attr]
    assert graph.exported and graph.check is not None and graph.check.passed
    assert graph.path.parent == cache and graph.path.name.startswith("lightish-x4-")
    assert f"-{plan.tw}x{plan.th}-fp32-opset17-sst" in graph.path.name and graph.path.name.endswith(".onnx")

    again = load_upscaler(weights=first, runtime="onnxruntime")  # a new run: the cached graph, not a new export
    assert torch.equal(upscale_tensor(again, x, tile=24), want)
    assert len(exports) == 1 and not next(iter(again.runner.graphs.values())).exported  # type: ignore[union-attr]

    upscale_tensor(again, x, tile=40)  # another tile size (40x36, not 24x20): another graph
    assert len(exports) == 2 and len(graphs_in(cache)) == 2
    upscale_tensor(load_upscaler(weights=other, runtime="onnxruntime"), x, tile=24)  # other weights: another graph
    assert len(exports) == 3 and len(graphs_in(cache)) == 3
    names = graphs_in(cache)
    assert len({n.split("-")[2] for n in names}) == 2  # two weights fingerprints


@needs_ort
@pytest.mark.parametrize("damage", ["truncated", "garbage", "another key"])
def test_a_damaged_cache_file_is_exported_again(cache: Path, tmp_path: Path, exports: list, damage: str) -> None:
    from sst_cli.export.cache import holds

    weights = lightish_weights(tmp_path)
    x = image(20, 28)
    up = load_upscaler(weights=weights, runtime="onnxruntime")
    want = upscale_tensor(up, x, tile=0)
    (graph,) = up.runner.graphs.values()  # type: ignore[union-attr]
    data = graph.path.read_bytes()
    if damage == "truncated":
        graph.path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        graph.path.write_bytes(b"\x00not an onnx file")
    else:  # a whole graph recorded under another key (e.g. other weights copied over it)
        upscale_tensor(load_upscaler(weights=lightish_weights(tmp_path, 1), runtime="onnxruntime"), x, tile=0)
        other = next(p for p in cache.glob("*.onnx") if p != graph.path)
        graph.path.write_bytes(other.read_bytes())
    assert not holds(graph.path, graph.key)
    count = len(exports)
    fresh = load_upscaler(weights=weights, runtime="onnxruntime")
    assert (upscale_tensor(fresh, x, tile=0) - want).abs().max().item() <= 1e-6  # not the other weights' output
    assert len(exports) == count + 1 and holds(graph.path, graph.key)


@needs_ort
def test_a_graph_that_fails_its_check_is_not_cached(cache: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from sst_cli.export import onnx as onnx_export

    up = load_upscaler(weights=lightish_weights(tmp_path), runtime="onnxruntime")
    other = load_upscaler(weights=lightish_weights(tmp_path, 1), device="cpu", dtype="fp32")
    real = onnx_export.trace
    monkeypatch.setattr(onnx_export, "trace", lambda model, *a, **k: real(other.model, *a, **k))
    with pytest.raises(SSTError, match=r"^the onnxruntime \S+ graph of lightish x4 for 28x20 tiles does not match "
                                       r"PyTorch: max \|difference\| \S+, allowed 1e-04; use --runtime torch\.$"):
        upscale_tensor(up, image(20, 28), tile=0)
    assert graphs_in(cache) == [] and not list(cache.iterdir())  # no temporary left either


# ------------------------------------------------------------------------------------------ the default
def test_auto_is_torch_until_the_default_is_flipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sst_cli.export import runner

    assert runner.CPU_DEFAULT == "torch"  # flipped only once benchmarks/upscale_1080p.py measures a runtime faster
    assert load_upscaler(device="cpu", runtime="auto").runner is None
    if not HAVE_ORT:
        return
    monkeypatch.setattr(runner, "CPU_DEFAULT", "onnxruntime")  # the one line a flip changes
    assert load_upscaler(device="cpu", runtime="auto").runtime == "onnxruntime"
    # where a graph cannot run, auto quietly stays with torch
    assert load_upscaler(device="cpu", dtype="bf16", runtime="auto").runner is None
    assert load_upscaler(device="cpu", backend="sdpa-math", runtime="auto").runner is None
    assert load_upscaler("bicubic", runtime="auto").runner is None
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert load_upscaler(device="cpu", runtime="auto").runner is None


# ----------------------------------------------------------------------------------------------- the CLI
def _png(path: Path, h: int, w: int) -> Path:
    Image.fromarray(as_uint8(image(h, w, seed=4))).save(path)
    return path


@needs_ort
def test_cli_header_names_the_runtime_and_the_first_export(cache: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    src = _png(tmp_path / "a.png", 40, 52)
    args = ["upscale", str(src), str(tmp_path / "ort"), "--runtime", "onnxruntime", "--tile", "32", "--quiet"]
    assert main(args) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert re.search(r"sst-tiny x4 \(bundled sst-tiny x4\) on cpu, float32, runtime onnxruntime \S+ \(ONNX graphs "
                     r"cached in " + re.escape(str(cache)) + r"\); 1 to do", err), err
    (path,) = cache.glob("*.onnx")
    plan = plan_tiles(load_upscaler(device="cpu"), 40, 52, 32)
    size = f"{plan.tw}x{plan.th}"
    assert (f"exported the {size} ONNX graph, checked in onnxruntime" in err and "against PyTorch (max "
            "|difference|" in err and f"cached: {path}" in err), err
    assert main([*args, "--overwrite", "--json", str(tmp_path / "r.json")]) == 0  # second run: from the cache
    assert "exported" not in capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["runtime"].startswith("onnxruntime ")
    assert report["graphs"] == [{"size": size, "path": str(path), "exported": False}]
    assert main(["upscale", str(src), str(tmp_path / "torch"), "--tile", "32", "--quiet"]) == 0
    assert "attention" in capsys.readouterr().err  # the default (auto) is torch
    a, b = (np.asarray(Image.open(tmp_path / d / "a.png")).astype(int) for d in ("ort", "torch"))
    assert np.abs(a - b).max() <= 1


def test_cli_refuses_what_a_graph_cannot_honour_in_one_sentence(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    src = _png(tmp_path / "a.png", 8, 8)
    out = str(tmp_path / "out")
    cases = [
        (["--device", "cuda"], "--runtime onnxruntime runs on the CPU; drop --device cuda or use --runtime torch."),
        (["--dtype", "bf16"], "--runtime onnxruntime runs float32 graphs; drop --dtype bf16 or use --runtime torch."),
        (["--backend", "naive"], "--backend naive applies to --runtime torch (the onnxruntime graph runs attention "
                                 "as plain matrix products); drop one of them."),
        (["--runtime", "tensorrt"], "--runtime"),
    ]
    for extra, words in cases:
        assert main(["upscale", str(src), out, "--runtime", "onnxruntime", *extra]) == 2, extra
        err = " ".join(capsys.readouterr().err.split())
        assert words in err and "Traceback" not in err, (extra, err)
    if HAVE_ORT:
        assert main(["upscale", str(src), out, "--runtime", "onnxruntime", "-m", "bicubic"]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "--model bicubic is built into sst and has no graph to run in onnxruntime; use --runtime torch." in err
    assert not (tmp_path / "out").exists()


def test_a_network_sampled_from_noise_has_no_graph(tmp_path: Path) -> None:
    from sst_cli.export.runner import attach

    up = load_upscaler(weights=lightish_weights(tmp_path), device="cpu", dtype="fp32")
    up.model.recipe = {"seed": 0}  # what marks sst-real's sampler (noise drawn by pixel position)
    with pytest.raises(UsageError, match=r"^--runtime openvino: lightish draws its noise by pixel position, which "
                                         r"a fixed graph cannot do; use --runtime torch\.$"):
        attach(up, "openvino")
    assert attach(up, "openvino", named=False) is up


@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime is not installed")
def test_sst_real_with_a_graph_runtime_is_refused_before_its_weights_are_looked_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # No weights anywhere and no network: looking for them would end in exit 1 ("not found"), not this refusal.
    monkeypatch.setenv("SST_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    src = _png(tmp_path / "a.png", 8, 8)
    assert main(["upscale", str(src), str(tmp_path / "out"), "-m", "sst-real", "--runtime", "onnxruntime"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--runtime onnxruntime: sst-real draws its noise by pixel position, which a fixed graph cannot do; use " \
           "--runtime torch." in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("runtime", "hidden", "extra"), [("onnxruntime", "onnxruntime", "onnx"),
                                                          ("openvino", "openvino", "openvino"),
                                                          ("openvino", "onnx", "openvino")])
def test_a_missing_runtime_is_one_sentence_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str], runtime: str,
                                                            hidden: str, extra: str) -> None:
    monkeypatch.setitem(sys.modules, hidden, None)  # what Python does for a package that is not installed
    src = _png(tmp_path / "a.png", 8, 8)
    assert main(["upscale", str(src), str(tmp_path / "out"), "--runtime", runtime]) == 1
    err = " ".join(capsys.readouterr().err.split())
    found = re.fullmatch(rf"error: --runtime {runtime} needs (\w+)( and \w+)?, which (is|are) not installed: pip "
                         rf"install 'sst-cli\[{extra}\]'\.", err)
    assert found and hidden in (found.group(1), (found.group(2) or "").removeprefix(" and ")), err
    assert not (tmp_path / "out").exists()
