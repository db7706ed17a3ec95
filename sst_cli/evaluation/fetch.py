"""Benchmark sets by name: downloaded once from the Hugging Face Hub, verified against the catalog, cached.

``fetch_dataset("Set5")``:

1. a verified copy from before, ``<sst cache>/datasets/Set5/HR``, is used without any network
   (:func:`cached`: its record matches the catalog entry and every image file its recorded sha256);
2. otherwise the archive is fetched at the catalog's pinned commit through :func:`sst_cli.model.hub.fetch_hub`,
   exactly as weights are: the Hugging Face cache, a progress bar, HF_HUB_OFFLINE, HF_ENDPOINT, tokens, the
   immediate offline answer when the Hub's name does not resolve, and the archive's sha256 when recorded;
3. its images are unpacked into a hidden temporary folder, each decoded as ``sst eval`` reads it and its
   pixel sha256 compared to the catalog. Any difference (a changed, re-encoded, missing or extra image) is
   refused naming the image; the archive is then deleted from the Hugging Face cache and nothing is kept;
4. the record (``sst-dataset.json``: where the copy came from, each image's file and pixel sha256) is
   written and the folder renamed into place, so an interrupted run leaves no half set under the real name.

A set the catalog cannot verify (commit, or both checks, not recorded) or may not download (Manga109) is
refused in words, before any request (:func:`unavailable`). Imports no torch until images are decoded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import SSTError
from ..io.files import IMAGE_EXTENSIONS, file_sha256, list_images, reason, temp_path
from ..model import hub
from .catalog import CATALOG, Benchmark, HubArchive

RECORD = "sst-dataset.json"


def datasets_cache_dir() -> Path:
    """Where verified downloads are unpacked: ``<sst cache>/datasets/<Name>/HR``."""
    return hub.user_cache_dir() / "datasets"


def pixel_sha256(rgb: np.ndarray) -> str:
    """The catalog's pixel hash: sha256 of ``b"<H>x<W>x<C>\\n"`` and the uint8 (H, W, C) array's bytes."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3:
        raise ValueError(f"expected a uint8 (H, W, C) array, got {rgb.dtype} {rgb.shape}")
    height, width, channels = rgb.shape
    h = hashlib.sha256(f"{height}x{width}x{channels}\n".encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()


def image_pixel_sha256(path: Path) -> str:
    """The pixel hash of an image file as ``sst eval`` reads it (uint8 RGB, grey as three equal channels)."""
    from .datasets import read_rgb_u8  # imports torch: only when images are checked

    return pixel_sha256(read_rgb_u8(path)[0])


def _hub_file(archive: HubArchive) -> hub.HubFile:
    return hub.HubFile(archive.repo_id, archive.filename, archive.revision, "dataset")


# --------------------------------------------------------------------------------------- the cache
def _read_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def cached(name: str) -> Path | None:
    """The verified copy of benchmark ``name`` unpacked before (no network), or None when there is none or
    it no longer matches its record or the catalog (it is then downloaded or unpacked again)."""
    bench = CATALOG.get(name)
    folder = datasets_cache_dir() / name
    record = _read_record(folder)
    if bench is None or bench.archive is None or record is None:
        return None
    archive = bench.archive
    if (record.get("repo_id"), record.get("filename"), record.get("revision")) != (
            archive.repo_id, archive.filename, archive.revision):
        return None  # recorded from another source or commit: the catalog has moved on
    images = record.get("images")
    if not isinstance(images, dict) or not images:
        return None
    if archive.pixels is not None and {PurePosixPath(f).stem: v.get("pixels") for f, v in images.items()
                                       if isinstance(v, dict)} != archive.pixels:
        return None
    hr = folder / "HR"
    try:
        if sorted(p.name for p in list_images(hr)) != sorted(images):
            return None  # an image added or removed since
        if any(file_sha256(hr / f) != v.get("sha256") for f, v in images.items()):
            return None  # an image changed since it was verified
    except (OSError, AttributeError):
        return None
    return folder


# ---------------------------------------------------------------------------------- can we download
def not_recorded(archive: HubArchive) -> bool:
    """Whether the catalog lacks what a download must be checked against: the commit, or both checks."""
    return archive.revision is None or (archive.sha256 is None and archive.pixels is None)


def _archive_in_hub_cache(archive: HubArchive) -> bool:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(archive.repo_id, archive.filename, revision=archive.revision, repo_type="dataset")
    return isinstance(hit, str)


def unavailable(name: str) -> str | None:
    """None when benchmark ``name`` is cached or can be downloaded now; else why not and how to get it by hand,
    as a clause ("sst does not download it: request it ..."), found without any request."""
    bench = CATALOG.get(name)
    if bench is None:
        return "sst has no source for it"
    if bench.archive is None:
        return f"sst does not download it: {bench.obtain}"
    if not_recorded(bench.archive):
        return f"sst does not download it yet (its verification data is not recorded in this version): {bench.obtain}"
    if cached(name) is not None or _archive_in_hub_cache(bench.archive):
        return None
    why = hub.hub_unavailable()
    return None if why is None else f"it cannot be downloaded now, as {why}"


def where_to_put(name: str) -> str:
    """Where a copy made by hand goes, in words."""
    return (f"put the images in <data root>/{name}/HR (the data root is --data-root, else $SST_DATA_ROOT, "
            "else ./datasets)")


def refusal(names_why: list[tuple[str, str]]) -> str:
    """One sentence for sets that cannot be had: each with :func:`unavailable`'s reason, and where to put them."""
    if len(names_why) == 1:
        name, why = names_why[0]
        return f"dataset {name} is not here and {why}; {where_to_put(name)}."
    listed = ", ".join(f"{name} ({why})" for name, why in names_why)
    return f"{len(names_why)} datasets are not here and cannot be downloaded: {listed}; {where_to_put('<Name>')}."


# ----------------------------------------------------------------------------------------- download
def fetch_dataset(name: str) -> Path:
    """The folder of benchmark ``name`` (``<folder>/HR/*``): the verified copy from before, else downloaded
    from the Hub at the catalog's commit, verified and unpacked. SSTError, naming the set, when it cannot be."""
    hit = cached(name)
    if hit is not None:
        return hit
    why = unavailable(name)
    if why is not None:
        raise SSTError(refusal([(name, why)]))
    bench = CATALOG[name]
    archive = bench.archive
    assert archive is not None  # unavailable() said so
    try:
        path = hub.fetch_hub(_hub_file(archive), archive.sha256)
    except hub.HubError as exc:
        raise SSTError(f"dataset {name} is not here and could not be downloaded ({exc.why}); {bench.obtain} and "
                       f"{where_to_put(name)}.") from None
    except SSTError as exc:  # the archive fails its sha256, even downloaded again
        _forget(archive)
        raise SSTError(f"dataset {name} was refused: {str(exc).rstrip('.')}; the download was removed and nothing "
                       "was kept.") from None
    return _install(bench, path)


def _forget(archive: HubArchive) -> None:
    """Delete the archive from the Hugging Face cache (its snapshot entry and the file it points to)."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(archive.repo_id, archive.filename, revision=archive.revision, repo_type="dataset")
    if isinstance(hit, str):
        for p in {Path(os.path.realpath(hit)), Path(hit)}:
            with contextlib.suppress(OSError):
                p.unlink()


def unpack_images(archive: Path, hr: Path) -> list[Path]:
    """The image files of a tar archive, written flat into ``hr`` by their base names (folders inside the
    archive, links, hidden files and other files are not written). SSTError for an unreadable archive."""
    hr.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = PurePosixPath(member.name).name
                if (not member.isfile() or name.startswith(".")
                        or PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS):
                    continue
                target = hr / name
                if target.exists():
                    raise SSTError(f"{archive.name} holds two images named {name}.")
                src = tar.extractfile(member)
                assert src is not None  # a regular file
                with src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                written.append(target)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SSTError(f"{archive.name} is not a readable tar archive ({reason(exc)}).") from None
    if not written:
        raise SSTError(f"{archive.name} holds no images.")
    return sorted(written)


def _check_pixels(bench: Benchmark, files: list[Path]) -> dict[str, dict[str, str]]:
    """Each image's file and pixel sha256, after comparing the pixels with the catalog (when recorded)."""
    archive = bench.archive
    assert archive is not None
    images, undecodable = {}, []
    for p in files:
        try:
            images[p.name] = {"sha256": file_sha256(p), "pixels": image_pixel_sha256(p)}
        except SSTError:
            undecodable.append(p.name)
    want = archive.pixels
    problems = [f"{', '.join(undecodable)} cannot be decoded"] if undecodable else []
    if want is not None:
        got = {PurePosixPath(f).stem: v["pixels"] for f, v in images.items()}
        changed = [f for f, v in images.items() if PurePosixPath(f).stem in want
                   and want[PurePosixPath(f).stem] != v["pixels"]]
        if changed:
            verb = "differs" if len(changed) == 1 else "differ"
            problems.append(f"{', '.join(changed)} {verb} from the recorded pixels (a changed or re-encoded copy)")
        if missing := sorted(set(want) - set(got) - {PurePosixPath(f).stem for f in undecodable}):
            problems.append(f"{', '.join(missing)} missing")
        if extra := sorted(f for f in images if PurePosixPath(f).stem not in want):
            problems.append(f"{', '.join(extra)} not in the recorded set")
    if problems:
        raise SSTError(f"dataset {bench.name} was refused: in {archive.filename} at {archive.revision}, "
                       f"{'; '.join(problems)}; the download was removed and nothing was kept.")
    return images


def _install(bench: Benchmark, path: Path) -> Path:
    """Unpack and verify the downloaded archive into a hidden folder, then rename it to datasets/<Name>."""
    archive = bench.archive
    assert archive is not None
    final = datasets_cache_dir() / bench.name
    tmp = temp_path(final)
    try:
        files = unpack_images(path, tmp / "HR")
        try:
            images = _check_pixels(bench, files)
        except SSTError:
            _forget(archive)
            raise
        record = {"name": bench.name, "repo_id": archive.repo_id, "filename": archive.filename,
                  "revision": archive.revision, "archive_sha256": file_sha256(path), "images": images}
        (tmp / RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return _move_into_place(bench.name, tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(name: str, tmp: Path, final: Path) -> Path:
    """Rename ``tmp`` to ``final``, replacing a copy that no longer verifies; when another process (a
    torchrun rank) put a verified copy there first, that one is kept."""
    if final.exists():
        if cached(name) is not None:
            return final
        old = temp_path(final)
        os.replace(final, old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(tmp, final)
    except OSError:
        if cached(name) is None:
            raise
    return final
