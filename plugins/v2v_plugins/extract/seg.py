"""Segmentation extractor plugin: ``v2v extract seg`` with backends ``detectron2`` (default) and ``selfie``.

Both write ``seg/<seq>/NNNNNN.png`` (uint8 label ids of the label set recorded in meta/seg.json) and
``inst/<seq>/NNNNNN.png`` (uint16 instance ids: 0 for stuff/background, things numbered 1..N in each frame by
detection score or area; not tracked across frames). ``--preview`` adds ``seg_preview/<seq>/NNNNNN.png``: the
labels drawn in the label set's colours with instance outlines in white.

``detectron2``: a detectron2 model, Panoptic FPN R50 3x by default, from a model-zoo config name or a .yaml
config path plus ``--weights`` (read safely, see :mod:`v2v_plugins.extract.detectron2_backend`); ``--min-size``
sets the test-time resize. detectron2 is not on PyPI (install command in :data:`DETECTRON2_INSTALL`).
Outputs are converted by :mod:`v2v_plugins.extract.detectron2_convert` (COCO panoptic ids, or Cityscapes labelIds
for a Cityscapes model). Model-zoo weights are fetched by detectron2 only when downloads are allowed
(``V2V_ALLOW_DOWNLOAD=1``), as for every v2v weight file; otherwise pass ``--weights PATH``.

``selfie``: mediapipe's selfie segmentation (offline, the model ships in the 0.10.21 wheel): person (1) /
background (0); instances are the connected components of the person mask, largest first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from v2v_plugins.extract.detectron2_backend import DETECTRON2_INSTALL
from v2vcli.data.layout import LabelSet
from v2vcli.errors import ConfigError, PluginError
from v2vcli.extractor import Extractor
from v2vcli.hookspecs import hookimpl

__all__ = ["Detectron2Seg", "Detectron2Options", "SelfieSeg", "SelfieOptions", "import_detectron2",
           "load_detectron2", "render_preview", "DEFAULT_DETECTRON2_MODEL", "DETECTRON2_INSTALL"]

log = logging.getLogger(__name__)

DEFAULT_DETECTRON2_MODEL = "COCO-PanopticSegmentation/panoptic_fpn_R_50_3x.yaml"


def import_detectron2() -> Any:
    """Import detectron2 or raise a one-line PluginError with the install command (or the setuptools fix)."""
    from v2v_plugins.extract.detectron2_backend import import_detectron2 as _import

    try:
        return _import("seg backend 'detectron2'")
    except PluginError as exc:
        raise PluginError(f"{exc}; or use --backend selfie for person/background") from exc


def render_preview(seg: np.ndarray, inst: np.ndarray, label_set: LabelSet) -> np.ndarray:
    """RGB uint8 (H, W, 3): labels in the label set's colours, instance outlines in white."""
    rgb = label_set.palette()[seg]
    edge = np.zeros(inst.shape, bool)
    # A pixel is on an outline when a 4-neighbour has another instance id and one of the two is a thing.
    dx = (inst[:, 1:] != inst[:, :-1]) & ((inst[:, 1:] > 0) | (inst[:, :-1] > 0))
    dy = (inst[1:, :] != inst[:-1, :]) & ((inst[1:, :] > 0) | (inst[:-1, :] > 0))
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    rgb[edge] = 255
    return rgb


# One help text for the --model option both backends share on the command line.
_MODEL_HELP = ("detectron2: a model-zoo config name (e.g. Cityscapes/mask_rcnn_R_50_FPN.yaml) or a .yaml config "
               "path; selfie: general (256x256 input) or landscape (144x256, faster).")


# -- detectron2 -------------------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class Detectron2Options:
    """Options of ``v2v extract seg --backend detectron2``."""

    model: str = field(default=DEFAULT_DETECTRON2_MODEL, metadata={"help": _MODEL_HELP})
    weights: str = field(default="", metadata={
        "help": "Model weights file (.pkl/.pth); default: the model zoo's checkpoint of --model (downloaded only "
                "with V2V_ALLOW_DOWNLOAD=1)."})
    score_threshold: float = field(default=0.5, metadata={"help": "Keep detected things scoring at least this (0-1)."})
    min_size: int = field(default=0, metadata={
        "help": "detectron2's test-time resize: the shorter side the model sees (INPUT.MIN_SIZE_TEST; 0 keeps the "
                "config's, 800 for the model zoo). CPU time grows with its square; outputs keep the frame size."})
    preview: bool = field(default=False, metadata={"help": "Also write colourised previews under seg_preview/."})

    def check(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"seg option score-threshold must be in [0, 1], got {self.score_threshold}")
        if self.min_size < 0:
            raise ConfigError(f"seg option min-size must be >= 0 (0: the config's), got {self.min_size}")


def load_detectron2(options: Detectron2Options, device: str = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """Build detectron2's ``DefaultPredictor`` for ``options``; returns (predictor, ModelClasses, info)."""
    import_detectron2()
    from detectron2.data import MetadataCatalog

    from v2v_plugins.extract.detectron2_backend import (build_predictor, detectron2_versions, load_config, quiet,
                                                        resolve_weights)
    from v2v_plugins.extract.detectron2_convert import ModelClasses

    cfg, zoo_url = load_config(options.model, "seg", DEFAULT_DETECTRON2_MODEL)
    weights = resolve_weights(cfg, options.weights, zoo_url, "seg", options.model)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = options.score_threshold
    if "PANOPTIC_FPN" in cfg.MODEL:
        cfg.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH = options.score_threshold
    predictor = build_predictor(cfg, weights, what="seg", model=options.model, device=device,
                                min_size=options.min_size)
    dataset = str(cfg.DATASETS.TEST[0]) if len(cfg.DATASETS.TEST) else ""
    with quiet():
        classes = ModelClasses.from_metadata(dataset, MetadataCatalog.get(dataset) if dataset else object())
    return predictor, classes, {"weights": weights, "dataset": dataset,
                                "architecture": str(cfg.MODEL.META_ARCHITECTURE),
                                "min_size_test": int(predictor.cfg.INPUT.MIN_SIZE_TEST), **detectron2_versions()}


class Detectron2Seg(Extractor):
    """Panoptic (or semantic / instance) segmentation with a detectron2 model."""

    kind: ClassVar[str] = "seg"
    backend: ClassVar[str] = "detectron2"
    version: ClassVar[str] = "1"
    default: ClassVar[bool] = True
    outputs: ClassVar[tuple[str, ...]] = ("seg", "inst")
    description: ClassVar[str] = "detectron2 Panoptic FPN (COCO panoptic ids, Cityscapes labelIds) + instances"
    detects: ClassVar[str] = "labelled region"  # a frame counts when any pixel gets a label (stuff or thing)
    Config: ClassVar[type] = Detectron2Options

    def __init__(self, config: Any = None, device: str = "cpu", *, predictor: Any = None,
                 classes: Any = None) -> None:
        """``predictor`` and ``classes`` (a ModelClasses) replace the detectron2 model, e.g. in tests."""
        from v2v_plugins.extract.detectron2_convert import Detectron2Converter, ModelClasses

        super().__init__(config, device)
        self.config.check()
        if predictor is None:
            predictor, classes, self._info = load_detectron2(self.config, device)
        else:
            self._info = {"weights": self.config.weights or None, "dataset": getattr(classes, "dataset", ""),
                          "architecture": type(predictor).__name__}
        self._predictor = predictor
        self._converter = Detectron2Converter(classes if classes is not None else ModelClasses(),
                                              score_threshold=self.config.score_threshold)

    def label_set(self) -> LabelSet:
        return self._converter.label_set

    def meta(self) -> dict[str, Any]:
        from v2v_plugins.extract import labelsets
        from v2v_plugins.extract.detectron2_convert import INSTANCE_ENCODING

        out: dict[str, Any] = {"model": self.config.model, **self._info, "things": self._converter.things(),
                               "instance_encoding": INSTANCE_ENCODING}
        if self._converter.label_set.name == "coco_panoptic":
            out["coco_ids"] = labelsets.coco_ids()
        return out

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        from v2v_plugins.extract.detectron2_backend import run_predictor

        outputs = run_predictor(self._predictor, frame)
        seg, inst = self._converter.convert(outputs)
        if seg.shape != frame.shape[:2]:
            raise PluginError(f"detectron2 returned a {seg.shape[1]}x{seg.shape[0]} map for a "
                              f"{frame.shape[1]}x{frame.shape[0]} frame")
        result: dict[str, Any] = {"seg": seg, "inst": inst}
        if self.config.preview:
            result["seg_preview"] = render_preview(seg, inst, self._converter.label_set)
        return result

    def detected(self, outputs: dict[str, Any]) -> bool:
        return bool(outputs["seg"].any())

    def close(self) -> None:
        self._predictor = None


# -- mediapipe selfie segmentation ------------------------------------------------------------------------------------

_SELFIE_MODELS = {"general": 0, "landscape": 1}


@dataclass(kw_only=True)
class SelfieOptions:
    """Options of ``v2v extract seg --backend selfie``."""

    model: str = field(default="general", metadata={"help": _MODEL_HELP})
    threshold: float = field(default=0.5, metadata={"help": "Person probability above which a pixel is person."})
    min_area: float = field(default=0.001, metadata={
        "help": "Drop person blobs smaller than this fraction of the frame."})
    preview: bool = field(default=False, metadata={"help": "Also write colourised previews under seg_preview/."})

    def check(self) -> None:
        if self.model not in _SELFIE_MODELS:
            raise ConfigError(f"seg --model '{self.model}' is not a selfie model (valid: general, landscape)")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"seg option threshold must be in (0, 1), got {self.threshold}")
        if not 0.0 <= self.min_area < 1.0:
            raise ConfigError(f"seg option min-area must be a fraction in [0, 1), got {self.min_area}")


class SelfieSeg(Extractor):
    """Person/background segmentation with mediapipe; instances are connected components of the person mask."""

    kind: ClassVar[str] = "seg"
    backend: ClassVar[str] = "selfie"
    version: ClassVar[str] = "1"
    outputs: ClassVar[tuple[str, ...]] = ("seg", "inst")
    description: ClassVar[str] = "mediapipe selfie segmentation: person/background, offline"
    detects: ClassVar[str] = "person"
    Config: ClassVar[type] = SelfieOptions

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        from v2v_plugins.extract.labelsets import person_label_set
        from v2v_plugins.extract.pose import import_mediapipe

        super().__init__(config, device)
        self.config.check()
        self._mp = import_mediapipe("seg backend 'selfie'")
        self._labels = person_label_set()
        self._model: Any = None

    def label_set(self) -> LabelSet:
        return self._labels

    def meta(self) -> dict[str, Any]:
        return {"model": f"mediapipe solutions.selfie_segmentation ({self.config.model})",
                "mediapipe": self._mp.__version__, "things": ["person"],
                "instance_encoding": "0 = background; connected components of the person mask numbered 1..N per "
                                     "frame by descending area (not tracked across frames)"}

    def start_sequence(self, seq: str, fps: float, size: tuple[int, int]) -> None:
        # A fresh graph per sequence keeps a sequence's result independent of what the worker ran before.
        import contextlib

        from v2v_plugins.extract.pose import quiet_native_logs

        self.close()
        # the graph logs from its own threads after construction, until its first frame is through
        self._quiet = contextlib.ExitStack()
        self._quiet.enter_context(quiet_native_logs())
        self._model = self._mp.solutions.selfie_segmentation.SelfieSegmentation(
            model_selection=_SELFIE_MODELS[self.config.model])

    def person_mask(self, frame: np.ndarray) -> np.ndarray:
        """Person probability (H, W) float32 in [0, 1]."""
        if self._model is None:
            self.start_sequence("", 0.0, (frame.shape[1], frame.shape[0]))
        from v2v_plugins.extract.pose import end_quiet

        try:
            result = self._model.process(np.ascontiguousarray(frame))
        finally:
            end_quiet(self)
        return np.asarray(result.segmentation_mask, np.float32)

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        import cv2

        mask = (self.person_mask(frame) > self.config.threshold).astype(np.uint8)
        count, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        min_px = self.config.min_area * mask.size
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep = [int(i) + 1 for i in np.argsort(-areas, kind="stable") if areas[i] >= max(min_px, 1)]
        lut = np.zeros(count, np.uint16)
        lut[keep] = np.arange(1, len(keep) + 1, dtype=np.uint16)
        inst = lut[comp]
        seg = (inst > 0).astype(np.uint8)
        result: dict[str, Any] = {"seg": seg, "inst": inst}
        if self.config.preview:
            result["seg_preview"] = render_preview(seg, inst, self._labels)
        return result

    def detected(self, outputs: dict[str, Any]) -> bool:
        return bool(outputs["inst"].any())

    def close(self) -> None:
        from v2v_plugins.extract.pose import end_quiet

        end_quiet(self)
        if self._model is not None:
            self._model.close()
            self._model = None


@hookimpl
def v2v_register_extractors(register: Any) -> None:
    register("seg", "detectron2", Detectron2Seg)
    register("seg", "selfie", SelfieSeg)
