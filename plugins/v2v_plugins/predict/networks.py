"""The sequential prediction generator shared by ``label_predictor`` and ``frame_predictor``.

Both predict frame t from the K previous ones with the structure of vid2vid's image generator (docs/architecture.md),
applied to the future instead of to a conditioning map:

    y_t = m · h + (1 - m) · warp(y_{t-1}, w)

One encoder (reflect-pad + 7×7 conv, ``n_downsample`` stride-2 convs, residual blocks) reads the K past states
(one-hot/probability maps, or RGB frames) and their K backward flows (/20) stacked on channels; two heads decode
it: the hallucination head gives h (class logits → softmax for labels, tanh for RGB) and the flow head gives a
residual flow and the occlusion mask m (sigmoid). The predicted flow is ``prior + 20·residual`` where the prior is
the last observed flow (``flow_prior="last"``: constant-velocity extrapolation) or zero, so an untrained network
already starts near the constant-flow baseline and learns corrections (occlusions, accelerations, new content
at the borders). The residual is in pixels without vid2vid's ×20 (the flow head starts at zero; with ×20 the
first Adam steps, which move every weight by about the learning rate, would throw the flow several pixels off).
The mask bias starts negative (``mask_bias``), i.e. mostly warp at initialisation.

This module imports torch at import time; plugin code imports it lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from v2v_plugins.gan.blocks import conv7, conv7_out, down, init_weights, res_blocks, up
from v2vcli.warp import warp

__all__ = ["PredictionOutput", "PredictorNet", "FLOW_SCALE"]

#: Flows enter the network divided by this and the residual flow head is multiplied by it (vid2vid's ×20).
FLOW_SCALE = 20.0


@dataclass
class PredictionOutput:
    """One predicted step. ``state``: the prediction y_t (probabilities (B, C, H, W) or RGB in [-1, 1]);
    ``hallucinated``: h (probabilities or RGB); ``logits``: class logits of h (labels only); ``flow`` (B, 2, H, W)
    backward t→t-1 in pixels; ``mask`` (B, 1, H, W) weight of h; ``warped``: warp(y_{t-1}, flow)."""

    state: torch.Tensor
    hallucinated: torch.Tensor
    flow: torch.Tensor
    mask: torch.Tensor
    warped: torch.Tensor
    logits: torch.Tensor | None = None


class PredictorNet(nn.Module):
    """K past states + K past flows → the next state (see the module docstring).

    ``state_nc``: channels of one state (label_nc or 3); ``kind``: "labels" (softmax head) or "frames" (tanh).
    """

    def __init__(self, *, state_nc: int, n_past: int, kind: str, ngf: int = 32, n_downsample: int = 2,
                 n_blocks: int = 4, norm: str = "instance", flow_prior: str = "last", mask_bias: float = -2.0,
                 init_std: float = 0.02) -> None:
        super().__init__()
        if kind not in ("labels", "frames"):
            raise ValueError(f"kind must be 'labels' or 'frames', got {kind!r}")
        self.kind, self.state_nc, self.n_past, self.flow_prior = kind, state_nc, n_past, flow_prior
        in_nc = n_past * (state_nc + 2)
        enc, c = conv7(in_nc, ngf, norm), ngf
        for _ in range(n_downsample):
            enc += down(c, 2 * c, norm)
            c *= 2
        enc += res_blocks(n_blocks - n_blocks // 2, c, norm)
        self.encoder = nn.Sequential(*enc)

        def head() -> tuple[nn.Sequential, int]:
            layers, ch = res_blocks(n_blocks // 2, c, norm), c
            for _ in range(n_downsample):
                layers += up(ch, ch // 2, norm)
                ch //= 2
            return nn.Sequential(*layers), ch

        self.image_head, ch = head()
        self.image_out = conv7_out(ch, state_nc)
        self.flow_head, ch = head()
        self.flow_out = conv7_out(ch, 2)
        self.mask_out = conv7_out(ch, 1)
        init_weights(self, init_std)
        # Start near the warp-only prediction (constant-flow baseline) rather than a 50/50 blend with noise.
        # cast: item 1 of conv7_out is its biased Conv2d (a Sequential's items are typed as plain Modules)
        nn.init.zeros_(cast(torch.Tensor, self.flow_out[1].weight))
        nn.init.zeros_(cast(torch.Tensor, self.flow_out[1].bias))
        nn.init.constant_(cast(torch.Tensor, self.mask_out[1].bias), mask_bias)

    def forward(self, states: torch.Tensor, flows: torch.Tensor) -> PredictionOutput:
        """``states`` (B, K, C, H, W) oldest first; ``flows`` (B, K, 2, H, W): flow of each past state (t→t-1)."""
        b, k = states.shape[:2]
        if k != self.n_past:
            raise ValueError(f"expected {self.n_past} past states, got {k}")
        x = torch.cat([states.flatten(1, 2), (flows / FLOW_SCALE).flatten(1, 2)], dim=1)
        feat = self.encoder(x)
        raw = self.image_out(self.image_head(feat))
        f = self.flow_head(feat)
        residual = self.flow_out(f) * (FLOW_SCALE if self.flow_prior == "zero" else 1.0)
        flow = residual + flows[:, -1] if self.flow_prior == "last" else residual
        mask = torch.sigmoid(self.mask_out(f))
        last = states[:, -1]
        warped = warp(last, flow)
        logits = None
        if self.kind == "labels":
            logits = raw
            hallucinated = torch.softmax(raw.float(), dim=1).to(raw.dtype)
        else:
            hallucinated = torch.tanh(raw)
        state = mask * hallucinated + (1.0 - mask) * warped
        return PredictionOutput(state=state, hallucinated=hallucinated, flow=flow, mask=mask, warped=warped,
                                logits=logits)
