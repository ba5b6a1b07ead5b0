"""detectron2 predictions → v2v label ids, instance ids and label set (pure numpy; no detectron2 import).

:class:`Detectron2Converter` takes what detectron2's ``DefaultPredictor`` returns for one image and writes the two
maps of the dataset layout:

* ``seg`` uint8 (H, W): ids of the label set chosen for the model (:func:`choose_label_set`): COCO panoptic
  (0 unlabeled, 1..133), Cityscapes labelIds (0..34) or, for a model of another dataset, 0 unlabeled then the
  model's own classes.
* ``inst`` uint16 (H, W): **0 for stuff and void; thing instances numbered 1..N in each frame** in the order of
  their detection score (highest first). Ids are not tracked across frames: vid2vid uses the instance map only
  for its boundaries.

Accepted outputs, in order of preference:

1. ``panoptic_seg`` = (segment ids (H, W), segments_info): each segment's ``category_id`` indexes the metadata's
   ``thing_classes`` (``isthing``) or ``stuff_classes``. detectron2 gives segment id 0 to unassigned pixels.
   When segments_info is ``None`` (Panoptic-DeepLab), ids are ``category * label_divisor + k`` (k > 0 for
   things, -1 void) with categories indexing ``stuff_classes``.
2. ``sem_seg`` logits (C, H, W), argmax over C, classes named by ``stuff_classes``; then ``instances``
   (``pred_classes``, ``pred_masks``, ``scores``) painted on top, each pixel going to the highest-scoring
   instance above ``score_threshold``, as detectron2's own panoptic merge does.

Classes are matched by name, which works whatever contiguous ids the model uses (Panoptic FPN's "separated"
metadata puts a ``things`` class at semantic id 0; Mask2Former-style models index all 133 classes).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from v2v_plugins.extract import labelsets
from v2vcli.data.layout import LabelSet
from v2vcli.errors import PluginError

__all__ = ["ModelClasses", "Detectron2Converter", "choose_label_set", "to_numpy", "INSTANCE_ENCODING"]

log = logging.getLogger(__name__)

INSTANCE_ENCODING = ("0 = stuff and void; thing instances numbered 1..N per frame by descending detection score "
                     "(not tracked across frames)")


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like → numpy array."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()  # type: ignore[no-any-return]
    return np.asarray(x)


@dataclass
class ModelClasses:
    """The class names of a detectron2 model, from its ``MetadataCatalog`` entry."""

    dataset: str = ""  # cfg.DATASETS.TEST[0], e.g. "coco_2017_val_panoptic_separated"
    thing_classes: list[str] = field(default_factory=list)
    stuff_classes: list[str] = field(default_factory=list)
    thing_colors: list[tuple[int, int, int]] = field(default_factory=list)
    stuff_colors: list[tuple[int, int, int]] = field(default_factory=list)
    label_divisor: int = 1000  # Panoptic-DeepLab's category * divisor + instance encoding

    @classmethod
    def from_metadata(cls, dataset: str, metadata: Any) -> ModelClasses:
        """Read a detectron2 ``Metadata`` object (missing fields are empty)."""

        def get(name: str, default: Any) -> Any:
            try:
                return getattr(metadata, name)
            except AttributeError:  # detectron2's Metadata raises for unknown keys
                return default

        return cls(dataset=dataset,
                   thing_classes=[str(n) for n in get("thing_classes", [])],
                   stuff_classes=[str(n) for n in get("stuff_classes", [])],
                   thing_colors=[tuple(int(v) for v in c) for c in get("thing_colors", [])],  # type: ignore[misc]
                   stuff_colors=[tuple(int(v) for v in c) for c in get("stuff_colors", [])],  # type: ignore[misc]
                   label_divisor=int(get("label_divisor", 1000)))


def _known(names: Sequence[str], lookup: dict[str, int]) -> bool:
    real = [n for n in names if n.lower() != "things"]
    return bool(real) and all(n.lower() in lookup for n in real)


def choose_label_set(classes: ModelClasses) -> LabelSet:
    """Cityscapes ids for a Cityscapes model, COCO panoptic for a COCO one, else one built from the model's names.

    A model counts as Cityscapes when its dataset name says so, or when all its class names are Cityscapes names
    but not all are COCO names (``rider``, ``terrain``...).
    """
    names = classes.thing_classes + classes.stuff_classes
    city = labelsets.cityscapes_label_set()
    coco = labelsets.coco_panoptic_label_set()
    if "cityscapes" in classes.dataset.lower():
        return city
    if _known(names, labelsets.class_lookup(coco)):
        return coco
    if _known(names, labelsets.class_lookup(city)):
        return city
    ordered: list[str] = []
    colors: list[tuple[int, int, int] | None] = []
    for group, group_colors in ((classes.thing_classes, classes.thing_colors),
                                (classes.stuff_classes, classes.stuff_colors)):
        for i, name in enumerate(group):
            if name.lower() != "things" and name not in ordered:
                ordered.append(name)
                colors.append(group_colors[i] if i < len(group_colors) else None)
    # id 0 unlabeled (ignored), then the model's classes in order
    return labelsets.generic_label_set(["unlabeled", *ordered], classes.dataset or "detectron2", [(0, 0, 0), *colors],
                                       ignore_id=0)


class Detectron2Converter:
    """Turns detectron2 outputs into (seg uint8, inst uint16) for one model's classes."""

    def __init__(self, classes: ModelClasses, score_threshold: float = 0.5,
                 label_set: LabelSet | None = None) -> None:
        self.classes = classes
        self.score_threshold = score_threshold
        self.label_set = label_set or choose_label_set(classes)
        lookup = labelsets.class_lookup(self.label_set)
        self.thing_ids = self._ids(classes.thing_classes, lookup)
        self.stuff_ids = self._ids(classes.stuff_classes, lookup)

    def _ids(self, names: Sequence[str], lookup: dict[str, int]) -> np.ndarray:
        ids = np.zeros(max(len(names), 1), np.uint8)
        for i, name in enumerate(names):
            if name.lower() in lookup:
                ids[i] = lookup[name.lower()]
            elif name.lower() != "things":
                log.warning("class '%s' of the detectron2 model is not in label set '%s'; written as 0",
                            name, self.label_set.name)
        return ids

    def things(self) -> list[str]:
        """Names (in the label set) of the classes that get instance ids: a config's foreground candidates."""
        if self.label_set.name == "cityscapes":
            return list(labelsets.CITYSCAPES_THINGS)
        if self.label_set.name == "coco_panoptic":
            return labelsets.coco_things()
        return [n for n in self.classes.thing_classes if n.lower() != "things"]

    def _lookup(self, table: np.ndarray, index: int, what: str) -> int:
        names = self.classes.thing_classes if what == "thing" else self.classes.stuff_classes
        if not 0 <= index < len(names):
            raise PluginError(f"detectron2 returned {what} category {index}, but the model's metadata "
                              f"('{self.classes.dataset}') has {len(names)} {what} classes; use a config whose "
                              f"DATASETS.TEST names the dataset the weights were trained on")
        return int(table[index])

    # -- the three output forms ----------------------------------------------------------------------------------
    def convert(self, outputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``outputs`` of ``DefaultPredictor`` for one image → (seg uint8 (H, W), inst uint16 (H, W))."""
        if outputs.get("panoptic_seg") is not None:
            pan, info = outputs["panoptic_seg"]
            return self.from_panoptic(to_numpy(pan), info)
        seg: np.ndarray | None = None
        inst: np.ndarray | None = None
        if outputs.get("sem_seg") is not None:
            seg = self.from_semantic(to_numpy(outputs["sem_seg"]))
            inst = np.zeros(seg.shape, np.uint16)
        if outputs.get("instances") is not None:
            seg, inst = self.from_instances(outputs["instances"], seg)
        if seg is None or inst is None:
            raise PluginError(f"the detectron2 model returned none of panoptic_seg, sem_seg, instances (got "
                              f"{sorted(outputs)}); use a panoptic, semantic or instance segmentation model")
        return seg, inst

    def from_semantic(self, logits: np.ndarray) -> np.ndarray:
        """(C, H, W) scores → uint8 label ids (argmax over classes named by ``stuff_classes``)."""
        if logits.ndim != 3:
            raise ValueError(f"sem_seg should be (C, H, W), got shape {logits.shape}")
        if logits.shape[0] > len(self.classes.stuff_classes):
            raise PluginError(f"detectron2's sem_seg has {logits.shape[0]} channels but the model's metadata "
                              f"('{self.classes.dataset}') names {len(self.classes.stuff_classes)} classes; use a "
                              f"config whose DATASETS.TEST names the dataset the weights were trained on")
        return self.stuff_ids[logits.argmax(axis=0)].astype(np.uint8)

    def from_instances(self, instances: Any, base: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Paint thing instances (highest score wins a pixel) over ``base`` labels (or unlabeled)."""
        if not hasattr(instances, "pred_masks"):
            raise PluginError("the detectron2 model predicts boxes without masks; use a panoptic, semantic or "
                              "instance segmentation model (e.g. COCO-PanopticSegmentation/panoptic_fpn_R_50_3x.yaml)")
        masks = to_numpy(instances.pred_masks).astype(bool)  # (N, H, W)
        classes = to_numpy(instances.pred_classes).astype(np.int64).reshape(-1)
        scores = (to_numpy(instances.scores).astype(np.float64).reshape(-1) if hasattr(instances, "scores")
                  else np.ones(len(classes)))
        if masks.ndim != 3:
            raise ValueError(f"pred_masks should be (N, H, W), got shape {masks.shape}")
        shape = base.shape if base is not None else masks.shape[1:]
        seg = base.copy() if base is not None else np.zeros(shape, np.uint8)
        inst = np.zeros(shape, np.uint16)
        taken = np.zeros(shape, bool)
        next_id = 1
        for k in np.argsort(-scores, kind="stable"):
            if scores[k] < self.score_threshold:
                break
            mask = masks[k] & ~taken
            if not mask.any():
                continue
            seg[mask] = self._lookup(self.thing_ids, int(classes[k]), "thing")
            inst[mask] = min(next_id, 65535)
            taken |= mask
            next_id += 1
        return seg, inst

    def from_panoptic(self, pan: np.ndarray, segments_info: list[dict[str, Any]] | None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Segment ids (H, W) + segments_info → label ids and instance ids, by lookup tables over segment ids."""
        pan = pan.astype(np.int64)
        if segments_info is None:
            return self._from_panoptic_divisor(pan)
        top = max([int(pan.max(initial=0))] + [int(s["id"]) for s in segments_info]) + 1
        seg_lut = np.zeros(top, np.uint8)
        inst_lut = np.zeros(top, np.uint16)
        next_id = 1
        # detectron2 lists things by descending score; keep that order for the instance numbers.
        for s in segments_info:
            sid = int(s["id"])
            if sid <= 0:
                continue
            if s.get("isthing", False):
                seg_lut[sid] = self._lookup(self.thing_ids, int(s["category_id"]), "thing")
                inst_lut[sid] = min(next_id, 65535)
                next_id += 1
            else:
                seg_lut[sid] = self._lookup(self.stuff_ids, int(s["category_id"]), "stuff")
        valid = pan >= 0
        idx = np.where(valid, pan, 0)
        return seg_lut[idx], inst_lut[idx]

    def _from_panoptic_divisor(self, pan: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        div = max(self.classes.label_divisor, 1)
        valid = pan >= 0
        cat = np.where(valid, pan // div, 0)
        k = np.where(valid, pan % div, 0)
        if cat.size and int(cat.max()) >= len(self.classes.stuff_classes):
            raise PluginError(f"detectron2 returned panoptic category {int(cat.max())}, but the model's metadata "
                              f"('{self.classes.dataset}') has {len(self.classes.stuff_classes)} classes")
        seg = np.where(valid, self.stuff_ids[cat], 0).astype(np.uint8)
        inst = np.zeros(pan.shape, np.uint16)
        things = np.unique(pan[valid & (k > 0)])
        for n, value in enumerate(things, start=1):
            inst[pan == value] = min(n, 65535)
        return seg, inst
