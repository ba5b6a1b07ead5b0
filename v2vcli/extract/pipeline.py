"""The three-stage pipeline within one sequence: frame ingest, the extractor and the output writer, in three threads."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["PIPELINE_DEPTH", "run_pipeline"]

PIPELINE_DEPTH = 4  # frames in flight between the stages: bounded, so memory does not grow with the video
_END = object()


class _Failed:
    """An exception raised in a pipeline thread, handed to the thread that consumes its queue."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def run_pipeline(frames: Iterator[np.ndarray], ingest: Callable[[int, np.ndarray], np.ndarray],
                 process: Callable[[int, np.ndarray], Mapping[str, Any]],
                 write: Callable[[int, Mapping[str, Any]], None]) -> int:
    """Run ``ingest`` (decode + write frames/ + read back), ``process`` (the extractor) and ``write`` (its outputs)
    over ``frames`` as three stages in three threads; returns the number of frames.

    ``process`` runs in the calling thread, in frame order, so extractors keep their per-sequence state and need
    not be thread-safe; the other two stages run in one thread each, also in order. JPEG/PNG coding, ffmpeg's
    pipe, mediapipe and OpenCV release the GIL, so a single worker overlaps frame I/O with the model (pose at
    1280x720: the extractor's own time instead of the sum of all three). Any stage's exception stops the others
    and is raised here, after both threads have finished, so nothing is written after the caller cleans up.
    """
    stop = threading.Event()
    to_process: queue.Queue[Any] = queue.Queue(maxsize=PIPELINE_DEPTH)
    to_write: queue.Queue[Any] = queue.Queue(maxsize=PIPELINE_DEPTH)
    write_error: list[BaseException] = []

    def put(q: queue.Queue[Any], item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def get(q: queue.Queue[Any]) -> Any:
        while True:
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                if stop.is_set():
                    return _END

    def ingest_stage() -> None:
        try:
            for index, frame in enumerate(frames):
                if not put(to_process, (index, ingest(index, frame))):
                    return
            put(to_process, _END)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            put(to_process, _Failed(exc))

    def write_stage() -> None:
        try:
            while (item := get(to_write)) is not _END:
                if stop.is_set():
                    return
                write(*item)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            write_error.append(exc)
            stop.set()

    threads = [threading.Thread(target=ingest_stage, name="v2v-extract-ingest", daemon=True),
               threading.Thread(target=write_stage, name="v2v-extract-write", daemon=True)]
    for t in threads:
        t.start()
    count = 0
    try:
        while True:
            item = get(to_process)
            if write_error:
                raise write_error[0]
            if item is _END:
                break
            if isinstance(item, _Failed):
                raise item.exc
            index, frame = item
            result = process(index, frame)
            if not put(to_write, (index, result)):
                break  # the writer failed: raised below
            count += 1
        put(to_write, _END)
        threads[1].join()
        if write_error:
            raise write_error[0]
        return count
    finally:
        stop.set()
        for t in threads:
            t.join()
