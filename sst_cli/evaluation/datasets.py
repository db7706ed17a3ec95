"""Benchmark datasets: names, folder layouts, and each image's HR/LR pair.

Finds a dataset (name, alias or folder) and its layout, and gets each image's LR: the shipped file when
there is one, else our MATLAB-style bicubic of the mod-cropped HR, rounded to uint8. A benchmark named but not
found under the data root comes from :mod:`.fetch` (a verified download, once; its LR is always generated).

Layouts understood, for scale ``s``:

* BasicSR / SwinIR: ``<set>/HR/<stem>.png`` + ``<set>/LR_bicubic/X<s>/<stem>x<s>.png``
  (also DIV2K's ``<prefix>_HR`` + ``<prefix>_LR_bicubic/X<s>``);
* HAT / BasicSR test sets: ``<set>/GTmod<k>/<stem>.png`` (k a multiple of s) + ``<set>/LRbicx<s>/<stem>.png``;
* a plain folder of HR images (LR always generated);
* with ``--lq-only`` (:func:`discover_lq`): a folder of low-quality inputs without ground truth (RealSet65,
  RealSR's LR side), upscaled and scored by no-reference metrics only.

JSON: floats are plain numbers except non-finite ones (identical images give PSNR +inf), which are
written as the string ``"inf"`` so the file stays strict JSON. A result's ``lr_source`` is "shipped" or
"generated", or "mixed" when only some images have an LR file (each image says which it used).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SSTError
from ..io import files, images
from ..runtime import default_data_root
from . import fetch
from .catalog import CATALOG

if TYPE_CHECKING:  # torch loads with the first image, so a missing dataset is named at once
    import torch

# Canonical benchmark names and the folder names they go by in the wild (matched case-insensitively).
DATASETS: dict[str, tuple[str, ...]] = {b.name: b.aliases for b in CATALOG.values()}

def _key(name: str) -> str:
    return name.lower().replace("_", "-")


_ALIASES = {_key(alias): canon for canon, aliases in DATASETS.items() for alias in aliases}


def canonical_name(name: str) -> str | None:
    """'bsd100' -> 'B100'; None for names that are not a known benchmark."""
    return _ALIASES.get(_key(name))


# ------------------------------------------------------------------------------------------ discovery
@dataclass(frozen=True)
class Dataset:
    name: str  # canonical benchmark name, or the folder's own name
    path: Path
    known: bool  # a benchmark we know (paper tables may have it)


@dataclass(frozen=True)
class Pair:
    name: str  # image stem
    hr: Path | None  # None: an LQ-only dataset (no ground truth)
    lr: Path | None  # shipped LR (the LQ input of an LQ-only dataset), or None: generated


@dataclass(frozen=True)
class Layout:
    kind: str  # "basicsr", "hat", "folder" or "lq"
    hr_dir: Path | None  # None for "lq"
    lr_dir: Path | None
    pairs: tuple[Pair, ...]


def expected_layout(name: str = "<Name>", scale: int | str = "<s>") -> str:
    return (f"<root>/{name}/HR/*.png with optional <root>/{name}/LR_bicubic/X{scale}/<stem>x{scale}.png, "
            f"HAT's {name}/GTmod{scale}/ + {name}/LRbicx{scale}/, or a folder of HR images")


def _find_child(parent: Path, names: Iterable[str]) -> Path | None:
    """The first sub-folder of ``parent`` whose name matches one of ``names`` (case-insensitive)."""
    if not parent.is_dir():
        return None
    children = {_key(p.name): p for p in sorted(parent.iterdir()) if p.is_dir()}
    for n in names:
        if (hit := children.get(_key(n))) is not None:
            return hit
    return None


class _Missing(Exception):
    """A dataset that is not there; ``looked`` says what was looked for, for the combined message; ``why``,
    for a benchmark sst knows, why it cannot be downloaded either (None: it can)."""

    def __init__(self, spec: str, looked: str, known: bool = False) -> None:
        super().__init__(f"dataset {spec} not found ({looked}).")
        self.spec, self.looked, self.known = spec, looked, known
        self.cached: Path | None = None  # sst's verified copy from before
        self.why: str | None = None


def _missing_message(missing: list[_Missing], root: Path) -> str:
    """One sentence naming every missing dataset, why sst cannot download it, and where to put it."""
    if len(missing) == 1:
        m = missing[0]
        what, it, them = f"dataset {m.spec} not found under {root} ({m.looked})" + (
            f" and {m.why}" if m.why else ""), "it", "it"
    else:
        names = ", ".join(m.spec + (f" ({m.why})" if m.why else "") for m in missing)
        what, it, them = f"{len(missing)} datasets not found under {root}: {names}", "them", "them"
    return (f"{what}; put {it} there or point sst at the folder holding {them} with --data-root DIR or "
            f"$SST_DATA_ROOT, where each dataset is expected as {expected_layout()}.")


def resolve_dataset(spec: str, data_root: str | os.PathLike[str] | None = None) -> Dataset:
    """A --dataset entry (benchmark name, alias, folder under the data root, or a path) -> Dataset."""
    return resolve_datasets([spec], data_root)[0]


def resolve_datasets(specs: Iterable[str], data_root: str | os.PathLike[str] | None = None) -> list[Dataset]:
    """Every --dataset entry resolved (default root: :func:`default_data_root`). A benchmark that is not under
    the root is taken from sst's verified download cache, or downloaded once (:mod:`.fetch`); when some
    cannot be had, one SSTError naming all of them before anything is downloaded."""
    root = Path(data_root) if data_root is not None else default_data_root()
    found: list[Dataset | _Missing] = []
    for spec in specs:
        try:
            found.append(_resolve(spec, root))
        except _Missing as exc:
            found.append(exc)
    missing = [m for m in found if isinstance(m, _Missing)]
    for m in (m for m in missing if m.known):
        m.cached = fetch.cached(m.spec)
        m.why = fetch.unavailable(m.spec) if m.cached is None else None
    blocked = [m for m in missing if not m.known or m.why]
    if blocked:
        raise SSTError(_missing_message(blocked, root))
    return [x if isinstance(x, Dataset) else Dataset(x.spec, x.cached or fetch.fetch_dataset(x.spec), True)
            for x in found]


def _resolve(spec: str, root: Path) -> Dataset:
    canon = canonical_name(spec)
    if canon is not None:
        hit = _find_child(root, DATASETS[canon])
        if hit is not None:
            return Dataset(canon, hit, True)
        if not Path(spec).is_dir():
            raise _Missing(canon, f"looked for a folder named {' or '.join(DATASETS[canon])}", known=True)
    path = Path(spec).expanduser()
    if not path.is_dir() and not path.is_absolute():
        path = root / spec
    if not path.is_dir():
        raise _Missing(spec, f"neither a known benchmark nor a folder, also looked for {root / spec}")
    path = path.resolve()  # "." and "../x" name their folder, not ""
    folder = path.parent if path.name.upper() in ("HR", "GT") else path
    canon = canonical_name(folder.name)
    return Dataset(canon or folder.name, folder, canon is not None)


def _lr_lookup(lr_dir: Path | None, stem: str, scale: int) -> Path | None:
    if lr_dir is None:
        return None
    for cand in (f"{stem}x{scale}", f"{stem}_x{scale}", f"{stem}X{scale}", stem):
        for suffix in files.IMAGE_EXTENSIONS:
            p = lr_dir / f"{cand}{suffix}"
            if p.is_file():
                return p
    return None


def _hat_gt_dir(path: Path, scale: int) -> Path | None:
    """HAT's GTmod<k> with k a multiple of ``scale``: GTmod<s> first, else the smallest such k (BasicSR's GTmod12)."""
    mods = {}
    for p in path.iterdir():
        m = re.fullmatch(r"gtmod(\d+)", p.name.lower())
        if m and p.is_dir():
            mods[int(m.group(1))] = p
    for k in sorted(mods, key=lambda k: (k != scale, k)):
        if k % scale == 0:
            return mods[k]
    return None


def discover(ds: Dataset, scale: int) -> Layout:
    """The HR images of ``ds`` and, per image, its shipped LR file at ``scale`` if any."""
    path = ds.path
    hr_dir = _find_child(path, ("HR",))
    lr_dir: Path | None = None
    kind = "basicsr"
    if hr_dir is not None:
        lr_dir = _find_child(path / "LR_bicubic", (f"X{scale}",))
    elif (div2k := [p for p in sorted(path.iterdir()) if p.is_dir() and p.name.upper().endswith("_HR")]):
        hr_dir = div2k[0]
        lr_dir = _find_child(path / (hr_dir.name[:-3] + "_LR_bicubic"), (f"X{scale}",))
    elif any(re.fullmatch(r"gtmod\d+", p.name.lower()) for p in path.iterdir()):
        kind = "hat"
        hr_dir = _hat_gt_dir(path, scale)
        if hr_dir is None:
            have = ", ".join(sorted(p.name for p in path.iterdir() if p.name.lower().startswith("gtmod")))
            raise SSTError(f"dataset {ds.name} at {path} has {have} but no GTmod folder usable at x{scale}; "
                           f"expected {expected_layout(ds.name, scale)}.")
        lr_dir = _find_child(path, (f"LRbicx{scale}",))
    else:
        kind, hr_dir = "folder", path
    found = files.list_images(hr_dir)
    if not found:
        raise SSTError(f"dataset {ds.name} has no images in {hr_dir}; expected {expected_layout(ds.name, scale)}.")
    pairs = tuple(Pair(p.stem, p, _lr_lookup(lr_dir, p.stem, scale)) for p in found)
    return Layout(kind, hr_dir, lr_dir, pairs)


def discover_lq(ds: Dataset) -> Layout:
    """The images of a folder of low-quality inputs (``--lq-only``): each is upscaled and scored without ground
    truth. A benchmark folder (HR images inside) is refused, since it has ground truth to measure against."""
    found = files.list_images(ds.path)
    if not found:
        hr = _find_child(ds.path, ("HR", "GT"))
        hint = (f"it holds ground truth in {hr}: drop --lq-only to measure against it" if hr is not None
                else "with --lq-only a dataset is a folder of low-quality images")
        raise SSTError(f"dataset {ds.name} has no images in {ds.path}; {hint}.")
    return Layout("lq", None, ds.path, tuple(Pair(p.stem, None, p) for p in found))


# ------------------------------------------------------------------------------------------ images
def read_rgb_u8(path: Path) -> tuple[np.ndarray, bool]:
    """An image as uint8 (H, W, 3) RGB and whether it was grayscale (grey repeated, alpha dropped,
    16-bit rounded to 8 bits). Raises SSTError for unreadable files."""
    img = images.read_image(path)
    px = img.pixels if img.bits == 8 else images.from_float(images.to_float(img.pixels), 8)
    rgb = np.repeat(px[..., :1], 3, axis=2) if img.is_grey else np.array(px[..., :3])  # writable, for torch
    return rgb, img.is_grey


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[0] // scale * scale, img.shape[1] // scale * scale
    return img[:h, :w]


def generate_lr(hr_u8: np.ndarray, scale: int) -> np.ndarray:
    """LR uint8 (h, w, 3) from a mod-cropped HR uint8: MATLAB-style bicubic by 1/scale, rounded.

    Reproduces BasicSR's regeneration bit for bit (the same float32 operations and rounding)."""
    import torch

    from ..model.bicubic import imresize, quantize_uint8

    x = torch.from_numpy(np.ascontiguousarray(hr_u8)).permute(2, 0, 1).float() / 255.0
    return quantize_uint8(imresize(x, 1 / scale).permute(1, 2, 0))


def to_tensor(img_u8: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (1, 3, H, W) in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(img_u8)).permute(2, 0, 1).unsqueeze(0).float() / 255.0


