"""One sequence of an extraction: its frames (decoded or stored, optionally cropped), the extractor over them, its
outputs on disk, and the sequence's entries in meta/frames.json and meta/<kind>.json. Runs in the main process or
in a worker (:mod:`.workers`)."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from v2vcli.data.layout import Dataset, frame_name
from v2vcli.errors import ConfigError, DatasetError, PluginError, V2VError
from v2vcli.extract.pipeline import run_pipeline
from v2vcli.extractor import Extractor, FloatMaps, FlowField
from v2vcli.io.files import (decode_image, encode_image, read_image, write_bytes_atomic, write_flow,
                             write_float_maps, write_image, write_instance, write_json, write_label)
from v2vcli.io.video import open_video

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: one process at a time is the user's job
    fcntl = None  # type: ignore[assignment]

__all__ = ["JPEG_QUALITY", "LOW_DETECTION_RATE", "SequenceReport", "Context", "Job", "meta_lock", "remove_partial",
           "run_sequence"]

log = logging.getLogger(__name__)

JPEG_QUALITY = 95
LOW_DETECTION_RATE = 0.5  # below it a sequence gets a warning line


@dataclass
class SequenceReport:
    seq: str
    status: Literal["extracted", "skipped"]
    frames: int
    seconds: float = 0.0
    source: str = ""
    detected: int | None = None  # frames with a detection (extractors that detect something), else None
    detection_rate: float | None = None  # detected / frames


@dataclass(frozen=True)
class Context:
    """What every sequence of one run shares (sent to worker processes)."""

    root: Path
    kind: str
    backend: str
    plugin: str
    cls: type[Extractor]
    config: Any
    device: str
    frames_ext: str  # ".jpg" or ".png" for frames this run writes
    allow_empty: bool = False  # keep a sequence in which a detecting extractor found nothing
    other_backends: tuple[str, ...] = ()  # named by the error for such a sequence


@dataclass(frozen=True)
class Job:
    """One sequence to extract."""

    seq: str
    source: str  # what frames.json records (absolute path)
    stored: bool  # frames already complete in DATASET/frames/<seq>: read them, write none
    count: int | None  # known or estimated number of frames (progress)
    stored_ext: str
    frame_options: dict[str, Any]  # resize/fps/start/end as given


@contextmanager
def meta_lock(root: Path) -> Iterator[None]:
    """Exclusive lock for read-modify-write of meta files, shared by workers, ranks and concurrent commands."""
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    with open(meta / ".lock", "a+") as handle:
        if fcntl is None:  # pragma: no cover - not POSIX
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            # meta files are only written under this lock, so a temp file seen now is a killed writer's leftover
            for stale in meta.glob(".*.tmp.json"):
                stale.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_outputs(ctx: Context, seq: str, index: int, outputs: Mapping[str, Any], declared: tuple[str, ...],
                  size: tuple[int, int]) -> list[str]:
    """Write one frame's outputs; returns the output folders written. Declared outputs must all be there; an
    extractor may add optional ones (e.g. previews)."""
    who = f"extractor '{ctx.kind}/{ctx.backend}'"
    if not isinstance(outputs, Mapping):
        raise PluginError(f"{who} returned {type(outputs).__name__} from process(); it must return a dict of "
                          f"outputs {declared}")
    w, h = size
    written = []
    for name, value in outputs.items():
        base = name[:-5] if name.endswith(".json") else name
        if not base or "/" in base or base in ("meta", "frames") or base.startswith("."):
            raise PluginError(f"{who} returned output '{name}', which is not a valid folder name")
        written.append(base)
        stem = ctx.root / base / seq / frame_name(index, "")
        if name.endswith(".json"):
            write_json(stem.with_suffix(".json"), value)
            continue
        arr = value.flow if isinstance(value, FlowField) else value.data if isinstance(value, FloatMaps) else value
        if not isinstance(arr, np.ndarray):
            raise PluginError(f"{who} returned {type(value).__name__} for '{name}'; expected a numpy array, "
                              f"FlowField or FloatMaps")
        if arr.shape[:2] != (h, w):
            raise PluginError(f"{who} returned '{name}' of shape {arr.shape} for a {w}x{h} frame")
        if isinstance(value, FlowField):
            write_flow(stem.with_suffix(".npz"), value.flow, value.conf)
        elif isinstance(value, FloatMaps):
            write_float_maps(stem.with_suffix(".npz"), value.data)
        elif arr.ndim == 2 and arr.dtype == np.uint8:
            write_label(stem.with_suffix(".png"), arr)
        elif arr.ndim == 2 and arr.dtype == np.uint16:
            write_instance(stem.with_suffix(".png"), arr)
        elif arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
            write_image(stem.with_suffix(".png"), arr)
        else:
            raise PluginError(f"{who} returned '{name}' as {arr.dtype} {arr.shape}; write uint8 (H, W), uint16 "
                              f"(H, W), uint8 (H, W, 3), FlowField or FloatMaps")
    missing = [n for n in declared if n not in written]
    if missing:
        raise PluginError(f"{who} did not return {missing} for frame {index} of '{seq}' (its outputs are "
                          f"{list(declared)})")
    return written


def _stored_frames(root: Path, seq: str, count: int, ext: str) -> Iterator[np.ndarray]:
    for i in range(count):
        yield read_image(root / "frames" / seq / frame_name(i, ext))


def remove_partial(ctx: Context, job: Job, outputs: Sequence[str]) -> None:
    """Delete what an unfinished run of ``job`` may have written: its outputs and the frames it was writing."""
    dirs = [ctx.root / name / job.seq for name in outputs]
    if not job.stored:
        dirs.append(ctx.root / "frames" / job.seq)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def _crop(ctx: Context, job: Job, extractor: Extractor, frames: Iterator[np.ndarray], size: tuple[int, int]) -> tuple[
        Iterator[np.ndarray], tuple[int, int], tuple[int, int, int, int] | None]:
    """``frames`` cropped to the box :meth:`Extractor.sequence_crop` finds in the first one (e.g. edges/face ``--crop
    face``), their size (W, H) and the box; the frames as they are and None when it gives none."""
    first = next(frames, None)
    if first is None:
        return frames, size, None
    box = extractor.sequence_crop(first)
    frames = itertools.chain([first], frames)
    if box is None:
        return frames, size, None
    if job.stored:
        raise ConfigError(f"'{job.seq}' already has frames in '{ctx.root}', and a crop would change them; extract "
                          f"with the crop into a new dataset (-o), from the video")
    x0, y0, x1, y1 = (int(v) for v in box)
    log.info("%s: cropping every frame to x %d..%d, y %d..%d", job.seq, x0, x1, y0, y1)
    return (np.ascontiguousarray(f[y0:y1, x0:x1]) for f in frames), (x1 - x0, y1 - y0), box


def run_sequence(ctx: Context, job: Job, extractor: Extractor, progress: Callable[[int], None]) -> SequenceReport:
    """Extract ``job``'s sequence from frame 0 and record it in the meta files; ``progress(n)`` after each frame.
    On any error (or interrupt) the sequence's files are removed before it propagates."""
    t0 = time.perf_counter()
    ds = Dataset(ctx.root)
    declared = tuple(extractor.outputs)  # an instance may narrow or widen its class's outputs from its config
    earlier = (ds.kind_meta(ctx.kind) or {}).get("outputs", []) if ds.meta_path(ctx.kind).is_file() else []
    outputs: list[str] = list(dict.fromkeys([*declared, *ctx.cls.outputs, *earlier]))
    remove_partial(ctx, job, outputs)  # an interrupted earlier run may have left some of this sequence's files
    reader = None
    if job.stored:
        meta = Dataset(ctx.root).frames_meta()["sequences"][job.seq]
        fps, size, n_stored = float(meta["fps"]), (int(meta["size"][0]), int(meta["size"][1])), int(meta["count"])
        frames: Iterator[np.ndarray] = _stored_frames(ctx.root, job.seq, n_stored, job.stored_ext)
    else:
        opts = job.frame_options
        reader = open_video(job.source, fps=opts["fps"], start=opts["start"], end=opts["end"],
                            resize=tuple(opts["resize"]) if opts["resize"] else None)  # type: ignore[arg-type]
        fps, size = reader.fps, reader.size
        frames = iter(reader)
    count = 0
    hits = [0, 0]  # frames the extractor judged, frames with a detection
    box: tuple[int, int, int, int] | None = None
    try:
        extractor.start_sequence(job.seq, fps, size)
        frames, size, box = _crop(ctx, job, extractor, frames, size)

        def stored(index: int, frame: np.ndarray) -> np.ndarray:
            """Write frame ``index`` to frames/ (unless it is stored already); returns the pixels as stored."""
            if job.stored:
                return frame
            data = encode_image(frame, ctx.frames_ext, JPEG_QUALITY)
            path = ctx.root / "frames" / job.seq / frame_name(index, ctx.frames_ext)
            write_bytes_atomic(path, data)
            # the extractor sees what a reader of the dataset will see
            return decode_image(data, str(path)) if ctx.frames_ext != ".png" else frame

        def run(index: int, frame: np.ndarray) -> dict[str, Any]:
            try:
                result = extractor.process(frame, index)
                hit = extractor.detected(result)
            except V2VError:
                raise
            except Exception as exc:
                raise PluginError(f"extractor '{ctx.kind}/{ctx.backend}' failed on frame {index} of '{job.seq}': "
                                  f"{type(exc).__name__}: {exc}") from exc
            if hit is not None:
                hits[0] += 1
                hits[1] += int(bool(hit))
            return result  # type: ignore[no-any-return]

        def write(index: int, result: Mapping[str, Any]) -> None:
            for name in write_outputs(ctx, job.seq, index, result, declared, size):
                if name not in outputs:
                    outputs.append(name)
            progress(1)

        count = run_pipeline(frames, stored, run, write)
        _check_detections(ctx, job.seq, extractor, hits)
    except BaseException:
        remove_partial(ctx, job, outputs)
        raise
    finally:
        if reader is not None:
            reader.close()
    _record(ctx, job, extractor, declared, outputs, fps=fps, size=size, count=count, box=box, hits=hits)
    seconds = time.perf_counter() - t0
    log.info("%s: %s %d frames (%.1f frames/s)", job.seq, ctx.kind, count, count / seconds if seconds else 0.0)
    return SequenceReport(job.seq, "extracted", count, round(seconds, 3), job.source,
                          hits[1] if hits[0] else None, round(hits[1] / hits[0], 4) if hits[0] else None)


def _record(ctx: Context, job: Job, extractor: Extractor, declared: tuple[str, ...], outputs: Sequence[str], *,
            fps: float, size: tuple[int, int], count: int, box: tuple[int, int, int, int] | None,
            hits: list[int]) -> None:
    """Enter the finished sequence in meta/frames.json (frames this run wrote) and meta/<kind>.json: the last write,
    which marks it done for a resumed run."""
    ds = Dataset(ctx.root)
    with meta_lock(ctx.root):
        if not job.stored:
            fm: dict[str, Any] = ds.frames_meta() if ds.exists() else {"format": ctx.frames_ext[1:], "sequences": {}}
            seqs = dict(fm.get("sequences", {}))
            options = dict(job.frame_options)
            if box is not None:
                options["crop"] = [int(v) for v in box]
            seqs[job.seq] = {"fps": fps, "size": [size[0], size[1]], "count": count, "source": job.source,
                             "options": options}
            fm["sequences"] = dict(sorted(seqs.items()))
            ds.write_frames_meta(fm)
        km = ds.kind_meta(ctx.kind) or {}
        header: dict[str, Any] = {"kind": ctx.kind, "extractor": f"{ctx.cls.__module__}.{ctx.cls.__qualname__}",
                                  "plugin": ctx.plugin, "backend": ctx.backend, "version": str(ctx.cls.version),
                                  "outputs": [], "options": extractor.options()}
        label_set = extractor.label_set()
        if label_set is not None:
            header["label_set"] = label_set.to_dict()
        header.update(extractor.meta())
        written = [n for n in outputs if (ctx.root / n / job.seq).is_dir()]
        header["outputs"] = list(dict.fromkeys([*declared, *km.get("outputs", []), *written]))
        seqs = dict(km.get("sequences", {}))
        seqs[job.seq] = {"count": count}
        if hits[0]:
            seqs[job.seq].update(detected_frames=hits[1], detection_rate=round(hits[1] / hits[0], 4))
        write_json(ds.meta_path(ctx.kind), json.loads(json.dumps({**header, "sequences": dict(sorted(seqs.items()))},
                                                                 default=str)))


def _check_detections(ctx: Context, seq: str, extractor: Extractor, hits: list[int]) -> None:
    """A sequence in which a detecting extractor found nothing is an error (unless ``allow_empty``); one found in
    fewer than half of its frames gets a warning."""
    judged, found = hits
    if not judged:
        return
    what = getattr(extractor, "detects", "") or "detection"
    fixes = []
    if ctx.other_backends:
        fixes.append(f"another backend (--backend {' or '.join(ctx.other_backends)})")
    fixes.append("a larger --resize (or none)")
    if hasattr(extractor.config, "min_size"):
        fixes.append("a larger --min-size")
    if found == 0 and not ctx.allow_empty:
        raise DatasetError(f"no {what} found in any of the {judged} frames of '{seq}' by {ctx.kind}/{ctx.backend}; "
                           f"try {', '.join(fixes)}, or pass --allow-empty to keep the sequence as it is")
    if found / judged < LOW_DETECTION_RATE:
        log.warning("%s: %s/%s found a %s in only %d of %d frames (%.0f%%); check the result, or try %s",
                    seq, ctx.kind, ctx.backend, what, found, judged, 100.0 * found / judged, ", ".join(fixes))
