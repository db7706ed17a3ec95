"""Tiling: grid planning, blending weights, tiled == untiled, TTA, out-of-memory retry, auto tile size."""

from __future__ import annotations

import dataclasses
import itertools
import math
import threading
import time

import pytest
import torch
import torch.nn.functional as F

from sst_cli import runtime
from sst_cli.model.archs import build_model
from sst_cli.model.bicubic import imresize
from sst_cli.upscale import tiling
from sst_cli.upscale.tiling import axis_starts, axis_weights, plan_tiles, upscale_tensor
from sst_cli.upscale.upscaler import Upscaler, load_upscaler


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def random_sst(windows: list[int], scale: int = 2, seed: int = 0) -> Upscaler:
    torch.manual_seed(seed)
    net = build_model({"dim": 16, "window_sizes": windows, "num_heads": 2, "ranks": 8, "n_blocks": 2,
                       "exp_ratio": 1.5, "upscaling_factor": scale, "upsampler_type": "pixelshuffle_direct"})
    return Upscaler(net.eval(), "random-sst", scale, torch.device("cpu"), torch.float32, "sdpa", "test")


@pytest.fixture(scope="module")
def bicubic() -> Upscaler:
    return load_upscaler("bicubic", scale=3, device="cpu")


def smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A natural-ish test image: low-pass noise plus edges, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(1, 3, h // 4 + 1, w // 4 + 1, generator=g), size=(h, w), mode="bilinear")
    x[:, :, h // 3 :, : w // 2] *= 0.5
    return x.clamp(0, 1)


# ------------------------------------------------------------------------------------------ planning
@pytest.mark.parametrize("length,tile,overlap,align", [(100, 40, 10, 1), (230, 128, 32, 64), (64, 64, 8, 1),
                                                       (33, 8, 2, 1), (500, 96, 32, 96), (500, 160, 32, 64)])
def test_axis_starts_cover_and_overlap(length: int, tile: int, overlap: int, align: int) -> None:
    starts = axis_starts(length, tile, overlap, align)
    assert starts[0] == 0 and starts[-1] + min(tile, length) == length
    for a, b in zip(starts, starts[1:], strict=False):
        assert a + tile - b >= overlap  # neighbours share at least the overlap
        assert b > a
    if tile - overlap >= align:  # tile windows coincide with whole-image windows (when a stride allows)
        assert all(s % align == 0 for s in starts[:-1])


@pytest.mark.parametrize("length,tile,overlap,scale", [(100, 40, 10, 2), (230, 128, 32, 4), (37, 16, 4, 3)])
def test_axis_weights_are_a_partition_of_unity(length: int, tile: int, overlap: int, scale: int) -> None:
    starts = axis_starts(length, tile, overlap)
    weights = axis_weights(starts, tile, length, scale)
    total = torch.zeros(length * scale)
    for s, w in zip(starts, weights, strict=True):
        assert w.min() >= 0
        total[s * scale : s * scale + w.numel()] += w
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)
    # a tile's own border pixels get no weight where a neighbour covers them
    assert weights[0][-1] < 1e-6 and weights[-1][0] < 1e-6


def test_every_tile_starts_on_the_window_grid() -> None:
    """The last tile ends at the border and still starts on the grid: its extent, not its start, gives."""
    up = random_sst([8, 16])
    plan = plan_tiles(up, 1080, 1920, 304)
    assert plan.th % 16 == 1080 % 16 and plan.tw % 16 == 1920 % 16 and max(plan.th, plan.tw) <= 304
    assert all(y % 16 == 0 for y in plan.ys) and all(x % 16 == 0 for x in plan.xs)
    assert plan.ys[-1] + plan.th == 1080 and plan.xs[-1] + plan.tw == 1920


def test_sst_tiles_of_any_image_size_match_the_whole_image() -> None:
    """Tiles see the whole image's windows, so away from seams (hidden by the overlap) they agree."""
    up = random_sst([8, 16], scale=2, seed=3)
    x = smooth_image(75, 106, seed=4)  # no side a multiple of the windows
    whole = upscale_tensor(up, x)
    tiled = upscale_tensor(up, x, tile=48, overlap=16)
    assert plan_tiles(up, 75, 106, 48, 16).count > 4
    assert psnr(tiled, whole) >= 80  # 88 dB; a last tile pushed off the grid gave 70 dB


def test_plan_whole_image_when_tile_covers_it(bicubic: Upscaler) -> None:
    assert plan_tiles(bicubic, 50, 60, 0).count == 1
    assert plan_tiles(bicubic, 50, 60, 64).count == 1
    plan = plan_tiles(bicubic, 50, 60, 32)
    assert plan.count == len(plan.ys) * len(plan.xs) > 1
    assert plan.overlap == 8  # default: 32, at most a quarter of the tile


# ------------------------------------------------------------------------------------ tiled == whole
def test_bicubic_tiled_equals_whole(bicubic: Upscaler) -> None:
    x = smooth_image(70, 95)
    whole = upscale_tensor(bicubic, x)
    assert whole.shape == (1, 3, 210, 285)
    assert torch.equal(whole, imresize(x, 3))
    for tile in (32, 40, 48):  # overlaps 8, 10, 12: a 2+ pixel zero-weight margin
        tiled = upscale_tensor(bicubic, x, tile=tile)
        # bicubic reaches 2 input pixels: the zero-weight margin of the default overlap hides tile edges
        assert (tiled - whole).abs().max().item() < 1e-5, tile


def test_sst_tiled_matches_whole_with_default_overlap() -> None:
    """Windows (16, 64) larger than the default 32-pixel overlap: still >= 45 dB; no overlap is far worse."""
    up = random_sst([16, 64])
    x = smooth_image(200, 232, seed=1)
    whole = upscale_tensor(up, x)
    # the random network changes the image a lot, so seams would show
    assert psnr(whole, F.interpolate(x, scale_factor=2, mode="nearest")) < 30
    tiled = upscale_tensor(up, x, tile=128)
    assert plan_tiles(up, 200, 232, 128).count > 1
    assert psnr(tiled, whole) >= 45
    # sanity of the test itself: tiles that merely touch leave visible seams
    seams = upscale_tensor(up, x, tile=64, overlap=0)
    assert psnr(seams, whole) < psnr(tiled, whole) - 10


class _CountingBatches:
    """Wraps an upscaler and records the batch size of every call."""

    def __init__(self, up: Upscaler) -> None:
        self.up, self.scale, self.sizes = up, up.scale, []

    def __getattr__(self, name: str):  # noqa: ANN204 - window sizes, device, ... of the wrapped upscaler
        return getattr(self.up, name)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        return self.up(x)


@pytest.mark.parametrize("tta", [False, True], ids=["plain", "tta"])
def test_batched_tiles_equal_one_at_a_time(tta: bool) -> None:
    up = random_sst([8, 16])
    x = smooth_image(70, 150, seed=2)
    one = upscale_tensor(up, x, tile=48, tta=tta)
    counting = _CountingBatches(up)
    batched = upscale_tensor(counting, x, tile=48, tta=tta, batch=3)
    plan = plan_tiles(up, 70, 150, 48)
    n = len(plan.xs)
    assert len(plan.ys) > 1 and n % 3  # each tile row: batches of 3, then a smaller one
    per_row = [b for b in [3] * (n // 3) + [n % 3] for _ in range(8 if tta else 1)]  # TTA: eight transforms
    assert counting.sizes == per_row * len(plan.ys)
    # Same tiles, same weights; batching only changes float rounding (more windows per attention call).
    assert (batched - one).abs().max().item() < 1e-5


def test_batched_tiles_report_progress_per_batch(bicubic: Upscaler) -> None:
    calls: list[tuple[int, int]] = []
    upscale_tensor(bicubic, smooth_image(50, 50), tile=16, batch=2, progress=lambda d, t: calls.append((d, t)))
    total = calls[-1][1]
    assert calls[-1] == (total, total) and all(b > a for (a, _), (b, _) in zip(calls, calls[1:], strict=False))


def test_progress_reports_every_tile(bicubic: Upscaler) -> None:
    calls: list[tuple[int, int]] = []
    upscale_tensor(bicubic, smooth_image(50, 50), tile=16, progress=lambda d, t: calls.append((d, t)))
    total = calls[-1][1]
    assert total > 1 and calls[-1] == (total, total)
    assert [d for d, _ in calls] == list(range(1, total + 1))


def test_bands_are_bounded_by_the_tile(bicubic: Upscaler) -> None:
    """Finished rows come out in bands no taller than one tile row: memory follows the tile size."""
    x = smooth_image(90, 40)
    plan = plan_tiles(bicubic, 90, 40, 24)
    rows = []

    def crop(y0: int, x0: int, h: int, w: int) -> torch.Tensor:
        return x[:, :, y0 : y0 + h, x0 : x0 + w]

    for row, band in tiling.iter_bands(bicubic, crop, plan, 3):
        assert band.shape[2] <= 24 * 3
        rows.append((row, band.shape[2]))
    assert rows[0][0] == 0 and sum(n for _, n in rows) == 270
    assert all(a + n == b for (a, n), (b, _) in zip(rows, rows[1:], strict=False))


# ------------------------------------------------------------------------------------------------ TTA
def test_tta_of_bicubic_is_bicubic(bicubic: Upscaler) -> None:
    x = smooth_image(30, 41)
    assert torch.allclose(upscale_tensor(bicubic, x, tta=True), upscale_tensor(bicubic, x), atol=1e-5)


def test_tta_is_the_mean_over_the_eight_dihedral_transforms() -> None:
    up = random_sst([8, 16])
    x = smooth_image(24, 40, seed=3)
    outs = []
    for k in range(4):  # independent construction: rotations, and rotations of the mirror image
        for mirror in (False, True):
            xi = torch.rot90(x.flip(-1) if mirror else x, k, (-2, -1))
            yi = torch.rot90(up(xi), -k, (-2, -1))
            outs.append(yi.flip(-1) if mirror else yi)
    expected = torch.stack(outs).mean(0)
    got = upscale_tensor(up, x, tta=True)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, upscale_tensor(up, x), atol=1e-3)  # TTA does change a real model's output


# ----------------------------------------------------------------------------- out-of-memory, auto tile
class PickyUpscaler:
    """Bicubic that raises CUDA out-of-memory for tiles larger than ``limit`` pixels a side."""

    scale = 2
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sizes: list[int] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB")
        return imresize(x, 2)


def test_out_of_memory_retries_with_smaller_tiles() -> None:
    up = PickyUpscaler(limit=40)
    x = smooth_image(100, 120)
    retries: list[tuple[int, int]] = []
    out = upscale_tensor(up, x, tile=0, on_retry=lambda a, b: retries.append((a, b)))
    assert retries == [(120, 60), (60, 32)]
    assert max(up.sizes[-5:]) <= 40
    assert (out - imresize(x, 2)).abs().max().item() < 1e-5


def test_out_of_memory_at_the_smallest_tile_raises() -> None:
    with pytest.raises(torch.cuda.OutOfMemoryError):
        upscale_tensor(PickyUpscaler(limit=8), smooth_image(64, 64), tile=32)


def test_other_errors_are_not_retried() -> None:
    class Broken(PickyUpscaler):
        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        upscale_tensor(Broken(0), smooth_image(40, 40), tile=16)


def test_auto_tile_follows_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    up = random_sst([16, 32], scale=4)
    monkeypatch.setattr(tiling, "free_memory", lambda device: 64 << 30)
    assert tiling.resolve_tile(up, "auto", 300, 400) == 0  # fits: whole image
    monkeypatch.setattr(tiling, "free_memory", lambda device: 200 << 20)
    small = tiling.resolve_tile(up, "auto", 3000, 4000)
    monkeypatch.setattr(tiling, "free_memory", lambda device: 800 << 20)
    larger = tiling.resolve_tile(up, "auto", 3000, 4000)
    assert tiling.MIN_TILE <= small < larger < 3000
    assert larger % 32 == 0  # aligned to the windows
    assert tiling.resolve_tile(up, 64, 300, 400) == 64 and tiling.resolve_tile(up, "0", 300, 400) == 0
    # four tiles run together share the memory one tile had
    assert tiling.resolve_tile(up, "auto", 3000, 4000, batch=4) < larger


def test_auto_tile_on_cpu_is_sized_for_speed_not_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    up = random_sst([16, 32], scale=4)
    monkeypatch.setattr(tiling, "free_memory", lambda device: 64 << 30)
    h, w = 1080, 1920
    tile = tiling.resolve_tile(up, "auto", h, w)
    assert 0 < tile < h  # tiled although the whole image fits in memory
    assert tile * tile * tiling.widest_activation(up) <= tiling.CPU_ACTIVATION_BYTES
    largest = int(math.sqrt(tiling.CPU_ACTIVATION_BYTES / tiling.widest_activation(up)))

    def area(t: int) -> int:
        plan = plan_tiles(up, h, w, t)
        return plan.count * plan.th * plan.tw

    # of the sizes from half the largest up, none computes fewer pixels
    assert area(tile) == min(area(t) for t in range(largest, largest // 2 - 1, -1))
    # evaluation keeps whole images wherever they fit; so does a small image, and a GPU
    assert tiling.resolve_tile(up, "auto", h, w, whole_if_fits=True) == 0
    assert tiling.resolve_tile(up, "auto", 200, 300) == 0
    monkeypatch.setattr(up, "device", torch.device("cuda"))
    assert tiling.resolve_tile(up, "auto", h, w) == 0
    # tight memory still wins over the speed choice
    monkeypatch.setattr(up, "device", torch.device("cpu"))
    monkeypatch.setattr(tiling, "free_memory", lambda device: 100 << 20)
    assert tiling.resolve_tile(up, "auto", h, w) < tile


def test_widest_activation_bounds_the_real_tensors() -> None:
    """The estimate behind cpu_tile: no activation of a forward is wider than it says."""
    up = random_sst([8, 16], scale=4)
    x = torch.rand(1, 3, 32, 32)
    widest = 0

    def hook(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal widest
        if isinstance(out, torch.Tensor) and module is not up.model:
            widest = max(widest, out.numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in up.model.modules()]
    with torch.inference_mode():
        up.model(x)
    for h in handles:
        h.remove()
    assert widest <= tiling.widest_activation(up) * 32 * 32


def test_free_memory_is_positive() -> None:
    assert runtime.free_memory(torch.device("cpu")) > 0


# ----------------------------------------------------------------------------- tiles side by side (CPU)
@pytest.fixture
def two_threads() -> object:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("tta,batch", [(False, 1), (True, 1), (False, 2)])
def test_concurrent_cpu_tiles_equal_one_at_a_time_bitwise(monkeypatch: pytest.MonkeyPatch, two_threads: object,
                                                           tta: bool, batch: int) -> None:
    """Each tile side by side runs on one intra-op thread: bitwise what one tile at a time computes on one thread,
    and within float rounding of one at a time on two (a reduction may split differently)."""
    up = random_sst([8, 16], scale=2)
    x = smooth_image(70, 90)
    with torch.inference_mode():
        monkeypatch.setattr(tiling, "CONCURRENT_CPU_TILES", False)
        two_threads = upscale_tensor(up, x, tile=32, tta=tta, batch=batch)
        torch.set_num_threads(1)
        one_thread = upscale_tensor(up, x, tile=32, tta=tta, batch=batch)
        torch.set_num_threads(2)
        monkeypatch.setattr(tiling, "CONCURRENT_CPU_TILES", True)
        side_by_side = upscale_tensor(up, x, tile=32, tta=tta, batch=batch)
    assert torch.equal(one_thread, side_by_side)
    assert (two_threads - side_by_side).abs().max() < 1e-5
    assert torch.get_num_threads() == 2  # the one-thread-per-tile setting is undone


def test_tile_workers_only_on_the_cpu(two_threads: object) -> None:
    assert tiling.tile_workers(torch.device("cpu"), tiles=9) == 2
    assert tiling.tile_workers(torch.device("cpu"), tiles=1) == 1
    assert tiling.tile_workers(torch.device("cuda"), tiles=9) == 1
    assert tiling.tile_workers(None, tiles=9) == 1  # a bare callable: where it runs is unknown
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast is per thread: not carried into workers
        assert tiling.tile_workers(torch.device("cpu"), tiles=9) == 1


class _Recorder(Upscaler):
    """Records, per call, what the worker thread sees: its thread, grad modes, threads and placement."""

    def __init__(self, fail_at: int | None = None, meet: int = 0, slow: float = 0.0) -> None:
        up = load_upscaler("bicubic", scale=2, device="cpu")
        super().__init__(up.model, "recorder", 2, torch.device("cpu"), torch.float32, "sdpa", "test")
        self.seen: list[tuple[str, bool, bool, int, tuple]] = []
        self.fail_at = fail_at
        # The first `meet` calls wait for each other: they must be in flight at once (else a timeout), and a
        # fast worker cannot take every tile before the pool starts its second thread.
        self.meet = threading.Barrier(meet, timeout=30) if meet else None
        self.calls = itertools.count()  # next() on it is atomic
        self.slow = slow  # seconds each call that does not fail takes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from sst_cli.model import placement

        n = next(self.calls)  # this call's number from 0, whichever thread appends first below
        if self.meet is not None and n < self.meet.parties:
            self.meet.wait()
        self.seen.append((threading.current_thread().name, torch.is_inference_mode_enabled(), torch.is_grad_enabled(),
                          torch.get_num_threads(), placement.current().origins))
        if self.fail_at is not None and n + 1 == self.fail_at:  # not len(self.seen): two threads append at once
            raise RuntimeError("boom")
        time.sleep(self.slow)
        return F.interpolate(x, scale_factor=2, mode="nearest")


def test_workers_see_the_callers_modes_and_their_own_tiles(two_threads: object) -> None:
    rec = _Recorder(meet=2)
    x = torch.rand(1, 3, 40, 40)
    with torch.inference_mode():
        upscale_tensor(rec, x, tile=16, overlap=4)
    names = {s[0] for s in rec.seen}
    assert len(names) == 2 and all(n.startswith("sst-tile") for n in names)
    assert all(s[1] and not s[2] and s[3] == 1 for s in rec.seen)  # inference mode, one intra-op thread each
    plan = plan_tiles(rec, 40, 40, 16, 4)
    assert sorted(o for s in rec.seen for o in s[4]) == sorted((y, x0) for y in plan.ys for x0 in plan.xs)
    rec.seen.clear()
    with torch.no_grad():
        upscale_tensor(rec, x, tile=16, overlap=4)
    assert all(not s[1] and not s[2] for s in rec.seen)


def test_a_failing_tile_stops_the_run_and_restores_the_threads(two_threads: object) -> None:
    rec = _Recorder(fail_at=3)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="boom"):
        upscale_tensor(rec, torch.rand(1, 3, 40, 40), tile=16, overlap=4)
    assert torch.get_num_threads() == 2


def test_after_a_failing_tile_the_queued_ones_are_not_computed(two_threads: object) -> None:
    rec = _Recorder(fail_at=1, meet=2, slow=0.5)  # two tiles start together; one fails at once, one takes 0.5 s
    with torch.inference_mode(), pytest.raises(RuntimeError, match="boom"):
        upscale_tensor(rec, torch.rand(1, 3, 40, 40), tile=16, overlap=4)
    assert len(rec.seen) == 2  # the third, queued behind them, ended without a model call


def test_side_by_side_tiles_share_the_activation_budget(two_threads: object, monkeypatch: pytest.MonkeyPatch) -> None:
    up = load_upscaler(scale=4)
    monkeypatch.setattr(runtime, "free_memory", lambda device: 64 << 30)  # memory is not what limits here
    monkeypatch.setattr(tiling, "free_memory", lambda device: 64 << 30)
    assert tiling.resolve_tile(up, "auto", 1080, 1920) == tiling.cpu_tile(up, 1080, 1920, batch=2)
    monkeypatch.setattr(tiling, "CONCURRENT_CPU_TILES", False)
    assert tiling.resolve_tile(up, "auto", 1080, 1920) == tiling.cpu_tile(up, 1080, 1920, batch=1)


def test_tiles_in_flight_are_capped_and_share_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(8)
        assert tiling.tile_workers(torch.device("cpu"), tiles=100) == tiling.MAX_TILE_WORKERS == 4
        seen: list[int] = []

        def fn(x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return x

        plan = plan_tiles(None, 64, 64, 16, 0)
        crop = lambda y, x, h, w: torch.zeros(1, 3, h, w)  # noqa: E731
        list(tiling.iter_bands(fn, crop, plan, 1, workers=4))
        assert seen and set(seen) == {2}  # 8 threads over 4 tiles in flight
        assert torch.get_num_threads() == 8
    finally:
        torch.set_num_threads(before)


def test_a_graph_runtime_runs_its_tiles_one_at_a_time(two_threads: object) -> None:
    up = random_sst([8], scale=2)
    graph = dataclasses.replace(up, runtime="onnxruntime", runner=lambda x: up.model(x))
    assert tiling._forward_device(up) == torch.device("cpu")
    assert tiling._forward_device(graph) is None  # its runtime threads on its own
