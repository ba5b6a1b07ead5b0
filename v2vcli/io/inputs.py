"""Input PATHs of every command: what a path is, which sequences it holds, and how real and fake pair up.

A PATH is one of

* a video file (``.mp4 .avi .mov .mkv .webm`` ...): one sequence named after the file's stem;
* a folder of frames (``*.png``, ``*.jpg`` ...), e.g. a dataset sequence folder ``DATASET/frames/<seq>``: one
  sequence named after the folder;
* a dataset root (``DATASET/meta/frames.json``): its sequences ``DATASET/frames/<seq>``;
* a folder of sequences: ``<seq>.mp4`` files and/or ``<seq>/`` frame folders (what ``v2v synthesize`` writes for
  several sequences). The side-by-side previews ``synthesize --preview`` writes beside them (``<seq>_preview.mp4``,
  ``<seq>_preview/``) are not sequences: an entry ``X_preview`` is left out when ``X`` is there too.

Pairing (:func:`pair_inputs`): two single sequences pair with each other whatever their names; otherwise
sequences pair by name: the exact name first, else the name compared case-insensitively when that match is
unambiguous (exactly one real sequence has that lower-cased name). Every fake sequence needs a real one; real
sequences without a fake are skipped (evaluating only the synthesized split is the common case) and listed in the
result's details.
:func:`dataset_of_sequence_folder` tells whether a folder is ``DATASET/<modality>/<seq>`` of a v2v dataset.
Frames are read through :func:`v2vcli.io.video.open_video`, so plugins that claim new formats work here too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from v2vcli.data.layout import Dataset
from v2vcli.errors import DatasetError, VideoError
from v2vcli.io.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, open_video

__all__ = [
    "InputSequence",
    "EvalInput",
    "resolve_input",
    "dataset_of_sequence_folder",
    "pair_inputs",
    "find_by_name",
    "open_sequence",
    "iter_frames",
    "estimated_frames",
    "match_size",
    "paired_frames",
    "sequence_signature",
]

log = logging.getLogger(__name__)

#: what `v2v synthesize --preview` appends to an output's name (v2v_plugins.synthesize.outputs.preview_path)
PREVIEW_SUFFIX = "_preview"


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


def _image_files(folder: Path) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise VideoError(f"cannot list '{folder}': {exc.strerror or exc}") from exc
    return sorted((Path(e.path) for e in entries
                   if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES and not e.name.startswith(".")),
                  key=lambda p: p.name)


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def resolve_input(path: str | Path, what: str = "PATH") -> EvalInput:
    """Classify ``path`` (see the module docstring); ``what`` names the option in error messages."""
    p = Path(path).expanduser()
    if not p.exists():
        raise VideoError(f"{what} '{path}' does not exist; give a video, a frame folder, a dataset sequence folder "
                         f"or a dataset root")
    if p.is_file():
        if p.suffix.lower() in IMAGE_SUFFIXES:
            raise VideoError(f"{what} '{path}' is a single image; give the folder of frames it belongs to")
        # Any other file is handed to the video readers (a plugin may claim a new container format).
        return EvalInput(p, "video", (InputSequence(p.stem, p, "video"),))
    if (p / "meta" / "frames.json").is_file():
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
    previews = [n for n in found if n.endswith(PREVIEW_SUFFIX) and n[: -len(PREVIEW_SUFFIX)] in found]
    for name in previews:
        log.info("%s: '%s' is the preview of '%s' (synthesize --preview), not a sequence; left out", what,
                 found[name].path.name, name[: -len(PREVIEW_SUFFIX)])
        del found[name]
    if not found:
        raise VideoError(f"{what} '{path}' holds no frames, videos or sequence folders; give a video, a frame "
                         f"folder, a dataset sequence folder or a dataset root")
    return EvalInput(p, "collection", tuple(found.values()))


def dataset_of_sequence_folder(folder: str | Path, modality: str | None = None) -> Path | None:
    """The dataset root when ``folder`` is ``DATASET/<modality>/<seq>`` (any modality when ``modality`` is None) of a
    sequence listed in ``DATASET/meta/frames.json``; else None."""
    folder = Path(folder)
    root = folder.parent.parent
    if folder.parent.name == "meta" or (modality is not None and folder.parent.name != modality):
        return None
    if not (root / "meta" / "frames.json").is_file():
        return None
    try:
        return root if folder.name in Dataset(root).frames_meta()["sequences"] else None
    except DatasetError:
        return None


def pair_inputs(real: EvalInput, fake: EvalInput) -> list[tuple[InputSequence, InputSequence]]:
    """(real, fake) sequence pairs; see the module docstring for the rules."""
    if real.single and fake.single:
        return [(real.sequences[0], fake.sequences[0])]
    if fake.single and not real.single:
        seq = fake.sequences[0]
        match = find_by_name(real.sequences, seq.name)
        if match is None:
            raise DatasetError(f"--fake '{fake.path}' is one sequence named '{seq.name}' but --real '{real.path}' "
                               f"holds {_names(real)}; name the fake after its sequence or pass the real sequence "
                               f"folder")
        return [(match, seq)]
    if real.single and not fake.single:
        if len(fake.sequences) == 1:
            return [(real.sequences[0], fake.sequences[0])]
        match = find_by_name(fake.sequences, real.sequences[0].name)
        if match is not None:
            return [(real.sequences[0], match)]
        raise DatasetError(f"--real '{real.path}' is one sequence but --fake '{fake.path}' holds {_names(fake)}; "
                           f"pass the fake sequence to compare with, or a real dataset with those sequences")
    pairs = [(find_by_name(real.sequences, s.name), s) for s in fake.sequences]
    missing = [f.name for r, f in pairs if r is None]
    if missing:
        raise DatasetError(f"--fake sequences {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''} have no "
                           f"real sequence of the same name in '{real.path}' (real holds {_names(real)}; names "
                           f"match exactly, or case-insensitively when only one real name fits)")
    used: dict[str, str] = {}
    for r, f in pairs:
        assert r is not None  # noqa: S101 - missing ones raised above
        if r.name in used:
            raise DatasetError(f"--fake sequences '{used[r.name]}' and '{f.name}' both match the real sequence "
                               f"'{r.name}' (names compare case-insensitively); rename one")
        used[r.name] = f.name
    unused = sorted(r.name for r in real.sequences if r.name not in used)
    if unused:
        log.info("real sequences without a fake are not evaluated: %s", ", ".join(unused))
    return [(r, f) for r, f in pairs if r is not None]


def find_by_name(seqs: Iterable[InputSequence], name: str) -> InputSequence | None:
    """The sequence named ``name``; else the one whose name equals it case-insensitively, when exactly one does."""
    seqs = list(seqs)
    for s in seqs:
        if s.name == name:
            return s
    folded = [s for s in seqs if s.name.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


def _names(inp: EvalInput) -> str:
    names = inp.names()
    return ", ".join(names[:8]) + (f" ... ({len(names)} sequences)" if len(names) > 8 else "")


def open_sequence(seq: InputSequence) -> Any:
    """A :class:`v2vcli.io.video.VideoReader` of ``seq`` (context manager; ``fps``, ``size`` (W, H), ``count``)."""
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
        warned = False
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
                if not warned:
                    warned = _warn_aspect(notes, fake.name, r_frame.shape, f_frame.shape) or warned
                f_frame = match_size(f_frame, (r_frame.shape[1], r_frame.shape[0]))
            n += 1
            yield r_frame, f_frame
        rest = sum(1 for _ in f_iter)
        if rest:
            _note(notes, f"'{fake.name}': fake has {n + rest} frames, real {n}; compared the first {n}")


def _warn_aspect(notes: list[str] | None, name: str, real_shape: tuple[int, ...], fake_shape: tuple[int, ...]) -> bool:
    """Note (once per sequence) that --resize-fake stretches the fake because the aspect ratios differ (> 1%)."""
    rh, rw = real_shape[:2]
    fh, fw = fake_shape[:2]
    if abs((fw / fh) / (rw / rh) - 1) <= 0.01:
        return False
    _note(notes, f"'{name}': --resize-fake stretches the fake frames from {fw}x{fh} to {rw}x{rh}: the aspect "
                 f"ratios differ ({fw / fh:.3f} vs {rw / rh:.3f}), so the scores include the distortion")
    return True


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
