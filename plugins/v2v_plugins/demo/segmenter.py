"""The demo's judge of label consistency: a small segmentation network trained on the world's real frames.

The synthetic world has exact labels, so a segmenter trained on its real train-split frames measures whether a
synthesized frame still *shows* what its label map asked for (seg_consistency: mIoU of the segmenter's prediction
on the synthesized frame against the input labels). Its score on the real val frames is the ceiling to read the
synthesized scores against. Written here because it is specific to the world's label set and must train in
seconds on a CPU; torchvision's segmentation models are far larger than this needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["build_segmenter", "train_segmenter", "segment"]

log = logging.getLogger(__name__)


def build_segmenter(n_classes: int, width: int = 24) -> Any:
    """A two-level encoder-decoder (about 30k parameters at width 24) producing per-pixel class logits."""
    class Segmenter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = width
            self.enc1 = nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True))
            self.enc2 = nn.Sequential(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(2 * w, 2 * w, 3, padding=2, dilation=2), nn.ReLU(inplace=True))
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.dec = nn.Sequential(nn.Conv2d(3 * w, w, 3, padding=1), nn.ReLU(inplace=True),
                                     nn.Conv2d(w, n_classes, 1))

        def forward(self, x: Any) -> Any:
            a = self.enc1(x)
            b = self.up(self.enc2(a))[..., : a.shape[-2], : a.shape[-1]]
            return self.dec(torch.cat([a, b], dim=1))

    return Segmenter()


def _to_tensor(frames: Sequence[Any], device: Any) -> Any:
    x = torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def train_segmenter(frames: Sequence[Any], labels: Sequence[Any], n_classes: int, *, seconds: float,
                    max_steps: int, seed: int = 0, device: Any = "cpu", batch: int = 8) -> tuple[Any, dict[str, Any]]:
    """Train on (H, W, 3) uint8 frames and (H, W) label ids (ids ≥ n_classes are ignored) with random flips, until
    ``seconds`` or ``max_steps``. Returns the network (eval mode) and a log {steps, seconds, final_loss}."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_segmenter(n_classes).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x_all = _to_tensor(frames, device)
    y_all = torch.from_numpy(np.stack(labels).astype(np.int64)).to(device)
    y_all[y_all >= n_classes] = -1
    t0, step, loss_v = time.perf_counter(), 0, float("nan")
    while step < max_steps and (step == 0 or time.perf_counter() - t0 < seconds):
        idx = torch.from_numpy(rng.integers(0, len(x_all), size=min(batch, len(x_all))))
        x, y = x_all[idx], y_all[idx]
        if rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        loss = F.cross_entropy(net(x), y, ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_v = float(loss.detach())
        step += 1
    net.eval()
    info = {"steps": step, "seconds": round(time.perf_counter() - t0, 2), "final_loss": loss_v,
            "frames": len(x_all), "parameters": sum(p.numel() for p in net.parameters())}
    log.info("segmenter: %d steps in %.1f s, loss %.3f", step, info["seconds"], loss_v)
    return net, info


def segment(net: Any, frames: Sequence[Any], device: Any = "cpu") -> Any:
    """(T, H, W) int64 predicted ids of (H, W, 3) uint8 frames."""
    with torch.no_grad():
        return net(_to_tensor(frames, device)).argmax(1).cpu().numpy()
