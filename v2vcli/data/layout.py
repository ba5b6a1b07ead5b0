"""The v2v dataset layout (fixed names): folders, per-frame file names, meta files, splits and label sets.

```
DATASET/
  meta/frames.json   meta/<kind>.json   splits.json
  frames/<seq>/000000.jpg  seg/<seq>/000000.png  inst/<seq>/000000.png  edges/<seq>/000000.png
  pose/<seq>/000000.png + .json  densepose/<seq>/000000.png  flow/<seq>/000000.npz
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from v2vcli.errors import DatasetError, did_you_mean
from v2vcli.io.files import read_json, write_json
from v2vcli.io.preview import label_palette

__all__ = [
    "MODALITY_EXT",
    "LabelClass",
    "LabelSet",
    "Dataset",
    "frame_name",
    "CITYSCAPES_CLASSES",
    "cityscapes_label_set",
    "generic_label_set",
]

# File extension of each known modality; a new kind from a plugin defaults to .png.
MODALITY_EXT: dict[str, str] = {
    "frames": ".jpg",
    "seg": ".png",
    "inst": ".png",
    "edges": ".png",
    "densepose": ".png",
    "pose": ".png",
    "flow": ".npz",
}


def frame_name(index: int, ext: str) -> str:
    return f"{index:06d}{ext}"


@dataclass(frozen=True)
class LabelClass:
    id: int
    name: str
    color: tuple[int, int, int]


@dataclass
class LabelSet:
    """Named label classes; models take label_nc and foreground classes from here (by name, not number)."""

    name: str
    classes: list[LabelClass] = field(default_factory=list)
    ignore_id: int | None = None

    @property
    def num_classes(self) -> int:
        """label_nc: one more than the largest id (ids need not be contiguous)."""
        return max((c.id for c in self.classes), default=-1) + 1

    def id_of(self, name_or_id: str | int) -> int:
        if isinstance(name_or_id, int) or (isinstance(name_or_id, str) and name_or_id.isdigit()):
            value = int(name_or_id)
            if value not in {c.id for c in self.classes}:
                raise DatasetError(f"label id {value} is not in label set '{self.name}' "
                                   f"(ids 0..{self.num_classes - 1})")
            return value
        for c in self.classes:
            if c.name == name_or_id:
                return c.id
        raise DatasetError(f"class '{name_or_id}' is not in label set '{self.name}'"
                           f"{did_you_mean(str(name_or_id), [c.name for c in self.classes])}")

    def palette(self) -> Any:
        """(256, 3) uint8 colour table indexed by id (unknown ids black)."""
        pal = np.zeros((256, 3), dtype=np.uint8)
        for c in self.classes:
            if 0 <= c.id < 256:
                pal[c.id] = c.color
        return pal

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ignore_id": self.ignore_id,
                "classes": [{"id": c.id, "name": c.name, "color": list(c.color)} for c in self.classes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSet:
        try:
            classes = [LabelClass(int(c["id"]), str(c["name"]), tuple(int(v) for v in c["color"]))  # type: ignore[arg-type]
                       for c in data["classes"]]
            return cls(str(data.get("name", "custom")), classes, data.get("ignore_id"))
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"malformed label set ({exc}); expected {{name, classes: [{{id, name, color}}]}}") from exc


# Cityscapes labelIds (the ids of ``*_gtFine_labelIds.png`` that vid2vid's street models are trained on) with
# cityscapesScripts' names and colours (MIT). The official "license plate" (id -1, which uint8 cannot hold) takes
# id 34, giving the 35 classes (label_nc) of vid2vid's street presets. 0 "unlabeled" is the ignored id, as in
# cityscapesScripts' evaluation.
CITYSCAPES_CLASSES: tuple[tuple[int, str, tuple[int, int, int]], ...] = (
    (0, "unlabeled", (0, 0, 0)), (1, "ego vehicle", (0, 0, 0)), (2, "rectification border", (0, 0, 0)),
    (3, "out of roi", (0, 0, 0)), (4, "static", (0, 0, 0)), (5, "dynamic", (111, 74, 0)),
    (6, "ground", (81, 0, 81)), (7, "road", (128, 64, 128)), (8, "sidewalk", (244, 35, 232)),
    (9, "parking", (250, 170, 160)), (10, "rail track", (230, 150, 140)), (11, "building", (70, 70, 70)),
    (12, "wall", (102, 102, 156)), (13, "fence", (190, 153, 153)), (14, "guard rail", (180, 165, 180)),
    (15, "bridge", (150, 100, 100)), (16, "tunnel", (150, 120, 90)), (17, "pole", (153, 153, 153)),
    (18, "polegroup", (153, 153, 153)), (19, "traffic light", (250, 170, 30)), (20, "traffic sign", (220, 220, 0)),
    (21, "vegetation", (107, 142, 35)), (22, "terrain", (152, 251, 152)), (23, "sky", (70, 130, 180)),
    (24, "person", (220, 20, 60)), (25, "rider", (255, 0, 0)), (26, "car", (0, 0, 142)), (27, "truck", (0, 0, 70)),
    (28, "bus", (0, 60, 100)), (29, "caravan", (0, 0, 90)), (30, "trailer", (0, 0, 110)),
    (31, "train", (0, 80, 100)), (32, "motorcycle", (0, 0, 230)), (33, "bicycle", (119, 11, 32)),
    (34, "license plate", (0, 0, 142)),
)


def cityscapes_label_set() -> LabelSet:
    """The 35 Cityscapes labelIds (0..34, label_nc 35) with cityscapesScripts' names and colours; ignores 0."""
    return LabelSet("cityscapes", [LabelClass(i, name, color) for i, name, color in CITYSCAPES_CLASSES], ignore_id=0)


def generic_label_set(classes: int | Sequence[str], name: str = "generic",
                      colors: Sequence[tuple[int, int, int] | None] | None = None,
                      ignore_id: int | None = None) -> LabelSet:
    """Ids 0..N-1 for labels without a published table: ``classes`` is N (named ``class_<id>``) or the names in id
    order; colours come from ``colors`` where given, else the preview palette."""
    names = [f"class_{i}" for i in range(classes)] if isinstance(classes, int) else list(classes)
    if len(names) > 256:
        raise ValueError(f"{len(names)} classes do not fit 8-bit label ids")
    pal = label_palette(256)
    given = list(colors or [])
    table = []
    for i, cname in enumerate(names):
        color = given[i] if i < len(given) and given[i] is not None else pal[i]
        table.append(LabelClass(i, cname, (int(color[0]), int(color[1]), int(color[2]))))  # type: ignore[index]
    return LabelSet(name, table, ignore_id)


class Dataset:
    """A dataset folder. Paths only; reading and checking live in other modules."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # paths -------------------------------------------------------------------------------------------------------
    @property
    def meta_dir(self) -> Path:
        return self.root / "meta"

    def modality_dir(self, kind: str, seq: str | None = None) -> Path:
        return self.root / kind if seq is None else self.root / kind / seq

    def frame_path(self, kind: str, seq: str, index: int, ext: str | None = None) -> Path:
        return self.root / kind / seq / frame_name(index, ext or MODALITY_EXT.get(kind, ".png"))

    def meta_path(self, kind: str) -> Path:
        return self.meta_dir / f"{kind}.json"

    # meta --------------------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.meta_dir / "frames.json").is_file()

    def frames_meta(self) -> dict[str, Any]:
        """``{"sequences": {seq: {fps, size: [W, H], count, source, options}}, "format": "jpg"}``."""
        path = self.meta_path("frames")
        if not path.is_file():
            raise DatasetError(f"'{self.root}' is not a v2v dataset (no meta/frames.json); create one with "
                               f"`v2v extract KIND VIDEO -o {self.root}` or `v2v demo world --out {self.root}`")
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("sequences"), dict):
            raise DatasetError(f"'{path}' is malformed: expected a 'sequences' mapping")
        return data

    def write_frames_meta(self, data: dict[str, Any]) -> None:
        write_json(self.meta_path("frames"), data)

    def kind_meta(self, kind: str) -> dict[str, Any] | None:
        path = self.meta_path(kind)
        return read_json(path) if path.is_file() else None  # type: ignore[no-any-return]

    def write_kind_meta(self, kind: str, data: dict[str, Any]) -> None:
        write_json(self.meta_path(kind), data)

    def sequences(self) -> list[str]:
        return sorted(self.frames_meta()["sequences"])

    def count(self, seq: str) -> int:
        return int(self.frames_meta()["sequences"][seq]["count"])

    def modalities(self) -> list[str]:
        """Folders present beside meta/ (frames, seg, ...)."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name != "meta")

    def label_set(self, kind: str = "seg") -> LabelSet:
        meta = self.kind_meta(kind)
        if not meta or "label_set" not in meta:
            raise DatasetError(f"dataset '{self.root}' has no label set in meta/{kind}.json; extract '{kind}' "
                               f"first")
        return LabelSet.from_dict(meta["label_set"])

    # splits ------------------------------------------------------------------------------------------------------
    def splits(self) -> dict[str, list[str]]:
        path = self.root / "splits.json"
        if not path.is_file():
            return {"train": self.sequences(), "val": []}
        data = read_json(path)
        if not isinstance(data, dict):
            raise DatasetError(f"'{path}' must be a mapping like {{\"train\": [...], \"val\": [...]}}")
        return {str(k): [str(s) for s in v] for k, v in data.items()}

    def split(self, name: str) -> list[str]:
        splits = self.splits()
        if name not in splits:
            raise DatasetError(f"dataset '{self.root}' has no split '{name}'{did_you_mean(name, splits)}")
        return splits[name]

    def write_splits(self, splits: dict[str, list[str]]) -> None:
        write_json(self.root / "splits.json", splits)
