"""Input PATHs of ``v2v eval``: what a path is, which sequences it holds, and how real and fake pair up.

A PATH is one of

* a video file (``.mp4 .avi .mov .mkv .webm`` ...): one sequence named after the file's stem;
* a folder of frames (``*.png``, ``*.jpg`` ...), e.g. a dataset sequence folder ``DATASET/frames/<seq>``: one
  sequence named after the folder;
* a dataset root (``DATASET/meta/frames.json``): its sequences ``DATASET/frames/<seq>``;
* a folder of sequences: ``<seq>.mp4`` files and/or ``<seq>/`` frame folders (what ``v2v synthesize`` writes for
  several sequences).

Pairing (:func:`pair_inputs`): two single sequences pair with each other whatever their names; otherwise
sequences pair by name. Every fake sequence needs a real one of the same name; real sequences without a fake are
skipped (evaluating only the synthesized split is the common case) and listed in the result's details.
Frames are read through :func:`v2vcli.io.video.open_video`, so plugins that claim new formats work here too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from v2vcli.errors import DatasetError, VideoError

__all__ = [
    "InputSequence",
    "EvalInput",
    "resolve_input",
    "pair_inputs",
    "open_sequence",
    "iter_frames",
    "estimated_frames",
    "match_size",
    "paired_frames",
    "sequence_signature",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputSequence:
    """One sequence of frames: a video file or a frame folder."""

    name: str
    path: Path
    kind: Literal["video", "frames"]


@dataclass(frozen=True)
class EvalInput:
    """A resolved PATH and the sequences it holds (in name order)."""

    path: Path
    kind: Literal["video", "frames", "dataset", "collection"]
    sequences: tuple[InputSequence, ...] = field(default_factory=tuple)

    @property
    def single(self) -> bool:
        return self.kind in ("video", "frames")

    def names(self) -> list[str]:
        return [s.name for s in self.sequences]


def _suffixes() -> tuple[frozenset[str], frozenset[str]]:
    """(video, image) file suffixes the built-in readers handle (imported late: v2vcli.io.video loads numpy)."""
    from v2vcli.io.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    return frozenset(VIDEO_SUFFIXES), frozenset(IMAGE_SUFFIXES)


def _image_files(folder: Path) -> list[Path]:
    image_suffixes = _suffixes()[1]
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise VideoError(f"cannot list '{folder}': {exc.strerror or exc}") from exc
    return sorted((Path(e.path) for e in entries
                   if e.is_file() and Path(e.name).suffix.lower() in image_suffixes and not e.name.startswith(".")),
                  key=lambda p: p.name)


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in _suffixes()[0]


def resolve_input(path: str | Path, what: str = "PATH") -> EvalInput:
    """Classify ``path`` (see the module docstring); ``what`` names the option in error messages."""
    p = Path(path).expanduser()
    if not p.exists():
        raise VideoError(f"{what} '{path}' does not exist; give a video, a frame folder, a dataset sequence folder "
                         f"or a dataset root")
    if p.is_file():
        if p.suffix.lower() in _suffixes()[1]:
            raise VideoError(f"{what} '{path}' is a single image; give the folder of frames it belongs to")
        # Any other file is handed to the video readers (a plugin may claim a new container format).
        return EvalInput(p, "video", (InputSequence(p.stem, p, "video"),))
    if (p / "meta" / "frames.json").is_file():
        from v2vcli.data.layout import Dataset

        ds = Dataset(p)
        seqs = []
        for name in ds.sequences():
            folder = ds.modality_dir("frames", name)
            if not folder.is_dir():
                raise DatasetError(f"dataset '{p}' lists sequence '{name}' but has no folder '{folder}'; run "
                                   f"`v2v dataset check {p}`")
            seqs.append(InputSequence(name, folder, "frames"))
        if not seqs:
            raise DatasetError(f"dataset '{p}' has no sequences in meta/frames.json")
        return EvalInput(p, "dataset", tuple(seqs))
    if _image_files(p):
        return EvalInput(p, "frames", (InputSequence(p.name, p, "frames"),))
    found: dict[str, InputSequence] = {}
    for child in sorted(p.iterdir(), key=lambda c: c.name):
        if child.name.startswith("."):
            continue
        if _is_video(child):
            seq = InputSequence(child.stem, child, "video")
        elif child.is_dir() and _image_files(child):
            seq = InputSequence(child.name, child, "frames")
        else:
            continue
        if seq.name in found:
            raise VideoError(f"{what} '{path}' holds sequence '{seq.name}' twice ('{found[seq.name].path.name}' "
                             f"and '{child.name}'); keep one")
        found[seq.name] = seq
    if not found:
        raise VideoError(f"{what} '{path}' holds no frames, videos or sequence folders; give a video, a frame "
                         f"folder, a dataset sequence folder or a dataset root")
    return EvalInput(p, "collection", tuple(found.values()))


def pair_inputs(real: EvalInput, fake: EvalInput) -> list[tuple[InputSequence, InputSequence]]:
    """(real, fake) sequence pairs; see the module docstring for the rules."""
    if real.single and fake.single:
        return [(real.sequences[0], fake.sequences[0])]
    by_name = {s.name: s for s in real.sequences}
    if fake.single and not real.single:
        seq = fake.sequences[0]
        if seq.name not in by_name:
            raise DatasetError(f"--fake '{fake.path}' is one sequence named '{seq.name}' but --real '{real.path}' "
                               f"holds {_names(real)}; name the fake after its sequence or pass the real sequence "
                               f"folder")
        return [(by_name[seq.name], seq)]
    if real.single and not fake.single:
        if len(fake.sequences) == 1:
            return [(real.sequences[0], fake.sequences[0])]
        match = [s for s in fake.sequences if s.name == real.sequences[0].name]
        if match:
            return [(real.sequences[0], match[0])]
        raise DatasetError(f"--real '{real.path}' is one sequence but --fake '{fake.path}' holds {_names(fake)}; "
                           f"pass the fake sequence to compare with, or a real dataset with those sequences")
    missing = [s.name for s in fake.sequences if s.name not in by_name]
    if missing:
        raise DatasetError(f"--fake sequences {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''} have no "
                           f"real sequence of the same name in '{real.path}' (real holds {_names(real)})")
    unused = sorted(set(by_name) - set(fake.names()))
    if unused:
        log.info("real sequences without a fake are not evaluated: %s", ", ".join(unused))
    return [(by_name[s.name], s) for s in fake.sequences]


def _names(inp: EvalInput) -> str:
    names = inp.names()
    return ", ".join(names[:8]) + (f" ... ({len(names)} sequences)" if len(names) > 8 else "")


def open_sequence(seq: InputSequence) -> Any:
    """A :class:`v2vcli.io.video.VideoReader` of ``seq`` (context manager; ``fps``, ``size`` (W, H), ``count``)."""
    from v2vcli.io.video import open_video

    return open_video(seq.path)


def estimated_frames(seqs: Iterable[InputSequence]) -> int | None:
    """Cheap total frame count of ``seqs`` for progress bars (None when no reader knows its count)."""
    total = 0
    for seq in seqs:
        with open_sequence(seq) as reader:
            total += int(getattr(reader, "estimated_count", None) or 0)
    return total or None


def iter_frames(seq: InputSequence) -> Iterator[Any]:
    """RGB uint8 (H, W, 3) frames of ``seq`` in order."""
    with open_sequence(seq) as reader:
        yield from reader


def match_size(frame: Any, size: tuple[int, int]) -> Any:
    """``frame`` resized to ``size`` (W, H): area filter when shrinking, bicubic when enlarging."""
    import cv2
    import numpy as np

    h, w = frame.shape[:2]
    if (w, h) == tuple(size):
        return frame
    interp = cv2.INTER_AREA if size[0] * size[1] < w * h else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(frame, tuple(size), interpolation=interp))


def paired_frames(real: InputSequence, fake: InputSequence, *, resize_fake: bool = False,
                  notes: list[str] | None = None) -> Iterator[tuple[Any, Any]]:
    """(real, fake) RGB uint8 frame pairs of two sequences, in order.

    Different frame counts compare the common prefix (a note is appended to ``notes``); different sizes are an
    error unless ``resize_fake`` resizes fake frames to the real size.
    """
    with open_sequence(real) as r_reader, open_sequence(fake) as f_reader:
        r_iter, f_iter = iter(r_reader), iter(f_reader)
        n = 0
        for r_frame in r_iter:
            f_frame = next(f_iter, None)
            if f_frame is None:
                rest = 1 + sum(1 for _ in r_iter)
                _note(notes, f"'{real.name}': real has {n + rest} frames, fake {n}; compared the first {n}")
                return
            if f_frame.shape != r_frame.shape:
                if not resize_fake:
                    raise VideoError(f"frame sizes differ in sequence '{fake.name}': real "
                                     f"{r_frame.shape[1]}x{r_frame.shape[0]}, fake {f_frame.shape[1]}x"
                                     f"{f_frame.shape[0]}; pass --resize-fake to resize fake frames to the real size")
                f_frame = match_size(f_frame, (r_frame.shape[1], r_frame.shape[0]))
            n += 1
            yield r_frame, f_frame
        rest = sum(1 for _ in f_iter)
        if rest:
            _note(notes, f"'{fake.name}': fake has {n + rest} frames, real {n}; compared the first {n}")


def _note(notes: list[str] | None, text: str) -> None:
    log.warning("%s", text)
    if notes is not None:
        notes.append(text)


def sequence_signature(seq: InputSequence) -> dict[str, Any]:
    """What identifies the content of ``seq`` cheaply: resolved path, and size + mtime of every file read."""
    path = seq.path.resolve()
    if seq.kind == "video":
        st = path.stat()
        files = [[path.name, st.st_size, st.st_mtime_ns]]
    else:
        files = []
        for f in _image_files(path):
            st = f.stat()
            files.append([f.name, st.st_size, st.st_mtime_ns])
    return {"path": str(path), "kind": seq.kind, "files": files}
