"""DensePose extractor plugin: ``v2v extract densepose`` (backend ``detectron2``: detectron2's DensePose project).

Per frame it writes ``densepose/<seq>/NNNNNN.png``, the IUV map of the dataset layout (docs/data.md), as DensePose
writes it: the PNG's channels in file (BGR) order are I, U×255, V×255, so read as RGB ``[..., 0]`` is V, ``[..., 1]``
U and ``[..., 2]`` the part index I (0 background, 1..24 body parts). The pose presets' loader stretches I ×255/24 as
the official pose data does (``v2vcli.data.clips.DENSEPOSE_I_LUT``); the file keeps the raw index.

Every person scoring at least ``--score-threshold`` is painted, lowest score first, so where people overlap the most
confident one is on top. The model is the DensePose R-CNN R50-FPN s1x config shipped in ``densepose_configs/``
(copied from detectron2, Apache-2.0) or any DensePose .yaml config (``--model``), with ``--weights`` (default: the
DensePose model zoo's checkpoint of the shipped config, downloaded only with ``V2V_ALLOW_DOWNLOAD=1``). Weights are
read safely and must fit the config (:mod:`v2v_plugins.extract.detectron2_backend`); ``--min-size`` sets the
test-time resize.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from v2v_plugins.extract.detectron2_backend import Detectron2Extractor
from v2vcli.errors import ConfigError, PluginError
from v2vcli.hookspecs import hookimpl

__all__ = ["DensePoseExtractor", "DensePoseOptions", "DEFAULT_DENSEPOSE_CONFIG", "DENSEPOSE_WEIGHTS_URL",
           "iuv_from_people"]

DEFAULT_DENSEPOSE_CONFIG = str(Path(__file__).resolve().parent / "densepose_configs" /
                               "densepose_rcnn_R_50_FPN_s1x.yaml")
DENSEPOSE_WEIGHTS_URL = ("https://dl.fbaipublicfiles.com/densepose/densepose_rcnn_R_50_FPN_s1x/165712039/"
                         "model_final_162be9.pkl")
DENSEPOSE_PARTS = 24


@dataclass(kw_only=True)
class DensePoseOptions:
    """Options of ``v2v extract densepose``."""

    model: str = field(default="", metadata={
        "help": "A DensePose .yaml config (default: densepose_rcnn_R_50_FPN_s1x, shipped with v2v)."})
    weights: str = field(default="", metadata={
        "help": "Model weights file (.pkl/.pth, read without running code); default for the shipped config: the "
                "DensePose model zoo's checkpoint (downloaded only with V2V_ALLOW_DOWNLOAD=1)."})
    score_threshold: float = field(default=0.5, metadata={
        "help": "Keep people whose detection score is at least this (0-1)."})
    min_size: int = field(default=0, metadata={
        "help": "detectron2's test-time resize: the shorter side the model sees (INPUT.MIN_SIZE_TEST; 0 keeps the "
                "config's, 800). CPU time grows with its square; outputs keep the frame size."})
    max_people: int = field(default=0, metadata={"help": "Keep at most this many people per frame (0: all)."})

    def check(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"densepose option score-threshold must be in [0, 1], got {self.score_threshold}")
        if self.max_people < 0:
            raise ConfigError(f"densepose option max-people must be >= 0 (0: all), got {self.max_people}")
        if self.min_size < 0:
            raise ConfigError(f"densepose option min-size must be >= 0 (0: the config's), got {self.min_size}")


def iuv_from_people(size: tuple[int, int], people: list[tuple[float, tuple[int, int, int, int], np.ndarray,
                                                                np.ndarray]]) -> np.ndarray:
    """The frame's IUV map, RGB uint8 (H, W, 3) = [V×255, U×255, I], from per-person results.

    ``people``: (score, integer box (x, y, w, h) in frame pixels, part labels (h, w) 0..24, uv (2, h, w) in [0, 1]).
    Painted by ascending score, only where the person's labels are non-zero, clipped to the frame.
    """
    w, h = size
    out = np.zeros((h, w, 3), np.uint8)
    for _, (x, y, bw, bh), labels, uv in sorted(people, key=lambda p: p[0]):
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + bw, w), min(y + bh, h)
        if x1 <= x0 or y1 <= y0:
            continue
        lab = labels[y0 - y:y1 - y, x0 - x:x1 - x]
        part = lab > 0
        region = out[y0:y1, x0:x1]
        region[..., 2][part] = np.clip(lab[part], 0, DENSEPOSE_PARTS).astype(np.uint8)
        for c, channel in ((1, 0), (0, 1)):  # G = U, R = V
            values = np.clip(np.rint(uv[channel, y0 - y:y1 - y, x0 - x:x1 - x] * 255.0), 0, 255).astype(np.uint8)
            region[..., c][part] = values[part]
    return out


class DensePoseExtractor(Detectron2Extractor):
    """DensePose IUV maps of every person, from detectron2's DensePose R-CNN."""

    kind: ClassVar[str] = "densepose"
    backend: ClassVar[str] = "detectron2"
    version: ClassVar[str] = "1"
    default: ClassVar[bool] = True
    outputs: ClassVar[tuple[str, ...]] = ("densepose",)
    description: ClassVar[str] = "DensePose IUV (I 0..24, U, V ×255; every person) from detectron2 DensePose R-CNN"
    detects: ClassVar[str] = "person"
    Config: ClassVar[type] = DensePoseOptions

    @property
    def model_name(self) -> str:
        return self.config.model or DEFAULT_DENSEPOSE_CONFIG

    def _load(self, device: str) -> tuple[Any, dict[str, Any]]:
        from v2v_plugins.extract.detectron2_backend import (build_predictor, detectron2_versions, import_detectron2,
                                                            load_config, resolve_weights)

        import_detectron2("extract densepose", densepose=True)
        from densepose import add_densepose_config

        model = self.model_name
        if not Path(model).expanduser().is_file():
            raise ConfigError(f"densepose --model '{model}' is not a file; pass a DensePose .yaml config (detectron2's "
                              f"projects/DensePose/configs), or leave it out for the shipped R_50_FPN_s1x")
        cfg, _ = load_config(model, "densepose", DEFAULT_DENSEPOSE_CONFIG, extend=add_densepose_config)
        if not cfg.MODEL.DENSEPOSE_ON:
            raise ConfigError(f"densepose --model '{model}' is not a DensePose model (MODEL.DENSEPOSE_ON is false)")
        zoo = DENSEPOSE_WEIGHTS_URL if not self.config.model else None
        weights = resolve_weights(cfg, self.config.weights, zoo, "densepose", model)
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = self.config.score_threshold
        if self.config.max_people:  # fewer detections: less DensePose-head work
            cfg.TEST.DETECTIONS_PER_IMAGE = min(int(cfg.TEST.DETECTIONS_PER_IMAGE), self.config.max_people)
        predictor = build_predictor(cfg, weights, what="densepose", model=model, device=device,
                                    min_size=self.config.min_size)
        return predictor, {"weights": weights, "config": model, "min_size_test": int(predictor.cfg.INPUT.MIN_SIZE_TEST),
                           **detectron2_versions()}

    def meta(self) -> dict[str, Any]:
        return {"model": f"detectron2 DensePose {Path(self.model_name).name}", **self._info,
                "format": "IUV PNG as DensePose writes it: file channels (BGR order) I 0..24, U×255, V×255; read as "
                          "RGB: [V, U, I]. The loader stretches I ×255/24 (official pose data)",
                "parts": DENSEPOSE_PARTS}

    def _people(self, instances: Any) -> list[tuple[float, tuple[int, int, int, int], np.ndarray, np.ndarray]]:
        from densepose.converters.chart_output_to_chart_result import densepose_chart_predictor_output_to_result
        from densepose.structures import DensePoseChartPredictorOutput

        from v2v_plugins.extract.detectron2_backend import quiet
        from v2v_plugins.extract.detectron2_convert import to_numpy

        if len(instances) == 0:
            return []
        pred = instances.pred_densepose if instances.has("pred_densepose") else None
        if not isinstance(pred, DensePoseChartPredictorOutput):
            raise PluginError(f"the model '{self.model_name}' returned no DensePose chart (IUV) output; use an IUV "
                              f"config (not a CSE one)")
        scores = to_numpy(instances.scores).astype(np.float64).reshape(-1)
        boxes = to_numpy(instances.pred_boxes.tensor).astype(np.float64).reshape(-1, 4)
        people = []
        for k in range(len(instances)):
            if scores[k] < self.config.score_threshold:
                continue
            with quiet():
                result = densepose_chart_predictor_output_to_result(pred[k], instances.pred_boxes[k])
            x0, y0, x1, y1 = boxes[k]
            box = (int(x0), int(y0), int(x1 - x0), int(y1 - y0))  # densepose's make_int_box of XYWH
            labels = to_numpy(result.labels).astype(np.int64)
            uv = to_numpy(result.uv).astype(np.float32)
            box = (box[0], box[1], labels.shape[1], labels.shape[0])
            people.append((float(scores[k]), box, labels, uv))
        return people

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        from v2v_plugins.extract.detectron2_backend import run_predictor

        outputs = run_predictor(self._predictor, frame)
        instances = outputs.get("instances") if isinstance(outputs, dict) else None
        if instances is None:
            raise PluginError(f"the model '{self.model_name}' returned no instances; use a DensePose R-CNN config")
        people = self._people(instances.to("cpu"))
        return {"densepose": iuv_from_people((frame.shape[1], frame.shape[0]), people)}

    def detected(self, outputs: dict[str, Any]) -> bool:
        return bool(outputs["densepose"][..., 2].any())


@hookimpl
def v2v_register_extractors(register: Any) -> None:
    register("densepose", "detectron2", DensePoseExtractor)
