"""Where the images of a forward pass lie in the whole image: told by the tiler, read by a network whose
output depends on the position (SSTReal's seeded noise is drawn by output pixel, so a tiled run sees the
noise of the untiled one), and by a caller upscaling a region cut from a larger image (:func:`region_at`).

A context variable rather than an argument: the tiles reach the network through wrappers (alpha, grey,
TTA, the ``Upscaler``) that need not know. Nothing set means every image is a whole image, untransformed.
Plain Python (no torch).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """The tiles of one batch: each one's top-left corner in the whole image (input pixels), and the
    dihedral transform (TTA) applied to all of them: first a transpose, then flips (bit 1: width, 2: height).
    ``offset``: where the image being upscaled lies in a larger one, when it is a region cut from it."""

    origins: tuple[tuple[int, int], ...] = ()  # () : every image starts at (0, 0)
    transpose: bool = False
    flips: int = 0
    offset: tuple[int, int] = (0, 0)

    def origin(self, index: int) -> tuple[int, int]:
        y, x = self.origins[index] if self.origins else (0, 0)
        return y + self.offset[0], x + self.offset[1]


WHOLE = Placement()  # whole images, untransformed: what nothing set means
_CURRENT: ContextVar[Placement | None] = ContextVar("sst_placement", default=None)


def current() -> Placement:
    return _CURRENT.get() or WHOLE


@contextlib.contextmanager
def _set(placement: Placement | None) -> Iterator[None]:
    token = _CURRENT.set(placement)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def tiles_at(origins: Sequence[tuple[int, int]]) -> contextlib.AbstractContextManager[None]:
    """Within the block, the batch's images are tiles starting at ``origins`` (row, column)."""
    return _set(dataclasses.replace(current(), origins=tuple((int(y), int(x)) for y, x in origins)))


def region_at(y: int, x: int) -> contextlib.AbstractContextManager[None]:
    """Within the block, the image upscaled is a region cut from a larger one at (row ``y``, column ``x``): its
    pixels (and its tiles') stand for that image's, so a region with a margin gives the larger image's result
    there (benchmarks/side_by_side.py). Nested regions add up."""
    where = current()
    return _set(dataclasses.replace(where, offset=(where.offset[0] + int(y), where.offset[1] + int(x))))


def transformed(transpose: bool, flips: int) -> contextlib.AbstractContextManager[None]:
    """Within the block, the tiles are seen transposed and/or flipped (one pass of TTA)."""
    return _set(dataclasses.replace(current(), transpose=transpose, flips=flips))
