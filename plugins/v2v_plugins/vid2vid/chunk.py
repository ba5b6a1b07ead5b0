"""One chunk of a training clip generated as one module call, so one DDP wrapper can average G's gradients.

DDP finds the parameters a step leaves without gradient by walking the autograd graph back from the outputs of the
wrapped forward, so the forward returns exactly what the generator loss uses: the chunk's final and raw frames and,
for the frames that have a previous frame, the flow and occlusion mask. The history carried to the next frames is
returned detached (coarse scales' outputs feed only their own next frames).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .generator import GeneratorInput

__all__ = ["ChunkGenerator", "ChunkOutput"]

#: per previous frame, that frame at every spatial scale (coarsest first)
History = list[tuple[torch.Tensor, ...]]
ChunkOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, History]


class ChunkGenerator(nn.Module):
    """``forward(cond, hist, t0, n_past, n_bp)``: frames ``t0 .. t0 + n - 1`` from ``cond`` (B, n_cond, C, H, W), the
    label frames ``t0 - lo - n_past .. t0 - lo + n - 1`` where ``lo = t0 - (n_cond - n)``, and ``hist`` (the previous
    frames). The window of previous frames is detached at every ``n_bp``-th frame. Returns (final, raw, flow, mask,
    history): final/raw (B, n, 3, H, W); flow/mask only for the frames with a previous frame; ``history`` the
    previous frames and the chunk's frames, per scale, detached."""

    _call: Any  # G, or G compiled (kept out of the submodules: its parameters are G's)

    def __init__(self, generator: nn.Module, call: Any = None) -> None:
        super().__init__()
        self.generator = generator
        self.__dict__["_call"] = call if call is not None else generator  # a compiled G: not a second submodule

    def forward(self, cond: torch.Tensor, hist: History, n: int, n_past: int, n_bp: int) -> ChunkOutput:
        hist = list(hist)
        S = len(hist[0]) if hist else getattr(self.generator, "n_scales", 1)
        first = cond.shape[1] - n  # index in cond of the chunk's first frame
        finals, raws, flows, masks = [], [], [], []
        for j in range(n):
            t = first + j
            labels = cond[:, max(0, t - n_past):t + 1]
            window = hist[-n_past:] if n_past > 0 else []
            if window and j % n_bp == 0:
                window = [tuple(x.detach() for x in h) for h in window]
            prev = prev_scales = None
            if window:
                prev_scales = [torch.stack([h[s] for h in window], dim=1) for s in range(S)]
                prev = prev_scales[-1]
            out = self._call(GeneratorInput(labels, prev, prev_scales if S > 1 else None))
            finals.append(out.final)
            raws.append(out.raw)
            if window:
                flows.append(out.flow)
                masks.append(out.mask)
            hist.append(tuple(o.final for o in out.scales) if S > 1 else (out.final,))
        final = torch.stack(finals, 1)
        B, _, _, H, W = final.shape
        flow = torch.stack(flows, 1) if flows else final.new_zeros((B, 0, 2, H, W))
        mask = torch.stack(masks, 1) if masks else final.new_zeros((B, 0, 1, H, W))
        kept = hist[-max(1, n_past):]
        return final, torch.stack(raws, 1), flow, mask, [tuple(x.detach() for x in h) for h in kept]
