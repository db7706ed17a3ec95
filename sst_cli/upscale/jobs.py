"""Planning a batch: the settings, the inputs found, and the output each one is written to.

Inputs are files, folders (``--recursive`` for subfolders) or globs; outputs keep the inputs' relative
paths under the output folder, or, for one input and an output with an image extension, are that file.
Outputs that would overwrite an input or each other are refused before any image is touched.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..io import files, images
from ..io.video import CONTAINERS, output_extension
from .limits import DEFAULT_MAX_PIXELS

EXT_FORMAT = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".jpe": "jpg", ".webp": "webp", ".bmp": "bmp",
              ".tif": "tiff", ".tiff": "tiff"}


@dataclass
class VideoSettings:
    """How videos are encoded (see :mod:`sst_cli.upscale.video`); None: chosen from what PyAV provides."""

    codec: str | None = None
    crf: int | None = None
    pix_fmt: str | None = None
    audio: str = "copy"  # copy | drop (subtitles are always copied)
    segment_frames: int = 300  # frames per resumable segment
    frames_dir: Path | None = None  # also write every upscaled frame there as PNG


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
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # refuse larger images before decoding; None: no limit
    video: VideoSettings = field(default_factory=VideoSettings)


@dataclass
class Job:
    src: Path
    dst: Path
    rel: Path  # source path relative to the input it was found under (shown to users)
    redo: str = ""  # why an existing output is made again (set by :func:`triage`)


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def discover(inputs: Iterable[str], recursive: bool = False,
             exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """(file, relative path) for every input: files as given, image files in folders, glob matches.

    A folder contributes files with an image extension (hidden files skipped); subfolders only with
    ``recursive``. Folders and globs skip what lies under ``exclude`` (the output folder, when it is inside
    an input folder: a second run must not take the first run's outputs as inputs). Inputs that match
    nothing are a usage error.
    """
    found: list[tuple[Path, Path]] = []
    for text in inputs:
        if _is_glob(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise UsageError(f"no file matches {text}.")
            root = _glob_root(text)
            outside = _outside(exclude, root)
            for m in matches:
                p = Path(m)
                if p.is_file() and not files.is_temp(p) and outside(p):
                    found.append((p, _relative(p, root)))
            continue
        p = Path(text)
        if p.is_dir():
            outside = _outside(exclude, p)
            found += [(f, f.relative_to(p)) for f in files.list_inputs(p, recursive) if outside(f)]
        elif p.exists() or p.is_symlink():
            found.append((p, Path(p.name)))
        else:
            raise UsageError(f"input {text} does not exist.")
    return found


def _outside(folder: Path | None, searched: Path) -> Callable[[Path], bool]:
    """A test for "not under ``folder``", for files found in ``searched``; always true unless ``folder`` lies
    strictly inside ``searched`` (an output folder that is the input folder or above it hides nothing;
    outputs written over their inputs are refused later, by name)."""
    root, top = (folder.resolve(), searched.resolve()) if folder is not None else (None, None)
    if root is None or root == top or not root.is_relative_to(top):
        return lambda p: True
    return lambda p: not p.resolve().is_relative_to(root)


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
    if files.is_video(src):  # the source's container where sst writes it, else Matroska
        return out_dir / rel.parent / f"{rel.stem}{settings.suffix}{output_extension(src)}"
    fmt = images.output_format(settings.format, EXT_FORMAT.get(src.suffix.lower(), "png"))
    ext = src.suffix if settings.format == "same" and src.suffix.lower() in EXT_FORMAT else images.OUTPUT_FORMATS[fmt]
    return out_dir / rel.parent / f"{rel.stem}{settings.suffix}{ext}"


def names_a_file(out: str | os.PathLike[str]) -> bool:
    """Whether an output names one image file (an image extension, and not an existing folder)."""
    p = Path(out)
    return p.suffix.lower() in (*EXT_FORMAT, *files.IMAGE_EXTENSIONS, *files.VIDEO_EXTENSIONS) and not p.is_dir()


def _single_output(found: list[tuple[Path, Path]], out: Path, settings: Settings) -> list[Job]:
    """The one job of ``sst upscale photo.png big.png``: the output is that file, in its extension's format."""
    if len(found) != 1:
        raise UsageError(f"{len(found)} input images but the output {out} names one file; give an output folder.")
    if files.is_video(found[0][0]) or files.is_video(out):
        return [_single_video(found[0], out)]
    fmt = EXT_FORMAT.get(out.suffix.lower())
    if fmt is None:
        writable = ", ".join(sorted(set(EXT_FORMAT)))
        raise UsageError(f"sst cannot write {out.suffix} images; name the output with one of {writable}.")
    if settings.format != "same" and images.output_format(settings.format, fmt) != fmt:
        raise UsageError(f"--format {settings.format} contradicts the output name {out.name}; drop one of them.")
    src, rel = found[0]
    if out.resolve() == src.resolve():
        raise UsageError(f"the output {out} is the input; choose another name.")
    return [Job(src, out, rel)]


def _single_video(found: tuple[Path, Path], out: Path) -> Job:
    """``sst upscale clip.mp4 big.mkv``: a video into a container sst writes."""
    src, rel = found
    writable = ", ".join(CONTAINERS)
    if not files.is_video(src):
        raise UsageError(f"{out.name} names a video but {src.name} is an image; name the output as an image.")
    if out.suffix.lower() not in CONTAINERS:
        raise UsageError(f"{src.name} is a video: name the output with one of {writable}, or give a folder.")
    if out.resolve() == src.resolve():
        raise UsageError(f"the output {out} is the input; choose another name.")
    return Job(src, out, rel)


def plan_jobs(inputs: Iterable[str], out: str | os.PathLike[str], settings: Settings) -> list[Job]:
    """Jobs for every input file; refuses outputs that would overwrite an input or collide.

    ``out`` is a folder, or, for a single input image, a file name with an image extension.
    """
    out_root = Path(out)
    images.output_format(settings.format, "png")  # validate early
    if any(sep and sep in settings.suffix for sep in (os.sep, os.altsep, "/")):
        raise UsageError(f"--suffix {settings.suffix} holds a path separator; it is added to file names only.")
    single = names_a_file(out_root)
    if not single and out_root.exists() and not out_root.is_dir():
        raise UsageError(f"output {out_root} is a file, not a folder.")
    found = discover(inputs, settings.recursive, exclude=None if single else out_root)
    if not found:
        raise UsageError("no input images found" + ("" if settings.recursive else " (folders are read without "
                                                    "subfolders; add --recursive)") + ".")
    if single:
        return _single_output(found, out_root, settings)
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


