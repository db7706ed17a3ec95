"""Running an ``Upscaler`` over an image of any size: overlapping tiles, smooth blending, TTA.

Tiles form a grid (every tile row uses the same column starts), so each tile's blending weight is the
outer product of a row ramp and a column ramp, and the normaliser (the sum of all weights) is separable
too. We pre-divide the ramps by their sums and add every weighted tile straight into one output buffer:
no weight image, no per-tile copy of the whole output. Rows of the output are final as soon as the last
tile row touching them is done, which lets :func:`iter_upscaled_bands` hand out finished bands and keep
only one band of float32 in memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

Progress = Callable[[int, int], None]

MIN_TILE = 32  # never shrink a tile below this (input pixels) when retrying after out-of-memory
ALIGN = True
DEFAULT_OVERLAP = 32  # input pixels shared by neighbouring tiles (see default_overlap)


# ------------------------------------------------------------------------------------------ planning
def default_overlap(upscaler: object, tile: int) -> int:
    """Overlap in input pixels: ``DEFAULT_OVERLAP``, at most a quarter of the tile."""
    return max(0, min(DEFAULT_OVERLAP, tile // 4))


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

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)


def plan_tiles(upscaler: object, height: int, width: int, tile: int, overlap: int | None = None) -> TilePlan:
    """The tile grid for an image; ``tile <= 0`` or a tile covering the image means one tile."""
    if tile <= 0 or tile >= max(height, width):
        tile = max(height, width)
        overlap = 0
    else:
        tile = max(tile, 8)
        overlap = default_overlap(upscaler, tile) if overlap is None else max(0, min(overlap, tile // 2))
    align = window_align(upscaler) if ALIGN else 1
    th, tw = min(tile, height), min(tile, width)
    ys = axis_starts(height, th, overlap, align)
    xs = axis_starts(width, tw, overlap, align)
    return TilePlan(height, width, tile, overlap, ys, xs)


def window_align(upscaler: object) -> int:
    """Least common multiple of the model's window sizes (1 for models without windows)."""
    model = getattr(upscaler, "model", upscaler)
    sizes = getattr(model, "window_sizes", None) or (1,)
    return math.lcm(*(int(s) for s in sizes))


# ---------------------------------------------------------------------------------------- auto tile
def free_memory(device: torch.device) -> int:
    """Bytes we may use: free CUDA memory, or MemAvailable on the CPU (Linux), else 4 GiB."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if hasattr(os, "sysconf"):
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return 4 << 30


def bytes_per_pixel(upscaler: object) -> float:
    """Rough peak bytes of activations per input pixel for one forward pass of ``upscaler``."""
    model = getattr(upscaler, "model", upscaler)
    dtype = getattr(upscaler, "dtype", torch.float32)
    elem = torch.finfo(dtype).bits // 8
    scale = int(getattr(upscaler, "scale", 4))
    cfg = getattr(model, "config", {}) or {}
    dim = int(cfg.get("dim", 0) or 0)
    out = 3 * scale * scale * 4 * 3  # model output, float32 copy, blending product
    if not dim:  # bicubic and other tiny models
        return float(out + 3 * 4 * 4)
    hidden = dim * float(cfg.get("exp_ratio", 2))
    act = elem * (8 * dim + 3 * hidden)
    up = elem * int(cfg.get("intermediate_dim", dim) or dim) * scale * scale * 2
    if getattr(upscaler, "backend", "") in ("naive", "sdpa-math"):  # materialised attention matrix
        heads = cfg.get("num_heads", [1])
        heads = max(heads) if isinstance(heads, list) else int(heads)
        act += elem * heads * max(getattr(model, "window_sizes", (1,))) ** 2 * 2
    return float(act + up + out)


def auto_tile(upscaler: object, height: int, width: int, fraction: float = 0.5) -> int:
    """The largest tile (input pixels, window-aligned) whose estimated peak fits ``fraction`` of free memory."""
    device = getattr(upscaler, "device", torch.device("cpu"))
    budget = free_memory(device) * fraction
    side = int(math.sqrt(max(budget, 0) / bytes_per_pixel(upscaler)))
    if side >= max(height, width):
        return 0
    align = window_align(upscaler)
    if side > align:
        side -= side % align
    return max(side, MIN_TILE)


def resolve_tile(upscaler: object, tile: int | str, height: int, width: int) -> int:
    """``"auto"`` -> a size from free memory; ints pass through (0 = whole image)."""
    if isinstance(tile, str):
        if tile.strip().lower() == "auto":
            return auto_tile(upscaler, height, width)
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
        y = _tta_undo(upscaler(_tta_apply(x, transpose, flips)).float(), transpose, flips)
        acc = y.clone() if acc is None else acc.add_(y)  # clone: inference tensors are read-only here
    assert acc is not None
    return acc.div_(len(_TTA))


def is_oom(exc: BaseException) -> bool:
    """CUDA out-of-memory (any flavour) or a failed CPU allocation."""
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def _empty_cache(upscaler: object) -> None:
    device = getattr(upscaler, "device", None)
    if device is not None and getattr(device, "type", "") == "cuda":
        torch.cuda.empty_cache()


def iter_upscaled_bands(
    upscaler: Callable[[Tensor], Tensor],
    x: Tensor,
    plan: TilePlan,
    tta: bool = False,
    progress: Progress | None = None,
    done: int = 0,
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(out_row, band)``: finished float32 output rows (1, 3, rows, sW) top to bottom.

    Only one band (a tile row's height times the output width) is held at a time.
    """
    s = int(getattr(upscaler, "scale"))
    _, c, h, w = x.shape
    th, tw = min(plan.tile, h), min(plan.tile, w)
    wy = axis_weights(plan.ys, th, h, s)
    wx = axis_weights(plan.xs, tw, w, s)
    band: Tensor | None = None  # accumulates output rows [band_top, band_top + band.shape[2])
    band_top = 0
    for iy, y0 in enumerate(plan.ys):
        top = y0 * s
        if band is None:
            band = torch.zeros(1, 3, th * s, w * s)
            band_top = top
        else:
            # rows above this tile row's start are final: hand them out and keep the overlap
            ready = top - band_top
            yield band_top, band[:, :, :ready]
            keep = band[:, :, ready:].clone()
            band = torch.zeros(1, 3, th * s, w * s)
            band[:, :, : keep.shape[2]] = keep
            del keep
            band_top = top
        for ix, x0 in enumerate(plan.xs):
            tile_in = x[:, :, y0 : y0 + th, x0 : x0 + tw]
            y = forward(upscaler, tile_in, tta)
            if y.shape[-2:] != (th * s, tw * s):
                raise RuntimeError(f"model returned {tuple(y.shape[-2:])} for a {th}x{tw} tile at x{s}")
            # upscaler outputs are inference tensors: weight them out of place
            band[:, :, :, x0 * s : x0 * s + tw * s] += y * wy[iy].view(1, 1, -1, 1) * wx[ix].view(1, 1, 1, -1)
            del y
            done += 1
            if progress is not None:
                progress(done, plan.count)
    assert band is not None
    yield band_top, band


def upscale_tensor(
    upscaler: Callable[[Tensor], Tensor],
    x: Tensor,
    tile: int | str = 0,
    overlap: int | None = None,
    tta: bool = False,
    progress: Progress | None = None,
    on_retry: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Upscale float32 (1, C, H, W) in [0, 1] (CPU) to float32 (1, 3, sH, sW) on the CPU, unclamped.

    ``tile=0`` runs the whole image at once, an int is the tile side in input pixels, ``"auto"`` picks
    one from free memory. On out-of-memory the image is retried with half the tile (``on_retry(old,
    new)`` is told) until ``MIN_TILE``; then the error propagates.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected a (1, C, H, W) tensor, got {tuple(x.shape)}")
    s = int(getattr(upscaler, "scale"))
    _, _, h, w = x.shape
    size = resolve_tile(upscaler, tile, h, w)
    out: Tensor | None = None
    while True:
        plan = plan_tiles(upscaler, h, w, size, overlap)
        try:
            if plan.count == 1:
                if progress is not None:
                    progress(0, 1)
                out = forward(upscaler, x, tta)
                if progress is not None:
                    progress(1, 1)
                return out
            if out is None:
                out = torch.empty(1, 3, h * s, w * s)
            for row, band in iter_upscaled_bands(upscaler, x, plan, tta, progress):
                out[:, :, row : row + band.shape[2]] = band
            return out
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
