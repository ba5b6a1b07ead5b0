"""Edge extractor plugin: ``v2v extract edges`` with backends ``canny`` (default) and ``face``.

``canny`` writes ``edges/<seq>/NNNNNN.png``: uint8 0/255 Canny edges of the Gaussian-blurred grey frame with
thresholds from the median rule (lower = max(0, (1-σ)·median), upper = min(255, (1+σ)·median), σ = 0.33), so
dark and bright videos get comparable edge densities without tuning.

``face`` is the conditioning of vid2vid's face model: mediapipe face-mesh landmarks joined into 14 part curves
(:mod:`v2v_plugins.extract.face_curves`) drawn as 1-px polylines, plus the Canny edges outside the face region.
It also writes ``edges/<seq>/NNNNNN.json`` (the face as OpenPose's 70 points in the pose JSON format; ``people:
[]`` when no face is found, in which case the edge map holds Canny edges only) and, with ``--dist-maps``,
``edge_dist/<seq>/NNNNNN.npz``: float16 (H, W, 14) distances in pixels to each curve (channel order
``face_curves.PART_NAMES``, clipped at 255), the 14 extra channels of the face_512 preset.

``--crop face`` crops to a square of 2.5× the face width around the face of the sequence's first frame (fixed
for the sequence, so the camera does not move); it needs a runner that crops frames/ too, see :class:`FaceEdges`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from v2vcli.errors import ConfigError, VideoError
from v2vcli.extractor import Extractor, FloatMaps
from v2vcli.hookspecs import hookimpl

__all__ = ["CannyEdges", "CannyOptions", "FaceEdges", "FaceEdgesOptions", "auto_canny"]

log = logging.getLogger(__name__)


def auto_canny(frame: np.ndarray, sigma: float = 0.33, blur: int = 5) -> np.ndarray:
    """uint8 (H, W) 0/255 Canny edges of an RGB (H, W, 3) or grey (H, W) uint8 frame, median-rule thresholds."""
    import cv2

    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
    if blur > 1:
        grey = cv2.GaussianBlur(grey, (blur, blur), 0)
    # The median from a 256-bin histogram: exact for uint8 and several times faster than np.median.
    hist = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel()
    median = float(np.searchsorted(np.cumsum(hist), grey.size / 2.0))
    lower = max(0.0, (1.0 - sigma) * median)
    upper = min(255.0, (1.0 + sigma) * median)
    return cv2.Canny(grey, lower, upper)  # type: ignore[no-any-return]


def _check_canny(sigma: float, blur: int) -> None:
    if not 0.0 <= sigma <= 1.0:
        raise ConfigError(f"edges option sigma must be in [0, 1], got {sigma}")
    if blur < 0 or (blur > 1 and blur % 2 == 0):
        raise ConfigError(f"edges option blur must be 0, 1 or an odd kernel size, got {blur}")


@dataclass(kw_only=True)
class CannyOptions:
    """Options of ``v2v extract edges --backend canny``."""

    sigma: float = field(default=0.33, metadata={"help": "Median-rule spread of the Canny thresholds (0-1)."})
    blur: int = field(default=5, metadata={"help": "Gaussian blur kernel size before Canny (odd; 0 = none)."})


class CannyEdges(Extractor):
    """Canny edges with automatic thresholds."""

    kind: ClassVar[str] = "edges"
    backend: ClassVar[str] = "canny"
    version: ClassVar[str] = "1"
    default: ClassVar[bool] = True
    outputs: ClassVar[tuple[str, ...]] = ("edges",)
    description: ClassVar[str] = "Canny edges, thresholds from the frame's median (OpenCV)"
    Config: ClassVar[type] = CannyOptions

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        super().__init__(config, device)
        _check_canny(self.config.sigma, self.config.blur)

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        return {"edges": auto_canny(frame, self.config.sigma, self.config.blur)}


@dataclass(kw_only=True)
class FaceEdgesOptions:
    """Options of ``v2v extract edges --backend face``."""

    dist_maps: bool = field(default=False, metadata={
        "help": "Also write 14 per-part distance maps (edge_dist/, for the face_512 preset)."})
    crop: Literal["none", "face"] = field(default="none", metadata={
        "help": "'face': crop to a square of crop-scale x the face width, fixed from the first frame; 'none'."})
    crop_scale: float = field(default=2.5, metadata={"help": "Crop side as a multiple of the face width."})
    background_edges: bool = field(default=True, metadata={"help": "Add Canny edges outside the face region."})
    sigma: float = field(default=0.33, metadata={"help": "Median-rule spread of the Canny thresholds (0-1)."})
    blur: int = field(default=5, metadata={"help": "Gaussian blur kernel size before Canny (odd; 0 = none)."})
    min_detection_confidence: float = field(default=0.5, metadata={"help": "mediapipe face detection threshold."})
    min_tracking_confidence: float = field(default=0.5, metadata={"help": "mediapipe face tracking threshold."})


class FaceEdges(Extractor):
    """Face part curves from mediapipe FaceMesh + Canny edges elsewhere (+ optional distance maps and crop).

    Crop: a crop changes the frame size, so frames/ must be cropped too. Through the optional
    :meth:`Extractor.sequence_crop` of the contract: after :meth:`start_sequence`, the runner passes the
    sequence's first frame to :meth:`sequence_crop`, which finds the face (a one-off static FaceMesh detection)
    and returns the box; the runner then crops every frame to it, stores it, and passes the crop to
    :meth:`process`. Landmarks are thus computed on the crop's full
    resolution, and everything written (edges, edge_dist, the JSON's coordinates) is in crop pixels.
    :meth:`process` refuses ``crop="face"`` frames that did not go through :meth:`sequence_crop`.
    """

    kind: ClassVar[str] = "edges"
    backend: ClassVar[str] = "face"
    version: ClassVar[str] = "1"
    default: ClassVar[bool] = False
    outputs: ClassVar[tuple[str, ...]] = ("edges",)
    description: ClassVar[str] = "face-mesh part curves + Canny elsewhere (vid2vid face data), mediapipe"
    detects: ClassVar[str] = "face"
    Config: ClassVar[type] = FaceEdgesOptions

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        from v2v_plugins.extract.pose import import_mediapipe

        super().__init__(config, device)
        cfg = self.config
        _check_canny(cfg.sigma, cfg.blur)
        if cfg.crop not in ("none", "face"):
            raise ConfigError(f"edges option crop must be 'none' or 'face', got '{cfg.crop}'")
        if cfg.crop_scale <= 0:
            raise ConfigError(f"edges option crop-scale must be > 0, got {cfg.crop_scale}")
        for name in ("min_detection_confidence", "min_tracking_confidence"):
            if not 0.0 <= getattr(cfg, name) <= 1.0:
                raise ConfigError(f"edges option {name.replace('_', '-')} must be in [0, 1], got {getattr(cfg, name)}")
        # Instance attribute: edge_dist is only written when asked for.
        self.outputs = ("edges", "edge_dist") if cfg.dist_maps else ("edges",)  # type: ignore[misc]
        self._mp = import_mediapipe("edges backend 'face'")
        self._model: Any = None
        self._box: tuple[int, int, int, int] | None = None
        self._runner_crops = False  # True once the caller took the crop through sequence_crop()
        self._seq = ""
        self.faces_found = 0  # frames of the current sequence where a face was found (logged at the end)
        self.frames_seen = 0

    def meta(self) -> dict[str, Any]:
        from v2v_plugins.extract.face_curves import DIST_CLIP, PART_NAMES

        info: dict[str, Any] = {"model": "mediapipe solutions.face_mesh.FaceMesh (468 points)",
                                "mediapipe": self._mp.__version__, "curves": list(PART_NAMES)}
        if self.config.dist_maps:
            info["edge_dist"] = {"channels": list(PART_NAMES), "units": "pixels", "clip": DIST_CLIP}
        return info

    def _face_mesh(self, static: bool) -> Any:
        cfg = self.config
        return self._mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static, max_num_faces=1, refine_landmarks=False,
            min_detection_confidence=cfg.min_detection_confidence, min_tracking_confidence=cfg.min_tracking_confidence)

    def start_sequence(self, seq: str, fps: float, size: tuple[int, int]) -> None:
        self._log_sequence()
        self.close()
        self._model = self._face_mesh(static=False)
        self._box = None
        self._runner_crops = False
        self._seq = seq
        self.faces_found = self.frames_seen = 0

    def crop_box(self) -> tuple[int, int, int, int] | None:
        """The current sequence's crop (x0, y0, x1, y1) in input-frame pixels, once the first frame is seen."""
        return self._box

    def sequence_crop(self, frame: np.ndarray) -> tuple[int, int, int, int] | None:
        """The face box (x0, y0, x1, y1) in the sequence's full first frame with ``--crop face``, else None (see
        :meth:`Extractor.sequence_crop`)."""
        if self.config.crop != "face":
            return None
        self._box = self._find_box(frame)
        self._runner_crops = True
        return self._box

    def _mesh(self, model: Any, frame: np.ndarray) -> np.ndarray | None:
        result = model.process(np.ascontiguousarray(frame))
        if not result.multi_face_landmarks:
            return None
        h, w = frame.shape[:2]
        return np.asarray([(lm.x * w, lm.y * h) for lm in result.multi_face_landmarks[0].landmark], np.float64)

    def _find_box(self, frame: np.ndarray) -> tuple[int, int, int, int]:
        from v2v_plugins.extract.face_curves import face_crop_box, face_curves

        with self._face_mesh(static=True) as finder:
            mesh = self._mesh(finder, frame)
        if mesh is None:
            raise VideoError(f"--crop face: no face found in the first frame of '{self._seq}'; start the sequence "
                             f"on a frame showing the face (--start) or extract without --crop")
        return face_crop_box(face_curves(mesh), (frame.shape[1], frame.shape[0]), self.config.crop_scale)

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        from v2v_plugins.extract.face_curves import (DIST_CLIP, PART_NAMES, distance_maps, draw_curves,
                                                     face_curves, face_region_mask)
        from v2v_plugins.extract.openpose import face70_from_mesh, person_json, pose_json

        cfg = self.config
        if self._model is None:  # used as a library without start_sequence
            self.start_sequence(self._seq, 30.0, (frame.shape[1], frame.shape[0]))
        out: dict[str, Any] = {}
        if cfg.crop == "face" and not self._runner_crops:
            raise ConfigError("edges --crop face needs a runner that crops frames/ to the face (through "
                              "FaceEdges.sequence_crop); this one does not: crop the videos first (e.g. ffmpeg -vf "
                              "crop=W:H:X:Y) and extract without --crop")
        h, w = frame.shape[:2]
        mesh = self._mesh(self._model, frame)
        self.frames_seen += 1
        edges = auto_canny(frame, cfg.sigma, cfg.blur) if cfg.background_edges else np.zeros((h, w), np.uint8)
        people = []
        curves: list[np.ndarray] = []
        if mesh is not None:
            self.faces_found += 1
            curves = face_curves(mesh)
            edges[face_region_mask(curves, (w, h)) > 0] = 0
            draw_curves(curves, (w, h), edges)
            people.append(person_json(np.zeros((25, 3)), face=face70_from_mesh(mesh, (w, h))))
        out["edges"] = edges
        record = pose_json(people)
        if self._box is not None:
            record["crop"] = list(self._box)
        out["edges.json"] = record
        if cfg.dist_maps:
            maps = (distance_maps(curves, (w, h)) if curves
                    else np.full((h, w, len(PART_NAMES)), DIST_CLIP, np.float32))
            out["edge_dist"] = FloatMaps(maps)
        return out

    def detected(self, outputs: dict[str, Any]) -> bool:
        return bool(outputs["edges.json"]["people"])

    def _log_sequence(self) -> None:
        if self.frames_seen:
            log.info("edges/face: a face was found in %d of %d frames of '%s'", self.faces_found,
                     self.frames_seen, self._seq)

    def close(self) -> None:
        if self._model is not None:
            self._model.close()
            self._model = None


@hookimpl
def v2v_register_extractors(register: Any) -> None:
    register("edges", "canny", CannyEdges)
    register("edges", "face", FaceEdges)
