"""Many processes: rank arithmetic, and `sst upscale` / `sst eval` under torchrun (2 CPU processes, gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sst_cli import distributed
from sst_cli.distributed import Dist
from sst_cli.io.images import read_image, save_array

REPO = Path(__file__).resolve().parents[1]


def test_ranks_from_the_environment() -> None:
    assert distributed.from_env({}) == Dist()
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert distributed.from_env(env) == Dist(3, 4, 1, 2)
    assert not Dist().active and Dist(0, 2).active and Dist(0, 2).main and not Dist(1, 2).main


def test_shares_cover_every_item_exactly_once() -> None:
    items = [f"f{i}" for i in range(11)]
    for world in (1, 2, 3, 5, 16):
        shares = [Dist(r, world).shard(items) for r in range(world)]
        assert sorted(x for s in shares for x in s) == sorted(items)
        assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced


def test_threads_are_shared_out_among_local_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "cpu_cores", lambda: 16)
    assert distributed.default_threads(Dist()) is None  # one process: PyTorch's own choice
    assert distributed.default_threads(Dist(5, 8, 1, 4)) == 4
    assert distributed.default_threads(Dist(0, 32, 0, 32)) == 1


def test_each_rank_gets_its_own_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert Dist(1, 2, 1, 2).device("cpu") == "cpu" and Dist().device("auto") == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert Dist(1, 2, 1, 2).device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert Dist(9, 16, 1, 8).device("auto") == "cuda:1" and Dist(9, 16, 1, 8).device("cuda:1") == "cuda:1"


# ------------------------------------------------------------------------------------------ torchrun
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sst(*args: str, procs: int = 1) -> subprocess.CompletedProcess[str]:
    """`sst ARGS` in a fresh process, or under torchrun with ``procs`` CPU processes."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    launcher = [sys.executable, "-m", "sst_cli"]
    if procs > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs),
                    "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "sst_cli"]
    return subprocess.run([*launcher, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _images(folder: Path, n: int, size: int = 20) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.random((size // 4, size // 4, 3))
        img = np.kron(base, np.ones((4, 4, 1))) * 0.7 + rng.random((size, size, 3)) * 0.3
        save_array(folder / f"im{i}.png", np.round(img * 255).astype(np.uint8))
    return sorted(p.name for p in folder.iterdir())


def test_upscale_under_torchrun_does_each_file_once(tmp_path: Path) -> None:
    names = _images(tmp_path / "in", 5)
    one = _sst("upscale", str(tmp_path / "in"), str(tmp_path / "one"), "--device", "cpu", "--threads", "1")
    assert one.returncode == 0, one.stderr
    two = _sst("upscale", str(tmp_path / "in"), str(tmp_path / "two"), "--threads", "1",
               "--json", str(tmp_path / "two.json"), procs=2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("5 done") == 1 and all(two.stdout.count(n) == 1 for n in names)  # rank 0 alone
    report = json.loads((tmp_path / "two.json").read_text())  # one merged summary
    assert report["processes"] == 2 and (report["done"], report["skipped"], report["failed"]) == (5, 0, 0)
    assert [Path(r["input"]).name for r in report["results"]] == names  # each reported once, in order
    for name in names:
        assert np.array_equal(read_image(tmp_path / "two" / name).pixels, read_image(tmp_path / "one" / name).pixels)
    again = _sst("upscale", str(tmp_path / "in"), str(tmp_path / "two"), procs=2)
    assert again.returncode == 0 and again.stdout.count("5 skipped") == 1, again.stdout


def test_eval_under_torchrun_equals_one_process(tmp_path: Path) -> None:
    _images(tmp_path / "data" / "Mine" / "HR", 5, size=48)
    common = ["eval", "--dataset", "Mine", "--data-root", str(tmp_path / "data"), "--scale", "2", "--device", "cpu",
              "--threads", "1"]
    one = _sst(*common, "--json", str(tmp_path / "one.json"), "--csv", str(tmp_path / "one.csv"))
    assert one.returncode == 0, one.stderr
    two = _sst(*common, "--json", str(tmp_path / "two.json"), "--csv", str(tmp_path / "two.csv"), procs=2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("Metrics as BasicSR") == 1  # one table, from rank 0
    a, b = (json.loads((tmp_path / f"{k}.json").read_text()) for k in ("one", "two"))
    ra, rb = a["results"][0], b["results"][0]
    assert rb["num_images"] == 5 and b["settings"]["processes"] == 2
    assert (rb["psnr_y"], rb["ssim_y"]) == (ra["psnr_y"], ra["ssim_y"])  # to the last digit
    strip = [{k: v for k, v in im.items() if k != "seconds"} for im in ra["images"]]
    assert [{k: v for k, v in im.items() if k != "seconds"} for im in rb["images"]] == strip
    cut = [[c for i, c in enumerate(line.split(",")) if i != 9] for line in (tmp_path / "one.csv").read_text().splitlines()]
    assert [[c for i, c in enumerate(line.split(",")) if i != 9]
            for line in (tmp_path / "two.csv").read_text().splitlines()] == cut  # same rows but the seconds


# ----------------------------------------------------------------------------- devices under torchrun
def test_explicit_gpu_under_torchrun_is_this_ranks_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from sst_cli.errors import SSTError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert Dist(1, 2, 1, 2).device("cuda:1") == "cuda:1" and Dist().device("cuda:1") == "cuda:1"
    with pytest.raises(SSTError, match="another rank's GPU"):
        Dist(1, 2, 1, 2).device("cuda:0")  # every rank on GPU 0, while NCCL and DDP expect cuda:1
    assert Dist(1, 2, 1, 2).device("cpu") == "cpu"


def _torchrun_env(monkeypatch: pytest.MonkeyPatch, rank: int) -> None:
    for k, v in {"RANK": rank, "WORLD_SIZE": 2, "LOCAL_RANK": rank, "LOCAL_WORLD_SIZE": 2}.items():
        monkeypatch.setenv(k, str(v))


@pytest.mark.parametrize(("device", "backend", "expected"), [("cpu", "gloo", "cpu"), (None, "nccl", "cuda:1"),
                                                              ("cuda", "nccl", "cuda:1"), ("cuda:1", "nccl", "cuda:1")])
def test_training_group_follows_the_device(monkeypatch: pytest.MonkeyPatch, device: str | None, backend: str,
                                           expected: str) -> None:
    """A GPU machine (2 GPUs, faked), rank 1 of 2: a CPU run joins gloo, a GPU run NCCL on its own GPU."""
    import torch
    import torch.distributed as dist

    from sst_cli.training import loop

    _torchrun_env(monkeypatch, 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    current: list[object] = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    joined: list[str] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: bool(joined))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: joined.append(backend))
    d, dev = loop.init_distributed(device)
    assert d.rank == 1 and joined == [backend] and dev == torch.device(expected)
    assert current == ([dev] if dev.type == "cuda" else [])


def test_explicit_other_gpu_in_training_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from sst_cli.errors import SSTError
    from sst_cli.training import loop

    _torchrun_env(monkeypatch, 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(SSTError, match=r"^--device cuda:0 under torchrun .*CUDA_VISIBLE_DEVICES\.$"):
        loop.init_distributed("cuda:0")
