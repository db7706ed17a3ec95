"""Upscaling files: one decoded image to one output file, and whole batches of files.

A batch is planned first (:mod:`sst_cli.upscale.jobs`: inputs found, outputs named, collisions refused),
then run image by image:
one bad file is a failed row, never the end of the batch. An existing output is kept only when its
record (:mod:`sst_cli.upscale.manifest`) says the same recipe made it from the same input. Each image's
header is read before it is decoded, so an image over ``--max-pixels`` or one that cannot fit in memory
is refused at once. PNG outputs are written row by row as the tiles finish them, encoded in a thread of their
own (never held whole: outputs too large for memory must be PNG). Videos are rows of the
same batch, run by :mod:`sst_cli.upscale.video`. Under torchrun, :func:`run_ranks` gives each process its
share of the images (and of every video's segments) and merges the results.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import numpy as np
import torch

from ..errors import SSTError
from ..io import files, images
from ..io.images import ImageData, PngWriter
from ..runtime import free_memory, is_oom
from . import manifest, video
from .array import _target_size, _upscale_pixels
from .jobs import EXT_FORMAT, Job, Settings
from .tiling import Progress, resolve_tile

if TYPE_CHECKING:
    from ..distributed import Dist


# --------------------------------------------------------------------------------- memory planning
def memory_needed(h: int, w: int, c: int, bits: int, scale: int, outscale: float | None, tile: int,
                  streamed: bool) -> int:
    """Rough peak bytes of host memory to upscale an (h, w, c) image of ``bits``, beyond the model itself."""
    oh, ow = _target_size(h, w, scale, outscale)
    out = 0 if streamed else oh * ow * c * (bits // 8)  # streamed: PNG_QUEUE_BYTES of rows at most, left out
    band_rows = (min(tile, h) if tile > 0 else h) * scale
    band = 2 * band_rows * w * scale * (c + 1) * 4  # float band plus its successor
    full = 0
    if outscale is not None and outscale != scale:  # gathered float32 output plus resize buffers
        full = h * scale * w * scale * c * 4 * 2
    return h * w * c * (bits // 8) + out + band + full


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def plan_memory(h: int, w: int, c: int, bits: int, scale: int, outscale: float | None, tile: int, fmt: str,
                avail: int) -> bool:
    """Whether the output must be streamed to disk; SSTError when even that does not fit in ``avail``."""
    if memory_needed(h, w, c, bits, scale, outscale, tile, streamed=False) <= avail * 0.9:
        return False
    streamable = streams_png(fmt, h, w, scale, outscale)
    need = memory_needed(h, w, c, bits, scale, outscale, tile, streamed=streamable)
    if streamable and need <= avail * 0.9:
        return True
    oh, ow = _target_size(h, w, scale, outscale)
    hint = "use --format png (streamed to disk)" if not streamable else "use a smaller --tile"
    if not streamable and outscale not in (None, scale):
        hint = "drop --outscale and use --format png (streamed to disk)"
    raise SSTError(f"a {ow}x{oh} output needs about {_gb(need)} of memory but {_gb(avail)} is available; {hint}.")


def _megapixels(n: float) -> str:
    return f"{n / 1e6:.0f} megapixels" if n >= 1e7 else f"{n / 1e6:.1f} megapixels"


def header_size(src: Path, max_pixels: int | None) -> tuple[int, int]:
    """(width, height) from the file's header alone; SSTError when over ``max_pixels`` (None: no limit)."""
    w, h = images.probe(src)
    if max_pixels is not None and w * h > max_pixels:
        raise SSTError(f"{src.name} declares {w}x{h} pixels ({_megapixels(w * h)}), over the limit of "
                       f"{_megapixels(max_pixels)}; pass --max-pixels {w * h} if it really is that large.")
    return w, h


# ------------------------------------------------------------------------------------- one file
def check_before_decode(src: Path, dst: Path, upscaler: Any, settings: Settings,
                        size: tuple[int, int] | None = None) -> tuple[int, int]:
    """Refuse, from the header alone, an image over the pixel limit or one that cannot fit in memory
    even at its smallest (8-bit grey) decoding; returns its (width, height). ``size``: already probed."""
    w, h = size or header_size(src, settings.max_pixels)
    tile = resolve_tile(upscaler, settings.tile, h, w, settings.tile_batch)
    plan_memory(h, w, 1, 8, int(upscaler.scale), settings.outscale, tile, output_format_of(dst, settings),
                free_memory(torch.device("cpu")))
    return w, h


def output_format_of(dst: Path, settings: Settings) -> str:
    """The format an output is written in: its extension's (output names are made from the format)."""
    return EXT_FORMAT.get(dst.suffix.lower()) or images.output_format(settings.format, "png")


def upscale_image(
    img: ImageData, upscaler: Any, settings: Settings, progress: Progress | None = None,
    on_retry: Callable[[int, int], None] | None = None,
) -> ImageData:
    """Upscale a decoded image, keeping its bit depth, channels and colour profile."""
    pixels = _upscale_pixels(img.pixels, upscaler, settings.tile, settings.overlap, settings.tta,
                             settings.outscale, settings.alpha, progress, on_retry, tile_batch=settings.tile_batch)
    return ImageData(pixels, img.format, img.icc_profile, None, list(img.notes))


# PNG rows waiting for the encoder thread, at most (bytes): a band or two of a large output, so the tiles go on
# while it encodes, and memory stays bounded when it is the slower one.
PNG_QUEUE_BYTES = 32 << 20


def _stream_png(fh: BinaryIO, img: ImageData, upscaler: Any, settings: Settings, progress: Progress | None,
                on_retry: Callable[[int, int], None] | None) -> None:
    """Upscale ``img`` into a PNG written row by row as the tiles finish them. The rows are filtered and
    compressed in a thread of their own (zlib and numpy release the GIL), so on the CPU the encoding overlaps
    the model instead of following it."""
    h, w = img.pixels.shape[:2]
    oh, ow = _target_size(h, w, int(upscaler.scale), settings.outscale)
    start = fh.tell()
    writer: list[PngWriter] = []
    queued: deque[tuple[Future[None], int]] = deque()  # (write, bytes), oldest first
    total = [0]  # bytes in ``queued``
    encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sst-png")

    def drain(limit: int) -> None:
        """Collect finished writes, then wait until at most ``limit`` bytes of rows are queued; an encoder error
        (a full disk) is raised here, at the latest with the next rows."""
        while queued and (queued[0][0].done() or total[0] > limit):
            done, n = queued.popleft()
            total[0] -= n
            done.result()

    def stream(rows: np.ndarray) -> None:  # rows: a fresh array (band_to_hwc), never written to again
        if not writer:
            writer.append(PngWriter(fh, ow, oh, rows.shape[2], 16 if rows.dtype == np.uint16 else 8, img.icc_profile))
        drain(PNG_QUEUE_BYTES - rows.nbytes)
        queued.append((encoder.submit(writer[0].write_rows, rows), rows.nbytes))
        total[0] += rows.nbytes

    def retry(old: int, new: int) -> None:  # an out-of-memory retry starts the file over
        drain(0)
        fh.seek(start)
        fh.truncate()
        writer.clear()
        if on_retry is not None:
            on_retry(old, new)

    try:
        _upscale_pixels(img.pixels, upscaler, settings.tile, settings.overlap, settings.tta, settings.outscale,
                        settings.alpha, progress, retry, stream=stream, tile_batch=settings.tile_batch)
        drain(0)
    finally:
        encoder.shutdown(wait=True, cancel_futures=True)  # nothing writes to fh once this returns
    writer[0].close()


def streams_png(fmt: str, h: int, w: int, scale: int, outscale: float | None) -> bool:
    """Whether the output is written row by row as the tiles finish (PNG at the model's own scale), rather than
    encoded whole at the end: every PNG output, unless ``--outscale`` resizes the whole image first."""
    return fmt == "png" and _target_size(h, w, scale, outscale) == (h * scale, w * scale)


def process_file(
    src: Path, dst: Path, upscaler: Any, settings: Settings, img: ImageData | None = None,
    progress: Progress | None = None, on_retry: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Decode ``src`` (unless given), upscale, write ``dst`` atomically in the format its extension names;
    returns notes. Errors: SSTError."""
    if img is None:
        check_before_decode(src, dst, upscaler, settings)
        img = images.read_image(src)
    fmt = output_format_of(dst, settings)
    files.ensure_folder(dst.parent)
    s = int(upscaler.scale)
    h, w = img.pixels.shape[:2]
    tile = resolve_tile(upscaler, settings.tile, h, w, settings.tile_batch)
    settings = replace(settings, tile=tile)  # decide "auto" once, for the estimate and the run
    too_large = plan_memory(h, w, img.channels, img.bits, s, settings.outscale, tile, fmt,
                            free_memory(torch.device("cpu")))  # True only where the output streams
    notes = list(img.notes)
    if streams_png(fmt, h, w, s, settings.outscale):
        if too_large:
            notes.append("output streamed to disk (too large for memory)")
        files.write_or_explain(dst, lambda fh: _stream_png(fh, img, upscaler, settings, progress, on_retry))
        return notes
    out = upscale_image(img, upscaler, settings, progress, on_retry)
    fitted, more = images.prepare_for(out, fmt)
    files.write_or_explain(dst, lambda fh: images.encode(fh, fitted, fmt, settings.quality))
    return notes + more


# --------------------------------------------------------------------------------------- the batch
@dataclass
class Result:
    job: Job
    status: str  # done | skipped | kept (an existing output not ours to replace) | failed
    reason: str = ""  # failed: why; skipped, kept: why the existing file is kept; done: why an existing one was redone
    seconds: float = 0.0
    in_size: tuple[int, int] | None = None  # (w, h)
    out_size: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)
    video: dict[str, Any] | None = None  # frames, fps, codec, streams copied, ... (videos only)

    @property
    def redone(self) -> bool:
        return self.status == "done" and bool(self.reason)

    def to_dict(self) -> dict[str, Any]:
        return {"input": str(self.job.src), "output": str(self.job.dst), "status": self.status,
                "reason": self.reason, "seconds": round(self.seconds, 3),
                "input_size": list(self.in_size) if self.in_size else None,
                "output_size": list(self.out_size) if self.out_size else None, "notes": self.notes,
                **({"video": self.video} if self.video else {})}


@dataclass
class Summary:
    results: list[Result] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    removed_temps: int = 0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def reasons(self, status: str) -> dict[str, list[Result]]:
        """The results of ``status`` that give a reason, by reason: done ones that were redone, skipped ones
        kept unverified, kept ones."""
        out: dict[str, list[Result]] = {}
        for r in self.results:
            if r.status == status and r.reason and (status != "done" or r.redone):
                out.setdefault(r.reason, []).append(r)
        return out

    @property
    def exit_code(self) -> int:
        """1 when an image failed or an existing output was kept instead of made: the outputs asked for are
        not all there."""
        return 1 if self.count("failed") or self.count("kept") else 0

    def to_dict(self) -> dict[str, Any]:
        return {"done": self.count("done"), "redone": sum(r.redone for r in self.results),
                "skipped": self.count("skipped"), "kept": self.count("kept"), "failed": self.count("failed"),
                "interrupted": self.interrupted, "seconds": round(self.seconds, 3),
                "removed_stale_temps": self.removed_temps, "results": [r.to_dict() for r in self.results]}


class Events(Protocol):
    """What a front end hears while a batch runs (all optional: see :class:`NoEvents`)."""

    def planned(self, todo: list[Job], kept: list[Result]) -> None: ...
    def start(self, index: int, job: Job) -> None: ...
    def tiles(self, done: int, total: int) -> None: ...
    def frames(self, done: int, total: int, fps: float) -> None: ...
    def retry(self, job: Job, old: int, new: int) -> None: ...
    def finish(self, index: int, result: Result) -> None: ...


class NoEvents:
    def planned(self, todo: list[Job], kept: list[Result]) -> None:
        pass

    def start(self, index: int, job: Job) -> None:
        pass

    def tiles(self, done: int, total: int) -> None:
        pass

    def frames(self, done: int, total: int, fps: float) -> None:
        pass

    def retry(self, job: Job, old: int, new: int) -> None:
        pass

    def finish(self, index: int, result: Result) -> None:
        pass


def recipe(upscaler: Any, settings: Settings, dst: Path) -> dict[str, Any]:
    """What decides an output's pixels and bytes: two outputs with the same recipe and input are the same."""
    from ..runtime import precision_name

    fmt = output_format_of(dst, settings)
    dtype = getattr(upscaler, "dtype", None)
    rec = {"model": getattr(upscaler, "name", type(upscaler).__name__),
           "weights_sha256": manifest.weights_fingerprint(upscaler), "scale": int(upscaler.scale),
           "outscale": settings.outscale, "tta": settings.tta, "alpha": settings.alpha,
           "dtype": (precision_name(dtype, torch.device(getattr(upscaler, "device", "cpu")))
                     + (" (16-bit input: fp32)" if getattr(upscaler, "widens_16bit", False) else "")
                     if dtype is not None else None),
           "format": fmt,
           "quality": settings.quality if fmt in ("jpg", "webp") else None,
           **sampling(upscaler)}
    return video.recipe(rec, settings, dst) if files.is_video(dst) else rec


def sampling(upscaler: Any) -> dict[str, Any]:
    """The noise seed and guidance of a model sampled from noise (sst-real), nothing for the others."""
    return dict(getattr(getattr(upscaler, "model", None), "recipe", None) or {})


def triage(jobs: list[Job], upscaler: Any, settings: Settings) -> tuple[list[Job], list[Result]]:
    """(to do, not done): an existing output is redone only when it is sst's own, unfinished or made from
    an input that has changed since; made by this recipe it is skipped; otherwise (other settings, edited
    since, no record) it is kept, see :func:`manifest.judge`. ``overwrite`` redoes all."""
    todo: list[Job] = []
    kept: list[Result] = []
    for job in jobs:
        if settings.overwrite or not job.dst.exists():
            todo.append(job)
            continue
        verdict = manifest.judge(job.src, job.dst, recipe(upscaler, settings, job.dst))
        if verdict.action == manifest.REDO:
            todo.append(job)
            job.redo = verdict.reason
        else:
            kept.append(Result(job, "kept" if verdict.action == manifest.KEEP else "skipped", verdict.reason))
    return todo, kept


@dataclass
class _Later:
    """The header was fine but memory is short while the previous image runs: decide when it is this
    image's turn."""

    size: tuple[int, int]


def _read(job: Job, upscaler: Any, settings: Settings) -> ImageData | SSTError | _Later | None:
    """Check the header, then decode, in the prefetch thread; errors come back as values so the batch
    can report them. Videos are read frame by frame later (None)."""
    if files.is_video(job.src):
        return None
    try:
        size = header_size(job.src, settings.max_pixels)
        try:
            check_before_decode(job.src, job.dst, upscaler, settings, size)
        except SSTError:
            return _Later(size)
        return images.read_image(job.src)
    except SSTError as exc:
        return exc
    except MemoryError:
        return SSTError(f"{job.src.name} is too large to decode in the available memory.")
    except Exception as exc:  # noqa: BLE001 - a bad file must never stop the batch
        return SSTError(f"{job.src.name} cannot be decoded ({files.reason(exc)}).")


def _image(result: Result, decoded: ImageData | SSTError | _Later | None, upscaler: Any, settings: Settings,
           ev: Events) -> None:
    """One image of the batch, decoded ahead (or refused, or put off: ``_read``), into ``result``."""
    job = result.job
    if isinstance(decoded, _Later):  # the previous image is done: check again, then decode
        check_before_decode(job.src, job.dst, upscaler, settings, decoded.size)
        decoded = images.read_image(job.src)
    if isinstance(decoded, SSTError):
        raise decoded
    assert decoded is not None
    result.in_size = decoded.size
    rec = recipe(upscaler, settings, job.dst)
    files.ensure_folder(job.dst.parent)
    with manifest.recording(job.src, job.dst, rec):
        result.notes = process_file(job.src, job.dst, upscaler, settings, decoded, ev.tiles,
                                    lambda old, new, job=job: ev.retry(job, old, new))
    oh, ow = _target_size(decoded.size[1], decoded.size[0], int(upscaler.scale), settings.outscale)
    result.out_size = (ow, oh)


def _video(result: Result, upscaler: Any, settings: Settings, dist: Dist | None, ev: Events) -> None:
    """One video of the batch into ``result`` (:func:`sst_cli.upscale.video.upscale_video`)."""
    from ..distributed import Dist

    job = result.job
    done = video.upscale_video(job, upscaler, settings, recipe(upscaler, settings, job.dst), dist or Dist(), ev.frames)
    result.in_size, result.out_size, result.notes, result.video = done.in_size, done.out_size, done.notes, done.summary


def run_batch(jobs: list[Job], upscaler: Any, settings: Settings, events: Events | None = None,
              clean_temps: bool = True, dist: Dist | None = None) -> Summary:
    """Upscale every job; one bad file is a failed row, never the end of the batch.

    Stale temporaries of killed runs are removed from the output folders first (unless ``clean_temps``
    is off: another process did it). Outputs made before with the same recipe are kept; each image's
    header is checked before it is decoded. The next image is decoded in a background thread while the
    current one runs. Ctrl-C stops after cleaning up the current temporary file and returns what was
    done (``interrupted``). Videos: see :func:`sst_cli.upscale.video.upscale_video`; under torchrun (``dist``)
    every process runs every video, in the same order.
    """
    ev = events or NoEvents()
    t0 = time.perf_counter()
    summary = Summary()
    if clean_temps:
        summary.removed_temps = remove_stale_temps(jobs)
    todo, kept = triage(jobs, upscaler, settings)
    summary.results.extend(kept)
    ev.planned(todo, kept)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sst-decode")
    pending: Future[ImageData | SSTError | _Later | None] | None = None
    if todo:
        pending = pool.submit(_read, todo[0], upscaler, settings)
    try:
        for i, job in enumerate(todo):
            ev.start(i, job)
            started = time.perf_counter()
            assert pending is not None
            decoded = pending.result()
            pending = pool.submit(_read, todo[i + 1], upscaler, settings) if i + 1 < len(todo) else None
            result = Result(job, "done", job.redo)
            try:
                if files.is_video(job.src):  # decoded, upscaled and encoded frame by frame
                    _video(result, upscaler, settings, dist, ev)
                else:
                    _image(result, decoded, upscaler, settings, ev)
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


def remove_stale_temps(jobs: list[Job]) -> int:
    """Remove what killed runs left in the jobs' output folders; returns how many files."""
    return sum(manifest.clean_stale_temps(folder) for folder in sorted({j.dst.parent for j in jobs}))


def run_ranks(jobs: list[Job], upscaler: Any, settings: Settings, dist: Dist, events: Events | None = None) -> Summary:
    """:func:`run_batch` over this rank's share of ``jobs`` (see :mod:`sst_cli.distributed`); every rank
    returns the merged summary, results in job order. One process: just ``run_batch``."""
    if not dist.active:
        return run_batch(jobs, upscaler, settings, events)
    removed = remove_stale_temps(jobs) if dist.main else 0  # once, before any rank writes
    dist.barrier()
    # images are shared out; every rank takes part in every video (its share of the segments), in one order
    share = dist.shard([j for j in jobs if not files.is_video(j.src)]) + [j for j in jobs if files.is_video(j.src)]
    parts = dist.gather(run_batch(share, upscaler, settings, events, clean_temps=False, dist=dist))
    order = {str(j.dst): i for i, j in enumerate(jobs)}
    mine = (r for rank, p in enumerate(parts) for r in p.results if rank == 0 or not files.is_video(r.job.src))
    results = sorted(mine, key=lambda r: order[str(r.job.dst)])
    return Summary(results, any(p.interrupted for p in parts), max(p.seconds for p in parts), removed)


def describe(upscaler: Any, settings: Settings) -> dict[str, Any]:
    """What a result file records about the run, so every output traces back to its weights and sst."""
    from .. import __version__

    return {"sst_version": __version__, "model": getattr(upscaler, "name", None), "scale": int(upscaler.scale),
            "weights": getattr(upscaler, "source", None), "weights_sha256": manifest.weights_fingerprint(upscaler),
            "device": str(getattr(upscaler, "device", "")), "backend": getattr(upscaler, "backend", None),
            "outscale": settings.outscale, "tta": settings.tta, "alpha": settings.alpha, "format": settings.format,
            "quality": settings.quality, **sampling(upscaler), **runtime_of(upscaler)}


def runtime_of(upscaler: Any) -> dict[str, Any]:
    """What ran the network: torch, or a graph runtime with its version and the graphs it ran (from the sst
    cache, or exported by this run). Not part of an output's recipe: like the attention backend, it changes
    pixels by float32 rounding only (checked against PyTorch within 1e-4 when each graph is exported)."""
    runner = getattr(upscaler, "runner", None)
    if runner is None:
        return {"runtime": "torch"}
    graphs = [{"size": f"{g.key.width}x{g.key.height}", "path": str(g.path), "exported": g.exported}
              for g in getattr(runner, "graphs", {}).values()]
    return {"runtime": getattr(runner, "version", getattr(upscaler, "runtime", None)), "graphs": graphs}
