"""`sst export` and sst_cli.export.onnx: ONNX graphs of every architecture, checked in ONNX Runtime against
PyTorch, fixed and dynamic sizes, fp32 and fp16; refusals in one sentence. Needs the [onnx] extra (skipped
without it, except the test of what happens without it)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sst_cli.cli import main
from sst_cli.errors import SSTError, UsageError
from sst_cli.model.archs import build_model
from sst_cli.model.weights import save_checkpoint
from sst_cli.upscale.upscaler import Upscaler, load_upscaler

REPO = Path(__file__).resolve().parents[1]
HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="onnx and onnxruntime are not installed "
                                "(pip install 'sst-cli[onnx]'; `make test` installs them)")

# Small networks of each kind sst loads: SST (RIB, RPB, no bias; both upsamplers) and ESC-RIB.
TINY_SST = {"type": "SST", "dim": 8, "window_sizes": [4, 8], "num_heads": 2, "ranks": 4, "n_blocks": 1,
            "exp_ratio": 1.5, "rib_hidden_dim": 8, "upscaling_factor": 2, "upsampler_type": "pixelshuffle_direct"}
TINY_ESC = {"type": "ESCRIB", "dim": 8, "pdim": 4, "kernel_size": 5, "n_blocks": 1, "conv_blocks": 1,
            "window_size": 8, "num_heads": 2, "rank": 4, "rib_hidden_dim": 8, "upscaling_factor": 3}


def tiny_upscaler(folder: Path, network_g: dict, seed: int = 0) -> Upscaler:
    """A small random network saved as sst saves weights and loaded as `sst export --weights` loads them."""
    torch.manual_seed(seed)
    path = save_checkpoint(folder / f"tiny-{seed}.safetensors", build_model(network_g), meta={"name": "tiny"})
    return load_upscaler(weights=str(path), device="cpu", dtype="fp32")


def run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


# -------------------------------------------------------------------------------------------- library
@needs_onnx
def test_fixed_export_equals_pytorch_and_takes_only_its_tile(tmp_path: Path) -> None:
    from sst_cli.export.onnx import export_onnx

    up = tiny_upscaler(tmp_path, TINY_SST)
    done = export_onnx(up, tmp_path / "tiny.onnx", tile=16)
    assert done.input_shape == "1x3x16x16" and done.min_side is None and done.opset >= 17
    assert [c.input_shape for c in done.checks] == [(1, 3, 16, 16)] and all(c.passed for c in done.checks)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))  # not the input it was checked on
    assert np.abs(run_onnx(done.path, x) - up(x).numpy()).max() <= 1e-4
    with pytest.raises(Exception, match="(?i)dimension"):  # a fixed graph refuses other sizes; it never guesses
        run_onnx(done.path, torch.rand(1, 3, 32, 32))
    meta = metadata(done.path)
    assert meta["input"] == "1x3x16x16" and meta["model"] == "tiny x2" and "PyTorch fp32" in meta["verified"]
    # the loaded model is left as it was: sst's own backend, no gradients
    assert up.backend == up.model.backend == "sdpa" and not any(p.requires_grad for p in up.model.parameters())


@needs_onnx
@pytest.mark.parametrize("network_g", [
    TINY_SST,
    {**TINY_SST, "attn_type": "RPB", "upsampler_type": "pixelshuffle", "intermediate_dim": 8, "upscaling_factor": 3},
    {**TINY_SST, "attn_type": "none", "window_sizes": [8, 4, 16], "num_heads": [2, 4, 2], "ranks": 4},
    TINY_ESC,
], ids=["sst-rib", "sst-rpb-pixelshuffle-x3", "sst-nobias-3-windows", "esc-rib-x3"])
def test_dynamic_export_equals_pytorch_at_any_size_above_half_the_window(tmp_path: Path, network_g: dict) -> None:
    from sst_cli.export.onnx import export_onnx, smallest_side

    up = tiny_upscaler(tmp_path, network_g)
    done = export_onnx(up, tmp_path / "tiny.onnx", dynamic=True)
    assert done.input_shape == "1x3xHxW" and done.min_side == smallest_side(up) == up.window_max // 2 + 1
    assert len({c.input_shape for c in done.checks}) == 3 and all(c.passed for c in done.checks)
    s, gen = up.scale, torch.Generator().manual_seed(7)
    for h, w in [(done.min_side, done.min_side), (done.tile, done.tile + 13), (37, done.min_side + 1)]:
        x = torch.rand(1, 3, h, w, generator=gen)
        got = run_onnx(done.path, x)
        assert got.shape == (1, 3, s * h, s * w)
        assert np.abs(got - up(x).numpy()).max() <= 1e-4, (h, w)
    # Below the official reflect padding sst mirror-tiles, which has no ONNX form: ONNX Runtime refuses.
    with pytest.raises(Exception, match="Pad"):
        run_onnx(done.path, torch.rand(1, 3, done.min_side - 1, done.tile))


@needs_onnx
def test_fp16_export_is_half_precision_within_its_stated_tolerance(tmp_path: Path) -> None:
    from sst_cli.export.onnx import TOLERANCES, export_onnx

    up = tiny_upscaler(tmp_path, TINY_SST)
    done = export_onnx(up, tmp_path / "half.onnx", tile=16, dtype="fp16")
    assert done.dtype == "fp16" and all(c.tolerance == TOLERANCES["fp16"] == 1e-2 for c in done.checks)
    x = torch.rand(1, 3, 16, 16)
    got = run_onnx(done.path, x.half())
    assert got.dtype == np.float16
    diff = np.abs(got.astype(np.float32) - up(x).numpy()).max()
    assert 0 < diff <= 1e-2  # really computed in half precision, and close
    with pytest.raises(Exception, match="(?i)type"):  # the input is fp16 too
        run_onnx(done.path, x)


@needs_onnx
def test_a_graph_that_differs_from_pytorch_is_refused_and_nothing_written(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The check is real: the graph of the same network with other weights fails it."""
    from sst_cli.export import onnx as export

    up, other = tiny_upscaler(tmp_path, TINY_SST), tiny_upscaler(tmp_path, TINY_SST, seed=1)
    real_trace = export.trace
    monkeypatch.setattr(export, "trace", lambda model, *a, **k: real_trace(other.model, *a, **k))
    with pytest.raises(SSTError, match=r"does not match PyTorch at 1x3x16x16: max \|difference\| .*allowed "
                                       r"1e-04; nothing was written\.$"):
        export.export_onnx(up, tmp_path / "bad.onnx", tile=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-0.safetensors", "tiny-1.safetensors"]


@needs_onnx
def test_tile_must_fit_the_windows(tmp_path: Path) -> None:
    from sst_cli.export.onnx import export_onnx, export_tile

    up = tiny_upscaler(tmp_path, {**TINY_SST, "window_sizes": [4, 6]})  # aligned to lcm(4, 6) = 12
    assert export_tile(up, None) == 72 and export_tile(up, 24) == 24
    with pytest.raises(UsageError, match=r"^--tile 30 does not fit the windows of tiny x2: use a multiple of 12 "
                                         r"\(e\.g\. 24 or 36\)\.$"):
        export_onnx(up, tmp_path / "t.onnx", tile=30)
    with pytest.raises(UsageError, match=r"multiple of 12 \(e\.g\. 12\)"):
        export_tile(up, 5)
    assert not (tmp_path / "t.onnx").exists()


# ------------------------------------------------------------------------------------------------ CLI
@needs_onnx
def test_cli_exports_the_bundled_x4_at_tile_64(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Acceptance: `sst export m.onnx --tile 64`; ONNX Runtime on a 1x3x64x64 input within 1e-4 of load_upscaler()."""
    out = tmp_path / "m.onnx"
    assert main(["export", str(out), "--tile", "64"]) == 0
    text = capsys.readouterr().out
    assert "sst-tiny x4 (bundled sst-tiny x4): ONNX opset 17, float32, input 1x3x64x64" in text
    assert "1x3x64x64 -> 1x3x256x256: max |difference|" in text and "(allowed 1e-04)" in text
    assert f"wrote {out}" in text
    x = torch.rand(1, 3, 64, 64)
    assert np.abs(run_onnx(out, x) - load_upscaler(device="cpu")(x).numpy()).max() <= 1e-4


@needs_onnx
def test_cli_dynamic_bundled_x4_at_other_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", str(out), "--tile", "64", "--dynamic", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "input 1x3xHxW (H and W from 5 up)" in text and text.count("max |difference|") == 3
    up = load_upscaler(device="cpu")
    for h, w in [(64, 64), (48, 80), (101, 37)]:
        x = torch.rand(1, 3, h, w)
        assert np.abs(run_onnx(out, x) - up(x).numpy()).max() <= 1e-4, (h, w)


@pytest.mark.slow  # sst-light x4 takes about 30 s to trace and check here
@needs_onnx
@pytest.mark.parametrize("dynamic", [False, True])
def test_cli_exports_sst_light_x4(tmp_path: Path, dynamic: bool) -> None:
    """Acceptance: sst-light x4 (random weights) within 1e-4 of load_upscaler() on 1x3x64x64, and with --dynamic at
    two other sizes."""
    out = tmp_path / "light.onnx"
    args = ["export", str(out), "-m", "sst-light", "--random-weights", "--tile", "64"]
    assert main([*args, *(["--dynamic"] if dynamic else [])]) == 0
    up = load_upscaler("sst-light", 4, device="cpu", random_weights=True)
    for h, w in [(64, 64), *([(96, 40), (50, 130)] if dynamic else [])]:
        x = torch.rand(1, 3, h, w)
        assert np.abs(run_onnx(out, x) - up(x).numpy()).max() <= 1e-4, (h, w)


@needs_onnx
def test_cli_refusals_are_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "m.onnx"
    existing.write_bytes(b"mine")
    cases = [
        (["export", str(existing)], 1, f"{existing} exists; pass --overwrite to replace it."),
        (["export", str(tmp_path / "m.pt")], 2, "must end in .onnx"),
        (["export", str(tmp_path / "b.onnx"), "-m", "bicubic"], 2, "has no network to export"),
        (["export", str(tmp_path / "b.onnx"), "--dtype", "bf16"], 2, "--dtype"),
        (["export", str(tmp_path / "b.onnx"), "--tile", "60"], 2, "use a multiple of 8 (e.g. 56 or 64)."),
        (["export", str(tmp_path / "b.onnx"), "--opset", "13"], 2, "--opset"),
    ]
    for args, code, words in cases:
        assert main(args) == code, args
        err = " ".join(capsys.readouterr().err.split())
        assert words in err and "Traceback" not in err, (args, err)
    assert existing.read_bytes() == b"mine" and not (tmp_path / "b.onnx").exists()


def test_without_onnxruntime_one_sentence_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what Python does for a package that is not installed
    assert main(["export", str(tmp_path / "m.onnx")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert re.fullmatch(r"error: exporting to ONNX needs (onnx and )?onnxruntime, which (is|are) not installed: "
                        r"pip install 'sst-cli\[onnx\]'\.", err), err
    assert not (tmp_path / "m.onnx").exists()


def test_export_help_does_not_import_torch() -> None:
    code = ("import sys, runpy; sys.argv = ['sst', 'export', '--help']\n"
            "try:\n    runpy.run_module('sst_cli', run_name='__main__')\n"
            "except SystemExit as e:\n    print('EXIT', e.code, 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.strip().splitlines()[-1] == "EXIT 0 False", proc.stderr[-500:]
