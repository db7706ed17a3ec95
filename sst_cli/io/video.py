"""Videos: the only place sst demuxes, decodes, encodes or muxes a video, through PyAV (the FFmpeg libraries,
in-process; the optional extra ``pip install 'sst-cli[video]'``).

- :func:`probe`: what a video holds (size, frame rate and time base, colour tags, aspect ratio, rotation, the
  other streams), from its header and first frame, so a corrupt file is named before any work is done;
- :func:`choose_encoding`: encoder, pixel format and quality from what the installed FFmpeg provides;
- :func:`read_frames`: decoded frames in presentation order, converted to RGB only when asked
  (:meth:`Decoded.rgb`: 8-bit, 16-bit for deeper sources);
- :func:`write_segment`: frames encoded into one self-contained file that starts with a keyframe and refers to
  nothing outside itself (a closed GOP), so segments made by different runs or processes join into one stream;
- :func:`join`: the segments' packets and the source's audio and subtitle packets remuxed into the final file,
  interleaved by time, never re-encoded.

Colour: frames go YUV -> RGB with the source's own matrix and range and back with the same ones, and the output
declares the source's primaries, transfer, matrix and range, so colours survive the round trip. swscale's
flags matter: its defaults darken 8-bit 4:2:0 video by a level or two on the way to RGB, and its full-chroma
path, which fixes that, ruins 16-bit RGB; :func:`_to_rgb_flags` checks the candidates on flat colours.

Imports only ``sst_cli.errors`` and ``files``; PyAV is imported when a video is first opened.
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import SSTError
from .files import reason

INSTALL = "pip install 'sst-cli[video]'"

# Containers sst writes (by output extension); any other input container is written as Matroska, which holds
# every stream a source can have.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
FALLBACK_EXTENSION = ".mkv"

# Encoders tried in order without --codec: the first the installed FFmpeg has and the container can hold.
DEFAULT_ENCODERS = ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "libaom-av1", "mpeg4")
# Constant-quality encoders and their default --crf (x264's 18 is about visually lossless).
CRF_DEFAULTS = {"libx264": 18, "libx265": 20, "libvpx-vp9": 24, "libsvtav1": 24, "libaom-av1": 24}
MPEG4_QSCALE = 2  # mpeg4 has no --crf: a fixed quantiser, its best quality but 1
FF_QP2LAMBDA = 118  # FFmpeg's quantiser -> lambda factor
COPIED_TAGS = ("language", "title")  # stream tags kept; others (encoder, duration) describe the old stream
MAX_REORDER = 32  # frames an encoder may hold back for B-frames (x265's limit is 16)

# FFmpeg's "unspecified" codes (AVCOL_PRI/TRC/SPC_UNSPECIFIED, AVCOL_RANGE_UNSPECIFIED), and the two we name
UNSPECIFIED, RANGE_UNSPECIFIED, SPACE_RGB, SPACE_BT709, RANGE_LIMITED = 2, 0, 0, 1, 1
MATRICES = {0: "rgb", 1: "bt709", 2: "unspecified", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
            8: "ycgco", 9: "bt2020nc", 10: "bt2020c"}  # AVCOL_SPC_*
RANGES = {0: "unspecified", 1: "limited", 2: "full"}  # AVCOL_RANGE_*


def _av(what: str = "videos") -> ModuleType:
    try:
        import av
    except ImportError:
        raise SSTError(f"{what} need PyAV, which is not installed: {INSTALL}.") from None
    return av


def version() -> str:
    return str(_av().__version__)


def output_extension(src: Path) -> str:
    """The output's extension for a source video: its own where sst writes that container, else .mkv."""
    ext = src.suffix.lower()
    return src.suffix if ext in CONTAINERS else FALLBACK_EXTENSION


# ------------------------------------------------------------------------------------------------ probe
@dataclass(frozen=True)
class Colour:
    """FFmpeg's colour tags (AVCOL_* codes): primaries, transfer, matrix and range."""

    primaries: int = UNSPECIFIED
    trc: int = UNSPECIFIED
    space: int = UNSPECIFIED
    range: int = RANGE_UNSPECIFIED

    def describe(self) -> str:
        """e.g. 'bt709 primaries, bt709 transfer, bt709 matrix, limited range'."""
        from av.video.reformatter import ColorPrimaries, ColorTrc

        def name(names: Any, value: int) -> str:
            try:
                return str(names[value] if isinstance(names, dict) else names(value).name.lower())
            except (KeyError, ValueError):
                return str(value)

        return (f"{name(ColorPrimaries, self.primaries)} primaries, {name(ColorTrc, self.trc)} transfer, "
                f"{name(MATRICES, self.space)} matrix, {name(RANGES, self.range)} range")


@dataclass(frozen=True)
class Stream:
    """A stream copied next to the video: its index in the source, kind and codec."""

    index: int
    kind: str  # audio | subtitle
    codec: str


@dataclass(frozen=True)
class VideoInfo:
    name: str
    width: int
    height: int
    codec: str  # the source's codec, e.g. h264
    pix_fmt: str
    bits: int  # bits per sample (8, 10, 12, ...)
    rate: Fraction | None  # average frame rate
    time_base: Fraction
    frames: int | None  # as the container declares it (None: unknown)
    duration: float | None  # seconds
    colour: Colour
    sample_aspect_ratio: Fraction | None
    rotation: int  # degrees, counter-clockwise, as the display matrix says
    streams: tuple[Stream, ...] = ()
    index: int = 0  # of the video stream
    alpha: bool = False  # the frames carry transparency (upscaled frames do not: it is dropped)

    @property
    def estimated_frames(self) -> int | None:
        if self.frames:
            return self.frames
        if self.duration and self.rate:
            return max(1, round(self.duration * self.rate))
        return None


def _video_stream(container: Any) -> Any:
    """The first video stream that is not a cover picture."""
    from av.stream import Disposition

    return next((s for s in container.streams.video if not s.disposition & Disposition.attached_pic), None)


def probe(path: Path) -> VideoInfo:
    """What a video holds, from its header and first frame; SSTError (one sentence) when it cannot be read."""
    av = _av(f"{path.name} is a video, and videos")
    try:
        with av.open(str(path)) as c:
            v = _video_stream(c)
            if v is None:
                raise SSTError(f"{path.name} holds no video stream.")
            v.thread_type = "AUTO"
            first = next(iter(c.decode(v)), None)
            if first is None:
                raise SSTError(f"{path.name} holds no frame that can be decoded.")
            cc = v.codec_context

            def tag(name: str, unspecified: int) -> int:
                value = int(getattr(first, name))
                return value if value != unspecified else int(getattr(cc, name))

            colour = Colour(tag("color_primaries", UNSPECIFIED), tag("color_trc", UNSPECIFIED),
                            tag("colorspace", UNSPECIFIED), tag("color_range", RANGE_UNSPECIFIED))
            sar = v.sample_aspect_ratio or cc.sample_aspect_ratio
            tb = v.time_base or Fraction(1, 90000)
            duration = float(v.duration * tb) if v.duration else (c.duration / 1e6 if c.duration else None)
            others = tuple(Stream(s.index, s.type, s.codec.canonical_name) for s in c.streams
                           if s.type in ("audio", "subtitle"))
            return VideoInfo(path.name, first.width, first.height, cc.name, first.format.name,
                             max(comp.bits for comp in first.format.components), v.average_rate or v.guessed_rate,
                             tb, v.frames or None, duration, colour, sar if sar else None, int(first.rotation), others,
                             v.index, any(comp.is_alpha for comp in first.format.components))
    except SSTError:
        raise
    except MemoryError:
        raise SSTError(f"{path.name} is too large to decode in the available memory.") from None
    except Exception as exc:  # noqa: BLE001 - FFmpeg's errors are many; each is one sentence for the user
        raise SSTError(f"{path.name} cannot be read as a video ({reason(exc)}).") from None


# --------------------------------------------------------------------------------------------- encoding
@dataclass(frozen=True)
class Encoding:
    """How the upscaled frames are encoded and stored."""

    codec: str  # encoder, e.g. libx264
    pix_fmt: str
    crf: int | None
    options: dict[str, str]
    container: str  # the output's FFmpeg muxer, e.g. mp4
    segments: str  # the segments' muxer: mp4 or mov, which keep every timestamp the encoder gives (dts included)
    colour: Colour  # what the output declares (the source's)
    notes: tuple[str, ...] = ()
    qscale: int | None = None  # a fixed quantiser, for encoders without --crf

    def describe(self) -> str:
        quality = f" crf {self.crf}" if self.crf is not None else (f" qscale {self.qscale}" if self.qscale else "")
        return f"{self.codec}{quality}, {self.pix_fmt}"


def _muxer_codecs(av: ModuleType, muxer: str) -> set[str]:
    with av.open(os.devnull, "w", format=muxer) as out:
        return set(out.supported_codecs)


def _encoder(av: ModuleType, name: str) -> Any | None:
    try:
        codec = av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - not in this FFmpeg
        return None
    return codec if codec.type == "video" else None


def _pix_fmts(codec: Any) -> list[str]:
    return [f.name for f in (codec.video_formats or [])]


def _subsampled(pix_fmt: str, width: int, height: int) -> bool:
    """Whether ``pix_fmt`` halves chroma on an axis that has an odd length (encoders refuse that)."""
    from av.video.format import VideoFormat

    fmt = VideoFormat(pix_fmt)
    return (width % 2 == 1 and fmt.chroma_width(2) == 1) or (height % 2 == 1 and fmt.chroma_height(2) == 1)


def _default_pix_fmt(info: VideoInfo, formats: list[str], width: int, height: int) -> tuple[str, list[str]]:
    """The source's pixel format when the encoder takes it (the full-range "yuvj" names as their plain twins,
    without alpha), else 4:2:0 at the source's depth; 4:4:4 when the size is odd."""
    own = info.pix_fmt.replace("yuvj", "yuv").replace("yuva", "yuv")
    deep = info.bits > 8
    order = [own, "yuv420p10le" if deep else "yuv420p", "yuv420p", "yuv444p10le" if deep else "yuv444p", "yuv444p"]
    notes: list[str] = []
    for fmt in dict.fromkeys(order):
        if fmt in formats and not _subsampled(fmt, width, height):
            if fmt != own and fmt.startswith("yuv444") and own.startswith(("yuv420", "yuv422")):
                notes.append(f"{fmt} because {width}x{height} is odd")
            return fmt, notes
    raise SSTError(f"no pixel format of the encoder suits a {width}x{height} output; pass --pix-fmt.")


def choose_encoding(info: VideoInfo, dst: Path, width: int, height: int, codec: str | None = None,
                    crf: int | None = None, pix_fmt: str | None = None) -> Encoding:
    """Encoder, pixel format and quality for a ``width`` x ``height`` output named ``dst``; SSTError (one sentence)
    when the installed FFmpeg cannot do what was asked."""
    av = _av()
    container = CONTAINERS.get(dst.suffix.lower(), CONTAINERS[FALLBACK_EXTENSION])
    holds = _muxer_codecs(av, container)
    segment_muxers = {m: _muxer_codecs(av, m) for m in ("mp4", "mov")}

    def storable(c: Any) -> bool:
        return c.canonical_name in holds and any(c.canonical_name in s for s in segment_muxers.values())

    if codec is not None:
        enc = _encoder(av, codec)
        if enc is None:
            have = [n for n in DEFAULT_ENCODERS if _encoder(av, n) is not None]
            raise SSTError(f"this FFmpeg has no video encoder {codec} (it has {', '.join(have) or 'none of ours'}).")
        if not storable(enc):
            raise SSTError(f"{dst.suffix or container} files cannot hold {enc.canonical_name} video; choose another "
                           "--codec or output name.")
    else:
        enc = next((e for e in map(lambda n: _encoder(av, n), DEFAULT_ENCODERS) if e is not None and storable(e)), None)
        if enc is None:
            raise SSTError(f"this FFmpeg has no encoder for {dst.suffix or container} files among "
                           f"{', '.join(DEFAULT_ENCODERS)}; pass --codec.")
    formats = _pix_fmts(enc)
    notes: list[str] = []
    if pix_fmt is not None:
        if formats and pix_fmt not in formats:
            raise SSTError(f"{enc.name} cannot encode --pix-fmt {pix_fmt} (it takes {', '.join(formats[:8])}).")
        if _subsampled(pix_fmt, width, height):
            raise SSTError(f"{pix_fmt} needs an even width and height, and the output is {width}x{height}; use a "
                           "4:4:4 --pix-fmt or another --outscale.")
    else:
        pix_fmt, notes = _default_pix_fmt(info, formats, width, height)
    if info.alpha:
        notes.insert(0, "alpha channel dropped")
    options: dict[str, str] = {}
    if enc.name in CRF_DEFAULTS:
        crf = CRF_DEFAULTS[enc.name] if crf is None else crf
        options["crf"] = str(crf)
    elif crf is not None:
        raise SSTError(f"--crf applies to {', '.join(CRF_DEFAULTS)}, not {enc.name}.")
    if enc.name == "libx265":
        options["x265-params"] = "log-level=error"  # x265 prints its settings to stderr otherwise
    colour = info.colour
    if colour.space == SPACE_RGB and not _is_rgb(pix_fmt):  # RGB source, YUV output: name the matrix used
        colour = Colour(colour.primaries, colour.trc, SPACE_BT709, RANGE_LIMITED)
    segments = "mp4" if enc.canonical_name in segment_muxers["mp4"] else "mov"
    return Encoding(enc.name, pix_fmt, crf, options, container, segments, colour, tuple(notes),
                    MPEG4_QSCALE if enc.name == "mpeg4" else None)


def _is_rgb(pix_fmt: str) -> bool:
    from av.video.format import VideoFormat

    return bool(VideoFormat(pix_fmt).is_rgb)


# ------------------------------------------------------------------------------------ colour conversion
def _to_yuv_flags() -> int:
    """swscale flags for RGB -> YUV: exact rounding, chroma averaged over each subsampled block."""
    from av.video.reformatter import Interpolation as I

    return int(I.AREA | I.ACCURATE_RND)


_RGB_FLAGS: dict[tuple[str, int, int, str], int] = {}
TEST_COLOURS = ((200, 30, 40), (30, 180, 60), (40, 50, 210), (128, 128, 128), (16, 16, 16), (235, 235, 235))


def _to_rgb_flags(frame: Any, rgb: str) -> int:
    """swscale flags for this frame's pixel format, matrix and range -> ``rgb`` that bring flat colours back
    closest to what they were (chroma upsampled bilinearly), tried once per kind of frame."""
    from av import VideoFrame
    from av.video.reformatter import Interpolation as I
    from av.video.reformatter import VideoReformatter

    key = (frame.format.name, int(frame.colorspace), int(frame.color_range), rgb)
    if key not in _RGB_FLAGS:
        deep = rgb == "rgb48le"
        candidates = [I.BILINEAR | I.ACCURATE_RND | I.FULL_CHR_H_INT | I.FULL_CHR_H_INP, I.BILINEAR | I.ACCURATE_RND]
        errors = []
        for flags in candidates:
            worst = 0.0
            for colour in TEST_COLOURS:
                flat = np.empty((8, 8, 3), np.uint16 if deep else np.uint8)
                flat[:] = np.asarray(colour) * (257 if deep else 1)
                f = VideoFrame.from_ndarray(flat, format=rgb)
                f.colorspace = key[1]
                yuv = VideoReformatter().reformat(f, format=key[0], dst_color_range=key[2] or None,
                                                  interpolation=_to_yuv_flags())
                back = VideoReformatter().reformat(yuv, format=rgb, interpolation=int(flags)).to_ndarray()
                worst = max(worst, float(np.abs(back[4, 4].astype(np.float64) - flat[4, 4]).max()) / (257 if deep else 1))
            errors.append(worst)
        _RGB_FLAGS[key] = int(candidates[int(np.argmin(errors))])
    return _RGB_FLAGS[key]



# --------------------------------------------------------------------------------------------- decoding
@dataclass
class Decoded:
    """One decoded frame and its presentation time (in the stream's time base)."""

    index: int
    pts: int
    frame: Any  # av.VideoFrame
    reformatter: Any  # av.video.reformatter.VideoReformatter, shared by a video's frames (one scaler set up)

    def rgb(self, bits: int) -> np.ndarray:
        """(H, W, 3) RGB, uint8 for 8-bit sources, uint16 for deeper ones, with the frame's own matrix and range."""
        fmt = "rgb48le" if bits > 8 else "rgb24"
        return self.reformatter.reformat(self.frame, format=fmt, interpolation=_to_rgb_flags(self.frame, fmt)).to_ndarray()


@dataclass
class Timestamps:
    """Frame times as the encoder needs them: present and strictly increasing (missing or repeated ones are
    put one frame after the previous)."""

    step: int
    last: int | None = None
    repaired: int = 0

    def next(self, pts: int | None) -> int:
        if pts is None or (self.last is not None and pts <= self.last):
            pts = 0 if self.last is None else self.last + self.step
            self.repaired += 1
        self.last = pts
        return pts


def read_frames(path: Path, info: VideoInfo, stamps: Timestamps | None = None) -> Iterator[Decoded]:
    """Every frame of the video stream, in presentation order; SSTError when decoding fails part way."""
    av = _av()
    stamps = stamps or Timestamps(frame_step(info))
    index = 0
    try:
        with av.open(str(path)) as c:
            v = c.streams[info.index]
            v.thread_type = "AUTO"
            reformatter = av.video.reformatter.VideoReformatter()
            for frame in c.decode(v):
                yield Decoded(index, stamps.next(frame.pts), frame, reformatter)
                index += 1
    except SSTError:
        raise
    except (GeneratorExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - a broken stream ends in one sentence
        raise SSTError(f"{path.name} cannot be decoded after frame {index} ({reason(exc)}).") from None


def frame_step(info: VideoInfo) -> int:
    """One frame's duration in the stream's time base (at least 1)."""
    if not info.rate:
        return 1
    return max(1, round(1 / (info.rate * info.time_base)))


# --------------------------------------------------------------------------------------------- segments
def write_segment(path: Path, frames: Iterable[tuple[int, np.ndarray]], info: VideoInfo, enc: Encoding,
                  width: int, height: int) -> int:
    """Encode (pts, RGB frame) pairs into ``path`` with a fresh encoder (a closed GOP); returns how many."""
    av = _av()
    count = 0
    if enc.codec == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its settings to stderr unless told otherwise
    with av.open(str(path), "w", format=enc.segments) as out:
        s = out.add_stream(enc.codec, rate=info.rate, options=dict(enc.options))
        s.width, s.height, s.pix_fmt = width, height, enc.pix_fmt
        s.time_base = info.time_base
        cc = s.codec_context
        cc.time_base = info.time_base
        if enc.crf is not None:
            cc.bit_rate = 0  # constant quality, not a bit rate
        if enc.qscale is not None:
            cc.qscale, cc.global_quality = True, enc.qscale * FF_QP2LAMBDA
        cc.color_primaries, cc.color_trc = enc.colour.primaries, enc.colour.trc
        cc.colorspace, cc.color_range = enc.colour.space, enc.colour.range
        if info.sample_aspect_ratio:
            cc.sample_aspect_ratio = info.sample_aspect_ratio
        if info.rotation:
            s.set_display_rotation(info.rotation)
        reformatter, flags = av.video.reformatter.VideoReformatter(), _to_yuv_flags()
        dts = DecodeTimes(frame_step(info))
        for pts, rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if rgb.dtype == np.uint16 else "rgb24")
            frame.colorspace = enc.colour.space  # RGB -> YUV with the matrix the output declares
            frame = reformatter.reformat(frame, format=enc.pix_fmt, dst_color_range=enc.colour.range or None,
                                         interpolation=flags)
            frame.pts, frame.time_base = pts, info.time_base
            out.mux(dts.repair(s.encode(frame), pts))
            count += 1
        out.mux(dts.repair(s.encode(), None))
    return count


@dataclass
class DecodeTimes:
    """Encoders' decode times (dts) checked before muxing. libx265 (4.1) returns uninitialised dts for
    segments of one or two frames about one time in ten; the muxer then fails. A dts after its packet's pts,
    or earlier than any reordering allows (``MAX_REORDER`` frames before the first frame), is such garbage
    and is replaced by the pts (kept after the previous dts)."""

    step: int  # one frame, in the time base
    first: int | None = None  # the segment's first frame's pts
    last: int | None = None  # the previous packet's dts

    def repair(self, packets: list[Any], pts: int | None) -> list[Any]:
        if self.first is None and pts is not None:
            self.first = pts
        for p in packets:
            p.dts = self.valid(p.pts, p.dts)
        return packets

    def valid(self, pts: int | None, dts: int | None) -> int | None:
        lowest = None if self.first is None else self.first - MAX_REORDER * self.step
        if pts is not None and (dts is None or dts > pts or (lowest is not None and dts < lowest)):
            dts = pts if self.last is None or pts > self.last else self.last + 1
        self.last = dts if dts is not None else self.last
        return dts


# ------------------------------------------------------------------------------------------------- join
@dataclass(order=True)
class _Timed:
    seconds: Fraction
    order: int
    packet: Any = field(compare=False)
    target: Any = field(compare=False)


def _timed(packets: Iterable[Any], target: Any, order: Iterator[int]) -> Iterator[_Timed]:
    """Packets with their decode time in seconds (presentation time where a packet has no dts)."""
    last = Fraction(0)
    for p in packets:
        if p.size == 0:  # the demuxer's end-of-stream marker
            continue
        ts = p.dts if p.dts is not None else p.pts
        if ts is not None and p.time_base is not None:
            last = ts * p.time_base
        yield _Timed(last, next(order), p, target)


def _segment_packets(segments: Sequence[Path], frames: Sequence[int], name: str) -> Iterator[Any]:
    """The segments' video packets in order, each segment checked to hold its frames, decode times increasing."""
    av = _av()
    last: Fraction | None = None
    for k, (path, want) in enumerate(zip(segments, frames, strict=True)):
        got = 0
        with av.open(str(path)) as c:
            for p in c.demux(c.streams.video[0]):
                if p.size == 0:
                    continue
                t = p.dts * p.time_base if p.dts is not None else None
                if t is not None and last is not None and t <= last:
                    raise SSTError(f"the segments of {name} cannot be joined (decode times go back at segment {k}); "
                                   "try another --segment-frames.")
                last = t if t is not None else last
                got += 1
                yield p
        if got != want:
            raise SSTError(f"segment {k} of {name} holds {got} frames instead of {want}; rerun to redo it.")


def _copy_tags(src: Any, dst: Any) -> None:
    """Language and title (other tags, such as the encoder or duration, describe the old stream)."""
    for tag in COPIED_TAGS:
        if src.metadata.get(tag):
            dst.metadata[tag] = src.metadata[tag]


def join(dst: Path, enc: Encoding, segments: Sequence[Path], frames: Sequence[int], source: Path,
         info: VideoInfo, copy: Sequence[Stream]) -> list[Stream]:
    """Remux the segments (video) and the source's ``copy`` streams into ``dst`` (in ``enc.container``);
    returns the streams left out because the container cannot hold them."""
    av = _av()
    left_out: list[Stream] = []
    order = itertools.count()
    with av.open(str(dst), "w", format=enc.container) as out, av.open(str(source)) as src:
        with av.open(str(segments[0])) as first:
            # opaque: the parameters as they are, with no encoder or decoder opened (this FFmpeg may have neither)
            video = out.add_stream_from_template(first.streams.video[0], opaque=True)
        holds = set(out.supported_codecs)
        kept = []
        for s in copy:
            st = src.streams[s.index]
            if st.codec.canonical_name not in holds:
                left_out.append(s)
                continue
            target = out.add_stream_from_template(st, opaque=True)
            _copy_tags(st, target)
            kept.append((st, target))
        _copy_tags(src.streams[info.index], video)
        streams = [v for v, _ in kept]
        targets = {v.index: t for v, t in kept}

        def copied() -> Iterator[_Timed]:
            if not streams:
                return
            for t in _timed(src.demux(streams), None, order):
                t.target = targets[t.packet.stream.index]
                yield t

        for t in heapq.merge(_timed(_segment_packets(segments, frames, info.name), video, order), copied()):
            t.packet.stream = t.target
            out.mux(t.packet)
    return left_out
