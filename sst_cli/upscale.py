"""Upscaling images: one array (:func:`upscale_array`), one decoded file, or a whole batch of files.

The model sees colour as float32 RGB in [0, 1] (16-bit input is never rounded to 8 bits). Grey images
are run as RGB and averaged back to one channel; an alpha channel is upscaled in the same tiles as the
colour, by the model or by bicubic, so it stays aligned. Tiles are blended into bands of output rows
that go straight into the 8/16-bit result (or, for outputs too big for memory, straight into a PNG
stream), so memory follows the tile size, not the image size.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
import torch
from torch import Tensor

from . import imageio
from .errors import SSTError
from .imageio import ImageData, PngWriter
from .resize import _resize_last, _resize_rows, imresize
from .tiling import Progress, TilePlan, free_memory, is_oom, resolve_tile, run_tiled

ALPHA_MODES = ("model", "bicubic")
EXT_FORMAT = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".jpe": "jpg", ".webp": "webp", ".bmp": "bmp",
              ".tif": "tiff", ".tiff": "tiff"}


class UsageError(SSTError):
    """A mistake on the command line (exit code 2), found before any image is touched."""

    exit_code = 2


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
        top = {np.dtype(np.uint16): 65535, np.dtype(np.uint8): 255}.get(pixels.dtype, 1)
        # a fully opaque alpha channel is not worth a model pass: it stays opaque
        self.opaque = self.has_alpha and bool((pixels[..., -1] >= top).all())
        self.alpha_mode = alpha

    def crop(self, y0: int, x0: int, th: int, tw: int) -> Tensor:
        """(1, 3 or 4, th, tw) float32: RGB (grey repeated), then alpha when it must be upscaled."""
        a = self.pixels[y0 : y0 + th, x0 : x0 + tw]
        f = imageio.to_float(a) if a.dtype != np.float32 else a
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

    def band_to_hwc(self, band: Tensor) -> np.ndarray:
        """(1, k, rows, sW) float -> (rows, sW, C) float32, opaque alpha filled in."""
        arr = band[0].permute(1, 2, 0).numpy()
        if self.has_alpha and self.opaque:
            arr = np.concatenate([arr, np.ones_like(arr[..., :1])], axis=2)
        return arr


def _grey(y: Tensor) -> Tensor:
    """Mean of the three channels, written so that three equal channels give that channel exactly."""
    first = y[:, :1]
    return first + ((y[:, 1:2] - first) + (y[:, 2:3] - first)) / 3


def _quantize(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint16:
        return imageio.from_float(arr, 16)
    if dtype == np.uint8:
        return imageio.from_float(arr, 8)
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
    :func:`sst_cli.tiling.upscale_tensor`, whose ``batch`` is ``tile_batch``.
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
        arr = layout.band_to_hwc(band)
        if resample:
            full[row : row + arr.shape[0]] = arr
        elif stream is not None:
            stream(_quantize(arr, a.dtype))
        else:
            out[row : row + arr.shape[0]] = _quantize(arr, a.dtype)

    run_tiled(upscaler, layout.crop, h, w, sink, tile, overlap, tta, progress, on_retry, fn=fn, batch=tile_batch)
    if resample:
        resized = resize_to(torch.from_numpy(full).permute(2, 0, 1), th, tw).permute(1, 2, 0).numpy()
        del full
        return _quantize(resized, a.dtype)
    return out if stream is None else np.empty((0, w * s, c), dtype=a.dtype)


# --------------------------------------------------------------------------------- memory planning
def output_bytes(h: int, w: int, c: int, bits: int, scale: int, outscale: float | None) -> int:
    oh, ow = _target_size(h, w, scale, outscale)
    return oh * ow * c * (bits // 8)


def memory_needed(img: ImageData, scale: int, outscale: float | None, tile: int, streamed: bool) -> int:
    """Rough peak bytes of host memory to upscale ``img``, beyond the model itself."""
    h, w = img.pixels.shape[:2]
    c = img.channels
    out = 0 if streamed else output_bytes(h, w, c, img.bits, scale, outscale)
    band_rows = (min(tile, h) if tile > 0 else h) * scale
    band = 2 * band_rows * w * scale * (c + 1) * 4  # float band plus its successor
    full = 0
    if outscale is not None and outscale != scale:  # gathered float32 output plus resize buffers
        full = h * scale * w * scale * c * 4 * 2
    return img.pixels.nbytes + out + band + full


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


# ------------------------------------------------------------------------------------- one file
@dataclass
class Settings:
    """Everything about how images are upscaled and written (the CLI options)."""

    tile: int | str = "auto"
    overlap: int | None = None
    tile_batch: int = 1
    tta: bool = False
    outscale: float | None = None
    alpha: str = "model"
    format: str = "same"
    quality: int = 95
    suffix: str = ""
    overwrite: bool = False
    recursive: bool = False


def upscale_image(
    img: ImageData, upscaler: Any, settings: Settings, progress: Progress | None = None,
    on_retry: Callable[[int, int], None] | None = None,
) -> ImageData:
    """Upscale a decoded image, keeping its bit depth, channels and colour profile."""
    pixels = _upscale_pixels(img.pixels, upscaler, settings.tile, settings.overlap, settings.tta,
                             settings.outscale, settings.alpha, progress, on_retry, tile_batch=settings.tile_batch)
    return ImageData(pixels, img.format, img.icc_profile, None, list(img.notes))


def _stream_png(fh: BinaryIO, img: ImageData, upscaler: Any, settings: Settings, progress: Progress | None,
                on_retry: Callable[[int, int], None] | None) -> None:
    h, w = img.pixels.shape[:2]
    oh, ow = _target_size(h, w, int(upscaler.scale), settings.outscale)
    start = fh.tell()
    writer: list[PngWriter] = []

    def stream(rows: np.ndarray) -> None:
        if not writer:
            writer.append(PngWriter(fh, ow, oh, rows.shape[2], 16 if rows.dtype == np.uint16 else 8, img.icc_profile))
        writer[0].write_rows(rows)

    def retry(old: int, new: int) -> None:  # an out-of-memory retry starts the file over
        fh.seek(start)
        fh.truncate()
        writer.clear()
        if on_retry is not None:
            on_retry(old, new)

    _upscale_pixels(img.pixels, upscaler, settings.tile, settings.overlap, settings.tta, settings.outscale,
                    settings.alpha, progress, retry, stream=stream, tile_batch=settings.tile_batch)
    writer[0].close()


def process_file(
    src: Path, dst: Path, upscaler: Any, settings: Settings, img: ImageData | None = None,
    progress: Progress | None = None, on_retry: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Decode ``src`` (unless given), upscale, write ``dst`` atomically; returns notes. Errors: SSTError."""
    if img is None:
        img = imageio.read_image(src)
    fmt = imageio.output_format(settings.format, EXT_FORMAT.get(src.suffix.lower(), img.format))
    _ensure_folder(dst.parent)
    s = int(upscaler.scale)
    h, w = img.pixels.shape[:2]
    tile = resolve_tile(upscaler, settings.tile, h, w, settings.tile_batch)
    settings = replace(settings, tile=tile)  # decide "auto" once, for the estimate and the run
    avail = free_memory(torch.device("cpu"))
    need = memory_needed(img, s, settings.outscale, tile, streamed=False)
    notes = list(img.notes)
    if need > avail * 0.9:
        streamable = fmt == "png" and (settings.outscale is None or settings.outscale == s)
        need_streamed = memory_needed(img, s, settings.outscale, tile, streamed=True)
        oh, ow = _target_size(h, w, s, settings.outscale)
        if not streamable or need_streamed > avail * 0.9:
            hint = "use --format png (streamed to disk)" if not streamable else "use a smaller --tile"
            if not streamable and settings.outscale not in (None, s):
                hint = "drop --outscale and use --format png (streamed to disk)"
            raise SSTError(f"a {ow}x{oh} output needs about {_gb(need)} of memory but {_gb(avail)} is available; "
                           f"{hint}.")
        notes.append("output streamed to disk (too large for memory)")
        _write(dst, lambda fh: _stream_png(fh, img, upscaler, settings, progress, on_retry))
        return notes
    out = upscale_image(img, upscaler, settings, progress, on_retry)
    fitted, more = imageio.prepare_for(out, fmt)
    _write(dst, lambda fh: imageio.encode(fh, fitted, fmt, settings.quality))
    return notes + more


def _ensure_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SSTError(f"cannot create output folder {folder} (a file is in the way).") from None
    except PermissionError:
        raise SSTError(f"cannot create output folder {folder} (permission denied).") from None
    except OSError as exc:
        raise SSTError(f"cannot create output folder {folder} ({imageio._reason(exc)}).") from None
    if not os.access(folder, os.W_OK):
        raise SSTError(f"output folder {folder} is not writable.")


def _write(dst: Path, write: Callable[[BinaryIO], None]) -> None:
    try:
        imageio.atomic_write(dst, write)
    except PermissionError:
        raise SSTError(f"cannot write {dst} (permission denied).") from None
    except OSError as exc:
        if exc.errno == 28:
            raise SSTError(f"cannot write {dst.name}: no space left on the device.") from None
        raise SSTError(f"cannot write {dst.name} ({imageio._reason(exc)}).") from None


# ------------------------------------------------------------------------------------ batch planning
@dataclass
class Job:
    src: Path
    dst: Path
    rel: Path  # source path relative to the input it was found under (shown to users)


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def discover(inputs: Iterable[str], recursive: bool = False) -> list[tuple[Path, Path]]:
    """(file, relative path) for every input: files as given, image files in folders, glob matches.

    A folder contributes files with an image extension (hidden files skipped); subfolders only with
    ``recursive``. Inputs that match nothing are a usage error.
    """
    found: list[tuple[Path, Path]] = []
    for text in inputs:
        if _is_glob(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise UsageError(f"no file matches {text}.")
            root = _glob_root(text)
            for m in matches:
                p = Path(m)
                if p.is_file() and not imageio.is_temp(p):
                    found.append((p, _relative(p, root)))
            continue
        p = Path(text)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            for f in sorted(p.glob(pattern)):
                if (f.is_file() and f.suffix.lower() in imageio.INPUT_EXTENSIONS
                        and not any(part.startswith(".") for part in f.relative_to(p).parts)):
                    found.append((f, f.relative_to(p)))
        elif p.exists() or p.is_symlink():
            found.append((p, Path(p.name)))
        else:
            raise UsageError(f"input {text} does not exist.")
    return found


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard: outputs keep paths relative to it."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if _is_glob(p))]]
    return Path(*fixed) if fixed else Path(".")


def _relative(p: Path, root: Path) -> Path:
    try:
        return p.relative_to(root)
    except ValueError:
        return Path(p.name)


def output_path(rel: Path, src: Path, out_dir: Path, settings: Settings) -> Path:
    fmt = imageio.output_format(settings.format, EXT_FORMAT.get(src.suffix.lower(), "png"))
    ext = src.suffix if settings.format == "same" and src.suffix.lower() in EXT_FORMAT else imageio.OUTPUT_FORMATS[fmt]
    return out_dir / rel.parent / f"{rel.stem}{settings.suffix}{ext}"


def plan_jobs(inputs: Iterable[str], out_dir: str | os.PathLike[str], settings: Settings) -> list[Job]:
    """Jobs for every input file; refuses outputs that would overwrite an input or collide."""
    out_root = Path(out_dir)
    if out_root.exists() and not out_root.is_dir():
        raise UsageError(f"output {out_root} is a file, not a folder.")
    imageio.output_format(settings.format, "png")  # validate early
    found = discover(inputs, settings.recursive)
    if not found:
        raise UsageError("no input images found" + ("" if settings.recursive else " (folders are read without "
                                                    "subfolders; add --recursive)") + ".")
    sources = {p.resolve() for p, _ in found}
    jobs: list[Job] = []
    taken: dict[Path, Path] = {}
    for src, rel in found:
        dst = output_path(rel, src, out_root, settings)
        key = dst.resolve()
        if key in sources:
            raise UsageError(f"the output for {src} would overwrite an input; choose another output folder or "
                             "a --suffix.")
        if key in taken:
            raise UsageError(f"{src} and {taken[key]} would both be written to {dst}; use --suffix or separate runs.")
        taken[key] = src
        jobs.append(Job(src, dst, rel))
    return jobs


# --------------------------------------------------------------------------------------- the batch
@dataclass
class Result:
    job: Job
    status: str  # done | skipped | failed
    reason: str = ""
    seconds: float = 0.0
    in_size: tuple[int, int] | None = None  # (w, h)
    out_size: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"input": str(self.job.src), "output": str(self.job.dst), "status": self.status,
                "reason": self.reason, "seconds": round(self.seconds, 3),
                "input_size": list(self.in_size) if self.in_size else None,
                "output_size": list(self.out_size) if self.out_size else None, "notes": self.notes}


@dataclass
class Summary:
    results: list[Result] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    removed_temps: int = 0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def exit_code(self) -> int:
        return 1 if self.count("failed") else 0

    def to_dict(self) -> dict[str, Any]:
        return {"done": self.count("done"), "skipped": self.count("skipped"), "failed": self.count("failed"),
                "interrupted": self.interrupted, "seconds": round(self.seconds, 3),
                "removed_stale_temps": self.removed_temps, "results": [r.to_dict() for r in self.results]}


class Events(Protocol):
    """What a front end hears while a batch runs (all optional: see :class:`NoEvents`)."""

    def start(self, index: int, job: Job) -> None: ...
    def tiles(self, done: int, total: int) -> None: ...
    def retry(self, job: Job, old: int, new: int) -> None: ...
    def finish(self, index: int, result: Result) -> None: ...


class NoEvents:
    def start(self, index: int, job: Job) -> None:
        pass

    def tiles(self, done: int, total: int) -> None:
        pass

    def retry(self, job: Job, old: int, new: int) -> None:
        pass

    def finish(self, index: int, result: Result) -> None:
        pass


def _read(src: Path) -> ImageData | SSTError:
    """Decode in the prefetch thread; errors come back as values so the batch can report them."""
    try:
        return imageio.read_image(src)
    except SSTError as exc:
        return exc
    except MemoryError:
        return SSTError(f"{src.name} is too large to decode in the available memory.")
    except Exception as exc:  # noqa: BLE001 - a bad file must never stop the batch
        return SSTError(f"{src.name} cannot be decoded ({imageio._reason(exc)}).")


def split_existing(jobs: list[Job], overwrite: bool) -> tuple[list[Job], list[Job]]:
    """(to do, already there): outputs that exist are skipped unless ``overwrite``."""
    if overwrite:
        return jobs, []
    todo = [j for j in jobs if not j.dst.exists()]
    return todo, [j for j in jobs if j.dst.exists()]


def run_batch(jobs: list[Job], upscaler: Any, settings: Settings, events: Events | None = None) -> Summary:
    """Upscale every job; one bad file is a failed row, never the end of the batch.

    Stale temporaries of killed runs are removed from the output folders first. The next image is
    decoded in a background thread while the current one runs. Ctrl-C stops after cleaning up the
    current temporary file and returns what was done (``interrupted``).
    """
    ev = events or NoEvents()
    t0 = time.perf_counter()
    summary = Summary()
    for folder in sorted({j.dst.parent for j in jobs}):
        summary.removed_temps += len(imageio.clean_stale_temps(folder))
    todo, existing = split_existing(jobs, settings.overwrite)
    summary.results.extend(Result(j, "skipped", "exists") for j in existing)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sst-decode")
    pending: Future[ImageData | SSTError] | None = pool.submit(_read, todo[0].src) if todo else None
    try:
        for i, job in enumerate(todo):
            ev.start(i, job)
            started = time.perf_counter()
            assert pending is not None
            decoded = pending.result()
            pending = pool.submit(_read, todo[i + 1].src) if i + 1 < len(todo) else None
            result = Result(job, "done")
            try:
                if isinstance(decoded, SSTError):
                    raise decoded
                result.in_size = decoded.size
                result.notes = process_file(job.src, job.dst, upscaler, settings, decoded, ev.tiles,
                                            lambda old, new, job=job: ev.retry(job, old, new))
                oh, ow = _target_size(decoded.size[1], decoded.size[0], int(upscaler.scale), settings.outscale)
                result.out_size = (ow, oh)
            except SSTError as exc:
                result.status, result.reason = "failed", str(exc)
            except MemoryError:
                result.status, result.reason = "failed", "out of memory; try a smaller --tile."
            except Exception as exc:  # noqa: BLE001 - report and go on with the next image
                result.status = "failed"
                result.reason = ("out of memory even with the smallest tile." if is_oom(exc)
                                 else f"unexpected {type(exc).__name__}: {imageio._reason(exc)}")
            del decoded
            result.seconds = time.perf_counter() - started
            summary.results.append(result)
            ev.finish(i, result)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if pending is not None:
            pending.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        summary.seconds = time.perf_counter() - t0
    return summary


__all__ = ["upscale_array", "upscale_image", "process_file", "plan_jobs", "run_batch", "discover", "Settings",
           "Job", "Result", "Summary", "UsageError", "TilePlan"]
