"""Rank and world helpers for training under torchrun (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``).

A single process (no torchrun) is rank 0 of a world of 1: every helper here is then a no-op, so the trainer calls
them unconditionally. Under torchrun, :func:`init_distributed` joins the process group that torchrun's environment
describes (NCCL on CUDA, gloo on CPU); only rank 0 logs and writes checkpoints (:func:`is_main`).

Launching processes (``v2v train --gpus N`` re-running itself through torchrun) is not this module's job.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DistInfo",
    "dist_info",
    "get_rank",
    "get_local_rank",
    "get_world_size",
    "is_distributed",
    "is_main",
    "barrier",
    "init_distributed",
    "shutdown_distributed",
    "broadcast_object",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global rank, rank on its machine, number of processes."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        return default


def dist_info() -> DistInfo:
    """Rank, local rank and world size from torchrun's environment (0, 0, 1 without it)."""
    world = max(1, _env_int("WORLD_SIZE", 1))
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    return DistInfo(rank=rank, local_rank=local, world_size=world)


def get_rank() -> int:
    return dist_info().rank


def get_local_rank() -> int:
    return dist_info().local_rank


def get_world_size() -> int:
    return dist_info().world_size


def is_distributed() -> bool:
    return dist_info().distributed


def is_main() -> bool:
    """True on the process that logs and writes checkpoints (rank 0, or the only process)."""
    return dist_info().is_main


def _pg_ready() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch builds without distributed
        return False
    return bool(dist.is_available() and dist.is_initialized())


def barrier() -> None:
    """Wait for every rank; a no-op in a single process or before the process group exists."""
    if _pg_ready():
        import torch.distributed as dist

        dist.barrier()


def init_distributed(device_type: str = "cpu") -> DistInfo:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (NCCL for CUDA, gloo otherwise); return the info.

    Safe to call twice and in a single process, where it does nothing.
    """
    info = dist_info()
    if not info.distributed or _pg_ready():
        return info
    import torch
    import torch.distributed as dist

    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend)
    log.info("joined process group: rank %d of %d (%s)", info.rank, info.world_size, backend)
    return info


def shutdown_distributed() -> None:
    if _pg_ready():
        import torch.distributed as dist

        dist.destroy_process_group()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (the object itself in a single process)."""
    if not _pg_ready():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
