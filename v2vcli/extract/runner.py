"""The runner: :func:`run_extraction` checks a run against the dataset, plans one job per sequence (skipping
finished ones), runs them in this process or in workers, and reports what it did."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from v2vcli.data.layout import Dataset
from v2vcli.distributed import dist_env, shard
from v2vcli.errors import ConfigError, DatasetError
from v2vcli.extract.inputs import resolve_inputs
from v2vcli.extract.options import build_config, options_dict
from v2vcli.extract.sequence import Context, Job, SequenceReport, meta_lock, run_sequence
from v2vcli.extract.workers import run_parallel, terminate_as_interrupt
from v2vcli.io.video import open_video
from v2vcli.registry import get_registry
from v2vcli.runtime import progress as progress_bar

__all__ = ["FRAME_FORMATS", "ExtractionReport", "run_extraction"]

log = logging.getLogger(__name__)

FRAME_FORMATS = ("jpg", "png")


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


def _check_frame_options(resize: tuple[int, int] | None, fps: float | None, start: float | None,
                         end: float | None) -> None:
    for name, value in (("--fps", fps), ("--start", start), ("--end", end)):
        if value is not None and not math.isfinite(value):
            unit = "frames per second" if name == "--fps" else "seconds"
            raise ConfigError(f"{name} must be a finite number of {unit}, got {value}")
    if fps is not None and not fps > 0:
        raise ConfigError(f"--fps must be positive, got {fps}")
    if start is not None and start < 0:
        raise ConfigError(f"--start must be >= 0, got {start}")
    if end is not None and end <= (start or 0.0):
        raise ConfigError(f"--end ({end}) must be after --start ({start or 0.0})")
    if resize is not None and (len(resize) != 2 or 0 in resize or min(resize) < -1 or resize == (-1, -1)):
        raise ConfigError(f"--resize must be W×H with positive sides (one may be -1), got {resize}")


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
    with meta_lock(ds.root):
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
    """Extract ``kind`` from ``inputs`` into ``dataset`` (see :mod:`v2vcli.extract`).

    ``frames_format`` is "jpg" or "png" for frames this run writes (None: the dataset's format, else jpg);
    ``progress`` None shows a bar only on a terminal; ``overwrite`` deletes earlier results of ``kind`` first;
    ``allow_empty`` keeps a sequence in which a detecting extractor (pose, face edges, selfie, detectron2) found
    nothing, which is otherwise an error.
    """
    t0 = time.perf_counter()
    registry = get_registry()
    cls = registry.get_extractor(kind, backend)
    backend = backend or registry.default_backend(kind)
    plugin = registry.extractors()[f"{kind}/{backend}"].plugin
    config = build_config(cls, options)
    options_json = options_dict(config)
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    _check_frame_options(resize, fps, start, end)
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
    jobs: list[Job] = []
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
            jobs.append(Job(src.seq, str(entry.get("source", source)), True, int(entry["count"]), f".{stored_fmt}",
                            entry.get("options") or frame_options))
        else:
            if ds.exists() and set(fm["sequences"]) - set(replaced) and frames_format != stored_fmt:
                raise DatasetError(f"'{root}' stores frames as {stored_fmt}; pass --frames-format {stored_fmt} "
                                   f"(or extract into another dataset)")
            with open_video(src.path, fps=fps, start=start, end=end, resize=resize) as reader:  # fails early
                estimate = reader.estimated_count
            jobs.append(Job(src.seq, source, False, estimate, f".{frames_format}", frame_options))
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
    ctx = Context(root, kind, backend, plugin, cls, config, device, f".{frames_format}", allow_empty, others)
    counts = [j.count for j in jobs]
    total = None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
    show = progress if progress is not None else (sys.stderr.isatty() and rank == 0)
    desc = f"{kind}/{backend}" + (f" rank {rank}/{world}" if world > 1 else "")
    try:
        with terminate_as_interrupt(), progress_bar(total, desc, enabled=bool(show), unit="frames",
                                                    transient=False) as advance:
            if report.workers == 1:
                extractor = cls(config, device)
                try:
                    for job in jobs:
                        report.sequences.append(run_sequence(ctx, job, extractor, advance))
                finally:
                    extractor.close()
            else:
                report.sequences.extend(run_parallel(ctx, jobs, report.workers, advance))
    except BaseException:
        if created_root and world == 1 and not ds.exists():
            shutil.rmtree(root, ignore_errors=True)
        raise
    order = {s.seq: i for i, s in enumerate(sources)}
    report.sequences.sort(key=lambda s: order.get(s.seq, len(order)))
    report.seconds = time.perf_counter() - t0
    return report
