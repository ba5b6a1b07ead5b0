"""Colours for previews: label palettes, colourised label/instance/flow/gray maps, blending and tiling.

Previews are for people, never for training: every function returns RGB uint8 (H, W, 3), except
:func:`colorize_inputs`, which draws a batch of model conditioning as a float tensor for training samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from v2vcli.data.layout import LabelSet

__all__ = [
    "colorize_inputs",
    "labelled_grid",
    "label_palette",
    "colorize_labels",
    "colorize_instances",
    "colorize_flow",
    "colorize_gray",
    "blend",
    "tile",
]


def label_palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 distinct colours indexed by id (the PASCAL VOC bit-interleaving scheme; id 0 black)."""
    ids = np.arange(n)
    pal = np.zeros((n, 3), dtype=np.int64)
    for shift in range(8):
        for ch in range(3):
            pal[:, ch] |= ((ids >> (3 * shift + ch)) & 1) << (7 - shift)
    return pal.astype(np.uint8)


def _palette_of(palette: Any) -> np.ndarray:
    if palette is None:
        return label_palette(256)
    if hasattr(palette, "palette"):  # a LabelSet: its own colours, unknown ids from the generic palette
        own = np.asarray(palette.palette(), dtype=np.uint8)
        known = np.zeros(256, dtype=bool)
        for c in palette.classes:
            if 0 <= c.id < 256:
                known[c.id] = True
        return np.where(known[:, None], own, label_palette(256))
    pal = np.asarray(palette, dtype=np.uint8)
    if pal.ndim != 2 or pal.shape[1] != 3:
        raise ValueError(f"a palette is (N, 3) uint8, got {pal.shape}")
    if pal.shape[0] < 256:
        pal = np.concatenate([pal, label_palette(256)[pal.shape[0]:]])
    return pal


def colorize_labels(labels: np.ndarray, palette: Any = None) -> np.ndarray:
    """Colour uint8 label ids (H, W) with ``palette``: a LabelSet, an (N, 3) array, or None (generic colours)."""
    if labels.ndim != 2:
        raise ValueError(f"labels are (H, W), got {labels.shape}")
    return _palette_of(palette)[labels.astype(np.intp) % 256]


def colorize_instances(inst: np.ndarray) -> np.ndarray:
    """Colour instance ids (H, W): a stable bright colour per id from a golden-ratio hue walk; id 0 black."""
    import cv2

    if inst.ndim != 2:
        raise ValueError(f"instances are (H, W), got {inst.shape}")
    ids, inverse = np.unique(inst, return_inverse=True)
    hue = ((ids.astype(np.float64) * 0.618033988749895) % 1.0 * 179).astype(np.uint8)
    hsv = np.stack([hue, np.full_like(hue, 200), np.full_like(hue, 255)], axis=-1)[None]
    colours = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]
    colours[ids == 0] = 0
    return colours[inverse.reshape(inst.shape)]


def colorize_flow(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour flow (H, W, 2) in pixels: hue = direction, brightness = magnitude (scaled to ``max_magnitude``)."""
    import cv2

    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow is (H, W, 2), got {flow.shape}")
    f = flow.astype(np.float32)
    mag, ang = cv2.cartToPolar(f[..., 0], f[..., 1], angleInDegrees=True)
    top = float(max_magnitude) if max_magnitude else float(mag.max())
    hsv = np.zeros((*flow.shape[:2], 3), dtype=np.uint8)
    hsv[..., 0] = (ang / 2).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(mag / top * 255 if top > 0 else 0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def colorize_gray(gray: np.ndarray) -> np.ndarray:
    """An 8-bit single-channel map (edges, masks) as gray RGB."""
    if gray.ndim != 2:
        raise ValueError(f"a gray map is (H, W), got {gray.shape}")
    g = gray if gray.dtype == np.uint8 else np.clip(gray, 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def blend(frame: np.ndarray, overlay: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``(1 - alpha)·frame + alpha·overlay`` for two RGB uint8 images of one size."""
    if frame.shape != overlay.shape:
        raise ValueError(f"blend needs equal shapes, got {frame.shape} and {overlay.shape}")
    out = frame.astype(np.float32) * (1 - alpha) + overlay.astype(np.float32) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def tile(images: list[np.ndarray], columns: int | None = None) -> np.ndarray:
    """RGB images of one size side by side in a grid of ``columns`` (all in one row by default)."""
    if not images:
        raise ValueError("tile needs at least one image")
    h, w = images[0].shape[:2]
    cols = columns or len(images)
    rows = -(-len(images) // cols)
    out = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        if img.shape[:2] != (h, w):
            raise ValueError(f"tile needs images of one size, got {img.shape[:2]} and {(h, w)}")
        r, c = divmod(i, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = img if img.ndim == 3 else colorize_gray(img)
    return out


def labelled_grid(images: list[np.ndarray], columns: int, row_names: list[str] | None = None,
                  column_names: list[str] | None = None, scale: int = 1) -> np.ndarray:
    """:func:`tile` with a header row of ``column_names`` and a left column of ``row_names`` (white, black text),
    each tile enlarged ``scale`` times (nearest neighbour, so label maps stay crisp)."""
    import cv2

    grid = tile(images, columns)
    if scale > 1:
        grid = cv2.resize(grid, (grid.shape[1] * scale, grid.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    rows = -(-len(images) // columns)
    h, w = grid.shape[0] // rows, grid.shape[1] // columns
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.4

    def text_width(t: str) -> int:
        return int(cv2.getTextSize(t, font, size, 1)[0][0])

    left = 8 + max((text_width(n) for n in row_names or []), default=-8)
    top = 18 if column_names else 0
    out = np.full((grid.shape[0] + top, grid.shape[1] + left, 3), 255, np.uint8)
    out[top:, left:] = grid
    for c, name in enumerate(column_names or []):
        cv2.putText(out, name, (left + c * w + 3, 13), font, size, (0, 0, 0), 1, cv2.LINE_AA)
    for r, name in enumerate(row_names or []):
        cv2.putText(out, name, (4, top + r * h + h // 2 + 4), font, size, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def colorize_inputs(inputs: Mapping[str, Any], label_set: LabelSet | None = None) -> torch.Tensor:
    """A picture of the conditioning for samples: (..., 3, H, W) float in [-1, 1].

    seg through the label set's palette, else the first of pose/densepose (RGB), edges or edge_dist (grey);
    instance boundaries drawn white on top. Inputs are the raw modality tensors of a clip batch.
    """
    import torch

    picture: torch.Tensor | None = None
    if "seg" in inputs and label_set is not None:
        seg = inputs["seg"].long().clamp(0, 255)
        pal = torch.from_numpy(np.asarray(label_set.palette(), dtype=np.float32)).to(seg.device)
        picture = pal[seg].movedim(-1, -3) / 127.5 - 1.0
    else:
        for m in ("pose", "densepose"):
            if m in inputs:
                x = inputs[m]
                picture = x.float() / 127.5 - 1.0 if not x.is_floating_point() else x.float()
                break
        if picture is None:
            for m in ("edges", "edge_dist", "seg"):
                if m in inputs:
                    x = inputs[m].float()
                    if m == "seg":
                        x = x / max(float(x.max()), 1.0) * 255.0
                    if m == "edge_dist":
                        x = x.amax(dim=-3) * 255.0
                    grey = x / 127.5 - 1.0
                    picture = grey.unsqueeze(-3).expand(*grey.shape[:-2], 3, *grey.shape[-2:])
                    break
    if picture is None:
        raise ValueError(f"no modality to draw among {sorted(inputs)}")
    if "inst" in inputs:
        ids = inputs["inst"]
        edge = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
        dx = ids[..., :, 1:] != ids[..., :, :-1]
        dy = ids[..., 1:, :] != ids[..., :-1, :]
        edge[..., :, 1:] |= dx
        edge[..., 1:, :] |= dy
        picture = torch.where(edge.unsqueeze(-3), torch.ones_like(picture), picture)
    return picture.contiguous()
