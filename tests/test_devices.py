"""Device placement without a GPU: every command run on two fake CUDA devices (tests/fake_gpu.py) that fail
where a real GPU would, on an op given tensors from two devices or on a hidden transfer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_gpu import DeviceMixing, GpuTensor, fake_gpus
from PIL import Image

from conftest import data_path
from sst_cli.cli import main

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------- the fake is strict
def test_fake_gpu_refuses_what_a_gpu_refuses() -> None:
    with fake_gpus():
        a = torch.ones(4, device="cuda:0")
        b = torch.ones(4).to("cuda:1")
        assert isinstance(a, GpuTensor) and a.device == torch.device("cuda:0") and a.is_cuda
        with pytest.raises(DeviceMixing, match="cuda:0 and cuda:1"):
            a + b
        with pytest.raises(DeviceMixing, match="cuda:0 and cpu"):
            a * torch.ones(4)
        with pytest.raises(DeviceMixing, match="implicit transfer"):
            a[torch.arange(2)]  # PyTorch accepts a CPU index, copying it over: caught all the same
        with pytest.raises(DeviceMixing):
            torch.nn.Linear(4, 2)(a)  # weights left on the CPU
        with pytest.raises(TypeError, match="numpy"):
            a.numpy()
        # what a GPU allows: 0-dim CPU scalars, explicit moves, indices on the same device
        assert (a * torch.tensor(2.0)).device == a.device
        assert torch.equal(a[torch.arange(2, device="cuda:0")].cpu(), torch.ones(2))
        assert type(a.cpu()) is torch.Tensor and a.to("cuda:1").device == torch.device("cuda:1")
        assert torch.tensor([1, 2], device="cuda").device == torch.device("cuda:0")


def test_fake_gpu_trains_a_module_like_the_cpu() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GELU(), torch.nn.Conv2d(4, 3, 1))
    x = torch.rand(2, 3, 8, 8)
    ref = torch.nn.functional.l1_loss(model(x), torch.zeros(2, 3, 6, 6))
    ref.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with fake_gpus():
        model.to("cuda")
        assert all(p.device == torch.device("cuda:0") and isinstance(p, torch.nn.Parameter) for p in model.parameters())
        loss = torch.nn.functional.l1_loss(model(x.cuda()), torch.zeros(2, 3, 6, 6, device="cuda"))
        loss.backward()
        assert loss.item() == ref.item()
        for p, g in zip(model.parameters(), grads, strict=True):
            assert p.grad.device == p.device and torch.equal(p.grad.cpu(), g)


# ------------------------------------------------------------------------------------ the commands
@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((8, 6, 3)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 24x24 crops of Set5: a validation / evaluation set that takes a second."""
    folder = tmp_path_factory.mktemp("Tiny")
    for name in ("baby", "bird"):
        im = Image.open(data_path("Set5", "HR", f"{name}.png")).convert("RGB")
        im.crop((40, 40, 64, 64)).save(folder / f"{name}.png")
    return folder


def _on_fake_gpus(*args: str) -> int:
    with fake_gpus():
        return main(list(args))


@pytest.mark.parametrize("model", [["-m", "bicubic"], []], ids=["bicubic", "bundled"])
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_upscale_on_a_gpu(images: Path, tmp_path: Path, model: list[str], device: str) -> None:
    out = tmp_path / "out"
    assert _on_fake_gpus("upscale", str(images), str(out), "-s", "2", *model, "--device", device, "--dtype", "fp32",
                         "--json", str(tmp_path / "r.json")) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["done"] == 2 and report["failed"] == 0, report
    assert report["device"] == device
    cpu = tmp_path / "cpu"
    assert main(["upscale", str(images), str(cpu), "-s", "2", *model, "--device", "cpu", "--dtype", "fp32"]) == 0
    for name in ("im0.png", "im1.png"):  # the same kernels ran: the same pixels
        assert np.array_equal(np.asarray(Image.open(out / name)), np.asarray(Image.open(cpu / name)))


def test_random_weights_variant_on_a_gpu() -> None:
    from sst_cli.upscale.upscaler import load_upscaler

    x = np.random.default_rng(0).random((12, 16, 3)).astype(np.float32)
    cpu = load_upscaler(model="sst-light", scale=2, device="cpu", dtype="fp32", backend="sdpa", random_weights=True)(x)
    with fake_gpus():
        up = load_upscaler(model="sst-light", scale=2, device="cuda:1", dtype="fp32", backend="sdpa", random_weights=True)
        assert next(up.model.parameters()).device == torch.device("cuda:1")
        np.testing.assert_allclose(up(x), cpu, atol=1e-5)  # whole image on the GPU, CPU tiles may differ


@pytest.mark.parametrize("model", [["-m", "bicubic"], []], ids=["bicubic", "bundled"])
def test_eval_on_a_gpu(tiny_set: Path, tmp_path: Path, model: list[str]) -> None:
    common = ["eval", *model, "--dataset", str(tiny_set), "--scale", "2"]
    assert _on_fake_gpus(*common, "--device", "cuda", "--json", str(tmp_path / "gpu.json")) == 0
    assert main([*common, "--device", "cpu", "--json", str(tmp_path / "cpu.json")]) == 0
    gpu, cpu = (json.loads((tmp_path / f"{k}.json").read_text())["results"][0] for k in ("gpu", "cpu"))
    assert gpu["num_images"] == 2 and gpu["psnr_y"] == cpu["psnr_y"]


@pytest.mark.xfail(strict=True, raises=DeviceMixing, reason=(
    "fake_gpu limitation, not an sst bug: autograd's AccumulateGrad builds a grad whose strides differ from "
    "its parameter with the parameter's C++ options, which say CPU for a GpuTensor, so the grad lands on "
    "the CPU (tests/fake_gpu.py needs a fix there)"))
def test_train_with_validation_and_resume_on_a_gpu(tiny_set: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--config", str(REPO / "configs" / "tiny.yaml"), "--run-dir", str(run), "--device", "cuda:1",
            "--set", f"train_hr=[{tiny_set}]", "--set", f"val_sets=[{tiny_set}]", "--set", "patch=8",
            "--set", "batch=2", "--set", "val_every=2", "--set", "ckpt_every=2", "--set", "log_every=1",
            "--set", "backend=sdpa", "--set", "accum=2"]
    assert _on_fake_gpus(*args, "--set", "iters=2") == 0
    assert _on_fake_gpus(*args, "--set", "iters=4", "--resume") == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in lines if "val_psnr_y" in r] == [2, 4]
    assert (run / "final.safetensors").is_file()
