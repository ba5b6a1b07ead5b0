"""Pose extractor plugin: ``v2v extract pose`` with the ``mediapipe`` backend (the default: offline, models in the
wheel, one person) and ``detectron2`` (every person, :mod:`v2v_plugins.extract.pose_detectron2`).

Per frame it writes ``pose/<seq>/NNNNNN.png`` (the person drawn in OpenPose's colours at the frame size, black
when nobody is found) and ``pose/<seq>/NNNNNN.json`` (the fixed OpenPose-compatible JSON, see
:mod:`v2v_plugins.extract.openpose`). Frames are never dropped: nobody found ⇒ ``"people": []``.

Models. The body alone runs mediapipe's legacy ``solutions.pose.Pose`` (BlazePose, model_complexity 1: the only
complexity whose model ships in the 0.10.21 wheel; 0 and 2 would be downloaded). ``--hands`` or ``--face`` switch
to ``solutions.holistic.Holistic``, which runs the same pose model and then the hand and face-mesh models on
crops placed by the body landmarks. We chose Holistic over separate Hands/FaceMesh models because its hands and
face always belong to the tracked person (separate detectors may pick a bystander's hand), its left/right hands
follow the body's left/right wrists, and it crops instead of searching the whole frame. Its cost: it always runs
both hand models and the face model (mediapipe offers no switch), so ``--hands`` alone costs what ``--hands
--face`` costs, about 1.5-2× the body-only time on CPU (see benchmarks/bench_extract.py).

The legacy models are single-person; the tracked person is the most prominent one. Tracking carries state from
frame to frame, so a fresh model is created for every sequence (:meth:`MediapipePose.start_sequence`): a
sequence's results never depend on what a worker processed before it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from v2vcli.errors import ConfigError, PluginError
from v2vcli.extractor import Extractor
from v2vcli.hookspecs import hookimpl

__all__ = ["MediapipePose", "PoseOptions", "end_quiet", "import_mediapipe", "quiet_native_logs",
           "MEDIAPIPE_VERSION"]

log = logging.getLogger(__name__)

MEDIAPIPE_VERSION = "0.10.21"  # the last release whose wheel carries the legacy solutions' models


# what mediapipe/TFLite/absl print straight to fd 2 when a graph starts: INFO/WARNING lines, not errors
_NATIVE_NOISE = re.compile(r"^(INFO: |WARNING: All log messages before absl::InitializeLog|[IW]\d{4} \d\d:\d\d:\d\d)")


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Hold back the INFO/WARNING lines mediapipe's C++ (TFLite, absl, glog) writes to stderr while a graph is
    built and runs its first frame; everything else written to stderr meanwhile (errors, other threads' log lines)
    is passed on afterwards. GLOG_minloglevel does not reach TFLite's or absl's logger, hence the fd redirect."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        sink = tempfile.TemporaryFile()
    except (OSError, ValueError, AttributeError):
        yield
        return
    os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sink.seek(0)
        text = sink.read().decode("utf-8", "replace")
        sink.close()
        kept = "".join(line for line in text.splitlines(keepends=True) if not _NATIVE_NOISE.match(line))
        if kept:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.write(kept)
                sys.stderr.flush()


def end_quiet(extractor: Any) -> None:
    """End the :func:`quiet_native_logs` an extractor entered when it built its graph (if still open)."""
    quiet = getattr(extractor, "_quiet", None)
    if quiet is not None:
        extractor._quiet = None
        quiet.close()


def import_mediapipe(what: str) -> Any:
    """Import mediapipe for ``what`` (e.g. "pose backend 'mediapipe'") or raise a PluginError saying what to install."""
    # mediapipe's C++ logging (glog/absl) writes INFO/WARNING lines to stderr for every graph; keep the user's
    # setting when there is one.
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        import mediapipe as mp
        from mediapipe.python import solutions  # noqa: F401  (the legacy API these extractors use)
    except ImportError as exc:
        raise PluginError(f"the {what} needs mediapipe {MEDIAPIPE_VERSION} ({exc}); install it with "
                          f"pip install 'v2vcli[mediapipe]' (Python 3.9-3.12)") from exc
    version = getattr(mp, "__version__", "?")
    if version != MEDIAPIPE_VERSION:
        log.warning("mediapipe %s is installed; v2v is tested with %s, whose wheel ships the legacy models "
                    "(other releases may try to download them)", version, MEDIAPIPE_VERSION)
    return mp


@dataclass(kw_only=True)
class PoseOptions:
    """Options of ``v2v extract pose --backend mediapipe``."""

    hands: bool = field(default=False, metadata={"help": "Add 21-point hands (runs mediapipe Holistic)."})
    face: bool = field(default=False, metadata={"help": "Add the 70-point face (runs mediapipe Holistic)."})
    smooth: bool = field(default=False, metadata={
        "help": "One-Euro smoothing of the keypoints over time (mediapipe already smooths while tracking)."})
    min_cutoff: float = field(default=1.0, metadata={
        "help": "One-Euro cutoff at rest in Hz: lower = smoother, more lag."})
    beta: float = field(default=10.0, metadata={
        "help": "One-Euro speed coefficient (per frame size per second): higher = less lag on fast motion."})
    render_threshold: float = field(default=0.5, metadata={
        "help": "Draw body keypoints whose visibility is above this (0-1)."})
    min_detection_confidence: float = field(default=0.5, metadata={
        "help": "mediapipe person detection threshold (0-1)."})
    min_tracking_confidence: float = field(default=0.5, metadata={
        "help": "mediapipe tracking threshold (0-1); below it the person is re-detected."})

    def check(self) -> None:
        for name in ("render_threshold", "min_detection_confidence", "min_tracking_confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"pose option {name.replace('_', '-')} must be in [0, 1], got {value}")
        if self.min_cutoff <= 0 or self.beta < 0:
            raise ConfigError(f"pose smoothing needs min-cutoff > 0 and beta >= 0, got {self.min_cutoff} and "
                              f"{self.beta}")


def _landmarks(landmark_list: Any, size: tuple[int, int], dims: int) -> np.ndarray:
    """mediapipe NormalizedLandmarkList → ``(N, dims)`` in pixels ([x, y, z, visibility][:dims]); z is in x's scale."""
    w, h = size
    rows = [(lm.x * w, lm.y * h, lm.z * w, lm.visibility) for lm in landmark_list.landmark]
    return np.asarray(rows, np.float64)[:, :dims]


class _PartSmoother:
    """One-Euro filters for one person's parts, in frame-size units so beta does not depend on resolution."""

    def __init__(self, options: PoseOptions, scale: float) -> None:
        from v2v_plugins.extract.smoothing import OneEuroFilter

        self.scale = scale
        self.filters: dict[str, OneEuroFilter] = {}
        self.make = lambda: OneEuroFilter(options.min_cutoff, options.beta)

    def __call__(self, part: str, points: np.ndarray | None, t: float, dims: int) -> np.ndarray | None:
        filt = self.filters.setdefault(part, self.make())
        if points is None:
            filt.reset()  # the part is gone: restart when it comes back
            return None
        out = points.copy()
        out[:, :dims] = filt(points[:, :dims] / self.scale, t) * self.scale
        return out


class MediapipePose(Extractor):
    """Single-person body (+ optional hands and face) keypoints with mediapipe, written in OpenPose's formats."""

    kind: ClassVar[str] = "pose"
    backend: ClassVar[str] = "mediapipe"
    version: ClassVar[str] = "1"
    default: ClassVar[bool] = True
    outputs: ClassVar[tuple[str, ...]] = ("pose",)
    description: ClassVar[str] = "OpenPose BODY_25 (+ hands, face) from mediapipe Pose/Holistic, offline"
    detects: ClassVar[str] = "person"
    Config: ClassVar[type] = PoseOptions

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        super().__init__(config, device)
        self.config.check()
        self._mp = import_mediapipe("pose backend 'mediapipe'")
        self._model: Any = None
        self._holistic = bool(self.config.hands or self.config.face)
        self._fps = 30.0
        self._smoother: _PartSmoother | None = None

    def meta(self) -> dict[str, Any]:
        model = "solutions.holistic.Holistic" if self._holistic else "solutions.pose.Pose"
        return {"model": f"mediapipe {model} (model_complexity 1)", "mediapipe": self._mp.__version__,
                "format": "OpenPose BODY_25 + face 70 + hands 21 (pixels) + mediapipe_pose_33 [x, y, z, visibility]"}

    def _new_model(self) -> Any:
        cfg = self.config
        common = dict(static_image_mode=False, model_complexity=1, smooth_landmarks=True, enable_segmentation=False,
                      min_detection_confidence=cfg.min_detection_confidence,
                      min_tracking_confidence=cfg.min_tracking_confidence)
        if self._holistic:
            return self._mp.solutions.holistic.Holistic(refine_face_landmarks=False, **common)
        return self._mp.solutions.pose.Pose(**common)

    def start_sequence(self, seq: str, fps: float, size: tuple[int, int]) -> None:
        self.close()
        # the graph logs from its own threads after construction, until its first frame is through
        self._quiet = contextlib.ExitStack()
        self._quiet.enter_context(quiet_native_logs())
        self._model = self._new_model()
        self._fps = fps if fps and fps > 0 else 30.0
        self._smoother = _PartSmoother(self.config, float(max(size))) if self.config.smooth else None

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        from v2v_plugins.extract.openpose import (body25_from_mediapipe, face70_from_mesh, hand21_from_mediapipe,
                                                  person_json, pose_json, render_openpose)

        if self._model is None:  # used as a library without start_sequence
            self.start_sequence("", self._fps, (frame.shape[1], frame.shape[0]))
        size = (frame.shape[1], frame.shape[0])
        try:
            result = self._model.process(np.ascontiguousarray(frame))
        finally:
            end_quiet(self)
        if result.pose_landmarks is None:
            if self._smoother is not None:
                for part in ("body", "face", "hand_left", "hand_right"):
                    self._smoother(part, None, 0.0, 2)
            return {"pose": np.zeros((size[1], size[0], 3), np.uint8), "pose.json": pose_json([])}

        pose33 = _landmarks(result.pose_landmarks, size, 4)
        mesh = hand_l = hand_r = None
        if self._holistic:
            if self.config.face and result.face_landmarks is not None:
                mesh = _landmarks(result.face_landmarks, size, 2)
            if self.config.hands:
                # Holistic's left/right follow the body's LEFT/RIGHT_WRIST, i.e. the person's own hands, as in
                # OpenPose's hand_left/hand_right.
                if result.left_hand_landmarks is not None:
                    hand_l = _landmarks(result.left_hand_landmarks, size, 2)
                if result.right_hand_landmarks is not None:
                    hand_r = _landmarks(result.right_hand_landmarks, size, 2)
        if self._smoother is not None:
            t = index / self._fps
            pose33 = self._smoother("body", pose33, t, 3)  # type: ignore[assignment]
            mesh = self._smoother("face", mesh, t, 2)
            hand_l = self._smoother("hand_left", hand_l, t, 2)
            hand_r = self._smoother("hand_right", hand_r, t, 2)

        body = body25_from_mediapipe(pose33, size)
        face = face70_from_mesh(mesh, size) if mesh is not None else None
        left = hand21_from_mediapipe(hand_l, size) if hand_l is not None else None
        right = hand21_from_mediapipe(hand_r, size) if hand_r is not None else None
        rendering = render_openpose(size, body, face, left, right, threshold=self.config.render_threshold)
        person = person_json(body, face, left, right, pose33)
        return {"pose": rendering, "pose.json": pose_json([person])}

    def detected(self, outputs: dict[str, Any]) -> bool:
        return bool(outputs["pose.json"]["people"])

    def close(self) -> None:
        end_quiet(self)
        if self._model is not None:
            self._model.close()
            self._model = None


@hookimpl
def v2v_register_extractors(register: Any) -> None:
    from v2v_plugins.extract.pose_detectron2 import Detectron2Pose  # detectron2 itself is imported on use

    register("pose", "mediapipe", MediapipePose)
    register("pose", "detectron2", Detectron2Pose)
