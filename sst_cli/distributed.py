"""Many processes under ``torchrun``: who am I, which device, how many threads, and gathering results.

``torchrun`` (``python -m torch.distributed.run``) starts one process per rank and sets RANK,
WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE. Work is split by rank from a list every rank builds the
same way (round-robin over its sorted order), so each item is done exactly once, and the results come
back to every rank in that order through ``all_gather_object`` over gloo: picklable Python objects on
the CPU, whatever device the work ran on. Nothing here imports torch until a group is really needed, so
a single process pays nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

T = TypeVar("T")

# Ranks wait for the slowest one at each gather; torchrun stops every rank when one fails, so this only
# bounds how long a rank may work on its share while the others wait.
GATHER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class Dist:
    """This process's place among ``world`` processes (``local_world`` of them on this machine)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share: every ``world``-th item from ``rank`` (items in the same order on all ranks)."""
        return list(items[self.rank :: self.world])

    def device(self, requested: str = "auto") -> str:
        """The device this rank runs on: ``auto``/``cuda`` -> ``cuda:LOCAL_RANK`` when GPUs exist (CPU
        otherwise); ``cpu`` and ``mps`` as asked. Under torchrun an explicit ``cuda:N`` must be this rank's
        own GPU: every rank on one GPU would crowd it while NCCL and DDP expect one GPU per rank."""
        if not self.active or requested not in ("auto", "cuda") and not requested.startswith("cuda:"):
            return requested
        import torch

        if requested.startswith("cuda:"):
            own = self.local_rank % max(1, torch.cuda.device_count()) if torch.cuda.is_available() else self.local_rank
            if requested != f"cuda:{own}":
                from .errors import SSTError

                raise SSTError(f"--device {requested} under torchrun would put rank {self.rank} on another rank's GPU; "
                               f"use --device cuda (each rank takes cuda:LOCAL_RANK, here cuda:{own}) and choose "
                               "the GPUs with CUDA_VISIBLE_DEVICES.")
            return requested
        if torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return "cpu" if requested == "auto" else requested

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order, on every rank (just ``[obj]`` for one process)."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


def from_env(env: dict[str, str] | None = None) -> Dist:
    """The ranks torchrun describes in the environment (one process when it did not start us)."""
    e = os.environ if env is None else env
    world = int(e.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    local_world = int(e.get("LOCAL_WORLD_SIZE", "0")) or world
    return Dist(int(e.get("RANK", "0")), world, int(e.get("LOCAL_RANK", "0")), local_world)


def collective_backend(device_type: str) -> str:
    """The process-group backend for tensors on ``device_type``: NCCL for CUDA tensors, gloo for the CPU
    (NCCL cannot all-reduce a CPU tensor, so a CPU run on a GPU machine must not pick it)."""
    return "nccl" if device_type == "cuda" else "gloo"


def setup(env: dict[str, str] | None = None) -> Dist:
    """:func:`from_env`, and the gloo process group joined when there are several ranks."""
    d = from_env(env)
    if d.active:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=GATHER_TIMEOUT)
    return d


def teardown(d: Dist) -> None:
    if d.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def cpu_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads(d: Dist) -> int | None:
    """Intra-op threads per process: the cores shared out among this machine's ranks, so processes do not
    oversubscribe the CPU. One process: None (PyTorch's own choice, which honours OMP_NUM_THREADS)."""
    if d.local_world <= 1:
        return None
    return max(1, cpu_cores() // d.local_world)


def set_threads(threads: int | None, d: Dist) -> None:
    """Apply ``--threads`` (or :func:`default_threads`) to PyTorch."""
    n = threads if threads is not None else default_threads(d)
    if n is not None:
        import torch

        torch.set_num_threads(n)
