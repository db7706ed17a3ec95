"""Device placement without a GPU: every command run on two fake CUDA devices (tests/fake_gpu.py) that fail
where a real GPU would, on an op given tensors from two devices or on a hidden transfer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_gpu import GPU_NAME, DeviceMixing, GpuTensor, fake_gpus, in_subprocesses
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


class _TwoOutputs(torch.autograd.Function):
    """y = (2x, 3x); ``cpu_in_backward`` makes its backward build a CPU tensor, as a careless one would."""

    cpu_in_backward = False

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 2, x * 3

    @staticmethod
    def backward(ctx: object, ga: torch.Tensor, gb: torch.Tensor) -> torch.Tensor:
        # gb: zeros made by the engine, since the second output got no gradient
        scale = torch.full(ga.shape, 3.0) if _TwoOutputs.cpu_in_backward else 3.0
        return ga * 2 + gb * scale


def test_fake_gpu_puts_the_tensors_autograd_makes_on_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Autograd's C++ side makes some tensors from a tensor's options, which say CPU for a GpuTensor: a
    grad whose strides differ from its parameter's (AccumulateGrad), zeros for an output with no gradient."""
    with fake_gpus():
        w = torch.nn.Parameter(torch.ones(4, 3, device="cuda:1"))
        c = torch.arange(12.0, device="cuda:1").reshape(3, 4)
        for _ in range(2):  # the second one accumulates into the first
            (w.t() * c).sum().backward()
        assert w.grad.device == w.device and w.grad.stride() == w.stride()
        assert torch.equal(w.grad.cpu(), 2 * torch.arange(12.0).reshape(3, 4).t())
        x = torch.ones(3, device="cuda:1", requires_grad=True)
        _TwoOutputs.apply(x)[0].sum().backward()
        assert x.grad.device == x.device and torch.equal(x.grad.cpu(), torch.full((3,), 2.0))
        # Python code in a backward gets no help: a CPU tensor there is a device mix, as on a GPU
        monkeypatch.setattr(_TwoOutputs, "cpu_in_backward", True)
        with pytest.raises(DeviceMixing, match="cuda:1 and cpu"):
            _TwoOutputs.apply(x)[0].sum().backward()


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


def test_profile_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """One tiny training configuration on cuda:1, measured in its worker process, which runs on the fake GPUs
    too (a worker without them could not even select a CUDA device, and a device mix would fail its row)."""
    import yaml

    from sst_cli.profiling.grid import ProfileConfig
    from sst_cli.profiling.runner import profile

    in_subprocesses(monkeypatch)
    tiny = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())["network"]
    config = ProfileConfig("tiny", 2, "sdpa", "rib", "fp32", "cuda:1", (16, 16), mode="train", warmup=0, repeat=1,
                           network_g=tiny, timeout_s=120)
    with fake_gpus():
        result = profile([config])
    [row] = result["rows"]
    assert row["status"] == "ok", row["status"]
    assert (row["device"], row["device_name"], row["mode"]) == ("cuda:1", GPU_NAME, "train")
    assert row["latency_ms_median"] > 0 and row["peak_mem_mb"] is not None
    assert [g["name"] for g in result["environment"]["gpus"]] == [GPU_NAME] * 2  # the parent's view


def test_train_with_validation_and_resume_on_a_gpu(tiny_set: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """2 iterations, validation and a checkpoint, then --resume to 4 on cuda:1 (gradient accumulation too):
    the same weights and scores as 4 straight iterations on the CPU (the fake computes with CPU kernels)."""
    from safetensors.torch import load_file

    predicted_on: set[torch.device] = set()
    l1 = torch.nn.functional.l1_loss

    def spy(pred: torch.Tensor, target: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        predicted_on.add(pred.device)
        return l1(pred, target, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "l1_loss", spy)
    common = ["train", "--config", str(REPO / "configs" / "tiny.yaml"), "--set", f"train_hr=[{tiny_set}]",
              "--set", f"val_sets=[{tiny_set}]", "--set", "patch=8", "--set", "batch=2", "--set", "val_every=2",
              "--set", "ckpt_every=2", "--set", "log_every=1", "--set", "backend=sdpa", "--set", "accum=2",
              "--set", "warmup=0"]  # a constant rate: resuming 2 -> 4 with --extend is then the straight run
    gpu, cpu = tmp_path / "gpu", tmp_path / "cpu"
    on_gpu = [*common, "--run-dir", str(gpu), "--device", "cuda:1"]
    assert _on_fake_gpus(*on_gpu, "--set", "iters=2") == 0
    assert _on_fake_gpus(*on_gpu, "--set", "iters=4", "--resume", "--extend") == 0
    assert predicted_on == {torch.device("cuda:1")}  # the model really ran on the second GPU
    assert main([*common, "--run-dir", str(cpu), "--device", "cpu", "--set", "iters=4"]) == 0

    def scores(run: Path) -> list[tuple[int, float]]:
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["iter"], r["val_psnr_y"]) for r in lines if "val_psnr_y" in r]

    assert [it for it, _ in scores(gpu)] == [2, 4]
    assert scores(gpu) == scores(cpu)
    a, b = load_file(gpu / "final.safetensors"), load_file(cpu / "final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
