"""vid2vid discriminators (perframe and predict use the image D): multi-scale conditional PatchGAN (image),
temporal Ds, optional face/region D.

Written from the paper and docs/architecture.md ("Discriminators"):

- :class:`NLayerDiscriminator` is one PatchGAN: 4×4 convs, padding 2, widths ndf·(1, 2, 4, ..., capped at 512)
  with stride 2 for the first ``n_layers`` convs, then one stride-1 conv doubling the width (cap 512) and a stride-1
  conv to one logit per patch. InstanceNorm (affine) on every conv but the first and the last, LeakyReLU(0.2)
  after every conv but the last. It returns every layer's output (``n_layers + 2`` maps, the last being the logits)
  so the generator's feature-matching loss can use the intermediate ones.
- :class:`MultiscaleDiscriminator` runs ``num_d`` PatchGANs of their own weights on the input downsampled 0, 1,
  ... times by 3×3 average pooling (stride 2, padding 1, ``count_include_pad=False``); index 0 sees full size.
  Parameter parity (ndf 64, n_layers 3): 2,803,393 per scale for 39 input channels, 2,776,769 for 13.
- Temporal Ds: temporal scale k looks at ``n_frames_d`` (3) frames taken every ``n_frames_d**k`` frames
  (spans 3, 7, 19 frames for k = 0, 1, 2), concatenated on channels with the reference flows between consecutive
  chosen frames divided by 20: 3·3 + 2·2 = 13 channels. A scale whose span exceeds the clip is skipped; the
  builder reports which (:func:`temporal_scale_plan`, :func:`build_temporal_inputs`).
- Face/region D (pose data), as the official ``netD_f``: max(1, num_D − 2) scales of the image D's PatchGAN on a
  native-resolution square of side H//32·8 centred on the DensePose head pixels (:func:`densepose_head_squares`);
  without densepose input, on a crop resampled around the pose JSON's BODY_25 head points (nose, eyes, ears: 0,
  15, 16, 17, 18).

All Ds take (N, C, H, W) and work in any memory format / autocast dtype; norms are computed in float32.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import roi_align

from v2vcli.errors import ConfigError
from v2vcli.warp import warp

from .efficiency import InstanceNorm2dFP32

__all__ = [
    "HEAD_KEYPOINTS",
    "FLOW_SCALE",
    "NLayerDiscriminator",
    "MultiscaleDiscriminator",
    "TemporalScale",
    "TemporalPlan",
    "TemporalBatch",
    "TemporalInputs",
    "temporal_scale_plan",
    "compose_flows",
    "temporal_windows",
    "build_temporal_inputs",
    "temporal_buffer_frames",
    "temporal_window_ends",
    "head_points_from_pose_json",
    "head_boxes",
    "face_crop_side",
    "densepose_head_squares",
    "crop_squares",
    "crop_regions",
    "Vid2VidDiscriminators",
    "DiscriminatorRow",
    "count_parameters",
]

#: BODY_25 indices of nose, right eye, left eye, right ear, left ear.
HEAD_KEYPOINTS: tuple[int, ...] = (0, 15, 16, 17, 18)
#: Flows (pixels) are divided by this before they enter a temporal D, as the generator's flow head scales by it.
FLOW_SCALE = 20.0
# No BatchNorm: the losses batch real and fake through one D call, which per-sample norms keep exact.
_NORMS = ("instance", "none")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return InstanceNorm2dFP32(channels, affine=True)
    return nn.Identity()


class NLayerDiscriminator(nn.Module):
    """One conditional PatchGAN; ``forward`` returns the ``n_layers + 2`` layer outputs, logits last."""

    def __init__(self, *, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        if norm not in _NORMS:
            raise ConfigError(f"discriminator norm '{norm}' is not supported; use one of {', '.join(_NORMS)}")
        if n_layers < 1:
            raise ConfigError(f"n_layers_D must be at least 1, got {n_layers}")
        kw, pad = 4, 2  # 4×4 kernels with padding ceil(3/2) = 2, the pix2pixHD layout the parity counts assume
        use_bias = True  # affine InstanceNorm keeps the conv biases in the official count
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, ndf, kw, 2, pad),
                                                 nn.LeakyReLU(0.2, inplace=True))]
        nf = ndf
        for _ in range(1, n_layers):
            prev, nf = nf, min(nf * 2, 512)
            layers.append(nn.Sequential(nn.Conv2d(prev, nf, kw, 2, pad, bias=use_bias), _norm(norm, nf),
                                        nn.LeakyReLU(0.2, inplace=True)))
        prev, nf = nf, min(nf * 2, 512)
        layers.append(nn.Sequential(nn.Conv2d(prev, nf, kw, 1, pad, bias=use_bias), _norm(norm, nf),
                                    nn.LeakyReLU(0.2, inplace=True)))
        layers.append(nn.Sequential(nn.Conv2d(nf, 1, kw, 1, pad)))
        self.layers = nn.ModuleList(layers)
        self.in_channels = in_channels
        self.n_layers = n_layers
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.InstanceNorm2d) and m.weight is not None:
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs on the input at full, 1/2, 1/4, ... size. ``forward`` → per scale, per layer outputs."""

    def __init__(self, *, in_channels: int, ndf: int = 64, n_layers: int = 3, num_d: int = 2,
                 norm: str = "instance") -> None:
        super().__init__()
        if num_d < 1:
            raise ConfigError(f"num_D must be at least 1, got {num_d}")
        self.scales = nn.ModuleList(
            [NLayerDiscriminator(in_channels=in_channels, ndf=ndf, n_layers=n_layers, norm=norm)
             for _ in range(num_d)])
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.in_channels = in_channels
        self.num_d = num_d
        self.n_layers = n_layers

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:  # x: (N, C, H, W)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"discriminator expects {self.in_channels} input channels, got {x.shape[1]}")
        outs = []
        for i, d in enumerate(self.scales):
            if i:
                x = self.downsample(x)
            outs.append(d(x))
        return outs


# ----------------------------------------------------------------------------------------------- temporal Ds


@dataclass(frozen=True)
class TemporalScale:
    """Temporal scale ``index``: ``n_frames`` frames, ``stride`` apart, covering ``span`` consecutive frames."""

    index: int
    stride: int
    n_frames: int

    @property
    def span(self) -> int:
        return (self.n_frames - 1) * self.stride + 1


@dataclass(frozen=True)
class TemporalPlan:
    """Which temporal scales a clip of ``clip_length`` frames can feed (``active``) and which it cannot."""

    clip_length: int
    active: tuple[TemporalScale, ...]
    skipped: tuple[TemporalScale, ...]

    @property
    def active_indices(self) -> list[int]:
        return [s.index for s in self.active]

    @property
    def skipped_indices(self) -> list[int]:
        return [s.index for s in self.skipped]


def temporal_scale_plan(clip_length: int, n_scales: int = 3, n_frames_d: int = 3) -> TemporalPlan:
    """Scale k takes frames every ``n_frames_d**k``; it is active when its span fits in ``clip_length`` frames."""
    if n_frames_d < 2:
        raise ConfigError(f"n_frames_D must be at least 2, got {n_frames_d}")
    scales = [TemporalScale(k, n_frames_d ** k, n_frames_d) for k in range(n_scales)]
    return TemporalPlan(clip_length, tuple(s for s in scales if s.span <= clip_length),
                        tuple(s for s in scales if s.span > clip_length))


def temporal_buffer_frames(n_scales: int, n_frames_d: int = 3) -> int:
    """Earlier frames of a sequence the temporal-D buffer keeps across chunks (official: tD^(S-1)·(tD-1), 6 for
    two scales of 3 frames): enough for the widest scale's window to end at the next chunk's first frame."""
    return n_frames_d ** max(0, n_scales - 1) * (n_frames_d - 1) if n_scales > 0 else 0


def temporal_window_ends(buffer_len: int, new_frames: int, scale: TemporalScale) -> list[int]:
    """Where windows of ``scale`` end in a buffer of ``buffer_len`` frames whose last ``new_frames`` are new.

    As the official temporal D (``get_skipped_frames``): the newest frame, then every ``n_frames``-th frame
    before it, as long as the window ends at a new frame and fits in the buffer. No window (scale inactive)
    until the buffer holds ``scale.span`` = (n_frames-1)·stride + 1 frames. Ascending indices.
    """
    n_groups = min(buffer_len - (scale.span - 1), new_frames)
    return sorted(buffer_len - 1 - t for t in range(0, max(0, n_groups), scale.n_frames))


def compose_flows(flow: torch.Tensor, stride: int) -> torch.Tensor:
    """Backward flows from frame t to frame t-``stride`` for t = stride..T-1, from consecutive ones.

    ``flow``: (B, T, 2, H, W), ``flow[:, t]`` the backward flow t→t-1 in pixels (``flow[:, 0]`` is unused).
    Returns (B, T-stride, 2, H, W) whose entry i is the flow (stride+i)→i. Composition follows the pixel:
    p in frame t lands at p + f_{t→t-1}(p) in frame t-1, so
    ``f_{t→t-j-1} = f_{t→t-j} + warp(f_{t-j→t-j-1}, f_{t→t-j})`` (the earlier flow sampled where the
    accumulated one points), computed in float32 with :func:`v2vcli.warp.warp`.
    """
    b, t, c, h, w = flow.shape
    if stride < 1 or stride >= t:
        raise ValueError(f"stride {stride} needs a clip of more than {stride} frames, got {t}")
    flow = flow.float()
    acc = flow[:, stride:]  # f_{t→t-1} for t = stride..T-1
    n = t - stride
    for j in range(1, stride):
        step = flow[:, stride - j:t - j]  # f_{t-j→t-j-1} for the same t
        acc = acc + warp(step.reshape(b * n, c, h, w), acc.reshape(b * n, c, h, w)).view(b, n, c, h, w)
    return acc


def temporal_windows(frames: torch.Tensor, composed: torch.Tensor, scale: TemporalScale,
                     ends: Sequence[int], flow_scale: float = FLOW_SCALE) -> torch.Tensor:
    """Temporal-D inputs for the windows ending at frame indices ``ends``.

    ``frames``: (B, T, C, H, W); ``composed``: :func:`compose_flows` output for ``scale.stride``.
    Returns (B·len(ends), n_frames·C + (n_frames-1)·2, H, W), windows of one sample adjacent: frames oldest first,
    then the flows landing at the 2nd, 3rd, ... chosen frame (each from that frame back to the previous chosen one),
    divided by ``flow_scale``.
    """
    b, _, c, h, w = frames.shape
    s, n = scale.stride, scale.n_frames
    idx = torch.tensor([[e - (n - 1 - i) * s for i in range(n)] for e in ends], device=frames.device)
    chosen = frames[:, idx]  # (B, W, n, C, H, W)
    flows = composed[:, idx[:, 1:] - s] / flow_scale  # (B, W, n-1, 2, H, W); composed[i] is (i+s)→i
    chosen = chosen.flatten(2, 3)
    flows = flows.to(chosen.dtype).flatten(2, 3)
    return torch.cat([chosen, flows], dim=2).reshape(b * len(ends), -1, h, w)


@dataclass
class TemporalBatch:
    """Inputs of one temporal D: real and fake windows (B·windows, 13, H, W) ending at frames ``ends``."""

    scale: TemporalScale
    ends: list[int]
    real: torch.Tensor
    fake: torch.Tensor


@dataclass
class TemporalInputs:
    """:func:`build_temporal_inputs` result: one batch per active scale, the plan (log ``plan.skipped``)."""

    plan: TemporalPlan
    batches: list[TemporalBatch]


def build_temporal_inputs(real: torch.Tensor, fake: torch.Tensor, flow_ref: torch.Tensor, *, n_scales: int = 3,
                          n_frames_d: int = 3, max_windows: int | None = None, new_frames: int | None = None,
                          flow_scale: float = FLOW_SCALE) -> TemporalInputs:
    """Temporal-D inputs for every active scale from real/fake clips (B, T, C, H, W) and reference flows.

    ``flow_ref``: (B, T, 2, H, W) backward flows of the *real* clip (t→t-1); both real and fake windows are
    conditioned on them, as the temporal D judges whether the motion fits the reference motion. With
    ``new_frames`` (training: the clips are the temporal-D buffer, earlier chunks then the current one) the windows
    are the official ones, :func:`temporal_window_ends`; without it every complete window is used (ends
    span-1..T-1), or the last ``max_windows`` of them. The caller detaches ``fake`` for the D step; reference
    flows never carry gradients.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} clips differ in shape")
    if flow_ref.shape[:2] != real.shape[:2] or flow_ref.shape[2] != 2 or flow_ref.shape[3:] != real.shape[3:]:
        raise ValueError(f"flow_ref {tuple(flow_ref.shape)} does not match clip {tuple(real.shape)}")
    t = real.shape[1]
    plan = temporal_scale_plan(t, n_scales, n_frames_d)
    batches = []
    flow_ref = flow_ref.detach()
    for scale in plan.active:
        if new_frames is not None:
            ends = temporal_window_ends(t, new_frames, scale)
            if not ends:
                continue
        else:
            ends = list(range(scale.span - 1, t))
        if max_windows is not None and max_windows > 0:
            ends = ends[-max_windows:]
        if scale.stride == 1:
            composed = flow_ref[:, 1:].float()
        else:
            composed = compose_flows(flow_ref, scale.stride)
        batches.append(TemporalBatch(scale, ends, temporal_windows(real, composed, scale, ends, flow_scale),
                                     temporal_windows(fake, composed, scale, ends, flow_scale)))
    if new_frames is not None:  # a scale whose span fits but has no window ending at a new frame is inactive too
        used = {b.scale.index for b in batches}
        every = plan.active + plan.skipped
        plan = TemporalPlan(t, tuple(sc for sc in plan.active if sc.index in used),
                            tuple(sorted((sc for sc in every if sc.index not in used), key=lambda sc: sc.index)))
    return TemporalInputs(plan, batches)


# ------------------------------------------------------------------------------------------------ face D


def head_points_from_pose_json(data: Mapping[str, Any]) -> list[tuple[float, float, float]]:
    """The five BODY_25 head points (x, y, confidence) of the first person in a v2v/OpenPose pose JSON.

    No person (``people`` empty) gives five zero-confidence points, so the face D skips that frame.
    """
    people = data.get("people") or []
    if not people:
        return [(0.0, 0.0, 0.0)] * len(HEAD_KEYPOINTS)
    kp = list(people[0].get("pose_keypoints_2d") or [])
    out = []
    for i in HEAD_KEYPOINTS:
        if 3 * i + 2 < len(kp):
            out.append((float(kp[3 * i]), float(kp[3 * i + 1]), float(kp[3 * i + 2])))
        else:
            out.append((0.0, 0.0, 0.0))
    return out


def head_boxes(points: torch.Tensor, *, min_confidence: float = 0.05, extent_scale: float = 2.0,
               min_size: float = 16.0, scale: tuple[float, float] = (1.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Square head boxes (N, 4) as (x0, y0, x1, y1) pixels and a validity weight (N,) from head points.

    ``points``: (N, K, 3) (x, y, confidence), e.g. the five :data:`HEAD_KEYPOINTS`; ``scale`` (sx, sy) maps the
    pose JSON's pixel grid to the tensor's (when frames were resized). The box is centred on the mean of the
    confident points, its side ``extent_scale`` × their largest x/y extent (eyes-to-ears spans about half a head),
    at least ``min_size`` pixels. Fewer than two confident points → weight 0 (the box is then a dummy).
    Tensor ops only, so no host sync.
    """
    pts = points.float()
    xy = pts[..., :2] * torch.tensor(scale, device=pts.device, dtype=pts.dtype)
    ok = (pts[..., 2] > min_confidence).float()  # (N, K)
    n_ok = ok.sum(-1)
    centre = (xy * ok[..., None]).sum(1) / n_ok.clamp(min=1)[..., None]
    big = torch.finfo(pts.dtype).max
    lo = torch.where(ok[..., None] > 0, xy, torch.full_like(xy, big)).amin(1)
    hi = torch.where(ok[..., None] > 0, xy, torch.full_like(xy, -big)).amax(1)
    extent = torch.where(n_ok[..., None] > 0, hi - lo, torch.zeros_like(hi)).amax(-1)
    half = (extent * extent_scale).clamp(min=min_size) / 2
    boxes = torch.stack([centre[:, 0] - half, centre[:, 1] - half, centre[:, 0] + half, centre[:, 1] + half], -1)
    return boxes, (n_ok >= 2).float()


def face_crop_side(height: int, width: int | None = None) -> int:
    """Side of the official face crop: ``fineSize // 32 * 8`` (a quarter of the frame height, a multiple of 8),
    at least 8 and no more than the frame."""
    side = max(8, int(height) // 32 * 8)
    return min(side, int(height), int(width) if width is not None else side)


def densepose_head_squares(part_index: torch.Tensor, side: int,
                           threshold: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left corners (N, 2) as (x, y) and a validity weight (N,) of ``side``² squares on the head.

    ``part_index``: (N, H, W) DensePose part-index channel in [-1, 1] (I ×255/24, so > 0.9 is the head, parts 23
    and 24), as the official ``get_face_region``: the square is centred on the middle of the head pixels'
    bounding box and moved inside the frame. Per frame (the official takes one box over the whole chunk). No head
    pixel → weight 0 (the corner is then a dummy). Tensor ops only, so no host sync.
    """
    n, h, w = part_index.shape
    head = part_index > threshold
    rows, cols = head.any(2), head.any(1)  # (N, H), (N, W)
    ar_h = torch.arange(h, device=part_index.device).expand(n, h)
    ar_w = torch.arange(w, device=part_index.device).expand(n, w)
    ys = torch.where(rows, ar_h, h).amin(1)
    ye = torch.where(rows, ar_h, -1).amax(1)
    xs = torch.where(cols, ar_w, w).amin(1)
    xe = torch.where(cols, ar_w, -1).amax(1)
    half = side // 2
    yc = torch.div(ys + ye, 2, rounding_mode="floor").clamp(half, max(half, h - 1 - half))
    xc = torch.div(xs + xe, 2, rounding_mode="floor").clamp(half, max(half, w - 1 - half))
    valid = rows.any(1)
    corners = torch.stack([xc - half, yc - half], -1) * valid[:, None]
    return corners.long(), valid.float()


def crop_squares(images: torch.Tensor, corners: torch.Tensor, side: int) -> torch.Tensor:
    """Exact crops (N, C, side, side) of ``images`` (N, C, H, W) at integer top-left ``corners`` (N, 2) (x, y):
    native pixels, no resampling (the official face crop); differentiable with respect to ``images``."""
    n, _, h, w = images.shape
    ar = torch.arange(side, device=images.device)
    ys = (corners[:, 1:2].to(images.device) + ar).clamp(0, h - 1)  # (N, side)
    xs = (corners[:, 0:1].to(images.device) + ar).clamp(0, w - 1)
    idx = torch.arange(n, device=images.device)[:, None, None]
    return images.permute(0, 2, 3, 1)[idx, ys[:, :, None], xs[:, None, :]].permute(0, 3, 1, 2)


def crop_regions(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear crops (N, C, size, size) of ``images`` (N, C, H, W) at pixel ``boxes`` (N, 4); differentiable.

    Uses torchvision's ``roi_align`` (aligned, 2×2 samples per bin); pixel i's centre is coordinate i, as in
    the pose JSON. Areas outside the frame read as zero for real and fake alike.
    """
    idx = torch.arange(images.shape[0], device=images.device, dtype=boxes.dtype)[:, None]
    rois = torch.cat([idx, boxes.to(images.device) + 0.5], dim=1)
    out = roi_align(images.float(), rois.float(), output_size=(size, size), spatial_scale=1.0, sampling_ratio=2,
                    aligned=True)
    return out.to(images.dtype)


# --------------------------------------------------------------------------------------- the vid2vid set


@dataclass(frozen=True)
class DiscriminatorRow:
    """One row of ``v2v model summary``: a D's parameters and GFLOP per application at ``input_size`` (W, H)."""

    name: str
    in_channels: int
    params: int
    gflop: float
    input_size: tuple[int, int]
    applications: str


class Vid2VidDiscriminators(nn.Module):
    """The image D, ``n_scales_temporal`` temporal Ds and an optional face D of one vid2vid model.

    ``label_channels``: conditioning channels of one frame (street: 35 classes + 1 boundary = 36); the image D
    sees labels + frame (39 for street). Temporal Ds see ``n_frames_d`` frames + flows (13 channels for RGB) and
    have ``num_d_temporal`` spatial scales (default ``num_d``). The face D (``face_d=True``) sees labels + frame
    cropped to ``face_crop_size``² with ``face_num_d`` scales and ``face_n_layers`` layers. The temporal Ds are
    separate modules (``temporal[k]``) so a trainer can wrap each in its own DDP module and step only active ones.
    """

    def __init__(self, *, label_channels: int, image_channels: int = 3, ndf: int = 64, n_layers_d: int = 3,
                 num_d: int = 2, n_scales_temporal: int = 3, n_frames_d: int = 3, num_d_temporal: int | None = None,
                 face_d: bool = False, face_crop_size: int = 96, face_num_d: int | None = None,
                 face_n_layers: int | None = None, norm: str = "instance") -> None:
        super().__init__()
        # official netD_f: max(1, num_D - 2) scales with the image D's n_layers_D
        face_num_d = face_num_d or max(1, num_d - 2)
        face_n_layers = face_n_layers or n_layers_d
        self.kwargs: dict[str, Any] = dict(
            label_channels=label_channels, image_channels=image_channels, ndf=ndf, n_layers_d=n_layers_d,
            num_d=num_d, n_scales_temporal=n_scales_temporal, n_frames_d=n_frames_d, num_d_temporal=num_d_temporal,
            face_d=face_d, face_crop_size=face_crop_size, face_num_d=face_num_d, face_n_layers=face_n_layers,
            norm=norm)
        num_d_t = num_d_temporal or num_d
        self.image = MultiscaleDiscriminator(in_channels=label_channels + image_channels, ndf=ndf,
                                             n_layers=n_layers_d, num_d=num_d, norm=norm)
        t_channels = n_frames_d * image_channels + (n_frames_d - 1) * 2
        self.temporal = nn.ModuleList(
            [MultiscaleDiscriminator(in_channels=t_channels, ndf=ndf, n_layers=n_layers_d, num_d=num_d_t, norm=norm)
             for _ in range(n_scales_temporal)])
        self.face: MultiscaleDiscriminator | None = None
        if face_d:
            self.face = MultiscaleDiscriminator(in_channels=label_channels + image_channels, ndf=ndf,
                                                n_layers=face_n_layers, num_d=face_num_d, norm=norm)
        self.n_frames_d = n_frames_d
        self.n_scales_temporal = n_scales_temporal
        self.face_crop_size = face_crop_size

    @classmethod
    def from_config(cls, model_cfg: Any, label_channels: int | None = None,
                    image_channels: int = 3) -> Vid2VidDiscriminators:
        """Build from a model config read with getattr: ``num_D`` (2), ``n_layers_D`` (3), ``ndf`` (64),
        ``n_scales_temporal`` (3), ``n_frames_D`` (3), ``num_D_T`` (0 → num_D), ``face_D`` (False),
        ``face_crop_size`` (96), ``face_num_D`` (0 → max(1, num_D − 2)), ``face_n_layers_D`` (0 → n_layers_D),
        ``norm_D`` ("instance").

        ``label_channels`` is the conditioning channels of one frame (``ConditioningSpec.input_nc``); without it the
        config's ``input_nc`` is used when set (> 0).
        """
        if label_channels is None:
            value = getattr(model_cfg, "input_nc", 0)
            if isinstance(value, int) and value > 0:
                label_channels = value
        if label_channels is None:
            raise ConfigError("the discriminators need the conditioning channels per frame: set model.input_nc or "
                              "pass label_channels (ConditioningSpec.input_nc)")
        return cls(label_channels=label_channels, image_channels=image_channels,
                   ndf=int(getattr(model_cfg, "ndf", 64)), n_layers_d=int(getattr(model_cfg, "n_layers_D", 3)),
                   num_d=int(getattr(model_cfg, "num_D", 2)),
                   n_scales_temporal=int(getattr(model_cfg, "n_scales_temporal", 3)),
                   n_frames_d=int(getattr(model_cfg, "n_frames_D", 3)),
                   num_d_temporal=int(getattr(model_cfg, "num_D_T", 0) or 0) or None,
                   face_d=bool(getattr(model_cfg, "face_D", False)),
                   face_crop_size=int(getattr(model_cfg, "face_crop_size", 96)),
                   face_num_d=int(getattr(model_cfg, "face_num_D", 0) or 0) or None,
                   face_n_layers=int(getattr(model_cfg, "face_n_layers_D", 0) or 0) or None,
                   norm=str(getattr(model_cfg, "norm_D", "instance")))

    @staticmethod
    def image_input(labels: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """concat(labels of t (N, L, H, W), frame (N, 3, H, W)): what the image and face Ds see."""
        return torch.cat([labels, frame.to(labels.dtype)], dim=1)

    def forward_image(self, labels: torch.Tensor, frame: torch.Tensor) -> list[list[torch.Tensor]]:
        """Image D on :meth:`image_input`."""
        return self.image(self.image_input(labels, frame))

    def forward_temporal(self, scale: int, windows: torch.Tensor) -> list[list[torch.Tensor]]:
        """Temporal D of temporal scale ``scale`` on :func:`build_temporal_inputs` windows."""
        return self.temporal[scale](windows)  # type: ignore[no-any-return]

    def face_crops(self, labels: torch.Tensor, frame: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Crops of concat(labels, frame): ``boxes`` (N, 2) integer corners → exact :func:`face_crop_side` squares
        at native resolution (the official crop); (N, 4) pixel boxes → resampled to ``face_crop_size``²."""
        x = self.image_input(labels, frame)
        if boxes.shape[-1] == 2:
            return crop_squares(x, boxes, face_crop_side(x.shape[-2], x.shape[-1]))
        return crop_regions(x, boxes, self.face_crop_size)

    def forward_face(self, labels: torch.Tensor, frame: torch.Tensor,
                     boxes: torch.Tensor) -> list[list[torch.Tensor]]:
        if self.face is None:
            raise ConfigError("the face discriminator is off; set model.face_D true to use it")
        return self.face(self.face_crops(labels, frame, boxes))  # type: ignore[no-any-return]

    def summary(self, width: int, height: int) -> list[DiscriminatorRow]:
        """Params and GFLOP (conv/matmul, 1 MAC = 2 FLOP) per application at a W×H frame, counted on a meta twin."""
        twin = self.meta_copy()
        rows = []

        def measure(name: str, d: nn.Module, c: int, w: int, h: int, apps: str) -> None:
            x = torch.empty(1, c, h, w, device="meta")
            with FlopCounterMode(display=False) as counter:
                d(x)
            rows.append(DiscriminatorRow(name, c, count_parameters(d), counter.get_total_flops() / 1e9, (w, h), apps))

        measure("D", twin.image, twin.image.in_channels, width, height, "real, final, raw frames")
        for k, d in enumerate(twin.temporal):
            measure(f"D_T{k}", d, cast(MultiscaleDiscriminator, d).in_channels, width, height,  # a ModuleList item
                    f"real, fake windows (every {self.n_frames_d ** k} frames)")
        if twin.face is not None:
            measure("D_face", twin.face, twin.face.in_channels, self.face_crop_size, self.face_crop_size,
                    "real, fake face crops")
        return rows

    def meta_copy(self) -> Vid2VidDiscriminators:
        """A parameter-free twin on the meta device (for counting without allocating)."""
        with torch.device("meta"):
            return type(self)(**copy.deepcopy(self.kwargs))
