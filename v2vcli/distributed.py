"""Launching and joining distributed training: torchrun's elastic launcher, rank helpers, collectives.

Launch: :func:`launch_elastic` re-runs a ``v2v`` command line in ``nproc_per_node`` worker processes through
torchrun's own elastic agent (``torch.distributed.launcher.api.elastic_launch``: the launcher behind ``torchrun``),
so rendezvous, worker monitoring, signal forwarding and ``max_restarts`` restarts are torch's, not hand-made
process management. One machine uses a private c10d rendezvous on a free port (torchrun ``--standalone``);
several machines meet at ``--rdzv-endpoint`` (c10d, elastic) or, with ``--node-rank``, at a static rendezvous
(the classic ``--master-addr/--node-rank`` form).

Join: a worker (or any process started by ``torchrun``) sees ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in its
environment; :func:`init_distributed` joins that process group (NCCL on CUDA, gloo on CPU). A single process (no
torchrun) is rank 0 of a world of 1, where every helper here is a no-op, so the trainer calls them
unconditionally. Only rank 0 logs and writes checkpoints (:func:`is_main`). Work split by rank instead (``v2v
extract``) reads the ranks checked (:func:`dist_env`) and takes its :func:`shard`.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from v2vcli.errors import ConfigError, DeviceError, V2VError

__all__ = [
    "DistInfo",
    "dist_info",
    "dist_env",
    "shard",
    "get_rank",
    "get_local_rank",
    "get_world_size",
    "is_distributed",
    "is_main",
    "barrier",
    "init_distributed",
    "shutdown_distributed",
    "broadcast_object",
    "all_gather_object",
    "all_reduce_",
    "broadcast_module_",
    "restart_count",
    "under_torchrun",
    "LaunchError",
    "launch_elastic",
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


def dist_info(*, strict: bool = False) -> DistInfo:
    """Rank, local rank and world size from torchrun's environment (0, 0, 1 without it).

    ``strict``: a RANK or WORLD_SIZE that is not an integer, or a rank outside 0..WORLD_SIZE-1, is a
    :class:`ConfigError` instead of reading as the default (for work sharded by rank, where a wrong rank would
    silently skip or repeat a share).
    """
    if strict:
        try:
            rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        except ValueError as exc:
            raise ConfigError(f"RANK/WORLD_SIZE must be integers ({exc})") from exc
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(f"RANK={rank} is not in 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
    world = max(1, _env_int("WORLD_SIZE", 1))
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    return DistInfo(rank=rank, local_rank=local, world_size=world)


def dist_env() -> tuple[int, int]:
    """(rank, world_size) from torchrun's RANK/WORLD_SIZE (0, 1 when unset), checked (``dist_info(strict=True)``)."""
    info = dist_info(strict=True)
    return info.rank, info.world_size


def shard(items: Sequence[Any], rank: int, world: int) -> list[Any]:
    """The items of ``rank``: every ``world``-th from index ``rank``."""
    return [item for i, item in enumerate(items) if i % world == rank]


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
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and "MASTER_ADDR" in os.environ:
        # The elastic agent's store outlives a restart: keys of the dead attempt (e.g. the old rank 0's gloo
        # address) would be read by the new one, so each attempt works under its own prefix.
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), info.world_size,
                              is_master=False, timeout=timedelta(minutes=10))
        dist.init_process_group(backend=backend, store=dist.PrefixStore(f"v2v/attempt_{restart_count()}", store),
                                rank=info.rank, world_size=info.world_size)
    else:
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


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not _pg_ready():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_(tensor: Any, op: str = "sum") -> Any:
    """In-place all-reduce of ``tensor`` (``sum``, ``min`` or ``max``); unchanged in a single process."""
    if not _pg_ready():
        return tensor
    import torch.distributed as dist

    ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
    dist.all_reduce(tensor, op=ops[op])
    return tensor


def broadcast_module_(module: Any, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into ``module`` on every rank (what DDP does at construction)."""
    if not _pg_ready():
        return
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=src)


def under_torchrun() -> bool:
    """True in a process that torchrun (or :func:`launch_elastic`) started: it joins instead of launching."""
    return "TORCHELASTIC_RUN_ID" in os.environ or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)


def restart_count() -> int:
    """How many times torchrun's elastic agent restarted this worker group (0 on the first attempt)."""
    return max(0, _env_int("TORCHELASTIC_RESTART_COUNT", 0))


class LaunchError(V2VError):
    """A distributed launch failed (a rank exited with an error after its restarts were used up)."""


def launch_elastic(argv: Sequence[str], *, nproc_per_node: int, nnodes: int = 1, node_rank: int | None = None,
                   rdzv_endpoint: str | None = None, max_restarts: int = 0, run_id: str | None = None,
                   threads_per_proc: int | None = None) -> int:
    """Run ``v2v <argv>`` in ``nproc_per_node`` workers on this machine through torchrun's elastic agent.

    ``nnodes`` > 1 needs ``rdzv_endpoint`` (HOST:PORT of node 0, the same on every node); with ``node_rank`` the
    static rendezvous is used (each node passes its rank), without it the elastic c10d rendezvous (node ranks are
    assigned as nodes arrive). A failed worker makes the agent stop and restart the whole group, up to
    ``max_restarts`` times; the workers see ``TORCHELASTIC_RESTART_COUNT`` and resume from the run's last
    checkpoint. Returns 0 when every worker finished; raises :class:`LaunchError` otherwise.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc_per_node < 1 or nnodes < 1:
        raise DeviceError(f"need at least one process per node and one node, got {nproc_per_node} and {nnodes}")
    if max_restarts < 0:
        raise DeviceError(f"--max-restarts must be 0 or more, got {max_restarts}")
    if nnodes > 1 and not rdzv_endpoint:
        raise DeviceError(f"--nnodes {nnodes}: pass --rdzv-endpoint HOST:PORT (node 0's address, the same on every "
                          f"node)")
    if node_rank is not None and not 0 <= node_rank < nnodes:
        raise DeviceError(f"--node-rank {node_rank} must be in 0..{nnodes - 1} (--nnodes {nnodes})")
    if nnodes == 1 and not rdzv_endpoint:
        backend, endpoint, configs = "c10d", "localhost:0", {}  # torchrun --standalone
    elif node_rank is not None:
        backend, endpoint, configs = "static", str(rdzv_endpoint), {"rank": int(node_rank)}
    else:
        backend, endpoint, configs = "c10d", str(rdzv_endpoint), {}
    if threads_per_proc is not None and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, threads_per_proc))  # inherited by the workers
    config = LaunchConfig(min_nodes=nnodes, max_nodes=nnodes, nproc_per_node=nproc_per_node,
                          run_id=run_id or (str(uuid.uuid4()) if nnodes == 1 else "v2v"), rdzv_backend=backend,
                          rdzv_endpoint=endpoint, rdzv_configs=configs, max_restarts=max_restarts,
                          monitor_interval=0.1)
    # The workers run the same v2v command: they find torchrun's variables in their environment and join.
    entry_args = ["-c", "import sys; from v2vcli.cli import main; sys.exit(main())", *[str(a) for a in argv]]
    log.info("launching %d worker(s) per node on %d node(s) (%s rendezvous at %s, max restarts %d)",
             nproc_per_node, nnodes, backend, endpoint, max_restarts)
    # Workers leave their error message here instead of printing an Error line each (v2vcli.cli._report); the
    # agent's own per-failure log lines are kept for --verbose.
    error_dir = tempfile.mkdtemp(prefix="v2v-ranks-")
    previous = os.environ.get("V2V_ERROR_DIR")
    os.environ["V2V_ERROR_DIR"] = error_dir
    agent_log = logging.getLogger("torch.distributed.elastic")
    agent_level = agent_log.level
    if not log.isEnabledFor(logging.DEBUG):
        agent_log.setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, sys.executable)(*entry_args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        try:
            reason = Path(error_dir, f"rank{rank}.txt").read_text(encoding="utf-8").strip()
        except OSError:
            reason = ""
        what = f": {reason}" if reason else f" with exit code {failure.exitcode} (its output is above)"
        raise LaunchError(f"rank {rank} failed{what} [after {max_restarts} restart(s); `--max-restarts N` retries "
                          f"from the last checkpoint]") from exc
    finally:
        agent_log.setLevel(agent_level)
        shutil.rmtree(error_dir, ignore_errors=True)
        if previous is None:
            os.environ.pop("V2V_ERROR_DIR", None)
        else:
            os.environ["V2V_ERROR_DIR"] = previous
    return 0
