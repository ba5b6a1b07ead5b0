"""Label consistency: does the synthesized video still carry the conditioning it was made from?

``--real`` is the conditioning dataset (its root, a sequence folder ``DATASET/frames/<seq>``, or the modality
folder ``DATASET/pose/<seq>`` / ``DATASET/seg/<seq>``); ``--fake`` the synthesized video(s), paired by sequence
name as every metric does (:mod:`v2vcli.io.inputs`). Frame t of the fake is compared with the
conditioning of frame t.

* **pose_consistency**: pose is re-extracted from the fake with the same extractor as the conditioning (backend
  and options from ``meta/pose.json``; ``--backend`` overrides) and the first person's BODY_25 keypoints compared
  with the conditioning's. Reference keypoints count when their confidence is ≥ ``--min-confidence``; the person
  size is the larger side of their bounding box. PCK@α: the fraction of reference keypoints whose re-extracted
  twin is detected and within α × size (α = 0.05, 0.1; a missed keypoint or person counts as wrong). Mean keypoint
  error: pixel distance over keypoints found in both (also divided by the size). Headline: PCK@0.1 (higher is
  better). Frames whose conditioning has no person are skipped.
* **seg_consistency**: the fake is segmented with a backend (default: the dataset's own seg backend from
  ``meta/seg.json``; any registered ``seg`` extractor; or ``dataset:PATH``, which reads the labels of the dataset
  at PATH for the same sequence and frame, e.g. a synthetic world's exact ground truth) and compared with the
  conditioning labels: confusion matrix over all frames, IoU per class present in either (union > 0), mIoU (the
  headline, higher is better) and pixel accuracy; the label set's ``ignore_id`` is left out. The backend's label
  set must equal the dataset's (same ids and names), otherwise the metric refuses.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from v2vcli.data.layout import Dataset
from v2vcli.errors import ConfigError, DatasetError, VideoError
from v2vcli.extract import build_config
from v2vcli.io.files import read_json, read_label
from v2vcli.io.inputs import EvalInput, InputSequence, estimated_frames, iter_frames, pair_inputs, resolve_input
from v2vcli.metric import Metric, MetricResult, confusion, iou_from_confusion
from v2vcli.registry import get_registry
from v2vcli.runtime import progress

__all__ = ["PoseConsistencyConfig", "PoseConsistency", "SegConsistencyConfig", "SegConsistency",
           "conditioning_folder", "keypoint_scores", "PCK_ALPHAS"]

log = logging.getLogger(__name__)

PCK_ALPHAS = (0.05, 0.1)


def conditioning_folder(seq: InputSequence, kind: str) -> tuple[Path, Path]:
    """(dataset root, ``DATASET/<kind>/<seq>``) of a real sequence from a dataset (frames or ``kind`` folder)."""
    folder = seq.path
    root = folder.parent.parent
    in_dataset = (root / "meta" / "frames.json").is_file()
    if seq.kind != "frames" or folder.parent.name not in ("frames", kind) or not in_dataset:
        raise DatasetError(f"--real '{seq.path}' is not part of a v2v dataset: {kind}_consistency needs the "
                           f"conditioning dataset (its root or DATASET/frames/<seq>) as --real")
    out = root / kind / seq.name
    if not out.is_dir():
        raise DatasetError(f"dataset '{root}' has no {kind} for sequence '{seq.name}' ('{out}' is missing); run "
                           f"`v2v extract {kind}` on it first")
    return root, out


def _real_sequences(real: str | Path, kind: str) -> Any:
    """The real input, with ``DATASET/<kind>/<seq>`` accepted in place of ``DATASET/frames/<seq>``."""
    p = Path(real)
    if p.parent.name == kind and (p.parent.parent / "meta" / "frames.json").is_file():
        return EvalInput(p, "frames", (InputSequence(p.name, p, "frames"),))
    return resolve_input(real, "--real")


def _extractor(root: Path, kind: str, backend: str, device: str) -> tuple[Any, str, dict[str, Any]]:
    """An extractor of ``kind``: ``backend`` or the dataset's, with the dataset's options when the backend matches."""
    meta = Dataset(root).kind_meta(kind) or {}
    name = backend or meta.get("backend") or get_registry().default_backend(kind)
    cls = get_registry().get_extractor(kind, name)
    options = (meta.get("options") or {}) if name == meta.get("backend") else {}
    return cls(build_config(cls, options), device), name, dict(options)


# -- pose --------------------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class PoseConsistencyConfig:
    """Options of ``v2v eval pose-consistency``."""

    backend: str = field(default="", metadata={
        "help": "Pose extractor run on the fake (default: the dataset's, from meta/pose.json, with its options)."})
    min_confidence: float = field(default=0.5, metadata={
        "help": "Keypoints with a confidence below this are 'not detected' (reference and fake)."})


def _body25(data: Any) -> Any:
    """(25, 3) BODY_25 keypoints of the first person of a pose JSON (None when nobody)."""
    people = (data or {}).get("people") or []
    if not people:
        return None
    return np.asarray(people[0].get("pose_keypoints_2d", []), np.float64).reshape(-1, 3)[:25]


def keypoint_scores(ref: Any, fake: Any, min_confidence: float = 0.5) -> dict[str, Any] | None:
    """PCK and errors of one frame's BODY_25 keypoints (``fake`` None: nobody found); None: nothing to compare."""
    valid = ref[:, 2] >= min_confidence
    if valid.sum() < 2:
        return None
    pts = ref[valid, :2]
    size = float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])))
    if size <= 0:
        return None
    n = int(valid.sum())
    if fake is None:
        return {"n": n, "size": size, "correct": {a: 0 for a in PCK_ALPHAS}, "errors": []}
    found = valid & (fake[:, 2] >= min_confidence)
    dist = np.linalg.norm(fake[found, :2] - ref[found, :2], axis=1)
    return {"n": n, "size": size, "correct": {a: int((dist <= a * size).sum()) for a in PCK_ALPHAS},
            "errors": dist.tolist()}


class PoseConsistency(Metric):
    """PCK of keypoints re-extracted from the fake against the conditioning pose (higher is better)."""

    name = "pose_consistency"
    description = "Pose re-extracted from the fake vs the conditioning keypoints: PCK@0.05/0.1, mean error."
    higher_is_better = True
    Config = PoseConsistencyConfig

    def compute(self, real: str | Path | None, fake: str | Path) -> MetricResult:
        if real is None:
            raise ConfigError("pose_consistency needs --real DATASET (the conditioning pose)")
        cfg: PoseConsistencyConfig = self.config
        pairs = pair_inputs(_real_sequences(real, "pose"), resolve_input(fake, "--fake"))
        per_frame: dict[str, list[float]] = {}
        totals: dict[str, Any] = {"n": 0, "correct": {a: 0 for a in PCK_ALPHAS}, "errors": [], "norm_errors": [],
                                  "missed": 0}
        extractor = backend = None
        options: dict[str, Any] = {}
        notes: list[str] = []
        with progress(estimated_frames(f for _, f in pairs), "pose consistency") as advance:
            for r, f in pairs:
                root, pose_dir = conditioning_folder(r, "pose")
                if extractor is None:
                    extractor, backend, options = _extractor(root, "pose", cfg.backend, self.device)
                meta = Dataset(root).frames_meta()["sequences"].get(r.name, {})
                values: list[float] = []
                fake_frames = iter_frames(f)
                first = True
                for i, frame in enumerate(fake_frames):
                    ref_file = pose_dir / f"{i:06d}.json"
                    if not ref_file.is_file():
                        notes.append(f"'{f.name}': fake has more frames than the conditioning ({i}); compared {i}")
                        break
                    h, w = frame.shape[:2]
                    ref_w, ref_h = meta.get("size", [w, h])
                    if first:
                        extractor.start_sequence(f.name, float(meta.get("fps", 30.0)), (w, h))
                        first = False
                    out = extractor.process(frame, i)
                    fk = _body25(out.get("pose.json"))
                    if fk is not None and (w, h) != (ref_w, ref_h):
                        fk[:, 0] *= ref_w / w
                        fk[:, 1] *= ref_h / h
                    ref = _body25(read_json(ref_file))
                    advance(1)
                    if ref is None:
                        continue
                    s = keypoint_scores(ref, fk, cfg.min_confidence)
                    if s is None:
                        continue
                    totals["n"] += s["n"]
                    totals["missed"] += fk is None
                    for a in PCK_ALPHAS:
                        totals["correct"][a] += s["correct"][a]
                    totals["errors"].extend(s["errors"])
                    totals["norm_errors"].extend(e / s["size"] for e in s["errors"])
                    values.append(s["correct"][0.1] / s["n"])
                extractor.close()
                per_frame[f.name] = values
        if totals["n"] == 0:
            raise DatasetError("pose_consistency found no conditioning frame with a person (2+ keypoints above "
                               f"--min-confidence {cfg.min_confidence}) to compare with")
        pck = {a: totals["correct"][a] / totals["n"] for a in PCK_ALPHAS}
        errs = totals["errors"]
        return self.result(
            pck[0.1],
            per_sequence={name: (math.fsum(v) / len(v) if v else math.nan) for name, v in per_frame.items()},
            per_frame=per_frame,
            protocol={"extractor": f"pose/{backend}", "extractor_options": options, "keypoints": "BODY_25, person 0",
                      "min_confidence": cfg.min_confidence, "person_size": "max side of the reference keypoints' box",
                      "pck": "detected and within alpha * size; missed keypoints count as wrong",
                      "headline": "PCK@0.1 over all reference keypoints"},
            details={"pck@0.05": pck[0.05], "pck@0.1": pck[0.1],
                     "mean_error_px": float(np.mean(errs)) if errs else math.nan,
                     "mean_error_norm": float(np.mean(totals["norm_errors"])) if errs else math.nan,
                     "keypoints": totals["n"], "keypoints_found": len(errs), "frames_without_person": totals["missed"],
                     "pairs": [[r.name, f.name] for r, f in pairs]},
            warnings=notes)


# -- segmentation ----------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class SegConsistencyConfig:
    """Options of ``v2v eval seg-consistency``."""

    backend: str = field(default="", metadata={
        "help": "Segmenter run on the fake: a seg extractor backend (default: the dataset's) or dataset:PATH "
                "(the labels of that dataset, e.g. exact ground truth)."})


class _DatasetLabels:
    """The "segmenter" ``dataset:PATH``: labels of the dataset at PATH for the same sequence and frame."""

    def __init__(self, path: str) -> None:
        self.dataset = Dataset(path)
        self._labels = self.dataset.label_set("seg")
        self.seq = ""

    def label_set(self) -> Any:
        return self._labels

    def start_sequence(self, seq: str, fps: float, size: tuple[int, int]) -> None:
        self.seq = seq

    def process(self, frame: Any, index: int) -> dict[str, Any]:
        path = self.dataset.frame_path("seg", self.seq, index)
        if not path.is_file():
            raise DatasetError(f"seg backend dataset:{self.dataset.root} has no labels '{path}'")
        return {"seg": read_label(path)}

    def close(self) -> None:
        pass


def _same_labels(a: Any, b: Any) -> bool:
    return {c.id: c.name for c in a.classes} == {c.id: c.name for c in b.classes}


class SegConsistency(Metric):
    """mIoU of the fake's segmentation against the conditioning labels (higher is better)."""

    name = "seg_consistency"
    description = "Segmentation of the fake vs the conditioning labels: mIoU and pixel accuracy."
    higher_is_better = True
    Config = SegConsistencyConfig

    def compute(self, real: str | Path | None, fake: str | Path) -> MetricResult:
        if real is None:
            raise ConfigError("seg_consistency needs --real DATASET (the conditioning labels)")
        cfg: SegConsistencyConfig = self.config
        pairs = pair_inputs(_real_sequences(real, "seg"), resolve_input(fake, "--fake"))
        root, _ = conditioning_folder(pairs[0][0], "seg")
        labels = Dataset(root).label_set("seg")
        options: dict[str, Any]
        if cfg.backend.startswith("dataset:"):
            segmenter: Any = _DatasetLabels(cfg.backend.split(":", 1)[1])
            backend, options = cfg.backend, {}
        else:
            segmenter, name, options = _extractor(root, "seg", cfg.backend, self.device)
            backend = f"seg/{name}"
        theirs = segmenter.label_set()
        if theirs is None or not _same_labels(theirs, labels):
            got = "none" if theirs is None else f"'{theirs.name}' ({len(theirs.classes)} classes)"
            raise DatasetError(f"seg_consistency: backend {backend} predicts label set {got} but dataset '{root}' "
                               f"uses '{labels.name}' ({len(labels.classes)} classes); use a backend with the "
                               f"dataset's label set (--backend)")
        nc = max(labels.num_classes, 1)
        total = np.zeros((nc, nc), np.int64)
        per_frame: dict[str, list[float]] = {}
        per_sequence: dict[str, float] = {}
        notes: list[str] = []
        with progress(estimated_frames(f for _, f in pairs), "seg consistency") as advance:
            for r, f in pairs:
                seq_root, seg_dir = conditioning_folder(r, "seg")
                fps = float(Dataset(seq_root).frames_meta()["sequences"].get(r.name, {}).get("fps", 30.0))
                seq_conf = np.zeros((nc, nc), np.int64)
                values: list[float] = []
                for i, frame in enumerate(iter_frames(f)):
                    ref_file = seg_dir / f"{i:06d}.png"
                    if not ref_file.is_file():
                        notes.append(f"'{f.name}': fake has more frames than the conditioning labels; compared {i}")
                        break
                    ref = read_label(ref_file)
                    if i == 0:
                        segmenter.start_sequence(f.name, fps, (frame.shape[1], frame.shape[0]))
                    pred = np.asarray(segmenter.process(frame, i)["seg"])
                    if pred.shape != ref.shape:
                        pred = _resize_labels(pred, (ref.shape[1], ref.shape[0]))
                    conf = confusion(ref, pred, nc, labels.ignore_id)
                    seq_conf += conf
                    iou, present = iou_from_confusion(conf)
                    values.append(float(np.mean(iou[present])) if present.any() else math.nan)
                    advance(1)
                segmenter.close()
                if not values:
                    raise VideoError(f"sequence '{f.name}' has no frames to segment")
                total += seq_conf
                iou, present = iou_from_confusion(seq_conf)
                per_sequence[f.name] = float(np.mean(iou[present])) if present.any() else math.nan
                per_frame[f.name] = values
        iou, present = iou_from_confusion(total)
        if not present.any():
            raise DatasetError("seg_consistency: no labelled pixels to compare (all ignored)")
        names = {c.id: c.name for c in labels.classes}
        return self.result(
            float(np.mean(iou[present])),
            per_sequence=per_sequence,
            per_frame=per_frame,
            protocol={"segmenter": backend, "segmenter_options": options, "label_set": labels.name,
                      "miou": "mean IoU over classes present in reference or prediction, confusion over all frames",
                      "ignore_id": labels.ignore_id, "resize": "predictions resized (nearest) to the label size"},
            details={"pixel_accuracy": float(np.trace(total) / max(total.sum(), 1)),
                     "per_class_iou": {names.get(c, str(c)): float(iou[c]) for c in range(nc) if present[c]},
                     "pixels": int(total.sum()), "pairs": [[r.name, f.name] for r, f in pairs]},
            warnings=notes)


def _resize_labels(labels: Any, size: tuple[int, int]) -> Any:
    import cv2
    return np.ascontiguousarray(cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST))

