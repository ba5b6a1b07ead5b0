"""The worker pool of ``v2v extract --workers N`` (spawned processes, one extractor each, sequences from a queue),
and SIGTERM handled like Ctrl-C in the runner and its workers."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from v2vcli import errors
from v2vcli.errors import PluginError, V2VError
from v2vcli.extract.sequence import Context, Job, SequenceReport, run_sequence

__all__ = ["terminate_as_interrupt", "run_parallel"]

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _error_payload(exc: BaseException) -> tuple[str, str, str]:
    return type(exc).__name__, str(exc), "".join(traceback.format_exception(exc))


def _die_with_parent(parent: int) -> None:
    """Make this (worker) process die when ``parent`` does: a killed ``v2v extract`` must not leave workers that
    finish its job (and race a rerun). Linux: the kernel sends SIGKILL on the parent's death; elsewhere a daemon
    thread polls the parent's pid."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, name="v2v-parent-watch", daemon=True).start()


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (cleanup as for Ctrl-C) while extracting; the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _worker_main(ctx: Context, jobs: Any, out: Any, worker_id: int, threads: int, parent: int = 0) -> None:
    """Body of a worker process: one extractor instance, sequences from ``jobs`` until a ``None``."""
    if parent:
        _die_with_parent(parent)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)  # the parent's terminate(): clean up as for Ctrl-C
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        extractor = ctx.cls(ctx.config, ctx.device)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        out.put(("error", worker_id, _error_payload(exc)))
        return
    try:
        while (job := jobs.get()) is not None:
            report = run_sequence(ctx, job, extractor, lambda n: out.put(("progress", worker_id, n)))
            out.put(("done", worker_id, report))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        out.put(("error", worker_id, _error_payload(exc)))
    finally:
        extractor.close()
        out.put(("exit", worker_id, None))


def _raise_from_worker(payload: tuple[str, str, str], ctx: Context) -> None:
    name, message, tb = payload
    log.debug("worker traceback:\n%s", tb)
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, V2VError):
        raise cls(message)
    raise PluginError(f"extractor '{ctx.kind}/{ctx.backend}' failed in a worker process: {name}: {message}")


def run_parallel(ctx: Context, jobs: list[Job], workers: int, progress: Callable[[int], None]) -> list[
        SequenceReport]:
    """Extract ``jobs`` in ``workers`` spawned processes; their reports in the order they finished. A worker's error
    is raised here (a :class:`V2VError` as itself), after every worker has stopped."""
    try:
        pickle.dumps((ctx.cls, ctx.config))
    except Exception as exc:
        raise PluginError(f"extractor class {ctx.cls.__qualname__} cannot be sent to worker processes ({exc}); "
                          f"define it at module level, or use --workers 1") from exc
    spawn = mp.get_context("spawn")  # fork is unsafe once torch/OpenMP threads exist
    job_q, out_q = spawn.Queue(), spawn.Queue()
    for job in jobs:
        job_q.put(job)
    for _ in range(workers):
        job_q.put(None)
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = [spawn.Process(target=_worker_main, args=(ctx, job_q, out_q, i, threads, os.getpid()), daemon=True,
                           name=f"v2v-extract-{i}") for i in range(workers)]
    for p in procs:
        p.start()
    reports: list[SequenceReport] = []
    running = set(range(workers))
    try:
        while running:
            try:
                what, wid, payload = out_q.get(timeout=1.0)
            except queue.Empty:
                for i in list(running):
                    code = procs[i].exitcode
                    if code is not None and code != 0:
                        raise PluginError(f"extraction worker {i} died (exit code {code}); run with --workers 1 "
                                          f"to see the error")
                continue
            if what == "progress":
                progress(payload)
            elif what == "done":
                reports.append(payload)
            elif what == "error":
                _raise_from_worker(payload, ctx)
            elif what == "exit":
                running.discard(wid)
    finally:
        for p in procs:
            if p.is_alive() and running:
                p.terminate()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():  # stuck in native code: it must not outlive the command
                p.kill()
                p.join(timeout=5)
    return reports
