"""Write synthetic-world sequences as a v2v dataset (the layout of docs/architecture.md): frames, seg, inst, flow,
meta and splits.

The dataset is assembled in a temporary sibling folder and renamed into place at the end, so an interrupted run
leaves nothing behind and an existing world dataset at the same path is replaced only by a complete new one.
Files carry no timestamps and every encoder is deterministic: the same arguments give byte-identical files.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from v2vcli.data.layout import Dataset
from v2vcli.errors import ConfigError, DatasetError
from v2vcli.io.files import write_flow, write_image, write_instance, write_json, write_label
from v2vcli.runtime import ProgressBar

from .render import DEFAULT_FPS, iter_frames
from .scene import CLASS_ID, FOREGROUND_CLASSES, INSTANCE_FACTOR, world_label_set

__all__ = ["WORLD_VERSION", "WorldReport", "parse_size", "sequence_name", "write_world"]

log = logging.getLogger(__name__)

WORLD_VERSION = "1"  # bump when the same seed renders differently
MIN_SIDE, MAX_SIDE = 32, 2048
_OURS = ("frames", "seg", "inst", "flow", "meta")


@dataclass
class WorldReport:
    """What :func:`write_world` wrote."""

    root: Path
    sequences: list[str]
    frames: int
    size: tuple[int, int]
    splits: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": str(self.root), "sequences": self.sequences, "frames": self.frames,
                "size": list(self.size), "splits": self.splits, "seconds": round(self.seconds, 3)}


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' (also 'W×H') → (W, H), checked against the supported range."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m:
        raise ConfigError(f"size '{text}' is not WxH (e.g. 256x128)")
    w, h = int(m.group(1)), int(m.group(2))
    _check_size((w, h))
    return w, h


def _check_size(size: tuple[int, int]) -> None:
    w, h = size
    if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
        raise ConfigError(f"size {w}x{h} is out of range: width and height must be {MIN_SIDE}..{MAX_SIDE} "
                          f"(e.g. 64x64, 256x128, 512x256)")


def sequence_name(index: int, total: int) -> str:
    """``world_000``, ``world_001``, ... (more digits beyond 1000 sequences)."""
    return f"world_{index:0{max(3, len(str(max(total - 1, 0))))}d}"


def _is_world_dataset(root: Path) -> bool:
    ds = Dataset(root)
    try:
        seqs = ds.frames_meta()["sequences"]
    except DatasetError:
        return False
    if not all(isinstance(e, dict) and e.get("source") == "world" for e in seqs.values()):
        return False
    others = [p.name for p in root.iterdir() if p.name not in (*_OURS, "splits.json")]
    return not others


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"'{out}' is a file; give a folder for the dataset")
    if out.is_dir() and any(out.iterdir()) and not _is_world_dataset(out):
        raise DatasetError(f"'{out}' is not empty and is not a synthetic-world dataset written by `v2v demo world`; "
                           f"choose a new or empty folder (it is replaced only when it holds a world dataset)")


def write_world(out: str | Path, seed: int = 0, size: tuple[int, int] = (256, 128), frames: int = 30,
                sequences: int = 4, val: int = 1, *, fps: float | None = None, frames_format: str = "jpg",
                quality: int = 95, progress: bool | None = None) -> Path:
    """Render ``sequences`` world sequences of ``frames`` frames at ``size`` (W, H) into the dataset ``out``.

    Sequence k (``world_00k``) is ``render_sequence(seed, size, frames, index=k, fps=fps)``; the last ``val``
    sequences form the validation split. Returns the dataset path. See :func:`write_world_report` for details.
    """
    return write_world_report(out, seed, size, frames, sequences, val, fps=fps, frames_format=frames_format,
                              quality=quality, progress=progress).root


def write_world_report(out: str | Path, seed: int = 0, size: tuple[int, int] = (256, 128), frames: int = 30,
                       sequences: int = 4, val: int = 1, *, fps: float | None = None, frames_format: str = "jpg",
                       quality: int = 95, progress: bool | None = None) -> WorldReport:
    """:func:`write_world`, returning a :class:`WorldReport`."""
    t0 = time.perf_counter()
    size = (int(size[0]), int(size[1]))
    _check_size(size)
    fps = DEFAULT_FPS if fps is None else float(fps)
    if frames < 1:
        raise ConfigError(f"--frames {frames}: a sequence needs at least 1 frame")
    if sequences < 1:
        raise ConfigError(f"--sequences {sequences}: write at least 1 sequence")
    if not 0 <= val < sequences:
        raise ConfigError(f"--val {val}: the validation split takes 0..{sequences - 1} of the {sequences} sequences "
                          f"(at least one must stay for training)")
    if not 0 < fps <= 240:
        raise ConfigError(f"--fps {fps}: give a frame rate in (0, 240]")
    fmt = frames_format.lower().lstrip(".")
    if fmt == "jpeg":
        fmt = "jpg"
    if fmt not in ("jpg", "png"):
        raise ConfigError(f"--frames-format '{frames_format}' is not supported (valid: jpg, png)")
    if not 1 <= quality <= 100:
        raise ConfigError(f"JPEG quality {quality} is out of range 1..100")

    out = Path(out).absolute()
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    ds = Dataset(tmp)
    names = [sequence_name(k, sequences) for k in range(sequences)]
    w, h = size
    bar = ProgressBar(sequences * frames, "rendering world", enabled=progress)
    try:
        seq_meta: dict[str, Any] = {}
        for k, name in enumerate(names):
            for i, frame in enumerate(iter_frames(seed, size, frames, index=k, fps=fps)):
                write_image(ds.frame_path("frames", name, i, f".{fmt}"), frame.rgb, quality=quality)
                write_label(ds.frame_path("seg", name, i), frame.seg)
                write_instance(ds.frame_path("inst", name, i), frame.inst)
                write_flow(ds.frame_path("flow", name, i), frame.flow, frame.conf)
                bar.advance(1)
            seq_meta[name] = {"fps": fps, "size": [w, h], "count": frames, "source": "world",
                              "options": {"seed": int(seed), "index": k, "world_version": WORLD_VERSION}}
            log.info("%s: %d frames %dx%d", name, frames, w, h)
        options = {"seed": int(seed), "size": [w, h], "frames": int(frames), "fps": fps}
        counts = {name: {"count": frames} for name in names}
        common = {"plugin": "world", "backend": "world", "version": WORLD_VERSION, "options": options}
        ds.write_frames_meta({"sequences": seq_meta, "format": fmt})
        ds.write_kind_meta("seg", {
            "kind": "seg", "extractor": "world/render", **common, "outputs": ["seg"],
            "label_set": world_label_set().to_dict(), "foreground": list(FOREGROUND_CLASSES),
            "sequences": counts})
        car = CLASS_ID["car"]
        ds.write_kind_meta("inst", {
            "kind": "inst", "extractor": "world/render", **common, "outputs": ["inst"],
            "convention": f"stuff pixels hold their class id; car k of a sequence (k = 1, 2, ...) holds "
                          f"{INSTANCE_FACTOR} * {car} + k",
            "instance_factor": INSTANCE_FACTOR, "thing_classes": list(FOREGROUND_CLASSES), "sequences": counts})
        ds.write_kind_meta("flow", {
            "kind": "flow", "extractor": "world/exact", **common, "outputs": ["flow"],
            "direction": "backward t->t-1, pixels (dx, dy)",
            "confidence": "255 where the point is visible in frames t and t-1 with unchanged shading, 0 where "
                          "occluded, disoccluded, out of view or crossed by a moving shadow; frame 0: zero",
            "sequences": counts})
        splits = {"train": names[:sequences - val], "val": names[sequences - val:]}
        write_json(tmp / "splits.json", splits)
        if out.is_dir():  # _check_target made sure it is empty or an older world dataset: swap the contents
            for old in (*_OURS, "splits.json"):
                target = out / old
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
            for entry in sorted(tmp.iterdir()):
                os.replace(entry, out / entry.name)
            tmp.rmdir()
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    return WorldReport(root=out, sequences=names, frames=frames, size=size, splits=splits,
                       seconds=time.perf_counter() - t0)
