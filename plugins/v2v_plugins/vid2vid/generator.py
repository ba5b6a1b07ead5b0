"""The sequential vid2vid generator (docs/architecture.md, "The vid2vid model"), coarse-to-fine over spatial scales.

G0 (the coarsest scale) encodes the label stack of frames t-L..t and the L previous generated frames with two
encoders whose outputs are summed; an image head hallucinates h, a flow head predicts the backward flow w (pixels)
and the occlusion mask m, and the frame is x_t = m·h + (1-m)·warp(x_{t-1}, w). A foreground branch (street) sees
only the labels and paints the foreground classes: final = h_F·M + x_t·(1-M). Finer scales s = 1..S-1 run at
2^s times G0's resolution, add the coarser scale's features to their own and produce the frame at their size; only
the finest scale's output is the frame. Flow is warped with the one fixed warp of :mod:`v2vcli.warp`.

The forward pass has no data-dependent Python control flow (only shapes and construction-time flags decide), so
``torch.compile(G, fullgraph=True)`` traces it whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from v2v_plugins.gan.blocks import conv7, conv7_out, down, init_weights, res_blocks, up
from v2vcli.warp import warp

from .config import Vid2VidConfig

__all__ = ["GeneratorInput", "GeneratorOutput", "ScaleOutput", "Vid2VidGenerator", "GlobalGenerator",
           "FineScale", "pyramid_down"]


@dataclass
class GeneratorInput:
    """What the generator needs for frame t.

    ``labels``: (B, T, C, H, W) conditioning of frames t-T+1..t, oldest first, T in 1..L+1 (missing older frames
    are filled by repeating the oldest given, as at the start of a sequence).
    ``prev``: (B, K, 3, H, W) previously generated (or real) frames t-K..t-1 in [-1, 1], oldest first, K in
    0..L; ``None`` or K = 0 is the empty history: the frame is the raw hallucination, nothing is warped. K < L
    pads the older slots with zeros, as the official generator's empty history fills up (frame 1 sees
    [zeros, frame 0]).
    ``prev_scales``: the history per spatial scale, coarsest first, each (B, K, 3, H_s, W_s) at that scale's size,
    as the official coarse-to-fine generator keeps it (each scale warps its *own* previous outputs). ``None``:
    the coarser scales get ``prev`` average-pooled (right for real frames; the official builds their pyramid so).
    """

    labels: torch.Tensor
    prev: torch.Tensor | None = None
    prev_scales: Sequence[torch.Tensor] | None = None


@dataclass
class ScaleOutput:
    """One spatial scale's result at that scale's resolution."""

    final: torch.Tensor  # (B, 3, H, W) the frame: composed, foreground painted
    raw: torch.Tensor  # (B, 3, H, W) without the warp: h_F·M + h·(1-M) (h without foreground)
    hallucinated: torch.Tensor  # (B, 3, H, W) h, the image head's output
    flow: torch.Tensor  # (B, 2, H, W) backward flow t→t-1 in pixels of this scale
    mask: torch.Tensor  # (B, 1, H, W) occlusion mask m: weight of h against the warped previous frame
    warped: torch.Tensor | None  # (B, 3, H, W) warp(x_{t-1}, flow); None for the empty history
    fg: torch.Tensor | None  # (B, 3, H, W) h_F of the foreground branch; None without it
    fg_mask: torch.Tensor | None  # (B, 1, H, W) M, union of the foreground classes at frame t


@dataclass
class GeneratorOutput:
    """The finest scale's result (the frame) and every scale's, coarsest first."""

    final: torch.Tensor
    raw: torch.Tensor
    hallucinated: torch.Tensor
    flow: torch.Tensor
    mask: torch.Tensor
    warped: torch.Tensor | None
    fg: torch.Tensor | None
    fg_mask: torch.Tensor | None
    scales: tuple[ScaleOutput, ...]


@dataclass
class _Features:
    """Last feature maps of a scale's heads, added to the next finer scale's streams."""

    img: torch.Tensor
    flow: torch.Tensor
    fg: torch.Tensor | None


def pyramid_down(x: torch.Tensor) -> torch.Tensor:
    """One pyramid level: 3×3 average pooling, stride 2, padding 1, padded pixels not counted."""
    return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


class ImageHead(nn.Module):
    """body (residual blocks + upsampling) → feature; reflect-pad + 7×7 conv + tanh → image."""

    def __init__(self, body: list[nn.Module], width: int, output_nc: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*body)
        self.out = conv7_out(width, output_nc)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.body(x)
        return feat, torch.tanh(self.out(feat))


class FlowHead(nn.Module):
    """body → feature; 7×7 conv → flow × multiplier (pixels); 7×7 conv + sigmoid → occlusion mask."""

    def __init__(self, body: list[nn.Module], width: int, multiplier: float) -> None:
        super().__init__()
        self.body = nn.Sequential(*body)
        self.flow_out = conv7_out(width, 2)
        self.mask_out = conv7_out(width, 1)
        self.multiplier = multiplier

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat = self.body(x)
        # The ×20·2^s multiplier would magnify bf16/fp16 rounding into sub-pixel warp errors: this small conv
        # runs in fp32 under autocast.
        if feat.device.type in ("cpu", "cuda", "xpu", "mps"):  # devices with autocast (not meta)
            with torch.autocast(feat.device.type, enabled=False):
                flow = self.flow_out(feat.float()) * self.multiplier
        else:
            flow = self.flow_out(feat) * self.multiplier
        return feat, flow, torch.sigmoid(self.mask_out(feat))


class ForegroundBranch(nn.Module):
    """entry (7×7 conv and stride-2 convs on the label stack) → [+ coarser fg feature] → head (blocks, ups, tanh)."""

    def __init__(self, entry: list[nn.Module], head: ImageHead) -> None:
        super().__init__()
        self.entry = nn.Sequential(*entry)
        self.head = head

    def forward(self, labels: torch.Tensor, coarse: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.entry(labels)
        if coarse is not None:
            x = x + coarse
        return self.head(x)


class GlobalGenerator(nn.Module):
    """G0: label encoder + previous-frame encoder (summed), image head, flow head, optional foreground branch."""

    def __init__(self, cfg: Vid2VidConfig, label_in: int, prev_in: int) -> None:
        super().__init__()
        n_enc, n_head = cfg.n_blocks - cfg.n_blocks // 2, cfg.n_blocks // 2
        ckpt = cfg.activation_checkpointing
        top = cfg.ngf * 2**cfg.n_downsample

        def encoder(cin: int) -> nn.Sequential:
            layers, c = conv7(cin, cfg.ngf, cfg.norm), cfg.ngf
            for _ in range(cfg.n_downsample):
                layers += down(c, 2 * c, cfg.norm)
                c *= 2
            return nn.Sequential(*layers, *res_blocks(n_enc, c, cfg.norm, ckpt))

        def decoder(n_res: int, width: int) -> list[nn.Module]:
            c = width * 2**cfg.n_downsample
            layers = res_blocks(n_res, c, cfg.norm, ckpt)
            for _ in range(cfg.n_downsample):
                layers += up(c, c // 2, cfg.norm)
                c //= 2
            return layers

        self.label_encoder = encoder(label_in)
        self.prev_encoder = encoder(prev_in)
        self.image_head = ImageHead(decoder(n_head, cfg.ngf), cfg.ngf, cfg.output_nc)
        self.flow_head = FlowHead(decoder(n_head, cfg.ngf), cfg.ngf, cfg.flow_multiplier)
        self.fg_branch: ForegroundBranch | None = None
        if cfg.fg:
            w = cfg.fg_width
            entry, c = conv7(label_in, w, cfg.norm), w
            for _ in range(cfg.n_downsample):
                entry += down(c, 2 * c, cfg.norm)
                c *= 2
            self.fg_branch = ForegroundBranch(entry, ImageHead(decoder(cfg.n_blocks, w), w, cfg.output_nc))
        self.top_channels = top

    def forward(self, labels: torch.Tensor, prev: torch.Tensor,
                coarse: _Features | None = None) -> tuple[_Features, torch.Tensor, torch.Tensor, torch.Tensor,
                                                          torch.Tensor | None]:
        x = self.label_encoder(labels) + self.prev_encoder(prev)
        img_feat, h = self.image_head(x)
        flow_feat, flow, mask = self.flow_head(x)
        fg_feat, h_fg = (None, None) if self.fg_branch is None else self.fg_branch(labels)
        return _Features(img_feat, flow_feat, fg_feat), h, flow, mask, h_fg


class FineScale(nn.Module):
    """Scale s ≥ 1 (width ngf_s = ngf/2^s): full-resolution 7×7 streams + stride-2 conv, coarser features added."""

    def __init__(self, cfg: Vid2VidConfig, s: int, label_in: int, prev_in: int) -> None:
        super().__init__()
        w = cfg.ngf // 2**s
        ckpt = cfg.activation_checkpointing

        def stream(cin: int, width: int) -> nn.Sequential:
            return nn.Sequential(*conv7(cin, width, cfg.norm), *down(width, 2 * width, cfg.norm))

        def body(width: int) -> list[nn.Module]:
            return [*res_blocks(cfg.n_blocks_local, 2 * width, cfg.norm, ckpt), *up(2 * width, width, cfg.norm)]

        self.label_stream = stream(label_in, w)
        self.prev_stream = stream(prev_in, w)
        self.image_head = ImageHead(body(w), w, cfg.output_nc)
        self.flow_head = FlowHead(body(w), w, cfg.flow_multiplier * 2**s)
        self.fg_branch: ForegroundBranch | None = None
        if cfg.fg:
            fw = cfg.fg_width // 2**s
            entry = [*conv7(label_in, fw, cfg.norm), *down(fw, 2 * fw, cfg.norm)]
            self.fg_branch = ForegroundBranch(entry, ImageHead(body(fw), fw, cfg.output_nc))

    def forward(self, labels: torch.Tensor, prev: torch.Tensor,
                coarse: _Features | None = None) -> tuple[_Features, torch.Tensor, torch.Tensor, torch.Tensor,
                                                          torch.Tensor | None]:
        if coarse is None:
            raise ValueError("a finer scale needs the coarser scale's features")
        d = self.label_stream(labels) + self.prev_stream(prev)
        img_feat, h = self.image_head(d + coarse.img)
        flow_feat, flow, mask = self.flow_head(d + coarse.flow)
        fg_feat, h_fg = (None, None) if self.fg_branch is None else self.fg_branch(labels, coarse.fg)
        return _Features(img_feat, flow_feat, fg_feat), h, flow, mask, h_fg


class Vid2VidGenerator(nn.Module):
    """The whole generator: ``scales[0]`` is G0, ``scales[s]`` the finer scale s.

    ``input_nc``: conditioning channels per frame; ``fg_channels``: indices (within one frame's channels) whose
    union is the foreground mask M.
    """

    def __init__(self, cfg: Vid2VidConfig, input_nc: int, fg_channels: Sequence[int] = ()) -> None:
        super().__init__()
        self.n_past = cfg.n_past
        self.input_nc = input_nc
        self.output_nc = cfg.output_nc
        self.n_scales = cfg.n_scales_spatial
        self.n_downsample = cfg.n_downsample
        self.fg_mode = cfg.fg_mode
        self.has_fg = cfg.fg
        self.fg_channels = tuple(int(c) for c in fg_channels)
        label_in = (self.n_past + 1) * input_nc
        prev_in = self.n_past * cfg.output_nc
        scales: list[nn.Module] = [GlobalGenerator(cfg, label_in, prev_in)]
        scales += [FineScale(cfg, s, label_in, prev_in) for s in range(1, cfg.n_scales_spatial)]
        self.scales = nn.ModuleList(scales)
        init_weights(self, cfg.init_std)

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this (every stride-2 stage must halve exactly)."""
        return 2 ** (self.n_downsample + self.n_scales - 1)

    # -- input shaping (shapes only: static under tracing) --------------------------------------------------------
    def _label_stack(self, labels: torch.Tensor) -> torch.Tensor:
        if labels.dim() != 5 or labels.shape[2] != self.input_nc:
            raise ValueError(f"labels must be (B, T, {self.input_nc}, H, W), got {tuple(labels.shape)}")
        t = labels.shape[1]
        want = self.n_past + 1
        if t > want:
            labels = labels[:, t - want:]
        elif t < want:
            labels = torch.cat([labels[:, :1].expand(-1, want - t, -1, -1, -1), labels], dim=1)
        return labels.flatten(1, 2)  # (B, (L+1)·C, H, W)

    def _prev_stack(self, prev: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
        b, _, h, w = like.shape
        if prev is None or prev.shape[1] == 0:
            return like.new_zeros(b, self.n_past * self.output_nc, h, w), True
        if prev.dim() != 5 or prev.shape[2] != self.output_nc or tuple(prev.shape[-2:]) != (h, w):
            raise ValueError(f"prev must be (B, K, {self.output_nc}, {h}, {w}), got {tuple(prev.shape)}")
        k = prev.shape[1]
        if k > self.n_past:
            prev = prev[:, k - self.n_past:]
        elif k < self.n_past:  # an empty history filling up: zeros stand for the frames not yet generated
            prev = torch.cat([prev.new_zeros(b, self.n_past - k, *prev.shape[2:]), prev], dim=1)
        return prev.flatten(1, 2).to(like.dtype), False

    def _fg_mask(self, label_stack: torch.Tensor) -> torch.Tensor:
        # The current frame's channels are the last input_nc of the stack.
        base = self.n_past * self.input_nc
        if not self.fg_channels:
            return torch.zeros_like(label_stack[:, :1])
        idx = [base + c for c in self.fg_channels]
        return label_stack[:, idx].sum(dim=1, keepdim=True).clamp(0.0, 1.0)

    def _compose(self, h: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor, h_fg: torch.Tensor | None,
                 label_stack: torch.Tensor, prev_stack: torch.Tensor, empty: bool) -> ScaleOutput:
        warped = None if empty else warp(prev_stack[:, -self.output_nc:], flow)
        x = h if warped is None else mask * h + (1 - mask) * warped
        if h_fg is None:
            return ScaleOutput(x, h, h, flow, mask, warped, None, None)
        m_fg = self._fg_mask(label_stack)
        raw = h_fg * m_fg + h * (1 - m_fg)
        if warped is None:
            final = raw
        elif self.fg_mode == "paper":  # Eq. 4: the warp also covers foreground pixels the mask says are visible
            final = (1 - mask) * warped + mask * raw
        else:  # official: foreground pixels always come from the foreground branch
            final = h_fg * m_fg + x * (1 - m_fg)
        return ScaleOutput(final, raw, h, flow, mask, warped, h_fg, m_fg)

    def forward(self, inp: GeneratorInput) -> GeneratorOutput:
        lab = self._label_stack(inp.labels)
        prev, empty = self._prev_stack(inp.prev, lab)
        size = tuple(lab.shape[-2:])
        if size[0] % self.size_multiple or size[1] % self.size_multiple:
            raise ValueError(f"frame size {size[1]}x{size[0]} is not a multiple of {self.size_multiple}")
        # Pyramid level 0 is full resolution; scale s runs at level S-1-s.
        labs, prevs = [lab], [prev]
        for _ in range(self.n_scales - 1):
            labs.append(pyramid_down(labs[-1]))
            prevs.append(pyramid_down(prevs[-1]))
        if inp.prev_scales is not None and not empty and self.n_scales > 1:
            if len(inp.prev_scales) != self.n_scales:
                raise ValueError(f"prev_scales must hold {self.n_scales} scales, got {len(inp.prev_scales)}")
            prevs = [self._prev_stack(inp.prev_scales[self.n_scales - 1 - level], labs[level])[0]
                     for level in range(self.n_scales)]
        feats: _Features | None = None
        outs = []
        for s, scale in enumerate(self.scales):
            level = self.n_scales - 1 - s
            feats, h, flow, mask, h_fg = scale(labs[level], prevs[level], feats)
            outs.append(self._compose(h, flow, mask, h_fg, labs[level], prevs[level], empty))
        top = outs[-1]
        return GeneratorOutput(top.final, top.raw, top.hallucinated, top.flow, top.mask, top.warped, top.fg,
                               top.fg_mask, tuple(outs))

    # -- summary protocol (see model.summarize) ------------------------------------------------------------------
    def summary_parts(self) -> dict[str, dict[str, nn.Module]]:
        """Scale name → module name → module, for the per-scale and per-module rows of `v2v model summary`."""
        parts: dict[str, dict[str, nn.Module]] = {}
        for s, scale in enumerate(self.scales):
            names = (("label_encoder", "prev_encoder") if s == 0 else ("label_stream", "prev_stream"))
            mods = {n: getattr(scale, n) for n in names}
            mods["image_head"] = scale.image_head
            mods["flow_head"] = scale.flow_head
            if scale.fg_branch is not None:
                mods["fg_branch"] = scale.fg_branch
            parts[f"G{s}"] = mods
        return parts

    def summary_inputs(self, size: tuple[int, int], device: torch.device | str = "meta") -> tuple[GeneratorInput]:
        """Example input for one generated frame at W×H ``size`` with a full history (batch 1)."""
        w, h = size
        labels = torch.zeros(1, self.n_past + 1, self.input_nc, h, w, device=device)
        prev = torch.zeros(1, self.n_past, self.output_nc, h, w, device=device)
        return (GeneratorInput(labels, prev),)

    summary_frames_per_call = 1
