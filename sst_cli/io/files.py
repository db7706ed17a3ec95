"""Files: atomic writes, temporaries left by killed runs, and finding image and video files.

Every file sst writes (images, weights, checkpoints, reports) goes through :func:`atomic_write`: a hidden
temporary beside the target, fsynced, then renamed into place, so a crash or Ctrl-C never leaves a
half-written file under the real name. Temporaries carry the writer's pid so a later run can tell a
dead run's leftovers from a live run's work in progress.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import SSTError

TEMP_MARK = ".sst-partial-"  # hidden temp files are ".<name>.sst-partial-<pid>-<token>"

# Extensions looked for when a folder is given (files named explicitly may have any extension).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jpe", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm",
                    ".pnm", ".tga")
# Videos found in folders go to sst_cli.upscale.video (decoded with PyAV, the optional extra [video]).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg", ".mpeg", ".ts", ".m2ts",
                    ".mts", ".3gp", ".ogv")


def reason(exc: BaseException) -> str:
    """The first line of an exception's text, for one-sentence messages."""
    text = str(exc).strip().rstrip(".") or type(exc).__name__
    return text.splitlines()[0][:200]


# ------------------------------------------------------------------------------------ atomic writes
def file_sha256(path: str | os.PathLike[str]) -> str:
    """The file's SHA-256 as hex, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def temp_path(path: Path) -> Path:
    """A hidden name beside ``path`` that says which process made it."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def is_temp(path: Path) -> bool:
    return path.name.startswith(".") and TEMP_MARK in path.name


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` to fill a hidden temporary beside ``path``, fsync it, rename it into place.

    The temporary is removed on any exception, KeyboardInterrupt included. Permissions are the usual
    ones for a new file (the umask's), not a temporary file's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def atomic_stream(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """:func:`atomic_write` for writers that take an open binary file."""

    def fill(tmp: Path) -> None:
        with open(tmp, "xb") as fh:
            write(fh)

    return atomic_write(path, fill)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists. On Windows ``os.kill(pid, 0)`` would terminate it, so ask the OS."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        ctypes.windll.kernel32.CloseHandle(handle)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_temps(folder: Path, max_age_s: float = 24 * 3600) -> list[Path]:
    """Remove temporaries left by killed runs: their process is gone (or they are a day old).

    Temporaries of a live ``sst`` run writing to the same folder are left alone.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for p in folder.iterdir():
        if not is_temp(p) or not p.is_file():
            continue
        try:
            pid = int(p.name.rsplit(TEMP_MARK, 1)[1].split("-")[0])
        except (IndexError, ValueError):
            pid = -1
        try:
            old = now - p.stat().st_mtime > max_age_s
            if pid <= 0 or not _pid_alive(pid) or old:
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed


# --------------------------------------------------------------------------------------- discovery
def list_images(folder: str | os.PathLike[str], recursive: bool = False,
                extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files (by extension) in ``folder``, sorted; hidden files, hidden folders and our
    temporaries are skipped; subfolders only with ``recursive``. ``extensions``: what counts as an image."""
    root = Path(folder)
    pattern = "**/*" if recursive else "*"
    return [f for f in sorted(root.glob(pattern))
            if f.is_file() and f.suffix.lower() in extensions
            and not any(part.startswith(".") for part in f.relative_to(root).parts)]


def list_inputs(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """:func:`list_images` with videos too: what ``sst upscale`` takes from a folder."""
    return list_images(folder, recursive, IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether a file is taken as a video (by its extension)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def ensure_folder(folder: Path) -> None:
    """Create ``folder`` (and parents) or say in one sentence why it cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SSTError(f"cannot create output folder {folder} (a file is in the way).") from None
    except PermissionError:
        raise SSTError(f"cannot create output folder {folder} (permission denied).") from None
    except OSError as exc:
        raise SSTError(f"cannot create output folder {folder} ({reason(exc)}).") from None
    if not os.access(folder, os.W_OK):
        raise SSTError(f"output folder {folder} is not writable.")


def write_or_explain(dst: Path, write: Callable[[BinaryIO], None]) -> None:
    """:func:`atomic_stream`, with permission, disk-full and other OS errors as one-sentence SSTErrors."""
    try:
        atomic_stream(dst, write)
    except PermissionError:
        raise SSTError(f"cannot write {dst} (permission denied).") from None
    except OSError as exc:
        if exc.errno == 28:
            raise SSTError(f"cannot write {dst.name}: no space left on the device.") from None
        raise SSTError(f"cannot write {dst.name} ({reason(exc)}).") from None
