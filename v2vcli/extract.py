"""The generic extraction runner every extractor plugin uses (``v2v extract KIND INPUT...``).

For each input sequence the runner decodes the video once (or reads the dataset's stored frames), writes
``frames/<seq>/`` (JPEG q95 by default), feeds every frame to the extractor in order (per-sequence state is reset
by ``start_sequence``), writes what ``process`` returns under ``DATASET/<output>/<seq>/`` (see
:mod:`v2vcli.extractor`) and records the sequence in meta/frames.json and meta/<kind>.json.

* The extractor always sees the frame as stored (a JPEG is decoded from the bytes just written), so a run that
  reuses stored frames, a resumed run and an uninterrupted run compute from identical pixels.
* Within a sequence three threads form a pipeline (:func:`_pipeline`): decode + write frames/ + read back, the
  extractor (in frame order, in the calling thread), and the writer of its outputs. Results do not depend on it.
* Resume: a sequence is finished once its entry is in meta/<kind>.json, written after all its files. Finished
  sequences are skipped; an unfinished one is deleted and recomputed from frame 0 (trackers carry state).
* ``workers=N``: N spawned processes take sequences from a queue, each with its own extractor instance; results
  are identical to one worker (meta files list sequences sorted, per-frame files do not depend on scheduling).
  A worker dies with the process that started it (Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere it
  polls its parent), so a killed ``v2v extract`` leaves no worker finishing the job behind a rerun.
* Signals: SIGTERM is handled like SIGINT (Ctrl-C): the unfinished sequence's files are removed, workers are
  stopped, and the command ends with one ``Error: interrupted`` line. Finished sequences are kept.
* A sequence already in the dataset whose recorded source (a video or frame folder) differs from this run's is an
  error naming ``--overwrite``, which replaces its frames and every kind's outputs.
* torchrun: with ``RANK``/``WORLD_SIZE`` set, rank r takes input sequences i with i % WORLD_SIZE == r (launch with
  ``torchrun --nnodes N --nproc-per-node P --no-python v2v extract ...``, or set the variables yourself). Meta
  files are updated under an exclusive ``flock`` on meta/.lock, so ranks and workers never lose each other's
  entries (the dataset must be on a file system with working flock, e.g. local disk or NFSv4).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import shutil
import time
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, cast, get_args, get_origin, get_type_hints

import numpy as np

from v2vcli import errors
from v2vcli.data.layout import Dataset, frame_name
from v2vcli.errors import ConfigError, DatasetError, PluginError, V2VError, VideoError, did_you_mean
from v2vcli.extractor import Extractor, FloatMaps, FlowField

__all__ = [
    "InputSource",
    "SequenceReport",
    "ExtractionReport",
    "FRAME_FORMATS",
    "resolve_inputs",
    "build_config",
    "config_fields",
    "dist_env",
    "shard",
    "run_extraction",
]

log = logging.getLogger(__name__)

FRAME_FORMATS = ("jpg", "png")
JPEG_QUALITY = 95


# --------------------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputSource:
    """One input sequence: ``seq`` is its name in the dataset (a video's stem, a folder's name)."""

    seq: str
    path: Path
    kind: Literal["video", "folder", "dataset"]  # dataset: DATASET/frames/<seq> listed in DATASET/meta/frames.json
    dataset_root: Path | None = None


def _has_images(folder: Path) -> bool:
    from v2vcli.io.video import IMAGE_SUFFIXES

    return any(p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") for p in folder.iterdir()
               if p.is_file())


def _dataset_of_seq_folder(folder: Path) -> Path | None:
    root = folder.parent.parent
    if folder.parent.name != "frames" or not (root / "meta" / "frames.json").is_file():
        return None
    try:
        return root if folder.name in Dataset(root).frames_meta()["sequences"] else None
    except DatasetError:
        return None


def resolve_inputs(inputs: Sequence[str | Path]) -> list[InputSource]:
    """Expand INPUT arguments: a video file, a frame folder, a dataset sequence folder, a dataset, or a folder of
    videos and frame folders (sorted by name). Two inputs giving one sequence name is an error."""
    from v2vcli.io.video import VIDEO_SUFFIXES

    if not inputs:
        raise ConfigError("no INPUT given; pass videos, frame folders or a folder of them")
    found: list[InputSource] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise VideoError(f"input '{path}' does not exist")
        if path.is_file():
            found.append(InputSource(path.stem, path, "video"))
        elif (path / "meta" / "frames.json").is_file():
            for seq in Dataset(path).sequences():
                found.append(InputSource(seq, path / "frames" / seq, "dataset", path))
        elif _has_images(path):
            root = _dataset_of_seq_folder(path)
            found.append(InputSource(path.name, path, "dataset" if root else "folder", root))
        else:
            before = len(found)
            for child in sorted(path.iterdir(), key=lambda p: p.name):
                if child.name.startswith("."):
                    continue
                if child.is_file() and child.suffix.lower() in VIDEO_SUFFIXES:
                    found.append(InputSource(child.stem, child, "video"))
                elif child.is_dir() and _has_images(child):
                    root = _dataset_of_seq_folder(child)
                    found.append(InputSource(child.name, child, "dataset" if root else "folder", root))
            if len(found) == before:
                raise VideoError(f"'{path}' holds no videos, frames or frame folders")
    seen: dict[str, Path] = {}
    for src in found:
        if src.seq in seen:
            raise DatasetError(f"two inputs give sequence '{src.seq}': '{seen[src.seq]}' and '{src.path}'; rename "
                               f"one (the sequence name is the video's stem or the folder's name)")
        seen[src.seq] = src.path
    return found


# --------------------------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------------------------
def config_fields(config_cls: type) -> dict[str, tuple[Any, Any, str]]:
    """``{name: (type, default, help)}`` of an extractor Config dataclass (help from ``field(metadata=...)``)."""
    if not is_dataclass(config_cls):
        return {}
    hints = get_type_hints(config_cls)
    out: dict[str, tuple[Any, Any, str]] = {}
    for f in fields(config_cls):
        if not f.init:
            continue
        default: Any = f.default
        if default is MISSING and f.default_factory is not MISSING:
            default = cast(Callable[[], Any], f.default_factory)()  # `is not MISSING` does not narrow for mypy
        out[f.name] = (hints.get(f.name, Any), None if default is MISSING else default, f.metadata.get("help", ""))
    return out


def _coerce(name: str, tp: Any, value: Any) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if value is None:
        return None
    if origin is Union or origin is types.UnionType:
        non_none = [a for a in args if a is not type(None)]
        return _coerce(name, non_none[0], value) if len(non_none) == 1 else value
    if origin is Literal:
        if value not in args and str(value) not in [str(a) for a in args]:
            raise ConfigError(f"option '{name}' must be one of {', '.join(map(str, args))}, got '{value}'")
        return next(a for a in args if a == value or str(a) == str(value))
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp in (int, float, str):
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return tp(value)
        if origin in (list, tuple) and isinstance(value, (list, tuple)):
            item = args[0] if args else Any
            items = [_coerce(name, item, v) if item is not Any else v for v in value]
            return items if origin is list else tuple(items)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"option '{name}' expects {getattr(tp, '__name__', tp)}, got {value!r}") from exc
    return value


def build_config(cls: type[Extractor], options: Mapping[str, Any] | None) -> Any:
    """An instance of ``cls.Config`` from ``options`` (dashes or underscores); unknown names are errors."""
    config_cls = getattr(cls, "Config", None)
    spec = config_fields(config_cls) if config_cls is not None else {}
    values: dict[str, Any] = {}
    for key, value in (options or {}).items():
        name = key.replace("-", "_")
        if name not in spec:
            where = f"extractor '{cls.kind}/{cls.backend}'"
            raise ConfigError(f"{where} has no option '{key}'{did_you_mean(name, spec) if spec else ' (it has none)'}")
        values[name] = _coerce(name, spec[name][0], value)
    try:
        return config_cls(**values) if config_cls is not None else None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad options for '{cls.kind}/{cls.backend}': {exc}") from exc


def _options_dict(config: Any) -> dict[str, Any]:
    """Options as JSON would store them (tuples become lists), so a recorded and a new run compare equal."""
    # cast: the config is an instance by construction; is_dataclass alone would also admit a dataclass class
    raw = asdict(cast(Any, config)) if is_dataclass(config) else {}
    return json.loads(json.dumps(raw, default=str))  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------------------------
# distributed
# --------------------------------------------------------------------------------------------------------------
def dist_env() -> tuple[int, int]:
    """(rank, world_size) from torchrun's RANK/WORLD_SIZE (0, 1 when unset)."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as exc:
        raise ConfigError(f"RANK/WORLD_SIZE must be integers ({exc})") from exc
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is not in 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
    return rank, world


def shard(items: Sequence[Any], rank: int, world: int) -> list[Any]:
    """The items of ``rank``: every ``world``-th from index ``rank``."""
    return [item for i, item in enumerate(items) if i % world == rank]


# --------------------------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------------------------
@dataclass
class SequenceReport:
    seq: str
    status: Literal["extracted", "skipped"]
    frames: int
    seconds: float = 0.0
    source: str = ""
    detected: int | None = None  # frames with a detection (extractors that detect something), else None
    detection_rate: float | None = None  # detected / frames


@dataclass
class ExtractionReport:
    """What one run (one rank) did."""

    kind: str
    backend: str
    dataset: Path
    rank: int = 0
    world_size: int = 1
    workers: int = 1
    sequences: list[SequenceReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def frames(self) -> int:
        """Frames extracted by this run (skipped sequences not counted)."""
        return sum(s.frames for s in self.sequences if s.status == "extracted")

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "backend": self.backend, "dataset": str(self.dataset), "rank": self.rank,
                "world_size": self.world_size, "workers": self.workers, "frames": self.frames,
                "seconds": round(self.seconds, 3), "frames_per_second": round(self.fps, 2),
                "sequences": [asdict(s) for s in self.sequences]}


# --------------------------------------------------------------------------------------------------------------
# per-sequence work (runs in the main process or a worker)
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
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
class _Job:
    seq: str
    source: str  # what frames.json records (absolute path)
    stored: bool  # frames already complete in DATASET/frames/<seq>: read them, write none
    count: int | None  # known or estimated number of frames (progress)
    stored_ext: str
    frame_options: dict[str, Any]  # resize/fps/start/end as given


@contextmanager
def _meta_lock(root: Path) -> Iterator[None]:
    """Exclusive lock for read-modify-write of meta files, shared by workers, ranks and concurrent commands."""
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    with open(meta / ".lock", "a+") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: one process at a time is the user's job
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


def _write_outputs(ctx: _Context, seq: str, index: int, outputs: Mapping[str, Any], declared: tuple[str, ...],
                   size: tuple[int, int]) -> list[str]:
    """Write one frame's outputs; returns the output folders written. Declared outputs must all be there; an
    extractor may add optional ones (e.g. previews)."""
    from v2vcli.io.files import write_flow, write_float_maps, write_image, write_instance, write_json, write_label

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
    from v2vcli.io.files import read_image

    for i in range(count):
        yield read_image(root / "frames" / seq / frame_name(i, ext))


def _remove_partial(ctx: _Context, job: _Job, outputs: Sequence[str]) -> None:
    dirs = [ctx.root / name / job.seq for name in outputs]
    if not job.stored:
        dirs.append(ctx.root / "frames" / job.seq)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


class _Failed:
    """An exception raised in a pipeline thread, handed to the thread that consumes its queue."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()
PIPELINE_DEPTH = 4  # frames in flight between the stages: bounded, so memory does not grow with the video


def _pipeline(frames: Iterator[np.ndarray], ingest: Callable[[int, np.ndarray], np.ndarray],
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
    import threading

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


def _run_sequence(ctx: _Context, job: _Job, extractor: Extractor, progress: Callable[[int], None]) -> SequenceReport:
    from v2vcli.io.files import decode_image, encode_image, write_bytes_atomic, write_json
    from v2vcli.io.video import open_video

    t0 = time.perf_counter()
    ds = Dataset(ctx.root)
    declared = tuple(extractor.outputs)  # an instance may narrow or widen its class's outputs from its config
    earlier = (ds.kind_meta(ctx.kind) or {}).get("outputs", []) if ds.meta_path(ctx.kind).is_file() else []
    outputs: list[str] = list(dict.fromkeys([*declared, *ctx.cls.outputs, *earlier]))
    _remove_partial(ctx, job, outputs)  # an interrupted earlier run may have left some of this sequence's files
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
        crop_hook = getattr(extractor, "sequence_crop", None)
        if crop_hook is not None:  # e.g. edges/face --crop face: one box per sequence, from its first frame
            first = next(frames, None)
            if first is not None:
                box = crop_hook(first)
                frames = itertools.chain([first], frames)
            if box is not None:
                if job.stored:
                    raise ConfigError(f"'{job.seq}' already has frames in '{ctx.root}', and a crop would change "
                                      f"them; extract with the crop into a new dataset (-o), from the video")
                x0, y0, x1, y1 = (int(v) for v in box)
                size = (x1 - x0, y1 - y0)
                frames = (np.ascontiguousarray(f[y0:y1, x0:x1]) for f in frames)
                log.info("%s: cropping every frame to x %d..%d, y %d..%d", job.seq, x0, x1, y0, y1)

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
            for name in _write_outputs(ctx, job.seq, index, result, declared, size):
                if name not in outputs:
                    outputs.append(name)
            progress(1)

        count = _pipeline(frames, stored, run, write)
        _check_detections(ctx, job.seq, extractor, hits)
    except BaseException:
        _remove_partial(ctx, job, outputs)
        raise
    finally:
        if reader is not None:
            reader.close()
    with _meta_lock(ctx.root):
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
    seconds = time.perf_counter() - t0
    log.info("%s: %s %d frames (%.1f frames/s)", job.seq, ctx.kind, count, count / seconds if seconds else 0.0)
    return SequenceReport(job.seq, "extracted", count, round(seconds, 3), job.source,
                          hits[1] if hits[0] else None, round(hits[1] / hits[0], 4) if hits[0] else None)


LOW_DETECTION_RATE = 0.5  # below it a sequence gets a warning line


def _check_detections(ctx: _Context, seq: str, extractor: Extractor, hits: list[int]) -> None:
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


def _error_payload(exc: BaseException) -> tuple[str, str, str]:
    return type(exc).__name__, str(exc), "".join(traceback.format_exception(exc))


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """Make this (worker) process die when ``parent`` does: a killed ``v2v extract`` must not leave workers that
    finish its job (and race a rerun). Linux: the kernel sends SIGKILL on the parent's death; elsewhere a daemon
    thread polls the parent's pid."""
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

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
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (cleanup as for Ctrl-C) while extracting; the main thread only."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _worker_main(ctx: _Context, jobs: Any, out: Any, worker_id: int, threads: int, parent: int = 0) -> None:
    """Body of a worker process: one extractor instance, sequences from ``jobs`` until a ``None``."""
    import signal

    if parent:
        _die_with_parent(parent)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)  # the parent's terminate(): clean up as for Ctrl-C
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import sys

        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        extractor = ctx.cls(ctx.config, ctx.device)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        out.put(("error", worker_id, _error_payload(exc)))
        return
    try:
        while (job := jobs.get()) is not None:
            report = _run_sequence(ctx, job, extractor, lambda n: out.put(("progress", worker_id, n)))
            out.put(("done", worker_id, report))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        out.put(("error", worker_id, _error_payload(exc)))
    finally:
        extractor.close()
        out.put(("exit", worker_id, None))


def _raise_from_worker(payload: tuple[str, str, str], ctx: _Context) -> None:
    name, message, tb = payload
    log.debug("worker traceback:\n%s", tb)
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, V2VError):
        raise cls(message)
    raise PluginError(f"extractor '{ctx.kind}/{ctx.backend}' failed in a worker process: {name}: {message}")


def _run_parallel(ctx: _Context, jobs: list[_Job], workers: int, progress: Callable[[int], None]) -> list[
        SequenceReport]:
    import multiprocessing as mp
    import pickle

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


# --------------------------------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------------------------------
def _fmt_options(opts: Mapping[str, Any]) -> str:
    parts = []
    if opts.get("resize"):
        parts.append(f"--resize {opts['resize'][0]}x{opts['resize'][1]}")
    for key in ("fps", "start", "end"):
        if opts.get(key) is not None:
            parts.append(f"--{key} {opts[key]:g}")
    if opts.get("crop"):
        parts.append("a crop to x {0}..{2}, y {1}..{3}".format(*opts["crop"]))
    return " ".join(parts) or "no frame options"


@contextmanager
def _progress_bar(enabled: bool, total: int | None, description: str) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, \
        TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class FramesPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f} frames/s" if task.speed else "- frames/s")

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), FramesPerSecond(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def _check_writable_root(root: Path) -> None:
    """-o must be a folder (or not exist yet) that this user can write: one sentence instead of an OSError later."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"-o '{root}' is a file; pass a dataset folder (new or existing)")
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"-o '{root}': '{existing}' is a file, so the dataset folder cannot be created there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"-o '{root}': '{existing}' is not writable (permission denied); pass a folder you can "
                          f"write to, or fix its permissions")
    if root.is_dir():
        for sub in (root / "meta", root / "frames"):
            if sub.is_dir() and not os.access(sub, os.W_OK | os.X_OK):
                raise ConfigError(f"-o '{root}': '{sub}' is not writable (permission denied); fix its permissions")


def _drop_sequences(ds: Dataset, seqs: Sequence[str]) -> None:
    """Remove ``seqs`` from the dataset: frames, every kind's outputs and meta entries (their source changed)."""
    with _meta_lock(ds.root):
        for meta_file in sorted(ds.meta_dir.glob("*.json")):
            kind = meta_file.stem
            if kind in ("frames", "splits"):
                continue
            km = ds.kind_meta(kind) or {}
            for name in km.get("outputs", []):
                for seq in seqs:
                    shutil.rmtree(ds.root / name / seq, ignore_errors=True)
            if any(seq in km.get("sequences", {}) for seq in seqs):
                km["sequences"] = {k: v for k, v in km["sequences"].items() if k not in seqs}
                ds.write_kind_meta(kind, km)
        fm = ds.frames_meta()
        for seq in seqs:
            shutil.rmtree(ds.root / "frames" / seq, ignore_errors=True)
        fm["sequences"] = {k: v for k, v in fm.get("sequences", {}).items() if k not in seqs}
        ds.write_frames_meta(fm)
    log.info("replacing %s: the source differs from the recorded one (--overwrite)", ", ".join(seqs))


def run_extraction(kind: str, inputs: Sequence[str | Path], dataset: str | Path, *, backend: str | None = None,
                   options: Mapping[str, Any] | None = None, workers: int = 1, resize: tuple[int, int] | None = None,
                   fps: float | None = None, start: float | None = None, end: float | None = None,
                   device: str = "cpu", frames_format: str | None = "jpg", progress: bool | None = None,
                   overwrite: bool = False, allow_empty: bool = False) -> ExtractionReport:
    """Extract ``kind`` from ``inputs`` into ``dataset`` (see the module docstring).

    ``frames_format`` is "jpg" or "png" for frames this run writes (None: the dataset's format, else jpg);
    ``progress`` None shows a bar only on a terminal; ``overwrite`` deletes earlier results of ``kind`` first;
    ``allow_empty`` keeps a sequence in which a detecting extractor (pose, face edges, selfie, detectron2) found
    nothing, which is otherwise an error.
    """
    from v2vcli.io.video import open_video
    from v2vcli.registry import get_registry

    t0 = time.perf_counter()
    registry = get_registry()
    cls = registry.get_extractor(kind, backend)
    backend = backend or registry.default_backend(kind)
    plugin = registry.extractors()[f"{kind}/{backend}"].plugin
    config = build_config(cls, options)
    options_json = _options_dict(config)
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    import math

    for name, value in (("--fps", fps), ("--start", start), ("--end", end)):
        if value is not None and not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number of {'frames per second' if name == '--fps' else 'seconds'}"
                              f", got {value}")
    if fps is not None and not fps > 0:
        raise ConfigError(f"--fps must be positive, got {fps}")
    if start is not None and start < 0:
        raise ConfigError(f"--start must be >= 0, got {start}")
    if end is not None and end <= (start or 0.0):
        raise ConfigError(f"--end ({end}) must be after --start ({start or 0.0})")
    if resize is not None and (len(resize) != 2 or 0 in resize or min(resize) < -1 or resize == (-1, -1)):
        raise ConfigError(f"--resize must be W×H with positive sides (one may be -1), got {resize}")
    rank, world = dist_env()
    if overwrite and world > 1:
        raise ConfigError("--overwrite cannot be used with several ranks; delete the old results first")
    if device.startswith("cuda") and ":" not in device and world > 1:
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"

    root = Path(dataset)
    _check_writable_root(root)
    ds = Dataset(root)
    fm = ds.frames_meta() if ds.exists() else {"sequences": {}}
    stored_fmt = str(fm.get("format", "jpg"))
    if frames_format is None:
        frames_format = stored_fmt if ds.exists() else "jpg"
    if frames_format not in FRAME_FORMATS:
        raise ConfigError(f"--frames-format must be one of {', '.join(FRAME_FORMATS)}, got '{frames_format}'")

    km = ds.kind_meta(kind) if ds.meta_path(kind).is_file() else None
    if km and not overwrite:
        was = (km.get("backend"), str(km.get("version")), km.get("options"))
        now = (backend, str(cls.version), options_json)
        if was != now:
            raise DatasetError(f"'{root}' holds '{kind}' from backend '{was[0]}' version {was[1]} with options "
                               f"{json.dumps(was[2])}; this run uses backend '{now[0]}' version {now[1]} with "
                               f"options {json.dumps(now[2])}. Use the same settings to add sequences, or pass "
                               f"--overwrite to re-extract every '{kind}' sequence")
    done = set((km or {}).get("sequences", {})) if not overwrite else set()

    sources = shard(resolve_inputs(inputs), rank, world)
    frame_options = {"resize": list(resize) if resize else None, "fps": fps, "start": start, "end": end}
    given = any(v is not None for v in frame_options.values())
    jobs: list[_Job] = []
    reports: list[SequenceReport] = []
    replaced: list[str] = []  # sequences whose recorded source differs (--overwrite): dropped before extracting
    for src in sources:
        own = src.kind == "dataset" and src.dataset_root is not None and src.dataset_root.resolve() == root.resolve()
        entry = fm["sequences"].get(src.seq)
        if own and given:
            raise ConfigError(f"--resize/--fps/--start/--end do not apply to '{src.seq}', whose frames are already "
                              f"in '{root}'; extract from the original video into a new dataset to change them")
        source = str(src.path.resolve())
        if entry is not None and not own and entry.get("source") and entry["source"] != source:
            if not overwrite:
                raise DatasetError(f"sequence '{src.seq}' in '{root}' was extracted from '{entry['source']}', this "
                                   f"run gives '{source}'; rename one of them, extract into another dataset (-o), "
                                   f"or pass --overwrite to replace '{src.seq}' with the new source")
            replaced.append(src.seq)
            entry = None  # its frames and every kind's outputs are recomputed from the new source
        if entry is not None and not own and entry.get("options") != frame_options:
            raise DatasetError(f"sequence '{src.seq}' in '{root}' was extracted with "
                               f"{_fmt_options(entry.get('options') or {})}, this run asks for "
                               f"{_fmt_options(frame_options)}; re-run with the same frame options, or extract "
                               f"into another dataset (-o)")
        if entry is not None and src.seq in done:
            recorded = (km or {}).get("sequences", {}).get(src.seq) or {}
            reports.append(SequenceReport(src.seq, "skipped", int(entry["count"]), 0.0, str(entry.get("source", "")),
                                          recorded.get("detected_frames"), recorded.get("detection_rate")))
            continue
        if entry is not None:
            jobs.append(_Job(src.seq, str(entry.get("source", source)), True, int(entry["count"]), f".{stored_fmt}",
                             entry.get("options") or frame_options))
        else:
            if ds.exists() and set(fm["sequences"]) - set(replaced) and frames_format != stored_fmt:
                raise DatasetError(f"'{root}' stores frames as {stored_fmt}; pass --frames-format {stored_fmt} "
                                   f"(or extract into another dataset)")
            with open_video(src.path, fps=fps, start=start, end=end, resize=resize) as reader:  # fails early
                estimate = reader.estimated_count
            jobs.append(_Job(src.seq, source, False, estimate, f".{frames_format}", frame_options))
    if overwrite and rank == 0:
        for name in set(cls.outputs) | set((km or {}).get("outputs", [])):
            shutil.rmtree(root / name, ignore_errors=True)
        ds.meta_path(kind).unlink(missing_ok=True)
    if replaced:
        _drop_sequences(ds, replaced)

    report = ExtractionReport(kind, backend, root, rank, world, min(workers, max(1, len(jobs))), reports)
    if not jobs:
        log.info("nothing to do: %d sequence(s) of '%s' already in '%s'", len(reports), kind, root)
        report.seconds = time.perf_counter() - t0
        return report
    created_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    others = tuple(b for b in registry.extractor_kinds().get(kind, []) if b != backend)
    ctx = _Context(root, kind, backend, plugin, cls, config, device, f".{frames_format}", allow_empty, others)
    counts = [j.count for j in jobs]
    total = None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
    import sys

    show = progress if progress is not None else (sys.stderr.isatty() and rank == 0)
    desc = f"{kind}/{backend}" + (f" rank {rank}/{world}" if world > 1 else "")
    try:
        with _terminate_as_interrupt(), _progress_bar(bool(show), total, desc) as advance:
            if report.workers == 1:
                extractor = cls(config, device)
                try:
                    for job in jobs:
                        report.sequences.append(_run_sequence(ctx, job, extractor, advance))
                finally:
                    extractor.close()
            else:
                report.sequences.extend(_run_parallel(ctx, jobs, report.workers, advance))
    except BaseException:
        if created_root and world == 1 and not ds.exists():
            shutil.rmtree(root, ignore_errors=True)
        raise
    order = {s.seq: i for i, s in enumerate(sources)}
    report.sequences.sort(key=lambda s: order.get(s.seq, len(order)))
    report.seconds = time.perf_counter() - t0
    return report
