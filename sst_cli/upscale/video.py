"""Upscaling a video: frames decoded, upscaled and encoded as they go, in resumable segments.

The frames are cut into segments of ``--segment-frames`` by frame index. Each segment is encoded by a fresh
encoder (a closed GOP) into its own file in a work folder beside the output, ``.<output name>.sst-work/``, and
renamed into place only when complete, so after Ctrl-C or kill -9 every segment file there is whole and a rerun
starts at the first missing one. Once all are there they are joined with the source's audio and subtitle
streams (remuxed, never re-encoded) into a temporary beside the output, renamed into place, and the work
folder is removed. A segment depends only on its frames and the settings (the work folder is started over when
those change), so a resumed run gives the same video as an uninterrupted one.

Memory holds one decoded frame, its upscaled copy and the encoder's own look-ahead: never the whole video.
Under torchrun every process decodes the video and upscales the segments ``k`` with ``k % world == rank``;
rank 0 joins them and records the output (:mod:`sst_cli.upscale.manifest`) for the skip rule.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SSTError
from ..io import files, images
from ..io import video as av_io
from . import manifest
from .array import _target_size, upscale_array
from .tiling import resolve_tile

if TYPE_CHECKING:
    from ..distributed import Dist
    from .jobs import Job, Settings

WORK_SUFFIX = ".sst-work"
KEY_FILE = "job.json"  # what the segments in a work folder were made with

# progress: (frames upscaled so far, frames this process will upscale (an estimate), frames per second)
FrameProgress = Callable[[int, int, float], None]


def recipe(base: dict[str, Any], settings: Settings, dst: Path) -> dict[str, Any]:
    """The image recipe (model, weights, scale, ...) with what decides a video's bytes instead of format, quality
    and alpha mode."""
    v = settings.video
    return {**{k: val for k, val in base.items() if k != "alpha"}, "format": av_io.CONTAINERS.get(dst.suffix.lower(), "matroska"), "quality": None,
            "codec": v.codec, "crf": v.crf, "pix_fmt": v.pix_fmt, "audio": v.audio, "segment_frames": v.segment_frames}


@dataclass(frozen=True)
class Outcome:
    in_size: tuple[int, int]  # (w, h)
    out_size: tuple[int, int]
    notes: list[str]
    summary: dict[str, Any]  # the JSON summary's "video" entry


# ------------------------------------------------------------------------------------------ work folder
@dataclass(frozen=True)
class WorkFolder:
    """Segments of one output, kept between runs until the output is written."""

    path: Path

    @classmethod
    def beside(cls, dst: Path) -> WorkFolder:
        return cls(dst.parent / f".{dst.name}{WORK_SUFFIX}")

    def segment(self, k: int, muxer: str) -> Path:
        return self.path / f"seg-{k:06d}.{muxer}"

    def prepare(self, key: dict[str, Any], tile: int) -> int:
        """Keep the segments of an interrupted run with the same ``key``, else start over with ``tile`` (the
        tile size every frame is cut into); returns how many segments are already complete. Temporaries of dead
        runs are removed."""
        if self._stored().get("key") != key:
            shutil.rmtree(self.path, ignore_errors=True)
            files.ensure_folder(self.path)
            files.atomic_write_text(self.path / KEY_FILE, json.dumps({"key": key, "tile": tile}, indent=1) + "\n")
        files.clean_stale_temps(self.path)
        return sum(1 for p in self.path.glob("seg-*") if not files.is_temp(p))

    def tile(self) -> int:
        """The tile size of the run that started this folder: "auto" is decided once, so a resumed run (or
        another process) cuts frames as the first one did."""
        return int(self._stored()["tile"])

    def _stored(self) -> dict[str, Any]:
        try:
            stored = json.loads((self.path / KEY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return stored if isinstance(stored, dict) else {}

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ frames
def _check_pixels(info: av_io.VideoInfo, max_pixels: int | None) -> None:
    n = info.width * info.height
    if max_pixels is not None and n > max_pixels:
        raise SSTError(f"{info.name} has {info.width}x{info.height} frames, over the limit of {max_pixels} pixels; "
                       f"pass --max-pixels {n} if they really are that large.")


def _upscaled(frames: Iterable[av_io.Decoded], upscaler: Any, settings: Settings, bits: int,
              frames_dir: Path | None, tick: Callable[[], None]) -> Iterator[tuple[int, np.ndarray]]:
    """(pts, upscaled RGB frame) for each decoded frame, one at a time, each tiled as an image is."""
    for d in frames:
        big = upscale_array(d.rgb(bits), upscaler, settings.tile, settings.overlap, settings.tta, settings.outscale,
                            tile_batch=settings.tile_batch)
        if frames_dir is not None:
            images.save_array(frames_dir / f"{d.index:06d}.png", big)
        yield d.pts, big
        tick()


def _write_segment(path: Path, frames: Iterable[tuple[int, np.ndarray]], info: av_io.VideoInfo,
                   enc: av_io.Encoding, size: tuple[int, int]) -> None:
    """One segment, atomically; OS errors as one sentence, encoder errors naming the encoder."""
    try:
        files.atomic_write(path, lambda tmp: av_io.write_segment(tmp, frames, info, enc, *size))
    except (SSTError, KeyboardInterrupt, MemoryError):
        raise
    except OSError as exc:
        raise SSTError(f"cannot write a segment of {info.name} in {path.parent} ({files.reason(exc)}).") from None
    except Exception as exc:  # noqa: BLE001 - FFmpeg's errors become one sentence
        if type(exc).__module__.startswith("av"):
            raise SSTError(f"{enc.codec} cannot encode {info.name} ({files.reason(exc)}).") from None
        raise


def _encode_share(job: Job, upscaler: Any, settings: Settings, info: av_io.VideoInfo, enc: av_io.Encoding,
                  work: WorkFolder, size: tuple[int, int], dist: Dist, progress: FrameProgress | None) -> tuple[int, int]:
    """Decode the whole video; upscale and encode this process's missing segments. Returns (frames in the
    video, repaired timestamps)."""
    n = settings.video.segment_frames
    frames_dir = settings.video.frames_dir / job.rel.with_suffix("") if settings.video.frames_dir else None
    est = info.estimated_frames or 0
    segs = -(-est // n)
    todo = sum(min(n, est - k * n) for k in range(segs)
               if k % dist.world == dist.rank and not work.segment(k, enc.segments).exists())
    done = 0
    started = time.perf_counter()

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, max(todo, done), done / max(time.perf_counter() - started, 1e-9))

    stamps = av_io.Timestamps(av_io.frame_step(info))
    decoded = av_io.read_frames(job.src, info, stamps)
    count = 0
    try:
        for k in itertools.count():
            chunk = list(itertools.islice(decoded, 1))  # the segment's first frame, to see whether there is one
            if not chunk:
                break
            frames = _Counted(itertools.chain(chunk, itertools.islice(decoded, n - 1)))
            path = work.segment(k, enc.segments)
            if k % dist.world != dist.rank or path.exists():
                for _ in frames:  # decoded (later frames refer to these) but neither converted nor upscaled
                    pass
            else:
                _write_segment(path, _upscaled(frames, upscaler, settings, info.bits, frames_dir, tick), info, enc,
                               size)
            count += frames.seen
    finally:
        decoded.close()
    return count, stamps.repaired


class _Counted:
    """Passes items through, counting them."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = iter(items)
        self.seen = 0

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            self.seen += 1
            yield item


def _agree(dist: Dist, error: str | None) -> None:
    """Every process reaches this point; the first one's error (in rank order) is everyone's."""
    errors = [e for e in dist.gather(error) if e]
    if errors:
        raise SSTError(errors[0])


# --------------------------------------------------------------------------------------------- the job
def upscale_video(job: Job, upscaler: Any, settings: Settings, rec: dict[str, Any], dist: Dist,
                  progress: FrameProgress | None = None) -> Outcome:
    """Upscale the video ``job.src`` into ``job.dst`` (see the module's docstring). Every process under
    torchrun calls this for every video, in the same order. Errors: SSTError, one sentence."""
    s = int(upscaler.scale)
    work = WorkFolder.beside(job.dst)
    error = None
    try:
        info = av_io.probe(job.src)
        _check_pixels(info, settings.max_pixels)
        oh, ow = _target_size(info.height, info.width, s, settings.outscale)
        v = settings.video
        enc = av_io.choose_encoding(info, job.dst, ow, oh, v.codec, v.crf, v.pix_fmt)
        if dist.main:
            files.ensure_folder(job.dst.parent)
            tile = resolve_tile(upscaler, settings.tile, info.height, info.width, settings.tile_batch)
            work.prepare(_key(job, settings, rec, enc), tile)
    except SSTError as exc:
        error = str(exc)
    _agree(dist, error)  # the work folder is ready before any process writes into it
    resumed = sum(1 for p in work.path.glob("seg-*") if not files.is_temp(p))
    error, counts = None, (0, 0)
    try:
        frames_settings = replace(settings, tile=work.tile())
        counts = _encode_share(job, upscaler, frames_settings, info, enc, work, (ow, oh), dist, progress)
    except SSTError as exc:
        error = str(exc)
    _agree(dist, error)
    frames, repaired = counts
    n = settings.video.segment_frames
    segments = [work.segment(k, enc.segments) for k in range(-(-frames // n))]
    copy = [st for st in info.streams if st.kind == "subtitle" or settings.video.audio == "copy"]
    left_out: list[av_io.Stream] = []
    if dist.main:
        with manifest.recording(job.src, job.dst, rec):
            left_out = _join(job.dst, enc, segments, [min(n, frames - k * n) for k in range(len(segments))], job.src,
                             info, copy)
        work.remove()
    copied = [st for st in copy if st not in left_out]
    audio = sum(st.kind == "audio" for st in copied)
    rate = float(info.rate) if info.rate else None
    summary = {"frames": frames, "fps": rate, "time_base": str(info.time_base), "codec": enc.codec, "crf": enc.crf,
               "pix_fmt": enc.pix_fmt, "container": enc.container, "colour": enc.colour.describe(),
               "audio_streams": audio, "subtitle_streams": len(copied) - audio, "segments": len(segments),
               "segments_resumed": resumed}
    said = [f"{frames} frames" + (f" at {rate:g} fps" if rate else ""), enc.describe(), *enc.notes,
            f"audio copied ({audio} stream{'s' if audio != 1 else ''})" if audio else "no audio"]
    if settings.video.audio == "drop" and any(st.kind == "audio" for st in info.streams):
        said[-1] = "audio dropped"
    said += [f"{st.kind} stream {st.index} ({st.codec}) left out: {enc.container} cannot hold it" for st in left_out]
    if resumed:
        said.append(f"resumed: {resumed} of {len(segments)} segments were done")
    if repaired:
        said.append(f"{repaired} missing or repeated timestamps repaired")
    return Outcome((info.width, info.height), (ow, oh), said, summary)


def _key(job: Job, settings: Settings, rec: dict[str, Any], enc: av_io.Encoding) -> dict[str, Any]:
    """What the segments depend on: a work folder made with anything else is started over."""
    st = job.src.stat()
    return {"recipe": rec, "input": {"size": st.st_size, "mtime_ns": st.st_mtime_ns}, "tile": settings.tile,
            "overlap": settings.overlap, "tile_batch": settings.tile_batch, "encoding": enc.describe(),
            "colour": enc.colour.describe(), "pyav": av_io.version()}


def _join(dst: Path, enc: av_io.Encoding, segments: list[Path], frames: list[int], src: Path,
          info: av_io.VideoInfo, copy: list[av_io.Stream]) -> list[av_io.Stream]:
    """The output from the segments and the ``copy`` streams, atomically; returns the streams left out."""
    missing = [p.name for p in segments if not p.exists()]
    if missing:
        raise SSTError(f"segment {missing[0]} of {src.name} is missing; rerun to make it.")
    left_out: list[av_io.Stream] = []

    def write(tmp: Path) -> None:
        left_out.extend(av_io.join(tmp, enc, segments, frames, src, info, copy))

    try:
        files.atomic_write(dst, write)
    except (SSTError, KeyboardInterrupt):
        raise
    except OSError as exc:
        if exc.errno == 28:
            raise SSTError(f"cannot write {dst.name}: no space left on the device.") from None
        raise SSTError(f"cannot write {dst.name} ({files.reason(exc)}).") from None
    except Exception as exc:  # noqa: BLE001 - FFmpeg's muxer errors become one sentence
        raise SSTError(f"cannot join the segments of {src.name} into {dst.name} ({files.reason(exc)}).") from None
    return left_out

