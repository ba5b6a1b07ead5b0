"""The one flow warp of v2v (fixed by docs/architecture.md), shared by the generator, losses, extractors and metrics.

Flow is backward, t→t-1, in pixels, channels (dx, dy): ``warp(x_{t-1}, flow_t)`` samples ``x_{t-1}`` at
``p + flow_t(p)`` and so estimates ``x_t``. ``grid_sample`` with bilinear interpolation, border padding and
``align_corners=True``; the pixel→grid scale is 2/(W-1), 2/(H-1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["warp", "warp_numpy", "base_grid"]

_GRID_CACHE: dict[tuple[Any, ...], Any] = {}


def _grid_and_scale(h: int, w: int, device: Any, dtype: Any) -> tuple[Any, Any]:
    key = (h, w, str(device), dtype)
    cached = _GRID_CACHE.get(key)
    if cached is None:
        ys = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack((gx, gy), dim=-1).unsqueeze(0)
        # made once per size and device: a tensor built from Python numbers on an accelerator is a blocking copy
        scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=device, dtype=dtype)
        cached = (grid, scale)
        if len(_GRID_CACHE) < 64:
            _GRID_CACHE[key] = cached
    return cached


def base_grid(h: int, w: int, device: Any, dtype: Any) -> Any:
    """(1, H, W, 2) grid of normalised (x, y) coordinates in [-1, 1] for align_corners=True."""
    return _grid_and_scale(h, w, device, dtype)[0]


def warp(image: Any, flow: Any) -> Any:
    """Warp ``image`` (B, C, H, W) by backward ``flow`` (B, 2, H, W) in pixels. Computed in fp32."""
    b, _, h, w = image.shape
    dtype = image.dtype
    base, scale = _grid_and_scale(h, w, flow.device, torch.float32)
    grid = base + flow.float().permute(0, 2, 3, 1) * scale
    # A non-finite flow (a diverged step, skipped by the optimizer's guard) must not reach grid_sample: its CPU
    # backward indexes memory with the coordinates. Finite coordinates pass unchanged, gradients included.
    grid = torch.nan_to_num(grid, nan=0.0, posinf=2.0, neginf=-2.0)
    out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(dtype)


def warp_numpy(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """NumPy convenience: ``image`` (H, W) or (H, W, C), ``flow`` (H, W, 2) → warped float32 of image's shape."""
    img = np.asarray(image, dtype=np.float32)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[..., None]
    t_img = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
    t_flow = torch.from_numpy(np.ascontiguousarray(np.asarray(flow, dtype=np.float32).transpose(2, 0, 1)))[None]
    out = warp(t_img, t_flow)[0].numpy().transpose(1, 2, 0)
    return out[..., 0] if squeeze else out
