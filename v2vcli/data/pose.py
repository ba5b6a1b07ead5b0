"""Body keypoints of the pose modality, as the dataset layout stores them (docs/architecture.md): each
``pose/<seq>/NNNNNN.json`` is OpenPose JSON whose first person's ``pose_keypoints_2d`` holds the 25 BODY_25 points
as x, y, confidence (pixels of the source frame; confidence 0 = not detected).

The clip loader reads them for models that ask for keypoints (``VideoModel.needs_keypoints``) and mirrors them
with a horizontally flipped clip: x is mirrored and each left/right pair (:data:`BODY25_FLIP_PAIRS`) swaps places.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from v2vcli.io.files import read_json

__all__ = ["BODY25_POINTS", "BODY25_FLIP_PAIRS", "read_body25", "mirror_body25"]

BODY25_POINTS = 25
#: BODY_25 left/right pairs (shoulders, elbows, wrists, hips, knees, ankles, eyes, ears, toes, heels).
BODY25_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((2, 5), (3, 6), (4, 7), (9, 12), (10, 13), (11, 14), (15, 16),
                                                  (17, 18), (19, 22), (20, 23), (21, 24))


def read_body25(path: Path) -> np.ndarray:
    """(25, 3) float32 [x, y, confidence] of the first person in the pose JSON at ``path``; zeros when the file is
    missing or holds nobody."""
    kp = np.zeros((BODY25_POINTS, 3), dtype=np.float32)
    if not path.is_file():
        return kp
    people = (read_json(path) or {}).get("people") or []
    if people:
        flat = np.asarray(people[0].get("pose_keypoints_2d") or [], dtype=np.float32)[:BODY25_POINTS * 3]
        kp.reshape(-1)[:flat.size] = flat
    return kp


def mirror_body25(kp: np.ndarray, width: int) -> np.ndarray:
    """Keypoints (25, 3) of the frame mirrored left-right (``width`` pixels): x → width - 1 - x for detected points,
    and the left/right pairs swapped so that index 2 stays the right shoulder of the mirrored person."""
    out = kp.copy()
    seen = out[:, 2] > 0
    out[:, 0] = np.where(seen, width - 1 - out[:, 0], 0.0)
    for a, b in BODY25_FLIP_PAIRS:
        out[[a, b]] = out[[b, a]]
    return out
