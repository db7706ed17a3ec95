"""Training data: random HR crops with flips/rotations, LR made on the fly (MATLAB bicubic, or the mix of degrade.py).

Every sample is a pure function of (seed, sample counter): the counter picks the image (through a
per-epoch permutation) and seeds the crop and augmentation. Data order therefore depends only on the
iteration, whatever the number of workers or processes, which makes resume and DDP exact.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import SSTError
from ..io.images import read_image, to_float
from ..model.bicubic import imresize
from .degrade import DegradationMix, degrade

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class ScanReport:
    used: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> file names

    @property
    def n_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def add(self, reason: str, path: Path) -> None:
        self.skipped.setdefault(reason, []).append(path.name)


def load_rgb_float(path: Path) -> np.ndarray:
    """Any image -> float32 (H, W, 3) in [0, 1], upright; grey is repeated, alpha dropped, 16-bit kept."""
    pixels = read_image(path).pixels
    colour = np.repeat(pixels[..., :1], 3, axis=2) if pixels.shape[2] < 3 else pixels[..., :3]
    return to_float(colour)


def scan_images(folders: list[str], min_side: int) -> tuple[list[Path], ScanReport]:
    """Image files under ``folders`` that decode and are at least ``min_side`` on both sides."""
    report = ScanReport()
    files: list[Path] = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise SSTError(f"training folder {root} does not exist.")
        for p in sorted(root.rglob("*")):
            if not p.is_file():
                continue
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                report.add("not an image", p)
                continue
            try:
                w, h = read_image(p).size  # full decode: truncated files fail here, not mid-training
            except SSTError:
                report.add("corrupt", p)
                continue
            if min(w, h) < min_side:
                report.add(f"smaller than {min_side} px", p)
                continue
            files.append(p)
    report.used = len(files)
    if not files:
        raise SSTError(f"no usable training images in {', '.join(folders)} ({report.n_skipped} skipped).")
    return files, report


def augment(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal/vertical flip and 90-degree rotation of (H, W, C)."""
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
    if rng.random() < 0.5:
        arr = arr[::-1]
    if rng.random() < 0.5:
        arr = arr.transpose(1, 0, 2)
    return np.ascontiguousarray(arr)


class SRTrainSet(Dataset):
    """Index = global sample counter; returns (lr (3, p, p), hr (3, p*s, p*s)) float32 in [0, 1]."""

    def __init__(self, hr_files: list[Path], scale: int, patch: int, seed: int = 0,
                 lr_files: list[Path] | None = None, cache: bool = False,
                 degradation: DegradationMix | None = None) -> None:
        self.hr_files, self.lr_files, self.degradation = hr_files, lr_files, degradation
        self.scale, self.patch, self.seed = scale, patch, seed
        self._cache: dict[int, np.ndarray] | None = {} if cache else None
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:  # one epoch; the sampler runs past it
        return len(self.hr_files)

    def _image(self, i: int, lr: bool = False) -> np.ndarray:
        if self._cache is not None and not lr and i in self._cache:
            return self._cache[i]
        arr = load_rgb_float((self.lr_files if lr else self.hr_files)[i])  # type: ignore[index]
        if self._cache is not None and not lr:
            self._cache[i] = arr
        return arr

    def image_index(self, counter: int) -> int:
        n = len(self.hr_files)
        epoch, pos = divmod(counter, n)
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng((self.seed, epoch)).permutation(n)}
        return int(self._perms[epoch][pos])

    def __getitem__(self, counter: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.image_index(counter)
        rng = np.random.default_rng((self.seed, 1_000_003, counter))
        s, p = self.scale, self.patch
        hr = self._image(i)
        if self.lr_files is not None:
            lr_full = self._image(i, lr=True)
            y, x = rng.integers(0, lr_full.shape[0] - p + 1), rng.integers(0, lr_full.shape[1] - p + 1)
            pair = np.concatenate([
                np.repeat(np.repeat(lr_full[y:y + p, x:x + p], s, 0), s, 1),
                hr[y * s:(y + p) * s, x * s:(x + p) * s],
            ], axis=2)
            pair = augment(pair, rng)
            hr_t = torch.from_numpy(pair[:, :, 3:]).permute(2, 0, 1)
            lr_t = torch.from_numpy(pair[::s, ::s, :3]).permute(2, 0, 1).contiguous()
            return lr_t, hr_t.contiguous()
        y, x = rng.integers(0, hr.shape[0] - p * s + 1), rng.integers(0, hr.shape[1] - p * s + 1)
        crop = augment(hr[y:y + p * s, x:x + p * s], rng)
        hr_t = torch.from_numpy(crop).permute(2, 0, 1).contiguous()
        if self.degradation is not None:
            lr = degrade(crop, s, self.degradation, rng)
            return torch.from_numpy(lr).permute(2, 0, 1).contiguous(), hr_t
        lr_t = imresize(hr_t, 1 / s)
        lr_t = (lr_t.clamp(0, 1) * 255).round() / 255  # test-time LR images are 8-bit
        return lr_t, hr_t


class CounterSampler(Sampler[int]):
    """Yields this rank's sample counters from ``start`` on: rank r of W takes counters k with k % W == r."""

    def __init__(self, start: int, rank: int = 0, world: int = 1, total: int | None = None) -> None:
        self.start, self.rank, self.world, self.total = start, rank, world, total

    def __iter__(self) -> Iterator[int]:
        k = self.start + self.rank
        while self.total is None or k < self.total:
            yield k
            k += self.world

    def __len__(self) -> int:
        return 0 if self.total is None else max(0, (self.total - self.start - self.rank + self.world - 1) // self.world)
