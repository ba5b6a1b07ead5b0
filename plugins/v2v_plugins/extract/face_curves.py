"""Face part curves from mediapipe face-mesh landmarks: drawing, distance maps, face region and face crop.

vid2vid's face data conditions the generator on an edge map of the face: the facial parts joined into curves,
the upper face contour mirrored from the jaw (landmark detectors give no forehead line), and Canny edges for the
rest of the frame (hair, shoulders, background). The face_512 preset adds one distance map per curve.

The curves follow the face mesh's own contours (far denser than the 68-point layout), in this fixed order,
which is also the channel order of the distance maps (``PART_NAMES``):

== ================= ==========================================================================
 0 jaw              face oval from the image-left ear level through the chin to the image right
 1 upper_face       the jaw mirrored across the line joining its end points, compressed to 2/3
 2 brow_left        eyebrow on the image left (the subject's right)
 3 brow_right       eyebrow on the image right
 4 nose_bridge      between the eyes down to the tip
 5 nose_bottom      nostril wings and the base of the nose
 6 eye_left_upper   upper lid of the image-left eye, outer to inner corner
 7 eye_left_lower   lower lid of the image-left eye
 8 eye_right_upper  upper lid of the image-right eye
 9 eye_right_lower  lower lid of the image-right eye
10 lip_outer_upper  outer contour of the upper lip, corner to corner
11 lip_outer_lower  outer contour of the lower lip
12 lip_inner_upper  inner contour of the upper lip
13 lip_inner_lower  inner contour of the lower lip
== ================= ==========================================================================

Points are (x, y) in pixels of the frame the mesh was computed on.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = [
    "PART_NAMES",
    "MESH_CURVES",
    "UPPER_FACE_SCALE",
    "DIST_CLIP",
    "face_curves",
    "upper_face_contour",
    "draw_curves",
    "distance_maps",
    "face_region_mask",
    "face_crop_box",
]

PART_NAMES: tuple[str, ...] = (
    "jaw", "upper_face", "brow_left", "brow_right", "nose_bridge", "nose_bottom", "eye_left_upper",
    "eye_left_lower", "eye_right_upper", "eye_right_lower", "lip_outer_upper", "lip_outer_lower",
    "lip_inner_upper", "lip_inner_lower",
)

# Mesh indices of every curve but the mirrored upper face (which is computed from the jaw).
MESH_CURVES: dict[str, tuple[int, ...]] = {
    "jaw": (127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361,
            323, 454, 356),
    "brow_left": (70, 63, 105, 66, 107),
    "brow_right": (336, 296, 334, 293, 300),
    "nose_bridge": (168, 6, 197, 195, 5, 4),
    "nose_bottom": (98, 97, 2, 326, 327),
    "eye_left_upper": (33, 246, 161, 160, 159, 158, 157, 173, 133),
    "eye_left_lower": (133, 155, 154, 153, 145, 144, 163, 7, 33),
    "eye_right_upper": (362, 398, 384, 385, 386, 387, 388, 466, 263),
    "eye_right_lower": (263, 249, 390, 373, 374, 380, 381, 382, 362),
    "lip_outer_upper": (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291),
    "lip_outer_lower": (291, 375, 321, 405, 314, 17, 84, 181, 91, 146, 61),
    "lip_inner_upper": (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308),
    "lip_inner_lower": (308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78),
}

UPPER_FACE_SCALE = 2.0 / 3.0  # foreheads are flatter than chins: the mirrored jaw is compressed to 2/3
DIST_CLIP = 255.0  # distance maps saturate here (pixels)


def upper_face_contour(jaw: np.ndarray, scale: float = UPPER_FACE_SCALE) -> np.ndarray:
    """Mirror ``jaw`` (N, 2) across the line through its end points, the mirrored offsets scaled by ``scale``.

    The line through the end points (ear level on both sides) follows a tilted head, so the upper contour stays
    on the head rather than on a horizontal axis. Returned in the jaw's order.
    """
    a, b = jaw[0], jaw[-1]
    axis = b - a
    norm = float(np.hypot(axis[0], axis[1]))
    if norm < 1e-6:
        return jaw.copy()
    u = axis / norm
    rel = jaw - a
    along = rel @ u
    across = rel @ np.array([-u[1], u[0]])
    return a + np.outer(along, u) - np.outer(across * scale, np.array([-u[1], u[0]]))  # type: ignore[no-any-return]


def face_curves(mesh: np.ndarray) -> list[np.ndarray]:
    """The 14 part curves (each (K, 2) float pixels) of a face mesh ``(468 or 478, >=2)``, in PART_NAMES order."""
    xy = np.asarray(mesh, np.float64)[:, :2]
    curves = {name: xy[list(idx)] for name, idx in MESH_CURVES.items()}
    curves["upper_face"] = upper_face_contour(curves["jaw"])
    return [curves[name] for name in PART_NAMES]


def _polyline(canvas: np.ndarray, curve: np.ndarray, value: int = 255) -> None:
    # 4 fractional bits: the polyline follows sub-pixel landmark positions instead of jumping between pixels.
    pts = np.rint(curve * 16).astype(np.int32).reshape(-1, 1, 2)
    # cv2's stubs type the colour as a sequence; a scalar is what a 1-channel canvas takes
    cv2.polylines(canvas, [pts], False, value, 1, cv2.LINE_8, shift=4)  # type: ignore[call-overload]


def draw_curves(curves: Sequence[np.ndarray], size: tuple[int, int], canvas: np.ndarray | None = None) -> np.ndarray:
    """Draw ``curves`` as 1-px polylines (255 on 0) on a uint8 ``(H, W)`` canvas; ``size`` is (W, H)."""
    w, h = size
    out = np.zeros((h, w), np.uint8) if canvas is None else canvas
    for curve in curves:
        _polyline(out, curve)
    return out


def distance_maps(curves: Sequence[np.ndarray], size: tuple[int, int], clip: float = DIST_CLIP) -> np.ndarray:
    """``(H, W, len(curves))`` float32: Euclidean distance in pixels to each drawn curve, clipped at ``clip``."""
    w, h = size
    maps = np.empty((h, w, len(curves)), np.float32)
    for c, curve in enumerate(curves):
        background = np.full((h, w), 255, np.uint8)
        _polyline(background, curve, 0)
        maps[:, :, c] = cv2.distanceTransform(background, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    np.minimum(maps, clip, out=maps)
    return maps


def face_region_mask(curves: Sequence[np.ndarray], size: tuple[int, int], margin: int = 2) -> np.ndarray:
    """uint8 ``(H, W)``, 255 inside the face outline (jaw + mirrored upper contour), grown by ``margin`` px."""
    w, h = size
    outline = np.concatenate([curves[0], curves[1][::-1]])
    mask: np.ndarray = np.zeros((h, w), np.uint8)
    # cv2's stubs type the colour as a sequence; a scalar is what a 1-channel mask takes
    cv2.fillPoly(mask, [np.rint(outline * 16).astype(np.int32)], 255,  # type: ignore[call-overload]
                 cv2.LINE_8, shift=4)
    if margin > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        mask = cv2.dilate(mask, kernel)
    return mask


def face_crop_box(curves: Sequence[np.ndarray], size: tuple[int, int], scale: float = 2.5) -> tuple[int, int, int, int]:
    """Square crop ``(x0, y0, x1, y1)`` of side ``scale`` × the face width, centred on the face, inside the frame.

    Face width is the horizontal extent of the outline. When the square is larger than the frame it is cut to
    the frame; otherwise it is shifted (not shrunk) to stay inside, so every crop of a sequence has one size.
    """
    w, h = size
    outline = np.concatenate([curves[0], curves[1]])
    x_min, y_min = outline.min(axis=0)
    x_max, y_max = outline.max(axis=0)
    side = int(round(scale * (x_max - x_min)))
    side = max(1, min(side, w, h))
    cx, cy = (x_min + x_max) / 2, (y_min + y_max) / 2
    x0 = int(round(cx - side / 2))
    y0 = int(round(cy - side / 2))
    x0 = min(max(x0, 0), w - side)
    y0 = min(max(y0, 0), h - side)
    return x0, y0, x0 + side, y0 + side
