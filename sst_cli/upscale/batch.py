"""Upscaling files: one decoded image to one output file, and whole batches of files.

A batch is planned first (inputs found, outputs named, collisions refused), then run image by image:
one bad file is a failed row, never the end of the batch. Outputs too large for memory are streamed
to disk as PNG rows.
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

from ..errors import SSTError, UsageError
from ..io import files, images
from ..io.images import ImageData, PngWriter
from ..runtime import free_memory, is_oom
from .array import _target_size, _upscale_pixels
from .tiling import Progress, resolve_tile

EXT_FORMAT = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".jpe": "jpg", ".webp": "webp", ".bmp": "bmp",
              ".tif": "tiff", ".tiff": "tiff"}


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
        img = images.read_image(src)
    fmt = images.output_format(settings.format, EXT_FORMAT.get(src.suffix.lower(), img.format))
    files.ensure_folder(dst.parent)
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
        files.write_or_explain(dst, lambda fh: _stream_png(fh, img, upscaler, settings, progress, on_retry))
        return notes
    out = upscale_image(img, upscaler, settings, progress, on_retry)
    fitted, more = images.prepare_for(out, fmt)
    files.write_or_explain(dst, lambda fh: images.encode(fh, fitted, fmt, settings.quality))
    return notes + more


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
                if p.is_file() and not files.is_temp(p):
                    found.append((p, _relative(p, root)))
            continue
        p = Path(text)
        if p.is_dir():
            found += [(f, f.relative_to(p)) for f in files.list_images(p, recursive)]
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
    fmt = images.output_format(settings.format, EXT_FORMAT.get(src.suffix.lower(), "png"))
    ext = src.suffix if settings.format == "same" and src.suffix.lower() in EXT_FORMAT else images.OUTPUT_FORMATS[fmt]
    return out_dir / rel.parent / f"{rel.stem}{settings.suffix}{ext}"


def plan_jobs(inputs: Iterable[str], out_dir: str | os.PathLike[str], settings: Settings) -> list[Job]:
    """Jobs for every input file; refuses outputs that would overwrite an input or collide."""
    out_root = Path(out_dir)
    if out_root.exists() and not out_root.is_dir():
        raise UsageError(f"output {out_root} is a file, not a folder.")
    images.output_format(settings.format, "png")  # validate early
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
        return images.read_image(src)
    except SSTError as exc:
        return exc
    except MemoryError:
        return SSTError(f"{src.name} is too large to decode in the available memory.")
    except Exception as exc:  # noqa: BLE001 - a bad file must never stop the batch
        return SSTError(f"{src.name} cannot be decoded ({files.reason(exc)}).")


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
        summary.removed_temps += len(files.clean_stale_temps(folder))
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
                                 else f"unexpected {type(exc).__name__}: {files.reason(exc)}")
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

