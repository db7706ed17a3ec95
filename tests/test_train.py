"""`sst train`: learning, exact resume, crash safety, DDP gradient averaging, bad data, config checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import data_path
from sst_cli.cli import main as cli_main
from sst_cli.errors import SSTError, UsageError
from sst_cli.evaluation.runner import evaluate_model, plan
from sst_cli.model.bicubic import Bicubic
from sst_cli.model.loading import model_from_checkpoint
from sst_cli.model.weights import load_checkpoint
from sst_cli.training.config import load_config
from sst_cli.training.loop import train
from sst_cli.training.run_dir import TrainingStopped, list_checkpoints, worker_ignores_stop_signals

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"


def quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 64x64 crops of Set5 images: a small training (and overfitting) set."""
    hr = data_path("Set5", "HR")
    out = tmp_path_factory.mktemp("crops")
    for name in ("baby", "bird", "butterfly"):
        im = Image.open(hr / f"{name}.png").convert("RGB")
        w, h = im.size
        im.crop((w // 2 - 32, h // 2 - 32, w // 2 + 32, h // 2 + 32)).save(out / f"{name}.png")
    return out


def tiny(crops: Path, *overrides: str):
    return load_config(TINY, [f"train_hr=[{crops}]", *overrides])


def test_overfits_and_beats_bicubic(crops: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = tmp_path / "one"
    one.mkdir()
    (one / "butterfly.png").write_bytes((crops / "butterfly.png").read_bytes())
    cfg = load_config(TINY, [f"train_hr=[{one}]", f"val_sets=[{one}]", "scale=4", "batch=8", "lr=3e-3",
                             "iters=150", "milestones=[120]", "val_every=50", "log_every=10"])
    result = train(cfg, tmp_path / "run", log=quiet)
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert losses[-1] < 0.6 * losses[0]
    bicubic = evaluate_model(Bicubic(4), plan([str(one)], [4], ""))[0].mean("psnr_y")
    vals = [h["val_psnr_y"] for h in result.history if "val_psnr_y" in h]
    assert vals[-1] > vals[0]
    assert vals[-1] > bicubic, f"validation {vals[-1]:.2f} dB did not beat bicubic {bicubic:.2f} dB"
    # validation goes through `sst eval`'s code: the exported weights evaluated by the CLI score the same
    assert cli_main(["eval", "--weights", str(tmp_path / "run" / "final.safetensors"), "--dataset", str(one),
                     "--device", "cpu", "--json", "-"]) == 0
    scored = json.loads(capsys.readouterr().out)["results"][0]
    last = [h for h in result.history if "val" in h][-1]["val"]["one"]
    assert scored["psnr_y"] == pytest.approx(last["psnr_y"], abs=1e-9)
    assert scored["ssim_y"] == pytest.approx(last["ssim_y"], abs=1e-12)
    # exports: our safetensors and a BasicSR .pth with params_ema, both loadable by the core
    for path in (tmp_path / "run" / "final.safetensors", tmp_path / "run" / "final_basicsr.pth"):
        net = model_from_checkpoint(load_checkpoint(path), network_g=cfg.network | {"upscaling_factor": 4})
        assert net.scale == 4


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(list_checkpoints(run)[0], weights_only=True)["model"]


def _ctrl_c_at(iteration: int) -> Callable[[dict[str, Any]], None]:
    """A progress callback that sends this process a SIGINT (a Ctrl-C) once ``iteration`` is logged."""

    def progress(rec: dict[str, Any]) -> None:
        if rec["iter"] == iteration:
            os.kill(os.getpid(), signal.SIGINT)

    return progress


def _lrs(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["iter"]: r["lr"] for r in rows if "lr" in r}


def test_resume_is_bitwise_identical(crops: Path, tmp_path: Path) -> None:
    common = ["iters=8", "ckpt_every=4", "milestones=[3, 6]", "warmup=2", "ema=0.9", "log_every=1"]
    train(tiny(crops, *common), tmp_path / "straight", log=quiet)
    with pytest.raises(TrainingStopped):  # a Ctrl-C after iteration 3: saved there, between two checkpoints
        train(tiny(crops, *common), tmp_path / "split", log=quiet, progress=_ctrl_c_at(3))
    train(tiny(crops, *common), tmp_path / "split", resume=True, log=quiet)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bitwise on CPU
    ema_a = torch.load(list_checkpoints(tmp_path / "straight")[0], weights_only=True)["ema"]
    ema_b = torch.load(list_checkpoints(tmp_path / "split")[0], weights_only=True)["ema"]
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)


@pytest.mark.parametrize("schedule", [["scheduler=cosine", "warmup=2", "min_lr=1e-5"],
                                      ["scheduler=multistep", "warmup=3", "milestones=[4, 7]"]])
def test_resumed_lr_equals_uninterrupted_at_every_step(crops: Path, tmp_path: Path, schedule: list[str]) -> None:
    common = ["iters=9", "log_every=1", "ckpt_every=100", "ema=0", *schedule]
    train(tiny(crops, *common), tmp_path / "straight", log=quiet)
    with pytest.raises(TrainingStopped):  # stopped by a Ctrl-C after iteration 5, saved there
        train(tiny(crops, *common), tmp_path / "split", log=quiet, progress=_ctrl_c_at(5))
    assert sorted(_lrs(tmp_path / "split")) == [1, 2, 3, 4, 5]
    train(tiny(crops, *common), tmp_path / "split", resume=True, log=quiet)
    straight, split = _lrs(tmp_path / "straight"), _lrs(tmp_path / "split")
    assert sorted(split) == list(range(1, 10))
    assert split == straight  # exactly, at every step
    assert len(set(straight.values())) > 3  # the schedule moved: the comparison means something


def test_resume_with_another_schedule_is_refused(crops: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    common = ["log_every=1", "ckpt_every=2", "scheduler=cosine", "warmup=0", "lr=1e-3", "min_lr=1e-5"]
    train(tiny(crops, "iters=4", *common), run, log=quiet)
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(UsageError, match=r"another schedule \(iters 4 -> 8\).*--extend") as err:
        train(tiny(crops, "iters=8", *common), run, resume=True, log=quiet)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    with pytest.raises(UsageError, match=r"other settings \(batch 4 -> 3\).*init_from"):
        train(tiny(crops, "iters=4", "batch=3", *common), run, resume=True, log=quiet, extend=True)
    assert (run / "metrics.jsonl").read_text() == before  # refused before anything ran


def test_extend_continues_from_the_current_lr(crops: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    common = ["log_every=1", "ckpt_every=2", "scheduler=cosine", "warmup=0", "lr=1e-3", "min_lr=1e-5", "ema=0"]
    train(tiny(crops, "iters=6", *common), run, log=quiet)
    reached = _lrs(run)[6]  # a cosine over 6 iterations ends at min_lr
    assert reached == pytest.approx(1e-5)
    messages: list[str] = []
    with pytest.raises(TrainingStopped):
        train(tiny(crops, "iters=12", *common), run, resume=True, extend=True, log=messages.append,
              progress=_ctrl_c_at(8))
    assert any("extending the run (iters 6 -> 12)" in m and "continues from 1e-05 at iteration 6" in m
               for m in messages), messages
    train(tiny(crops, "iters=12", *common), run, resume=True, log=quiet)  # the extended schedule is kept
    lrs = _lrs(run)
    assert sorted(lrs) == list(range(1, 13))
    assert all(lrs[i] == pytest.approx(reached) for i in range(7, 13))  # no jump back up towards 1e-3


def test_truncated_checkpoint_falls_back_to_previous(crops: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny(crops, "iters=4", "ckpt_every=2", "keep_last=3"), run, log=quiet)
    newest = list_checkpoints(run)[0]
    assert newest.name == "ckpt_00000004.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # cut short
    messages: list[str] = []
    result = train(tiny(crops, "iters=6", "ckpt_every=2", "keep_last=3"), run, resume=True, extend=True,
                   log=messages.append)
    assert any("unreadable" in m for m in messages)
    assert any("resumed from ckpt_00000002.pt" in m for m in messages)
    assert result.iters == 6


def test_sigkill_mid_run_then_resume(crops: Path, tmp_path: Path) -> None:
    """Kill -9 a run that checkpoints every iteration (so kills land during writes too); resume finishes."""
    run = tmp_path / "run"
    args = [sys.executable, "-m", "sst_cli", "train", "--config", str(TINY), "--run-dir", str(run), "--resume",
            "--set", f"train_hr=[{crops}]", "--set", "iters=40", "--set", "ckpt_every=1", "--set", "log_every=1"]
    for delay in (0.05, 0.2):
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while not list_checkpoints(run) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in done.stdout
    assert list_checkpoints(run)[0].name == "ckpt_00000040.pt"
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]  # stale temps were cleaned


def test_torchrun_gloo_averages_gradients(crops: Path, tmp_path: Path) -> None:
    """2 processes x batch 2 == 1 process x batch 4: same samples, averaged gradients, same weights."""
    base = ["--config", str(TINY), "--set", f"train_hr=[{crops}]", "--set", "iters=4", "--set", "ckpt_every=4",
            "--set", "ema=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29531",
         "-m", "sst_cli", "train", *base, "--set", "batch=2", "--run-dir", str(tmp_path / "ddp")],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, "-m", "sst_cli", "train", *base, "--set", "batch=4", "--run-dir", str(tmp_path / "one")],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = _weights(tmp_path / "ddp"), _weights(tmp_path / "one")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    # and training moved the weights: a 2-iteration run differs from the 4-iteration ones
    short = subprocess.run(
        [sys.executable, "-m", "sst_cli", "train", *base, "--set", "batch=4", "--set", "iters=2", "--set",
         "ckpt_every=2", "--run-dir", str(tmp_path / "short")], cwd=REPO, capture_output=True, text=True, env=env)
    assert short.returncode == 0
    c = _weights(tmp_path / "short")
    assert any(not torch.allclose(a[k], c[k], atol=1e-5) for k in a)


def _torchrun_recorded(run: Path, *args: str) -> list[dict]:
    """`sst train ARGS` on 2 CPU processes (gloo) through tests/instrumented_sst.py: each rank's record."""
    record = run.parent / f"{run.name}-record"
    record.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "SST_TEST_RECORD": str(record),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(REPO / "tests" / "instrumented_sst.py"), "train", "--config", str(TINY), "--run-dir", str(run), *args],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((record / f"rank{r}.json").read_text()) for r in range(2)]


def test_torchrun_validation_is_shared_by_the_ranks(crops: Path, tmp_path: Path, capsys) -> None:
    """Each rank validates its share of the images (no rank idles in a collective meanwhile), and rank 0
    records the PSNR one process gets for the same weights."""
    run = tmp_path / "run"
    ranks = _torchrun_recorded(run, "--set", f"train_hr=[{crops}]", "--set", f"val_sets=[{crops}]", "--set",
                               "iters=2", "--set", "val_every=2", "--set", "ckpt_every=2", "--set", "batch=2")
    names = sorted(p.stem for p in crops.iterdir())  # baby, bird, butterfly
    assert [r["validated"] for r in ranks] == [names[0::2], names[1::2]]
    [val] = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "val_psnr_y" in line]
    assert cli_main(["eval", "--weights", str(run / "final.safetensors"), "--dataset", str(crops), "--scale", "2",
                     "--device", "cpu", "--json", "-"]) == 0
    one = json.loads(capsys.readouterr().out)["results"][0]
    assert one["num_images"] == 3 and val["val_psnr_y"] == pytest.approx(one["psnr_y"], abs=1e-9)


def test_torchrun_accumulation_all_reduces_once_per_step(crops: Path, tmp_path: Path) -> None:
    """accum=2 under DDP: gradients add up locally (no_sync) and are all-reduced once per step, as often as
    without accumulation, and the weights equal those of one micro-batch twice the size."""
    common = ["--set", f"train_hr=[{crops}]", "--set", "iters=2", "--set", "ckpt_every=2", "--set", "ema=0"]
    accumulated = _torchrun_recorded(tmp_path / "accum", *common, "--set", "batch=1", "--set", "accum=2")
    whole = _torchrun_recorded(tmp_path / "whole", *common, "--set", "batch=2", "--set", "accum=1")
    assert whole[0]["allreduces"] > 0  # one per bucket of gradients and step
    assert [r["allreduces"] for r in accumulated] == [r["allreduces"] for r in whole]
    a, b = _weights(tmp_path / "accum"), _weights(tmp_path / "whole")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k


def test_bad_data_is_skipped_and_counted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(data / f"ok{i}.png")
    Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(data / "grey.png")
    Image.fromarray(rng.integers(0, 255, (48, 48, 4), dtype=np.uint8)).save(data / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(data / "tiny.png")
    (data / "empty.png").write_bytes(b"")
    (data / "text.png").write_text("not an image")
    good = (data / "ok0.png").read_bytes()
    (data / "truncated.png").write_bytes(good[: len(good) // 2])
    (data / "notes.txt").write_text("hello")
    result = train(load_config(TINY, [f"train_hr=[{data}]", "iters=3"]), tmp_path / "run", log=quiet)
    assert result.iters == 3
    assert result.skipped.used == 4
    assert result.skipped.n_skipped == 5
    assert set(result.skipped.skipped) == {"corrupt", "smaller than 32 px", "not an image"}


def test_init_from_other_scale_resamples_upsampler(crops: Path, tmp_path: Path) -> None:
    train(tiny(crops, "iters=2"), tmp_path / "x2", log=quiet)
    result = train(tiny(crops, "iters=2", "scale=4", f"init_from={tmp_path / 'x2' / 'final.safetensors'}"),
                   tmp_path / "x4", log=quiet)
    assert model_from_checkpoint(load_checkpoint(result.export)).scale == 4


def test_config_errors_are_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SSTError, match="unknown config key"):
        load_config(TINY, ["learning_rate=1"])
    with pytest.raises(SSTError, match=r"itres \(did you mean iters\?\)"):
        load_config(TINY, ["itres=5"])
    with pytest.raises(SSTError, match=r"total_iter \(BasicSR's name; here: iters\)"):
        load_config(TINY, ["total_iter=5"])
    with pytest.raises(SSTError, match=r"ITERS \(did you mean iters\?\)"):
        load_config(TINY, ["ITERS=5"])
    basicsr = tmp_path / "basicsr.yml"
    basicsr.write_text("name: x\nmodel_type: SRModel\nnetwork_g: {type: SST, dim: 48}\n"
                       "datasets: {train: {dataroot_gt: hr, gt_size: 64}}\ntrain: {total_iter: 5}\n")
    with pytest.raises(SSTError, match=r"BasicSR options file \(sections datasets, network_g, train\).*"
                                       r"total_iter -> iters.*gt_size -> patch \(in LR pixels"):
        load_config(basicsr)
    with pytest.raises(SSTError, match="'batch' must be an integer"):
        load_config(TINY, ["batch=big"])
    with pytest.raises(SSTError, match="'scheduler' must be"):
        load_config(TINY, ["scheduler=linear"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("iters: [1, 2\n")
    assert cli_main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "Traceback" not in err
    assert cli_main(["train", "--config", str(TINY), "--set", "train_hr=[/nonexistent]"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_shipped_configs_are_valid() -> None:
    for path in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.iters > 0, path


# ------------------------------------------------------------------------------------- libraries
def test_ema_is_averaged_model_with_our_weights() -> None:
    """torch's AveragedModel, seeded with n_averaged=1, gives bit for bit ema = d*ema + (1-d)*w from step 0."""
    from sst_cli.model.archs import build_model
    from sst_cli.training.loop import make_ema

    torch.manual_seed(0)
    model = build_model(load_config(TINY).network | {"upscaling_factor": 2})
    ema = make_ema(model, 0.9)
    ref = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.rand(1, 3, 16, 16)).mean().backward()
        opt.step()
        ema.update_parameters(model)
        for r, p in zip(ref, model.parameters(), strict=True):
            r.lerp_(p.detach(), 1 - 0.9)
    assert all(torch.equal(a, b) for a, b in zip(ema.module.parameters(), ref, strict=True))
    assert not torch.equal(ref[0], next(model.parameters()))  # it is an average, not a copy
    assert ema.module.state_dict().keys() == model.state_dict().keys()  # checkpoints keep the network's keys


def test_checkpoint_ema_keeps_the_network_keys(crops: Path, tmp_path: Path) -> None:
    train(tiny(crops, "iters=2", "ckpt_every=2", "ema=0.99"), tmp_path / "run", log=quiet)
    state = torch.load(list_checkpoints(tmp_path / "run")[0], weights_only=True)
    assert state["ema"].keys() == state["model"].keys()
    assert any(not torch.equal(state["ema"][k], state["model"][k]) for k in state["model"])


def test_config_errors_name_the_key() -> None:
    for override, words in [("patch=0", "'patch' must be greater than or equal to 1"),
                            ("ema=1.5", "'ema' must be less than 1"),
                            ("cache_images=maybe", "'cache_images' must be true or false"),
                            ("betas=fast", "'betas' must be a number"),
                            ("network=[1]", "'network' must be a mapping"),
                            ("scale=5", "'scale' must be 1, 2, 3, 4 or 8"),
                            ("degradation={jpeg_quality: [10, 200]}",
                             "'degradation.jpeg_quality' is wrong: JPEG quality is at most 100")]:
        with pytest.raises(SSTError, match=words) as err:
            load_config(TINY, [override])
        assert str(err.value).endswith(".") and "\n" not in str(err.value)  # one sentence
        assert "Value error" not in str(err.value) and err.value.exit_code == 2
    assert load_config(TINY, ["train_hr=one/folder"]).train_hr == ["one/folder"]  # a single value is a list of one
    assert load_config(TINY, ["lr=3e-3"]).lr == 0.003  # YAML 1.1 reads 3e-3 as text


def test_config_paths_are_relative_to_the_config_file(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    cfg_file = folder / "run.yaml"
    cfg_file.write_text(TINY.read_text() + "train_hr: [../data/hr, /abs/hr]\nval_sets: [Set5, ../val/mine]\n"
                        "val_root: ../bench\ninit_from: https://example.invalid/w.pth\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(cfg_file, ["train_lr=[lr]"])
    project = tmp_path / "project"
    assert cfg.train_hr == [str(project / "data" / "hr"), "/abs/hr"]
    assert cfg.val_sets == ["Set5", str(project / "val" / "mine")]  # a bare name is a benchmark under val_root
    assert cfg.val_root == str(project / "bench")
    assert cfg.init_from == "https://example.invalid/w.pth"
    assert cfg.train_lr == ["lr"]  # --set values are relative to the working directory, as on any command line
    # val_root left out: $SST_DATA_ROOT, else ./datasets
    monkeypatch.setenv("SST_DATA_ROOT", str(tmp_path / "bench"))
    assert load_config(TINY).val_root == str(tmp_path / "bench")
    monkeypatch.delenv("SST_DATA_ROOT")
    assert load_config(TINY).val_root == "datasets"
    # the shipped configs name no path relative to the working directory
    shared = load_config(REPO / "configs" / "sst-tiny_x4.yaml")
    assert shared.val_root == str(REPO.parent / "shared" / "data")
    assert shared.train_hr[0] == str(REPO.parent / "shared" / "data" / "BSD200" / "HR")


# ------------------------------------------------------------------------------------------- the CLI
def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sst_cli", "train", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def test_run_dir_holding_a_run_is_refused(crops: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    base = ["train", "--config", str(TINY), "--run-dir", str(run), "--set", f"train_hr=[{crops}]",
            "--set", "iters=2", "--set", "ckpt_every=1", "--set", "keep_last=5"]
    assert cli_main(base) == 0
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    assert "ckpt_00000002.pt" in before
    capsys.readouterr()
    assert cli_main([*base, "--set", "iters=1"]) == 1  # a new run into the same folder would mix the two
    err = " ".join(capsys.readouterr().err.split())
    assert "already holds a run" in err and "--resume" in err and "--run-dir" in err and "--overwrite" in err
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before  # nothing touched
    assert cli_main([*base, "--resume", "--overwrite"]) == 2
    assert "choose one" in capsys.readouterr().err
    assert cli_main([*base, "--set", "iters=1", "--overwrite"]) == 0  # starts over: the old run's files are gone
    assert sorted(p.name for p in list_checkpoints(run)) == ["ckpt_00000001.pt"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(crops: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["--config", str(TINY), "--run-dir", str(run), "--set", f"train_hr=[{crops}]", "--set", "iters=400",
            "--set", "ckpt_every=1000", "--set", "log_every=1", "--set", "workers=1"]
    proc = subprocess.Popen([sys.executable, "-m", "sst_cli", "train", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group, data workers included
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    ckpts = list_checkpoints(run)
    assert len(ckpts) == 1  # none was due (ckpt_every=1000): this one was written because of the signal
    stopped_at = int(ckpts[0].stem.split("_")[1])
    assert 1 <= stopped_at < 400
    assert "SIGINT" in err and "--resume" in err and "Traceback" not in err
    refused = _cli(*args, "--set", f"iters={stopped_at + 3}", "--resume")
    assert refused.returncode == 2 and "iters 400 ->" in refused.stderr and "--extend" in refused.stderr
    assert "training" not in refused.stdout  # refused before the start banner
    done = _cli(*args, "--set", f"iters={stopped_at + 3}", "--resume", "--extend")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "extending the run (iters 400 -> " in " ".join(done.stdout.split())
    assert f"resumed from {ckpts[0].name} at iteration {stopped_at}" in done.stdout
    assert list_checkpoints(run)[0].name == f"ckpt_{stopped_at + 3:08d}.pt"


class _CtrlCInWorker(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        os.kill(os.getpid(), signal.SIGINT)  # a terminal's Ctrl-C reaches every process of the group
        return i


def test_data_workers_survive_ctrl_c() -> None:
    """Without this, a worker dies of the SIGINT and the loop fails ('worker exited unexpectedly') unsaved."""
    loader = torch.utils.data.DataLoader(_CtrlCInWorker(), num_workers=1, worker_init_fn=worker_ignores_stop_signals)
    assert sorted(int(x) for x in loader) == [0, 1, 2, 3]


def test_sigterm_also_saves(crops: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "sst_cli", "train", "--config", str(TINY), "--run-dir", str(run),
                             "--set", f"train_hr=[{crops}]", "--set", "iters=400", "--set", "log_every=1"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.terminate()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "SIGTERM" in err
    assert list_checkpoints(run)


def test_train_with_only_data_uses_printed_small_defaults(tmp_path: Path) -> None:
    hr = data_path("Set5", "HR")
    run = tmp_path / "run"
    done = _cli("--data", str(hr), "--run-dir", str(run), "--set", "iters=2", "--set", "workers=0",
                "--set", "batch=2")
    assert done.returncode == 0, done.stderr[-2000:]
    banner = done.stdout.split("\n")[:4]
    assert banner[0] == f"training sst-tiny x4 into {run} (new run); all settings in {run / 'config.yaml'}"
    assert banner[1].strip().startswith("data: 2 iterations of 2 x 32-px LR patches")
    assert banner[2].strip().startswith("optimiser: AdamW at 0.001")
    assert banner[3].strip().startswith("runs on: cpu, float32, attention")
    assert "bf16" not in done.stdout  # the precision that runs, not the config's bf16: true
    assert "ETA 0s" in done.stdout and "0h00m" not in done.stdout
    saved = (run / "config.yaml").read_text()
    assert "model: sst-tiny" in saved and "scale: 4" in saved and f"- {hr}" in saved  # --data is the training folder
    net = model_from_checkpoint(load_checkpoint(run / "final.safetensors"))
    assert net.scale == 4 and net.config["dim"] == 32
    missing = _cli()
    assert missing.returncode == 2 and "--data" in missing.stderr
    helped = _cli("--help")
    text = " ".join(helped.stdout.split())
    for words in ("--data", "sst-tiny x4", "--overwrite", "--resume", "$SST_DATA_ROOT", "relative to that file"):
        assert words in text, words
