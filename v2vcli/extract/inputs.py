"""INPUT arguments of ``v2v extract``: videos, frame folders, dataset sequence folders, datasets, or folders of
videos and frame folders, expanded to the sequences to extract. A sequence folder of a dataset is told apart by
:func:`v2vcli.io.inputs.dataset_of_sequence_folder` (its frames are reused, not rewritten)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from v2vcli.data.layout import Dataset
from v2vcli.errors import ConfigError, DatasetError, VideoError
from v2vcli.io.inputs import dataset_of_sequence_folder
from v2vcli.io.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES

__all__ = ["InputSource", "resolve_inputs"]


@dataclass(frozen=True)
class InputSource:
    """One input sequence: ``seq`` is its name in the dataset (a video's stem, a folder's name)."""

    seq: str
    path: Path
    kind: Literal["video", "folder", "dataset"]  # dataset: DATASET/frames/<seq> listed in DATASET/meta/frames.json
    dataset_root: Path | None = None


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") for p in folder.iterdir()
               if p.is_file())


def resolve_inputs(inputs: Sequence[str | Path]) -> list[InputSource]:
    """Expand INPUT arguments: a video file, a frame folder, a dataset sequence folder, a dataset, or a folder of
    videos and frame folders (sorted by name). Two inputs giving one sequence name is an error."""
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
            root = dataset_of_sequence_folder(path, "frames")
            found.append(InputSource(path.name, path, "dataset" if root else "folder", root))
        else:
            before = len(found)
            for child in sorted(path.iterdir(), key=lambda p: p.name):
                if child.name.startswith("."):
                    continue
                if child.is_file() and child.suffix.lower() in VIDEO_SUFFIXES:
                    found.append(InputSource(child.stem, child, "video"))
                elif child.is_dir() and _has_images(child):
                    root = dataset_of_sequence_folder(child, "frames")
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
