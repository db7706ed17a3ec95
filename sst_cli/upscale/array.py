"""One image array through an ``Upscaler``: :func:`upscale_array`.

The model sees colour as float32 RGB in [0, 1] (16-bit input is never rounded to 8 bits, nor computed in bf16
unless asked: :meth:`Upscaler.for_pixels`). Grey images
are run as RGB and averaged back to one channel; an alpha channel is upscaled in the same tiles as the
colour, by the model or by bicubic, so it stays aligned. Tiles are blended into bands of output rows
that go straight into the 8/16-bit result (or, through ``stream``, straight into a PNG), so memory
follows the tile size, not the image size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import UsageError
from ..io import images, opencv
from ..model.bicubic import _resize_last, _resize_rows, imresize
from .tiling import Progress, run_tiled

ALPHA_MODES = ("model", "bicubic")
SINK_ROWS = 64  # output rows converted to the output's dtype at once
_TOP = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}  # full scale (opaque alpha) of the integer dtypes


# ----------------------------------------------------------------------------------- single images
def _check_alpha(alpha: str) -> None:
    if alpha not in ALPHA_MODES:
        raise UsageError(f"--alpha must be model or bicubic (got '{alpha}').")


def _target_size(h: int, w: int, scale: int, outscale: float | None) -> tuple[int, int]:
    if outscale is None or outscale == scale:
        return h * scale, w * scale
    if outscale <= 0:
        raise UsageError(f"--outscale must be positive (got {outscale}).")
    return max(1, round(h * outscale)), max(1, round(w * outscale))


def resize_to(x: Tensor, out_h: int, out_w: int) -> Tensor:
    """MATLAB-style bicubic (the ``eval`` resize, antialiased when shrinking) of (C, H, W) to a size."""
    c, h, w = x.shape
    if (out_h, out_w) == (h, w):
        return x
    x = _resize_rows(x.float(), out_h, out_h / h, True)
    return _resize_last(x, out_w, out_w / w, True)


class _Layout:
    """How an (H, W, C) array maps to model tiles: colour channels, alpha, and what comes back."""

    def __init__(self, pixels: np.ndarray, alpha: str) -> None:
        self.pixels = pixels
        c = pixels.shape[2]
        self.grey = c in (1, 2)
        self.has_alpha = c in (2, 4)
        top = _TOP.get(pixels.dtype, 1)
        # a fully opaque alpha channel is not worth a model pass: it stays opaque
        self.opaque = self.has_alpha and bool((pixels[..., -1] >= top).all())
        self.alpha_mode = alpha

    def crop(self, y0: int, x0: int, th: int, tw: int) -> Tensor:
        """(1, 3 or 4, th, tw) float32: RGB (grey repeated), then alpha when it must be upscaled."""
        a = self.pixels[y0 : y0 + th, x0 : x0 + tw]
        f = images.to_float(a) if a.dtype != np.float32 else a
        t = torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)
        colour = t[:1].expand(3, -1, -1) if self.grey else t[:3]
        parts = [colour]
        if self.has_alpha and not self.opaque:
            parts.append(t[-1:])
        return torch.cat(parts, 0)[None]

    def model_fn(self, upscaler: Callable[[Tensor], Tensor], scale: int) -> Callable[[Tensor], Tensor]:
        def fn(x: Tensor) -> Tensor:
            y = upscaler(x[:, :3]).float()
            outs = [_grey(y) if self.grey else y]
            if x.shape[1] == 4:
                a = x[:, 3:]
                if self.alpha_mode == "model":
                    outs.append(_grey(upscaler(a.expand(-1, 3, -1, -1)).float()))
                else:
                    outs.append(imresize(a, scale))
            return torch.cat(outs, 1)

        return fn

    def band_to_hwc(self, band: Tensor, dtype: np.dtype | None, out: np.ndarray | None = None) -> np.ndarray:
        """(1, k, rows, sW) float -> (rows, sW, C) in ``dtype`` (None: float32 as it is, else quantised),
        opaque alpha filled in; written into ``out`` when given. Quantised plane by plane, where the
        band's memory is contiguous, then interleaved once."""
        planes = band[0].float().numpy()  # (k, rows, sW)
        if dtype is not None:
            planes = _quantize(planes, dtype)
        parts = list(planes)
        if self.has_alpha and self.opaque:
            parts.append(np.full_like(parts[0], 1 if dtype is None else _TOP.get(np.dtype(dtype), 1)))
        return opencv.interleave(parts, out)


def _grey(y: Tensor) -> Tensor:
    """Mean of the three channels, written so that three equal channels give that channel exactly."""
    first = y[:, :1]
    return first + ((y[:, 1:2] - first) + (y[:, 2:3] - first)) / 3


def _quantize(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint16:
        return images.from_float(arr, 16)
    if dtype == np.uint8:
        return images.from_float(arr, 8)
    return np.clip(arr, 0, 1).astype(np.float32)


def upscale_array(
    image: np.ndarray,
    upscaler: Any,
    tile: int | str = 0,
    overlap: int | None = None,
    tta: bool = False,
    outscale: float | None = None,
    alpha: str = "model",
    progress: Progress | None = None,
    on_retry: Callable[[int, int], None] | None = None,
    tile_batch: int = 1,
) -> np.ndarray:
    """Upscale an (H, W) or (H, W, C) image (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).

    uint8 in gives uint8 out, uint16 gives uint16 (processed in float, never through 8 bits), float in
    [0, 1] gives float32 clipped to [0, 1]. The output is ``scale`` times larger, or ``outscale`` times
    (the model, then MATLAB-style bicubic to the final size). ``tile``/``overlap``/``tta`` as in
    :func:`sst_cli.upscale.tiling.upscale_tensor`, whose ``batch`` is ``tile_batch``.
    """
    _check_alpha(alpha)
    squeeze = image.ndim == 2
    a = image[..., None] if squeeze else image
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected (H, W) or (H, W, C) with C in 1..4, got shape {image.shape}")
    if a.dtype not in (np.uint8, np.uint16):
        a = a.astype(np.float32)
    out = _upscale_pixels(a, upscaler, tile, overlap, tta, outscale, alpha, progress, on_retry, tile_batch=tile_batch)
    return out[..., 0] if squeeze else out


def _upscale_pixels(
    a: np.ndarray, upscaler: Any, tile: int | str, overlap: int | None, tta: bool, outscale: float | None,
    alpha: str, progress: Progress | None, on_retry: Callable[[int, int], None] | None,
    stream: Callable[[np.ndarray], None] | None = None,
    tile_batch: int = 1,
) -> np.ndarray:
    """Core of ``upscale_array``; with ``stream`` finished rows are handed on instead of kept."""
    h, w, c = a.shape
    if hasattr(upscaler, "for_pixels"):  # 16-bit images keep 16-bit precision on a GPU (Upscaler.for_pixels)
        upscaler = upscaler.for_pixels(a.dtype)
    s = int(upscaler.scale)
    layout = _Layout(a, alpha)
    fn = layout.model_fn(upscaler, s)
    th, tw = _target_size(h, w, s, outscale)
    resample = (th, tw) != (h * s, w * s)
    if resample and stream is not None:
        raise ValueError("streamed output cannot be resampled (--outscale)")
    if resample:  # the resize needs every row at once: gather float32, resize, then quantise
        full = np.empty((h * s, w * s, c), dtype=np.float32)
    elif stream is None:
        out = np.empty((h * s, w * s, c), dtype=a.dtype)

    def sink(row: int, band: Tensor) -> None:
        # A few rows at a time: quantising makes a float32 temporary of what it is given, which for a whole
        # band of a 1080p x4 output is 115 MB on top of the band itself.
        for r in range(0, band.shape[2], SINK_ROWS):
            rows = band[:, :, r : r + SINK_ROWS]
            top, n = row + r, rows.shape[2]
            if resample:
                layout.band_to_hwc(rows, None, out=full[top : top + n])
            elif stream is not None:
                stream(layout.band_to_hwc(rows, a.dtype))
            else:
                layout.band_to_hwc(rows, a.dtype, out=out[top : top + n])

    run_tiled(upscaler, layout.crop, h, w, sink, tile, overlap, tta, progress, on_retry, fn=fn, batch=tile_batch)
    if resample:
        resized = resize_to(torch.from_numpy(full).permute(2, 0, 1), th, tw).permute(1, 2, 0).numpy()
        del full
        return _quantize(resized, a.dtype)
    return out if stream is None else np.empty((0, w * s, c), dtype=a.dtype)


