"""Running an ``Upscaler`` over an image of any size: overlapping tiles, smooth blending, TTA.

Tiles form a grid (every tile row uses the same column starts), so each tile's blending weight is the
outer product of a row ramp and a column ramp, and the normaliser (the sum of all weights) is separable
too. We pre-divide the ramps by their sums and add every weighted tile straight into one output buffer:
no weight image, no per-tile copy of the whole output. Rows of the output are final as soon as the last
tile row touching them is done, which lets :func:`iter_bands` hand out finished bands and keep only
one band of float32 in memory.

Tile starts are multiples of the least common multiple of the model's window sizes (when the stride
allows), so windows inside a tile are the same windows as in the whole image: errors then stay
in the tile's outer windows, which the blending weights ignore (tests/test_tiling.py measures it).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..model import placement
from ..model.archs import Cost, cost_of
from ..runtime import free_memory, is_oom

Progress = Callable[[int, int], None]

MIN_TILE = 32  # never shrink a tile below this (input pixels) when retrying after out-of-memory
ALIGN = True  # align tile starts to the model's windows (switch off only to measure what it buys)
DEFAULT_OVERLAP = 32  # input pixels shared by neighbouring tiles (see default_overlap)


# ------------------------------------------------------------------------------------------ planning
def default_overlap(upscaler: Any, tile: int) -> int:
    """Overlap in input pixels: ``DEFAULT_OVERLAP``, or less for a network whose receptive reach is shorter (that
    reach rounded up to its window grid), at most a quarter of the tile.

    The bundled sst-tiny reaches 21 pixels: 24 keeps its tiled output within 0.6 of a level of the whole-image one
    on a BSD200 photo, against 0.05 at 32, for 6 % fewer pixels computed on a 1080p photo
    (benchmarks/RESULTS.md#default-path-1080p)."""
    overlap = DEFAULT_OVERLAP
    cost = model_cost(upscaler)
    if cost is not None and cost.receptive_field is not None:
        overlap = min(overlap, -(-cost.receptive_field // cost.align) * cost.align)
    return max(0, min(overlap, tile // 4))


def axis_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length`` with at least ``overlap`` shared.

    Starts are multiples of ``align`` (the model's window size, so tile windows coincide with the
    whole-image windows) except the last tile, which is pushed back to end exactly at the border.
    """
    if tile >= length:
        return [0]
    stride = max(1, tile - overlap)
    if align > 1 and stride >= align:
        stride -= stride % align
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def axis_weights(starts: list[int], tile: int, length: int, scale: int) -> list[Tensor]:
    """Per-tile 1-D blending weights in output pixels, already divided by their sum over tiles.

    In the band shared by two neighbours the weights cross-fade with a raised cosine that is zero at
    each tile's own edge (where its output is least reliable) and one at the neighbour's edge.
    """
    out_len, t = length * scale, tile * scale
    ramps: list[Tensor] = []
    for i, s in enumerate(starts):
        w = torch.ones(min(t, out_len), dtype=torch.float64)
        if i > 0:  # shared with the previous tile: [s, prev_end)
            n = (starts[i - 1] + tile - s) * scale
            if n > 0:
                w[:n] = _rise(n)
        if i + 1 < len(starts):  # shared with the next tile: [next_start, end)
            n = (s + tile - starts[i + 1]) * scale
            if n > 0:
                w[-n:] = torch.minimum(w[-n:], _rise(n).flip(0))
        ramps.append(w)
    total = torch.zeros(out_len, dtype=torch.float64)
    for s, w in zip(starts, ramps, strict=True):
        total[s * scale : s * scale + w.numel()] += w
    return [(w / total[s * scale : s * scale + w.numel()]).float() for s, w in zip(starts, ramps, strict=True)]


RAMP_MARGIN = 0.25  # fraction of an overlap, at each tile edge, given no weight at all


def _rise(n: int) -> Tensor:
    """n samples rising from 0 to 1: zero over the first ``RAMP_MARGIN`` of the band (pixels nearest the
    tile's own edge), a raised cosine across the middle, one at the end; r(i) + r(n-1-i) == 1."""
    pos = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    t = ((pos - RAMP_MARGIN) / (1 - 2 * RAMP_MARGIN)).clamp(0, 1)
    return (0.5 - 0.5 * torch.cos(math.pi * t)).clamp_min(1e-9)


@dataclass(frozen=True)
class TilePlan:
    height: int
    width: int
    tile: int  # input pixels; >= max(height, width) means one tile
    overlap: int
    ys: list[int]
    xs: list[int]
    th: int = 0  # tile extent along each axis (see aligned_extent); 0: min(tile, side)
    tw: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "th", self.th or min(self.tile, self.height))
        object.__setattr__(self, "tw", self.tw or min(self.tile, self.width))

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)


def aligned_extent(length: int, tile: int, align: int) -> int:
    """The tile extent along an axis of ``length``: at most ``tile`` and congruent to ``length`` modulo
    ``align``, so that the last tile, which ends at the border, also starts on the window grid. Every
    tile then sees the windows of the whole image, and the last one pads the border as the whole
    image does; an extent that is not a multiple of the windows is padded inside the model like any
    image. Falls back to ``tile`` where that would leave less than half of it."""
    if tile >= length or align <= 1:
        return min(tile, length)
    extent = tile - (tile - length) % align
    return extent if extent >= max(8, tile // 2) else tile


def plan_tiles(upscaler: Any, height: int, width: int, tile: int, overlap: int | None = None) -> TilePlan:
    """The tile grid for an image; ``tile <= 0`` or a tile covering the image means one tile."""
    if tile <= 0 or tile >= max(height, width):
        tile = max(height, width)
        overlap = 0
    else:
        tile = max(tile, 8)
        overlap = default_overlap(upscaler, tile) if overlap is None else max(0, min(overlap, tile // 2))
    align = window_align(upscaler) if ALIGN else 1
    th, tw = aligned_extent(height, tile, align), aligned_extent(width, tile, align)
    ys = axis_starts(height, th, overlap, align)
    xs = axis_starts(width, tw, overlap, align)
    return TilePlan(height, width, tile, overlap, ys, xs, th, tw)


def model_cost(upscaler: Any) -> Cost | None:
    """The cost model of the upscaler's network (None for bicubic and other models without windows)."""
    return cost_of(getattr(upscaler, "model", upscaler))


def window_align(upscaler: Any) -> int:
    """Tile starts are multiples of this: the model's window alignment (1 for models without windows)."""
    cost = model_cost(upscaler)
    return cost.align if cost is not None else 1


# ---------------------------------------------------------------------------------------- auto tile
def bytes_per_pixel(upscaler: Any) -> float:
    """Rough peak bytes of activations per input pixel for one forward pass of ``upscaler``."""
    dtype = getattr(upscaler, "dtype", torch.float32)
    elem = torch.finfo(dtype).bits // 8
    scale = int(getattr(upscaler, "scale", 4))
    out = 3 * scale * scale * 4 * 3  # model output, float32 copy, blending product
    cost = model_cost(upscaler)
    if cost is None:  # bicubic and other tiny models
        return float(out + 3 * 4 * 4)
    act = elem * cost.activation_elems
    if getattr(upscaler, "backend", "") in ("naive", "sdpa-math"):  # materialised attention matrix
        act += elem * cost.attention_elems
    return float(act + out)


def auto_tile(upscaler: Any, height: int, width: int, fraction: float = 0.5, channels: int = 4) -> int:
    """The largest tile (input pixels, window-aligned) whose estimated peak fits ``fraction`` of free memory.

    Two costs bound it: the model's activations for one tile (on the model's device) and, on the
    host, the float32 band of output rows being blended (tile x scale rows, the full output width).
    """
    device = getattr(upscaler, "device", torch.device("cpu"))
    budget = free_memory(device) * fraction
    side = int(math.sqrt(max(budget, 0) / bytes_per_pixel(upscaler)))
    s = int(getattr(upscaler, "scale", 4))
    host = free_memory(torch.device("cpu")) * fraction if device.type != "cpu" else budget
    band_row = 2 * s * width * s * channels * 4  # bytes per input row of tile: band and its successor
    side = min(side, int(host // max(band_row, 1)))
    if side >= max(height, width):
        return 0
    align = window_align(upscaler)
    if side > align:
        side -= side % align
    return max(side, MIN_TILE)


# A CPU runs fastest on tiles whose every activation stays below glibc's 32 MB mmap ceiling: larger
# blocks are unmapped when freed and faulted in afresh on the next pass (with keep_freed_memory the
# smaller ones are reused). sst-tiny x4 ran 2x slower per pixel on 512x512 tiles than on 96-384
# (benchmarks/RESULTS.md#default-path-1080p); below that the time per pixel hardly depends on the tile.
CPU_ACTIVATION_BYTES = 32 << 20


def widest_activation(upscaler: Any) -> int:
    """Bytes per input pixel of the model's widest activation (one channel-wide tensor of a tile)."""
    elem = torch.finfo(getattr(upscaler, "dtype", torch.float32)).bits // 8
    s = int(getattr(upscaler, "scale", 4))
    cost = model_cost(upscaler)
    return (cost.widest_elems if cost is not None else 3 * s * s) * elem


def cpu_tile(upscaler: Any, height: int, width: int, batch: int = 1) -> int:
    """A tile for speed on the CPU: every activation of ``batch`` tiles under
    ``CPU_ACTIVATION_BYTES``, and of the sizes from half that large up, the one that computes the
    fewest pixels (tiles x area) for this image with the default overlap. 0 (whole image) when the
    image itself is within the limit."""
    per_pixel = widest_activation(upscaler) * max(1, batch)
    if height * width * per_pixel <= CPU_ACTIVATION_BYTES:
        return 0
    largest = max(int(math.sqrt(CPU_ACTIVATION_BYTES / per_pixel)), MIN_TILE)
    best, best_area = largest, math.inf
    # Every size, not only multiples of the windows: the extents along each axis are aligned by the
    # plan itself, so sizes in between give other grids (1080p at x4 with sst-tiny: 28 tiles of
    # 312x304 instead of 312x320, 5% fewer pixels computed). Ties go to the larger tile.
    for tile in range(largest, max(largest // 2, MIN_TILE) - 1, -1):
        plan = plan_tiles(upscaler, height, width, tile)
        area = plan.count * plan.th * plan.tw
        if area < best_area:
            best, best_area = tile, area
    return best


def resolve_tile(upscaler: Any, tile: int | str, height: int, width: int, batch: int = 1,
                 whole_if_fits: bool = False) -> int:
    """``"auto"`` -> a tile size; ints pass through (0 = whole image). Tiles that run side by side on the CPU
    (:func:`tile_workers`) count as a batch: they share the activation budget.

    On the CPU "auto" picks :func:`cpu_tile` (sized for speed), unless ``whole_if_fits`` (evaluation:
    whole images wherever memory allows); on accelerators, and always as a ceiling, the largest tile
    that fits half the free memory (shared by ``batch`` tiles run together)."""
    if isinstance(tile, str):
        if tile.strip().lower() == "auto":
            batch = max(1, batch) * tile_workers(_forward_device(upscaler), tiles=2**31)  # tiles in flight at once
            fits = auto_tile(upscaler, height, width, fraction=0.5 / batch)
            device = getattr(upscaler, "device", torch.device("cpu"))
            if whole_if_fits or device.type != "cpu":
                return fits
            fast = cpu_tile(upscaler, height, width, batch)
            return fits if fast == 0 or (fits and fits < fast) else fast
        tile = int(tile)
    return max(0, int(tile))


# ------------------------------------------------------------------------------------------- forward
_TTA = [(t, f) for t in (False, True) for f in range(4)]  # transpose x {none, flip W, flip H, both}


def _tta_apply(x: Tensor, transpose: bool, flips: int) -> Tensor:
    if transpose:
        x = x.transpose(-1, -2)
    dims = [d for d, bit in ((-1, 1), (-2, 2)) if flips & bit]
    return x.flip(dims) if dims else x


def _tta_undo(y: Tensor, transpose: bool, flips: int) -> Tensor:
    dims = [d for d, bit in ((-1, 1), (-2, 2)) if flips & bit]
    y = y.flip(dims) if dims else y
    return y.transpose(-1, -2) if transpose else y


def forward(upscaler: Callable[[Tensor], Tensor], x: Tensor, tta: bool = False) -> Tensor:
    """One whole-input forward, optionally the mean of the 8 dihedral transforms."""
    if not tta:
        return upscaler(x).float()
    acc: Tensor | None = None
    for transpose, flips in _TTA:
        with placement.transformed(transpose, flips):  # a network drawing noise by pixel needs to know
            y = _tta_undo(upscaler(_tta_apply(x, transpose, flips)).float(), transpose, flips)
        acc = y.clone() if acc is None else acc.add_(y)  # clone: inference tensors are read-only here
    assert acc is not None
    return acc.div_(len(_TTA))


def _empty_cache(upscaler: Any) -> None:
    # Side-by-side tiles only for PyTorch's forward: a graph runtime threads (and exports) on its own.
    device = getattr(upscaler, "device", None) if getattr(upscaler, "runner", None) is None else None
    if device is not None and getattr(device, "type", "") == "cuda":
        torch.cuda.empty_cache()


Crop = Callable[[int, int, int, int], Tensor]  # (y0, x0, h, w) -> float32 (1, C, h, w)
Sink = Callable[[int, Tensor], None]  # (first output row, finished float32 band (1, C, rows, sW))


# On the CPU, tiles run side by side, one per core, each with one intra-op thread: an 8-to-16-channel
# network's ops are too small for two OpenMP threads to share well (one sst-tiny 312x304 tile took 1.0 s of
# CPU time on two threads against 0.62 s on one, and OpenMP's spin-waiting collapses when another process
# takes a core). Each tile computes exactly what it computes alone on one thread: the output is bitwise that
# of one tile at a time on one thread, within float rounding of it on two.
# benchmarks/RESULTS.md#default-path-1080p measures it.
CONCURRENT_CPU_TILES = True
# At most this many tiles in flight (their activations add up); more cores than that share a tile's ops. Only
# two cores were measured (RESULTS.md): 4 is a memory cap, not a measured optimum.
MAX_TILE_WORKERS = 4


def tile_workers(device: Any, tiles: int) -> int:
    """How many tile groups run at once: the CPU's intra-op thread count on a CPU run of several tile
    groups without autocast (its state is per thread), else 1."""
    if not CONCURRENT_CPU_TILES or tiles < 2 or getattr(device, "type", str(device)) != "cpu":
        return 1
    if torch.is_autocast_enabled("cpu"):
        return 1
    return max(1, min(torch.get_num_threads(), tiles, MAX_TILE_WORKERS))


def _forward_device(upscaler: Any) -> Any:
    """Where PyTorch runs the upscaler's forward; None for a graph runtime, which threads (and exports) on its
    own, or a bare callable."""
    return getattr(upscaler, "device", None) if getattr(upscaler, "runner", None) is None else None


def _grad_mode() -> contextlib.AbstractContextManager:
    """The caller's grad mode, to enter in a worker thread (grad and inference mode are per thread)."""
    if torch.is_inference_mode_enabled():
        return torch.inference_mode()
    return torch.set_grad_enabled(torch.is_grad_enabled())


@contextlib.contextmanager
def _tile_runner(workers: int) -> Iterator[Callable[[Callable[[], Tensor]], Future[Tensor]]]:
    """``submit(job)``: a future of ``job()``. With ``workers`` > 1 the jobs run in that many threads that share
    the intra-op threads (one each on two cores; restored afterwards), in the caller's context (placement,
    grad mode)."""
    if workers <= 1:
        def run_now(job: Callable[[], Tensor]) -> Future[Tensor]:
            done: Future[Tensor] = Future()
            done.set_result(job())
            return done

        yield run_now
        return
    threads = torch.get_num_threads()
    each = max(1, threads // workers)
    torch.set_num_threads(each)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="sst-tile", initializer=torch.set_num_threads, initargs=(each,))
    mode = _grad_mode
    # After a job fails, queued jobs end at once instead of computing tiles nobody will use (an out-of-memory
    # retry then starts a tile sooner). Jobs start in order, so those come after the failed one, whose error
    # the caller sees first.
    failed = threading.Event()

    def submit(job: Callable[[], Tensor]) -> Future[Tensor]:
        ctx = contextvars.copy_context()
        grad = mode()

        def in_context() -> Tensor:
            if failed.is_set():
                raise CancelledError("an earlier tile failed")
            try:
                with grad:
                    return job()
            except BaseException:
                failed.set()
                raise

        return pool.submit(ctx.run, in_context)

    try:
        yield submit
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)


def iter_bands(
    fn: Callable[[Tensor], Tensor],
    crop: Crop,
    plan: TilePlan,
    scale: int,
    tta: bool = False,
    progress: Progress | None = None,
    batch: int = 1,
    workers: int = 1,
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(out_row, band)``: finished float32 output rows top to bottom.

    Only one band (a tile row's height times the output width) is held at a time, so memory follows
    the tile size and the image width, never the image area. Up to ``batch`` tiles of a row go through
    the model together (all tiles of a plan have one size), which keeps a GPU busy with small tiles;
    ``workers`` such groups run at once (see :func:`tile_workers`), with one more queued so that a worker
    never waits for this thread (blending and handing out rows) to give it its next tile.
    """
    s, h, w = scale, plan.height, plan.width
    th, tw = plan.th, plan.tw
    wy = axis_weights(plan.ys, th, h, s)
    wx = axis_weights(plan.xs, tw, w, s)
    step = max(1, batch)
    groups = [(iy, y0, first, plan.xs[first : first + step])
              for iy, y0 in enumerate(plan.ys) for first in range(0, len(plan.xs), step)]
    band: Tensor | None = None  # output rows [band_top, band_top + th * s)
    band_top, done = 0, 0

    def job(y0: int, xs: Sequence[int], tiles: Tensor) -> Callable[[], Tensor]:
        def run() -> Tensor:
            with placement.tiles_at([(y0, x0) for x0 in xs]):  # where they lie, for noise drawn by pixel
                return forward(fn, tiles, tta)  # (len(xs), C, th*s, tw*s)
        return run

    with _tile_runner(workers) as submit:
        pending: deque[Future[Tensor]] = deque()
        queued = 0
        depth = workers + 1 if workers > 1 else 1  # one more group's output alive at most (11 MB a 240x240 tile at x4)
        for iy, y0, first, xs in groups:
            while queued < len(groups) and len(pending) < depth:  # crops on this thread, in order
                _, qy, _, qxs = groups[queued]
                pending.append(submit(job(qy, qxs, torch.cat([crop(qy, x0, th, tw) for x0 in qxs]))))
                queued += 1
            ys = pending.popleft().result()
            top = y0 * s
            if band is not None and top != band_top:
                # rows above this tile row's start are final: hand them out and keep the overlap
                ready = top - band_top
                yield band_top, band[:, :, :ready]  # the consumer is done with it when we resume
                # Shift the kept rows up in place (no second band alive) and clear the rest; a clone only
                # where source and destination overlap (an overlap of more than half the tile).
                keep = band.shape[2] - ready
                rest = band[:, :, ready:]
                band[:, :, :keep].copy_(rest.clone() if keep > ready else rest)
                band[:, :, keep:].zero_()
                band_top = top
            if ys.shape[-2:] != (th * s, tw * s):
                raise RuntimeError(f"model returned {tuple(ys.shape[-2:])} for a {th}x{tw} tile at x{s}")
            if band is None:
                band = torch.zeros(1, ys.shape[1], th * s, w * s)
                band_top = top
            for j, x0 in enumerate(xs):
                # upscaler outputs are inference tensors: weight them out of place
                weight = wy[iy].view(1, 1, -1, 1) * wx[first + j].view(1, 1, 1, -1)
                band[:, :, :, x0 * s : x0 * s + tw * s].addcmul_(ys[j : j + 1], weight)
            del ys
            done += len(xs)
            if progress is not None:
                progress(done, plan.count)
    assert band is not None
    yield band_top, band


def run_tiled(
    upscaler: Any,
    crop: Crop,
    height: int,
    width: int,
    sink: Sink,
    tile: int | str = 0,
    overlap: int | None = None,
    tta: bool = False,
    progress: Progress | None = None,
    on_retry: Callable[[int, int], None] | None = None,
    fn: Callable[[Tensor], Tensor] | None = None,
    batch: int = 1,
) -> TilePlan:
    """Upscale an image given by ``crop`` tile by tile, handing finished rows to ``sink``.

    ``fn`` (default: ``upscaler``) maps a float tile to its upscaled float tile; ``upscaler`` supplies
    the scale, windows and device; ``batch`` tiles run through the model at once. On out-of-memory the
    whole image is redone with half the tile (``on_retry(old, new)`` is told; sinks just overwrite rows)
    down to ``MIN_TILE``, then it raises.
    """
    fn = fn or upscaler  # type: ignore[assignment]
    assert fn is not None
    s = int(upscaler.scale)
    cost = model_cost(upscaler)
    if cost is not None and cost.max_batch is not None:  # a network that takes only so many images at once
        batch = min(batch, cost.max_batch)
    device = _forward_device(upscaler)
    size = resolve_tile(upscaler, tile, height, width, batch)
    while True:
        plan = plan_tiles(upscaler, height, width, size, overlap)
        try:
            if plan.count == 1:
                if progress is not None:
                    progress(0, 1)
                sink(0, forward(fn, crop(0, 0, height, width), tta))
                if progress is not None:
                    progress(1, 1)
            else:
                workers = tile_workers(device, -(-plan.count // max(1, batch)))
                for row, band in iter_bands(fn, crop, plan, s, tta, progress, batch, workers):
                    sink(row, band)
            return plan
        except (RuntimeError, MemoryError) as exc:
            if not is_oom(exc):
                raise
            current = plan.tile
            smaller = max(MIN_TILE, current // 2)
            if smaller >= current:
                raise
            _empty_cache(upscaler)
            if on_retry is not None:
                on_retry(current, smaller)
            size = smaller


def upscale_tensor(
    upscaler: Callable[[Tensor], Tensor],
    x: Tensor,
    tile: int | str = 0,
    overlap: int | None = None,
    tta: bool = False,
    progress: Progress | None = None,
    on_retry: Callable[[int, int], None] | None = None,
    batch: int = 1,
) -> Tensor:
    """Upscale float32 (1, C, H, W) in [0, 1] (CPU) to float32 (1, 3, sH, sW) on the CPU, unclamped.

    ``tile=0`` runs the whole image at once, an int is the tile side in input pixels, ``"auto"`` picks
    one from free memory; ``overlap`` defaults to :func:`default_overlap`; ``batch`` tiles run together.
    On out-of-memory the image is retried with half the tile. The output is one preallocated buffer
    filled band by band.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected a (1, C, H, W) tensor, got {tuple(x.shape)}")
    s = int(upscaler.scale)
    _, _, h, w = x.shape
    out: list[Tensor] = []

    def crop(y0: int, x0: int, th: int, tw: int) -> Tensor:
        return x[:, :, y0 : y0 + th, x0 : x0 + tw].float()

    def sink(row: int, band: Tensor) -> None:
        if row == 0 and band.shape[2] == h * s:  # one tile: the forward's own tensor is the output
            out[:] = [band]
            return
        if not out or out[0].shape[2] != h * s or out[0].shape[1] != band.shape[1]:
            out[:] = [torch.empty(1, band.shape[1], h * s, w * s)]
        out[0][:, :, row : row + band.shape[2]] = band

    run_tiled(upscaler, crop, h, w, sink, tile, overlap, tta, progress, on_retry, batch=batch)
    return out[0]
