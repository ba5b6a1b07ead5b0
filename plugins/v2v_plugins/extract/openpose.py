"""OpenPose conventions for mediapipe landmarks: BODY_25 / face-70 / hand-21 mapping, rendering and the pose JSON.

The dataset's pose files are OpenPose-compatible (docs/architecture.md, fixed), so a model trained on v2v's pose
renderings can be driven by OpenPose output and the other way round. This module owns that contract:

* :func:`body25_from_mediapipe` maps mediapipe's 33 pose landmarks to OpenPose BODY_25 (neck and mid-hip are the
  midpoints of the shoulders and hips; mediapipe has no small toes, so BODY_25 points 20 and 23 stay undetected).
* :func:`body25_from_coco17` maps the 17 COCO keypoints of detectron2's Keypoint R-CNN to BODY_25 (table
  :data:`BODY25_FROM_COCO17`): neck and mid-hip are the midpoints of the shoulders and hips with the lower of the two
  confidences; COCO has no feet, so BODY_25 points 19-24 (toes, heels) are absent (confidence 0).
* :func:`face70_from_mesh` picks the 68 dlib/OpenPose face points from the 468-point face mesh and adds the two
  pupils (centres of the eye contours) as points 68 and 69.
* :func:`render_openpose` draws limbs and keypoints on black in OpenPose's colours: a limb has the colour of its
  second keypoint, lines first, then filled circles, thickness scaled with the person's size as OpenPose does.
* :func:`person_json`, :func:`pose_json` and :func:`validate_pose_json` build and check the per-frame JSON.

Everything here is numpy (cv2 for drawing, imported inside functions), so tests can exercise it without mediapipe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from v2vcli.errors import DatasetError

__all__ = [
    "BODY_25_NAMES",
    "BODY_25_PAIRS",
    "BODY_25_COLORS",
    "HAND_PAIRS",
    "HAND_COLORS",
    "FACE_PAIRS",
    "FACE_COLOR",
    "FACE70_FROM_MESH",
    "POSE_JSON_VERSION",
    "body25_from_mediapipe",
    "body25_from_coco17",
    "BODY25_FROM_COCO17",
    "COCO17_NAMES",
    "render_people",
    "face70_from_mesh",
    "hand21_from_mediapipe",
    "render_openpose",
    "person_json",
    "pose_json",
    "pose_json_errors",
    "validate_pose_json",
]

POSE_JSON_VERSION = 1.3

BODY_25_NAMES: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip", "RHip", "RKnee",
    "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar", "LBigToe", "LSmallToe", "LHeel",
    "RBigToe", "RSmallToe", "RHeel",
)

# BODY_25 index -> mediapipe pose index; None: derived (neck, mid-hip) or absent (small toes).
_BODY25_FROM_MP: tuple[int | None, ...] = (
    0, None, 12, 14, 16, 11, 13, 15, None, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7, 31, None, 29, 32, None, 30,
)

COCO17_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)

# BODY_25 index -> COCO-17 index; None: a midpoint (1 neck: shoulders 5+6, 8 mid-hip: hips 11+12) or absent (19-24:
# COCO has no toes or heels).
BODY25_FROM_COCO17: tuple[int | None, ...] = (
    0, None, 6, 8, 10, 5, 7, 9, None, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3, None, None, None, None, None, None,
)

# Limbs in OpenPose's render order (BODY_25).
BODY_25_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11), (8, 12), (12, 13),
    (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (14, 19), (19, 20), (14, 21), (11, 22), (22, 23),
    (11, 24),
)

# One RGB colour per BODY_25 keypoint (OpenPose's table); a limb takes the colour of its second keypoint.
BODY_25_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 85), (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (255, 0, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (255, 0, 170), (170, 0, 255), (255, 0, 255), (85, 0, 255), (0, 0, 255), (0, 0, 255),
    (0, 0, 255), (0, 255, 255), (0, 255, 255), (0, 255, 255),
)

# Hands: mediapipe and OpenPose share the 21-point order (wrist, then 4 points per finger from the thumb).
HAND_PAIRS: tuple[tuple[int, int], ...] = tuple(
    pair for finger in range(5) for pair in [(0, 4 * finger + 1)] + [(4 * finger + k, 4 * finger + k + 1)
                                                                     for k in range(1, 4)]
)
HAND_COLORS: tuple[tuple[int, int, int], ...] = (
    (100, 100, 100),
    (100, 0, 0), (150, 0, 0), (200, 0, 0), (255, 0, 0),
    (100, 100, 0), (150, 150, 0), (200, 200, 0), (255, 255, 0),
    (0, 100, 50), (0, 150, 75), (0, 200, 100), (0, 255, 125),
    (0, 50, 100), (0, 75, 150), (0, 100, 200), (0, 125, 255),
    (100, 0, 100), (150, 0, 150), (200, 0, 200), (255, 0, 255),
)


def _chain(points: Sequence[int], closed: bool = False) -> list[tuple[int, int]]:
    pairs = [(points[i], points[i + 1]) for i in range(len(points) - 1)]
    return pairs + [(points[-1], points[0])] if closed else pairs


# The 68-point (dlib / OpenPose face) layout, image-left first: jaw 0-16, brows 17-21 and 22-26, nose bridge
# 27-30, nostrils 31-35, eyes 36-41 and 42-47, outer lips 48-59, inner lips 60-67, pupils 68-69.
FACE_PAIRS: tuple[tuple[int, int], ...] = tuple(
    _chain(range(0, 17)) + _chain(range(17, 22)) + _chain(range(22, 27)) + _chain(range(27, 31))
    + _chain(range(31, 36)) + _chain(range(36, 42), True) + _chain(range(42, 48), True)
    + _chain(range(48, 60), True) + _chain(range(60, 68), True)
)
FACE_COLOR = (255, 255, 255)

# Face-mesh index of each of the 68 points. Chosen on the mesh's contours (FACEMESH_FACE_OVAL, _LIPS, _EYES,
# _EYEBROWS) to sit where dlib's points sit; the jaw uses mirror-symmetric mesh pairs (127/356, 234/454, ...).
FACE70_FROM_MESH: tuple[int, ...] = (
    127, 234, 93, 132, 58, 172, 136, 149, 152, 378, 365, 397, 288, 361, 323, 454, 356,  # jaw 0-16
    70, 63, 105, 66, 107,  # brow (image left, subject's right) outer -> inner
    336, 296, 334, 293, 300,  # brow (image right) inner -> outer
    168, 197, 5, 4,  # nose bridge, top -> tip
    98, 97, 2, 326, 327,  # nostrils, image left -> right
    33, 160, 158, 133, 153, 144,  # eye (image left): outer corner, upper lid, inner corner, lower lid
    362, 385, 387, 263, 373, 380,  # eye (image right): inner corner, upper lid, outer corner, lower lid
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,  # outer lips from the left corner, clockwise
    78, 81, 13, 311, 308, 402, 14, 178,  # inner lips from the left corner, clockwise
)


def _in_frame(xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)


def body25_from_mediapipe(pose33: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """BODY_25 ``(25, 3)`` [x, y, c] from mediapipe's ``(33, 4)`` [x, y, z, visibility] in pixels.

    ``size`` is (W, H). c is the visibility; points outside the frame and points mediapipe lacks are [0, 0, 0],
    OpenPose's "not detected".
    """
    out = np.zeros((25, 3), np.float64)
    for i, j in enumerate(_BODY25_FROM_MP):
        if j is not None:
            out[i] = (pose33[j, 0], pose33[j, 1], pose33[j, 3])
    for i, (a, b) in ((1, (11, 12)), (8, (23, 24))):  # neck = mid-shoulders, mid-hip = mid-hips
        out[i, :2] = (pose33[a, :2] + pose33[b, :2]) / 2
        out[i, 2] = min(pose33[a, 3], pose33[b, 3])
    out[~_in_frame(out, size)] = 0.0
    out[20] = out[23] = 0.0  # mediapipe has no small toes
    out[:, 2] = np.clip(out[:, 2], 0.0, 1.0)
    return out


def body25_from_coco17(kp17: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """BODY_25 ``(25, 3)`` [x, y, c] from COCO-17 keypoints ``(17, 3)`` [x, y, score] in pixels (detectron2's
    ``pred_keypoints``, score = the keypoint's heatmap probability).

    Neck and mid-hip are the midpoints of the shoulders and of the hips, with the lower confidence of the two; points
    COCO lacks (feet), points outside the frame and points of confidence 0 are [0, 0, 0], OpenPose's "not
    detected". Confidences are clipped to [0, 1].
    """
    kp = np.asarray(kp17, np.float64).reshape(17, 3)
    out = np.zeros((25, 3), np.float64)
    for i, j in enumerate(BODY25_FROM_COCO17):
        if j is not None:
            out[i] = kp[j]
    for i, (a, b) in ((1, (5, 6)), (8, (11, 12))):
        out[i, :2] = (kp[a, :2] + kp[b, :2]) / 2
        out[i, 2] = min(kp[a, 2], kp[b, 2])
    out[:, 2] = np.clip(np.nan_to_num(out[:, 2]), 0.0, 1.0)
    out[~_in_frame(out, size) | (out[:, 2] <= 0)] = 0.0
    return out


def face70_from_mesh(mesh: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Face ``(70, 3)`` [x, y, c] from face-mesh landmarks ``(468 or 478, >=2)`` in pixels; c is 1 in the frame."""
    pts = np.zeros((70, 3), np.float64)
    pts[:68, :2] = mesh[list(FACE70_FROM_MESH), :2]
    pts[68, :2] = pts[36:42, :2].mean(axis=0)  # pupils: centres of the eye contours
    pts[69, :2] = pts[42:48, :2].mean(axis=0)
    pts[:, 2] = 1.0
    pts[~_in_frame(pts, size)] = 0.0
    return pts


def hand21_from_mediapipe(hand: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Hand ``(21, 3)`` [x, y, c] from mediapipe's 21 hand landmarks in pixels (same order as OpenPose)."""
    pts = np.zeros((21, 3), np.float64)
    pts[:, :2] = hand[:, :2]
    pts[:, 2] = 1.0
    pts[~_in_frame(pts, size)] = 0.0
    return pts


# -- rendering ---------------------------------------------------------------------------------------------------

def _thickness(points: np.ndarray, threshold: float, size: tuple[int, int]) -> int:
    """OpenPose's scale rule: sqrt(frame area) / 75, times the part's extent relative to the frame, at least 2."""
    w, h = size
    valid = points[points[:, 2] > threshold, :2]
    if len(valid) == 0:
        return 2
    extent = valid.max(axis=0) - valid.min(axis=0)
    ratio = min(1.0, max(extent[0] / w, extent[1] / h))
    return max(int(round(math.sqrt(w * h) / 75.0 * ratio)), 2)


def _draw(canvas: np.ndarray, points: np.ndarray, pairs: Sequence[tuple[int, int]],
          colors: Sequence[tuple[int, int, int]], threshold: float) -> None:
    h, w = canvas.shape[:2]
    thick = _thickness(points, threshold, (w, h))
    line = max(1, int(round(thick * 0.75)))
    radius = max(1, thick // 2)
    ok = points[:, 2] > threshold
    xy = np.rint(points[:, :2]).astype(np.int64)
    for a, b in pairs:
        if ok[a] and ok[b]:
            cv2.line(canvas, (int(xy[a, 0]), int(xy[a, 1])), (int(xy[b, 0]), int(xy[b, 1])),
                     colors[b % len(colors)], line, cv2.LINE_8)
    for i in np.flatnonzero(ok):
        cv2.circle(canvas, (int(xy[i, 0]), int(xy[i, 1])), radius, colors[i % len(colors)], -1, cv2.LINE_8)


def render_openpose(size: tuple[int, int], body: np.ndarray | None, face: np.ndarray | None = None,
                    hand_left: np.ndarray | None = None, hand_right: np.ndarray | None = None, *,
                    threshold: float = 0.5, part_threshold: float = 0.2) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` OpenPose-style rendering of one person on black; all black when ``body`` is None.

    ``size`` is (W, H); keypoint arrays are [x, y, c] in pixels. Body points are drawn when c > ``threshold``,
    face and hand points when c > ``part_threshold`` (OpenPose's defaults for those parts are 0.4 and 0.2; ours
    are 1 when found).
    """
    w, h = size
    canvas = np.zeros((h, w, 3), np.uint8)
    if body is None:  # hands and face belong to a person: nobody, nothing drawn
        return canvas
    _draw(canvas, body, BODY_25_PAIRS, BODY_25_COLORS, threshold)
    for hand in (hand_left, hand_right):
        if hand is not None:
            _draw(canvas, hand, HAND_PAIRS, HAND_COLORS, part_threshold)
    if face is not None:
        _draw(canvas, face, FACE_PAIRS, (FACE_COLOR,), part_threshold)
    return canvas


def render_people(size: tuple[int, int], bodies: Sequence[np.ndarray], *, threshold: float = 0.05) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)``: every person's BODY_25 drawn on one black canvas as OpenPose renders several people
    (each person's limbs and points with its own thickness, in the order given: later people over earlier ones)."""
    w, h = size
    canvas = np.zeros((h, w, 3), np.uint8)
    for body in bodies:
        _draw(canvas, body, BODY_25_PAIRS, BODY_25_COLORS, threshold)
    return canvas


# -- JSON ------------------------------------------------------------------------------------------------------------

_PARTS = (("pose_keypoints_2d", 25, 3), ("face_keypoints_2d", 70, 3), ("hand_left_keypoints_2d", 21, 3),
          ("hand_right_keypoints_2d", 21, 3), ("mediapipe_pose_33", 33, 4))


def _flat(arr: np.ndarray | None, n: int, d: int) -> list[float]:
    if arr is None:
        return [0.0] * (n * d)
    # 3 decimals: sub-pixel precision without making every file 3x larger; round() keeps files reproducible.
    return [round(float(v), 3) for v in np.asarray(arr, np.float64).reshape(-1)]


def person_json(body: np.ndarray, face: np.ndarray | None = None, hand_left: np.ndarray | None = None,
                hand_right: np.ndarray | None = None, pose33: np.ndarray | None = None) -> dict[str, list[float]]:
    """One entry of ``people``: parts not computed or not found are all zeros (OpenPose's "not detected")."""
    arrays = (body, face, hand_left, hand_right, pose33)
    return {name: _flat(arr, n, d) for (name, n, d), arr in zip(_PARTS, arrays)}


def pose_json(people: Sequence[dict[str, list[float]]]) -> dict[str, Any]:
    """The per-frame file: ``{"version": 1.3, "people": [...]}``."""
    return {"version": POSE_JSON_VERSION, "people": list(people)}


def pose_json_errors(data: Any) -> list[str]:
    """Everything that makes ``data`` differ from the fixed pose JSON schema (empty list: valid)."""
    errors: list[str] = []
    if not isinstance(data, dict):
        return [f"expected an object, got {type(data).__name__}"]
    if data.get("version") != POSE_JSON_VERSION:
        errors.append(f"version must be {POSE_JSON_VERSION}, got {data.get('version')!r}")
    people = data.get("people")
    if not isinstance(people, list):
        return errors + ["'people' must be a list"]
    for p, person in enumerate(people):
        if not isinstance(person, dict):
            errors.append(f"people[{p}] must be an object")
            continue
        for name, n, d in _PARTS:
            values = person.get(name)
            if not isinstance(values, list):
                errors.append(f"people[{p}].{name} is missing or not a list")
                continue
            if len(values) != n * d:
                errors.append(f"people[{p}].{name} has {len(values)} numbers, expected {n} x {d} = {n * d}")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                       for v in values):
                errors.append(f"people[{p}].{name} holds a value that is not a finite number")
            elif d == 3 and len(values) == n * d and any(not 0.0 <= c <= 1.0 for c in values[2::3]):
                errors.append(f"people[{p}].{name} has a confidence outside [0, 1]")
    return errors


def validate_pose_json(data: Any, where: str = "pose JSON") -> None:
    """Raise :class:`DatasetError` naming the first problems when ``data`` is not a valid pose file."""
    errors = pose_json_errors(data)
    if errors:
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise DatasetError(f"{where} does not follow the v2v/OpenPose schema: {'; '.join(errors[:3])}{more}")
