"""``v2v extract pose --backend detectron2``: every person of every frame with detectron2's Keypoint R-CNN.

The model (``COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml`` by default, or a .yaml config with ``--weights``)
detects people and their 17 COCO keypoints; each person scoring at least ``--score-threshold`` becomes one entry of
the frame's OpenPose JSON (``pose/<seq>/NNNNNN.json``, highest score first), mapped to BODY_25 by
:func:`v2v_plugins.extract.openpose.body25_from_coco17` (neck and mid-hip are midpoints, the feet are absent with
confidence 0; the table is in docs/extract.md). ``pose/<seq>/NNNNNN.png`` draws all of them on one black canvas in
OpenPose's colours, lowest score first so the most confident person is on top. The keypoint confidence is detectron2's
heatmap probability; points are drawn above ``--render-threshold`` (0.05, detectron2's own drawing threshold).

Unlike the mediapipe backend (one tracked person) nothing is carried from frame to frame: each frame is detected on
its own, so any number of people, entering and leaving, are found. Weights are read safely and must fit the config
(:mod:`v2v_plugins.extract.detectron2_backend`); ``--min-size`` sets detectron2's test-time resize.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from v2v_plugins.extract.detectron2_backend import (Detectron2Extractor, build_predictor, detectron2_versions,
                                                    import_detectron2, load_config, resolve_weights, run_predictor)
from v2vcli.errors import ConfigError, PluginError

__all__ = ["Detectron2Pose", "Detectron2PoseOptions", "DEFAULT_KEYPOINT_MODEL"]

DEFAULT_KEYPOINT_MODEL = "COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml"


@dataclass(kw_only=True)
class Detectron2PoseOptions:
    """Options of ``v2v extract pose --backend detectron2``."""

    model: str = field(default=DEFAULT_KEYPOINT_MODEL, metadata={
        "help": "detectron2 Keypoint R-CNN: a model-zoo config name or a .yaml config path."})
    weights: str = field(default="", metadata={
        "help": "Model weights file (.pkl/.pth, read without running code); default: the model zoo's checkpoint of "
                "--model (downloaded only with V2V_ALLOW_DOWNLOAD=1)."})
    score_threshold: float = field(default=0.5, metadata={
        "help": "Keep people whose detection score is at least this (0-1)."})
    render_threshold: float = field(default=0.05, metadata={
        "help": "Draw body keypoints whose visibility is above this (0-1)."})
    min_size: int = field(default=0, metadata={
        "help": "detectron2's test-time resize: the shorter side the model sees (INPUT.MIN_SIZE_TEST; 0 keeps the "
                "config's, 800 for the model zoo). CPU time grows with its square; outputs keep the frame size."})
    max_people: int = field(default=0, metadata={"help": "Keep at most this many people per frame (0: all)."})

    def check(self) -> None:
        for name in ("score_threshold", "render_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"pose option {name.replace('_', '-')} must be in [0, 1], got {value}")
        if self.min_size < 0:
            raise ConfigError(f"pose option min-size must be >= 0 (0: the config's), got {self.min_size}")
        if self.max_people < 0:
            raise ConfigError(f"pose option max-people must be >= 0 (0: all), got {self.max_people}")


class Detectron2Pose(Detectron2Extractor):
    """Multi-person BODY_25 keypoints from detectron2's Keypoint R-CNN, in OpenPose's formats."""

    kind: ClassVar[str] = "pose"
    backend: ClassVar[str] = "detectron2"
    version: ClassVar[str] = "1"
    outputs: ClassVar[tuple[str, ...]] = ("pose",)
    description: ClassVar[str] = "OpenPose BODY_25, every person, from detectron2 Keypoint R-CNN (COCO-17 mapped)"
    detects: ClassVar[str] = "person"
    Config: ClassVar[type] = Detectron2PoseOptions

    def _load(self, device: str) -> tuple[Any, dict[str, Any]]:
        import_detectron2("pose backend 'detectron2'")
        cfg, zoo_url = load_config(self.config.model, "pose", DEFAULT_KEYPOINT_MODEL)
        if not cfg.MODEL.KEYPOINT_ON:
            raise ConfigError(f"pose --model '{self.config.model}' predicts no keypoints (MODEL.KEYPOINT_ON is "
                              f"false); use a Keypoint R-CNN config, e.g. {DEFAULT_KEYPOINT_MODEL}")
        if int(cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS) != 17:
            raise ConfigError(f"pose --model '{self.config.model}' predicts {cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS}"
                              f" keypoints; the BODY_25 mapping needs the 17 COCO keypoints")
        weights = resolve_weights(cfg, self.config.weights, zoo_url, "pose", self.config.model)
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = self.config.score_threshold
        if self.config.max_people:  # fewer detections: less keypoint-head work
            cfg.TEST.DETECTIONS_PER_IMAGE = min(int(cfg.TEST.DETECTIONS_PER_IMAGE), self.config.max_people)
        predictor = build_predictor(cfg, weights, what="pose", model=self.config.model, device=device,
                                    min_size=self.config.min_size)
        return predictor, {"weights": weights, "architecture": str(cfg.MODEL.META_ARCHITECTURE),
                           "min_size_test": int(predictor.cfg.INPUT.MIN_SIZE_TEST), **detectron2_versions()}

    def meta(self) -> dict[str, Any]:
        return {"model": f"detectron2 {self.config.model}", **self._info,
                "format": "OpenPose BODY_25 mapped from COCO-17 (neck, mid-hip: midpoints; feet 19-24 absent), one "
                          "entry per person by descending detection score; face and hands not computed (zeros)"}

    def people(self, frame: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """(detection score, BODY_25 (25, 3)) of every person kept in ``frame``, highest score first."""
        from v2v_plugins.extract.detectron2_convert import to_numpy
        from v2v_plugins.extract.openpose import body25_from_coco17

        outputs = run_predictor(self._predictor, frame)
        instances = outputs.get("instances") if isinstance(outputs, dict) else None
        if instances is None or not hasattr(instances, "pred_keypoints"):
            raise PluginError(f"the detectron2 model '{self.config.model}' returned no keypoints; use a Keypoint "
                              f"R-CNN config, e.g. {DEFAULT_KEYPOINT_MODEL}")
        keypoints = to_numpy(instances.pred_keypoints).astype(np.float64).reshape(-1, 17, 3)
        scores = (to_numpy(instances.scores).astype(np.float64).reshape(-1) if hasattr(instances, "scores")
                  else np.ones(len(keypoints)))
        size = (frame.shape[1], frame.shape[0])
        found = [(float(scores[k]), body25_from_coco17(keypoints[k], size))
                 for k in np.argsort(-scores, kind="stable") if scores[k] >= self.config.score_threshold]
        return found[:self.config.max_people] if self.config.max_people else found

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        from v2v_plugins.extract.openpose import person_json, pose_json, render_people

        found = self.people(frame)
        size = (frame.shape[1], frame.shape[0])
        rendering = render_people(size, [body for _, body in reversed(found)], threshold=self.config.render_threshold)
        return {"pose": rendering, "pose.json": pose_json([person_json(body) for _, body in found])}

    def detected(self, outputs: dict[str, Any]) -> bool:
        return bool(outputs["pose.json"]["people"])
