"""vid2vid losses (docs/architecture.md "Losses"): GAN, feature matching, VGG, flow, warp, temporal and mask terms.
perframe and predict use the GAN, feature-matching and VGG terms.

Building blocks (each unweighted unless its docstring says otherwise, all computed in float32 with autocast off):

- :class:`GANLoss` — ``lsgan`` (least squares), ``hinge`` or ``bce`` (logistic, on logits). Multi-scale D outputs
  are summed over scales, each scale averaged over patches (and samples, optionally weighted per sample).
- :func:`feature_matching_loss` — L1 between fake and detached real D features, every layer but the logits,
  weighted 4/(n_layers+1) per layer and 1/num_D per scale.
- :func:`photometric_confidence` — conf = [‖x_t − warp(x_{t-1}, flow_ref)‖₂ over channels < threshold] on the
  real frames in [-1, 1]; it masks :func:`flow_loss`, :func:`warp_loss` and :func:`temporal_loss` via
  :func:`masked_l1` (mean over all elements of |a − b|·conf, so a frame with little confident area weighs less).
- :func:`mask_loss` — L1(m, 0) masked by conf (the official ``loss_W``).

:class:`Vid2VidLoss` puts them together with the config's weights and returns :class:`LossOutput` (named terms,
already weighted, summing to ``total``) for the generator and discriminator steps, per frame and per clip
(temporal Ds). Discriminators run under the caller's autocast; only their outputs are cast to float32.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import nn

from v2vcli.errors import ConfigError, did_you_mean
from v2vcli.warp import warp

from .discriminators import (
    Vid2VidDiscriminators,
    build_temporal_inputs,
    densepose_head_squares,
    face_crop_side,
    head_boxes,
)
from .perceptual import VGG19_LAYER_WEIGHTS, VGGLoss

__all__ = [
    "GAN_MODES",
    "GANLoss",
    "feature_matching_loss",
    "photometric_confidence",
    "masked_l1",
    "flow_loss",
    "warp_loss",
    "temporal_loss",
    "mask_loss",
    "LossOutput",
    "Vid2VidLoss",
]

log = logging.getLogger(__name__)

GAN_MODES: tuple[str, ...] = ("lsgan", "hinge", "bce")

# A D output: per scale, per layer maps (logits last) — or per-scale logits, or one logits map.
DOutput = Union[torch.Tensor, Sequence[torch.Tensor], Sequence[Sequence[torch.Tensor]]]


def _logits(pred: DOutput) -> list[torch.Tensor]:
    if isinstance(pred, torch.Tensor):
        return [pred]
    return [p if isinstance(p, torch.Tensor) else p[-1] for p in pred]


def _weighted_mean(per_elem: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean over everything, or per-sample means averaged with sample weights (0/1 masks; all-zero gives 0)."""
    if weight is None:
        return per_elem.mean()
    per_sample = per_elem.flatten(1).mean(1)
    w = weight.to(per_sample)
    return (per_sample * w).sum() / w.sum().clamp(min=1e-6)


def _fp32_off(t: torch.Tensor) -> Any:
    return torch.autocast(device_type=t.device.type, enabled=False)


class GANLoss:
    """Adversarial terms for ``mode`` in :data:`GAN_MODES`; D outputs are raw logits (no sigmoid in the D).

    Per element p: lsgan real (p−1)², fake p², generator (p−1)²; hinge real max(0, 1−p), fake max(0, 1+p),
    generator −p; bce real softplus(−p) (= −log σ(p)), fake softplus(p), generator softplus(−p).
    """

    def __init__(self, mode: str = "lsgan") -> None:
        if mode not in GAN_MODES:
            raise ConfigError(f"loss.gan_mode '{mode}' is not supported{did_you_mean(mode, GAN_MODES)}")
        self.mode = mode

    def _term(self, p: torch.Tensor, kind: str) -> torch.Tensor:
        p = p.float()
        if self.mode == "lsgan":
            return (p - 1) ** 2 if kind in ("real", "gen") else p ** 2
        if self.mode == "hinge":
            if kind == "real":
                return F.relu(1 - p)
            return F.relu(1 + p) if kind == "fake" else -p
        return F.softplus(-p) if kind in ("real", "gen") else F.softplus(p)

    def _sum(self, pred: DOutput, kind: str, weight: torch.Tensor | None) -> torch.Tensor:
        logits = _logits(pred)
        with _fp32_off(logits[0]):
            return torch.stack([_weighted_mean(self._term(p, kind), weight) for p in logits]).sum()

    def real(self, pred: DOutput, weight: torch.Tensor | None = None) -> torch.Tensor:
        """D's loss on real samples, summed over scales."""
        return self._sum(pred, "real", weight)

    def fake(self, pred: DOutput, weight: torch.Tensor | None = None) -> torch.Tensor:
        """D's loss on fake samples, summed over scales."""
        return self._sum(pred, "fake", weight)

    def generator(self, pred: DOutput, weight: torch.Tensor | None = None) -> torch.Tensor:
        """G's adversarial loss on D(fake), summed over scales."""
        return self._sum(pred, "gen", weight)

    def discriminator(self, real_pred: DOutput, fake_pred: DOutput,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
        """½ (real + fake)."""
        return 0.5 * (self.real(real_pred, weight) + self.fake(fake_pred, weight))


def feature_matching_loss(fake_feats: Sequence[Sequence[torch.Tensor]], real_feats: Sequence[Sequence[torch.Tensor]],
                          weight: torch.Tensor | None = None, num_d: int | None = None) -> torch.Tensor:
    """Σ_scales Σ_layers (1/num_D)·(4/(n_layers+1))·L1(fake, real.detach()) over every map but the logits.

    ``n_layers`` is the PatchGAN's (its outputs number n_layers + 2), ``num_D`` the number of scales, or ``num_d``
    when given (the official face D is normalised by the *image* D's num_D).
    """
    num_d = num_d or len(fake_feats)
    with _fp32_off(fake_feats[0][0]):
        loss = fake_feats[0][0].new_zeros((), dtype=torch.float32)
        for fake_scale, real_scale in zip(fake_feats, real_feats):
            n_layers = len(fake_scale) - 2
            w = (4.0 / (n_layers + 1)) / num_d
            for a, b in zip(list(fake_scale)[:-1], list(real_scale)[:-1]):
                loss = loss + w * _weighted_mean((a.float() - b.detach().float()).abs(), weight)
    return loss


def photometric_confidence(real: torch.Tensor, real_prev: torch.Tensor, flow_ref: torch.Tensor,
                           threshold: float = 0.02) -> torch.Tensor:
    """(N, 1, H, W) float mask: 1 where Σ_c (real − warp(real_prev, flow_ref))² < ``threshold``.

    As the official code (models/flownet.py, ``compute_flow_and_conf``): the *squared* error summed over RGB, images in
    [-1, 1], no square root, so 0.02 admits ‖d‖ < 0.141 (about 10 grey levels per channel).
    """
    with _fp32_off(real), torch.no_grad():
        err = real.float() - warp(real_prev.float(), flow_ref.float())
        return (err.pow(2).sum(1, keepdim=True) < threshold).float()


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """mean(|a − b|·mask) over all elements of ``a`` (mask (N, 1, H, W) broadcast over channels); fp32."""
    with _fp32_off(a):
        diff = (a.float() - b.float()).abs()
        if mask is not None:
            diff = diff * mask.float()
        return diff.mean()


def flow_loss(flow: torch.Tensor, flow_ref: torch.Tensor, conf: torch.Tensor | None = None) -> torch.Tensor:
    """L1 between predicted and reference backward flows (pixels), masked by ``conf``."""
    return masked_l1(flow, flow_ref.detach(), conf)


def warp_loss(flow: torch.Tensor, real: torch.Tensor, real_prev: torch.Tensor,
              conf: torch.Tensor | None = None) -> torch.Tensor:
    """L1(warp(real x_{t-1}, predicted flow), real x_t), masked by ``conf``: teaches the flow head to move pixels."""
    with _fp32_off(flow):
        warped = warp(real_prev.detach().float(), flow.float())
    return masked_l1(warped, real.detach(), conf)


def temporal_loss(fake: torch.Tensor, fake_prev: torch.Tensor, flow_ref: torch.Tensor,
                  conf: torch.Tensor | None = None) -> torch.Tensor:
    """L1(x_t, warp(x_{t-1}.detach(), flow_ref)) on generated frames, masked by ``conf``."""
    with _fp32_off(fake):
        target = warp(fake_prev.detach().float(), flow_ref.detach().float())
    return masked_l1(fake, target, conf)


def mask_loss(mask: torch.Tensor, conf: torch.Tensor | None = None) -> torch.Tensor:
    """L1(m·conf, 0) = mean(|m|·conf): pushes the occlusion mask towards trusting the warp where the reference
    flow is photometrically reliable (the official ``loss_W``, a ``MaskedL1Loss`` by conf); unmasked without conf."""
    return masked_l1(mask, torch.zeros_like(mask), conf)


@dataclass
class LossOutput:
    """Named loss terms, each already multiplied by its weight; ``total`` is their sum (what to backward).

    ``active_temporal``/``skipped_temporal``: the temporal scales used/skipped for this clip (temporal losses only).
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    active_temporal: list[int] = field(default_factory=list)
    skipped_temporal: list[int] = field(default_factory=list)

    def detached(self) -> dict[str, torch.Tensor]:
        """Terms and total without graph, for logging (stack them and call ``.tolist()`` once: one host sync)."""
        out = {k: v.detach() for k, v in self.terms.items()}
        out["total"] = self.total.detach()
        return out


def _output(terms: dict[str, torch.Tensor], ref: torch.Tensor, **extra: Any) -> LossOutput:
    total = torch.stack(list(terms.values())).sum() if terms else ref.new_zeros((), dtype=torch.float32)
    return LossOutput(total, terms, **extra)


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.endswith((".pth", ".pt", ".bin")) or Path(value).is_file()


def _flat(x: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T, C, H, W) → (B·T, C, H, W); 4-D passes through, so per-frame losses take frames or clips."""
    if x is None or x.dim() == 4:
        return x
    return x.flatten(0, 1)


class Vid2VidLoss(nn.Module):
    """All vid2vid loss terms with their weights (defaults: docs/architecture.md / the paper).

    Weights: ``lambda_feat`` (feature matching, all Ds), ``lambda_vgg`` (0 disables the VGG and its weights file),
    ``lambda_flow`` (divided by 2^(n_scales_spatial − 1)), ``lambda_warp``, ``lambda_temporal``, ``lambda_mask``,
    ``lambda_face`` (multiplies the face D's generator GAN and feature-matching terms; its D terms weigh 1, as the
    official ``face_weight``). ``face_part_channel``: the label channel holding the DensePose part index (the
    face crop is then the official one; None = BODY_25 head points). ``conf_threshold`` is
    the photometric-confidence threshold. VGG: ``vgg`` (a ready :class:`~.perceptual.VGGLoss` or any module
    ``(fake, real) → loss``), else one is built from ``vgg_weights`` / the registry (``vgg_random_init`` for tests).
    """

    def __init__(self, *, gan_mode: str = "lsgan", lambda_feat: float = 10.0, lambda_vgg: float = 10.0,
                 lambda_flow: float = 10.0, lambda_warp: float = 10.0, lambda_temporal: float = 10.0,
                 lambda_mask: float = 0.0, lambda_face: float = 2.0, conf_threshold: float = 0.02,
                 n_scales_spatial: int = 1, vgg: nn.Module | None = None, vgg_weights: str | Path | None = None,
                 vgg_weights_name: str = "vgg19", vgg_layer_weights: Sequence[float] | None = None,
                 vgg_random_init: bool = False,
                 vgg_verify: bool = True, vgg_input: str = "official") -> None:
        super().__init__()
        self.gan = GANLoss(gan_mode)
        self.gan_mode = gan_mode
        self.lambda_feat = float(lambda_feat)
        self.lambda_vgg = float(lambda_vgg)
        self.lambda_flow = float(lambda_flow)
        self.lambda_warp = float(lambda_warp)
        self.lambda_temporal = float(lambda_temporal)
        self.lambda_mask = float(lambda_mask)
        self.lambda_face = float(lambda_face)
        self.conf_threshold = float(conf_threshold)
        self.n_scales_spatial = int(n_scales_spatial)
        self.face_part_channel: int | None = None  # set by the trainer when densepose is an input
        self.vgg: nn.Module | None = None
        if self.lambda_vgg > 0:
            if vgg is None:
                vgg = VGGLoss(weights=vgg_weights, weights_name=vgg_weights_name, random_init=vgg_random_init,
                              verify=vgg_verify, input_norm=vgg_input,
                              layer_weights=vgg_layer_weights or VGG19_LAYER_WEIGHTS)
            self.vgg = vgg

    @classmethod
    def from_config(cls, model_cfg: Any, loss_cfg: Any, *, vgg_weights: str | Path | None = None,
                    vgg: nn.Module | None = None, vgg_random_init: bool = False) -> Vid2VidLoss:
        """Read ``loss_cfg`` with getattr: ``gan_mode``, ``lambda_feat``, ``lambda_vgg``, ``vgg_weights`` (a
        registry name such as ``vgg19``, a file path, or the five layer weights), ``lambda_flow``, ``lambda_warp``,
        ``lambda_temporal``, ``lambda_mask``, ``lambda_face``, ``conf_threshold``, ``vgg_input``; ``model_cfg``'s
        ``n_scales_spatial`` (S). ``vgg_weights`` here (the CLI's ``--weights vgg19=PATH``) wins over the config.
        """
        cfg_vgg = getattr(loss_cfg, "vgg_weights", None)
        layer_weights = None
        name = "vgg19"
        if isinstance(cfg_vgg, (list, tuple)):
            layer_weights, cfg_vgg = [float(v) for v in cfg_vgg], None
        elif isinstance(cfg_vgg, str) and cfg_vgg and not _looks_like_path(cfg_vgg):
            name, cfg_vgg = cfg_vgg, None
        s = getattr(model_cfg, "n_scales_spatial", None)
        if s is None:
            s = getattr(model_cfg, "n_scales", 1)
        return cls(gan_mode=str(getattr(loss_cfg, "gan_mode", "lsgan")),
                   lambda_feat=getattr(loss_cfg, "lambda_feat", 10.0),
                   lambda_vgg=getattr(loss_cfg, "lambda_vgg", 10.0),
                   lambda_flow=getattr(loss_cfg, "lambda_flow", 10.0),
                   lambda_warp=getattr(loss_cfg, "lambda_warp", 10.0),
                   lambda_temporal=getattr(loss_cfg, "lambda_temporal", 10.0),
                   lambda_mask=getattr(loss_cfg, "lambda_mask", 0.0),
                   lambda_face=getattr(loss_cfg, "lambda_face", 2.0),
                   conf_threshold=getattr(loss_cfg, "conf_threshold", 0.02),
                   n_scales_spatial=int(s or 1), vgg=vgg, vgg_weights=vgg_weights or cfg_vgg or None,
                   vgg_weights_name=name, vgg_layer_weights=layer_weights, vgg_random_init=vgg_random_init,
                   vgg_input=str(getattr(loss_cfg, "vgg_input", "official")))

    # ------------------------------------------------------------------------------------------ per frame

    def _face(self, D: Vid2VidDiscriminators, labels: torch.Tensor,
              head_points: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        if D.face is None or self.lambda_face == 0:
            return None
        ch = self.face_part_channel
        if ch is not None and 0 <= ch < labels.shape[1]:  # official: native square on the DensePose head
            return densepose_head_squares(labels[:, ch], face_crop_side(labels.shape[-2], labels.shape[-1]))
        if head_points is None:
            return None
        min_size = max(16.0, labels.shape[-2] / 16)
        points = head_points.flatten(0, 1) if head_points.dim() == 4 else head_points  # (B, T, 5, 3) → (N, 5, 3)
        return head_boxes(points, min_size=min_size)

    def generator_frame(self, D: Vid2VidDiscriminators, *, labels: torch.Tensor, real: torch.Tensor,
                        fake: torch.Tensor, raw: torch.Tensor | None = None, real_prev: torch.Tensor | None = None,
                        fake_prev: torch.Tensor | None = None, flow: torch.Tensor | None = None,
                        mask: torch.Tensor | None = None, flow_ref: torch.Tensor | None = None,
                        head_points: torch.Tensor | None = None) -> LossOutput:
        """Generator terms of frames t (4-D (N, ·, H, W) or 5-D clips flattened over time).

        ``labels`` (N, L, H, W) labels of t; ``real``/``fake``/``raw`` (N, 3, H, W) in [-1, 1]; ``real_prev``
        real x_{t-1}; ``fake_prev`` generated x_{t-1}; ``flow`` predicted flow (N, 2, H, W) pixels; ``mask`` the
        occlusion mask; ``flow_ref`` reference backward flow t→t-1; ``head_points`` (N, 5, 3) for the face D.
        Terms whose inputs are None are left out (first frame: no history, no flow terms). Terms: G_GAN, G_feat,
        G_vgg (and *_raw), F_flow, F_warp, G_temporal, F_mask, G_GAN_face, G_feat_face.
        """
        labels, real, fake = _flat(labels), _flat(real), _flat(fake)  # type: ignore[assignment]
        raw, real_prev, fake_prev = _flat(raw), _flat(real_prev), _flat(fake_prev)
        flow, mask, flow_ref = _flat(flow), _flat(mask), _flat(flow_ref)
        terms: dict[str, torch.Tensor] = {}
        n = fake.shape[0]
        fakes = fake if raw is None else torch.cat([fake, raw.to(fake.dtype)], 0)
        with torch.no_grad():
            real_feats = D.forward_image(labels, real)
        fake_feats = D.forward_image(torch.cat([labels] * (1 if raw is None else 2), 0), fakes)
        for suffix, sl in (("", slice(0, n)), ("_raw", slice(n, 2 * n))):
            if suffix and raw is None:
                continue
            part = [[f[sl] for f in scale] for scale in fake_feats]
            terms["G_GAN" + suffix] = self.gan.generator(part)
            if self.lambda_feat:
                terms["G_feat" + suffix] = self.lambda_feat * feature_matching_loss(part, real_feats)
        if self.vgg is not None:
            pairs = [fake] if raw is None else [fake, raw]
            multi = getattr(self.vgg, "multi", None)
            vals = multi(pairs, real) if callable(multi) else [self.vgg(x, real) for x in pairs]
            terms["G_vgg"] = self.lambda_vgg * vals[0]
            if raw is not None:
                terms["G_vgg_raw"] = self.lambda_vgg * vals[1]
        conf = None
        if real_prev is not None and flow_ref is not None:
            conf = photometric_confidence(real, real_prev, flow_ref, self.conf_threshold)
        if flow is not None and flow_ref is not None and self.lambda_flow:
            terms["F_flow"] = self.lambda_flow / 2 ** (self.n_scales_spatial - 1) * flow_loss(flow, flow_ref, conf)
        if flow is not None and real_prev is not None and self.lambda_warp:
            terms["F_warp"] = self.lambda_warp * warp_loss(flow, real, real_prev, conf)
        if fake_prev is not None and flow_ref is not None and self.lambda_temporal:
            terms["G_temporal"] = self.lambda_temporal * temporal_loss(fake, fake_prev, flow_ref, conf)
        if mask is not None and self.lambda_mask:
            terms["F_mask"] = self.lambda_mask * mask_loss(mask, conf)
        face = self._face(D, labels, head_points)
        if face is not None:
            boxes, valid = face
            with torch.no_grad():
                real_face = D.forward_face(labels, real, boxes)
            fake_face = D.forward_face(labels, fake, boxes)
            terms["G_GAN_face"] = self.lambda_face * self.gan.generator(fake_face, valid)
            if self.lambda_feat:
                terms["G_feat_face"] = self.lambda_face * self.lambda_feat * feature_matching_loss(
                    fake_face, real_face, valid, num_d=D.image.num_d)  # 1/num_D of the image D (official)
        return _output(terms, fake)

    def discriminator_frame(self, D: Vid2VidDiscriminators, *, labels: torch.Tensor, real: torch.Tensor,
                            fake: torch.Tensor, raw: torch.Tensor | None = None,
                            head_points: torch.Tensor | None = None) -> LossOutput:
        """Image (and face) D terms; fakes are detached here. Each fake kind pairs with the real frames:
        ½(real + fake) + ½(real + fake_raw), so real and fake weigh the same. Terms: D_real, D_fake,
        D_fake_raw, D_real_face, D_fake_face (weighted so they sum to ``total``).
        """
        labels, real, fake, raw = _flat(labels), _flat(real), _flat(fake).detach(), _flat(raw)  # type: ignore
        n = real.shape[0]
        parts = [real, fake] + ([] if raw is None else [raw.detach()])
        feats = D.forward_image(torch.cat([labels] * len(parts), 0), torch.cat([p.to(real.dtype) for p in parts], 0))
        logits = [scale[-1] for scale in feats]
        pairs = len(parts) - 1
        terms = {"D_real": 0.5 * pairs * self.gan.real([p[:n] for p in logits]),
                 "D_fake": 0.5 * self.gan.fake([p[n:2 * n] for p in logits])}
        if raw is not None:
            terms["D_fake_raw"] = 0.5 * self.gan.fake([p[2 * n:] for p in logits])
        face = self._face(D, labels, head_points)
        if face is not None:
            boxes, valid = face
            out = D.forward_face(torch.cat([labels, labels], 0), torch.cat([real, fake.to(real.dtype)], 0),
                                 torch.cat([boxes, boxes], 0))
            face_logits = [scale[-1] for scale in out]
            terms["D_real_face"] = 0.5 * self.gan.real([p[:n] for p in face_logits], valid)  # ×1 (official)
            terms["D_fake_face"] = 0.5 * self.gan.fake([p[n:] for p in face_logits], valid)
        return _output(terms, real)

    # ------------------------------------------------------------------------------------------- per clip

    def generator_temporal(self, D: Vid2VidDiscriminators, *, real_clip: torch.Tensor, fake_clip: torch.Tensor,
                           flow_ref_clip: torch.Tensor, max_windows: int | None = None,
                           new_frames: int | None = None) -> LossOutput:
        """Temporal-D generator terms on clips (B, T, 3, H, W) with reference flows (B, T, 2, H, W).

        Terms per active temporal scale k: G_GAN_T{k}, G_feat_T{k}. Inactive scales are listed in
        ``skipped_temporal`` (and logged at debug level).
        """
        inputs = build_temporal_inputs(real_clip, fake_clip, flow_ref_clip, n_scales=D.n_scales_temporal,
                                       n_frames_d=D.n_frames_d, max_windows=max_windows,
                                       new_frames=new_frames)
        terms: dict[str, torch.Tensor] = {}
        for batch in inputs.batches:
            k = batch.scale.index
            with torch.no_grad():
                real_feats = D.forward_temporal(k, batch.real)
            fake_feats = D.forward_temporal(k, batch.fake)
            terms[f"G_GAN_T{k}"] = self.gan.generator(fake_feats)
            if self.lambda_feat:
                terms[f"G_feat_T{k}"] = self.lambda_feat * feature_matching_loss(fake_feats, real_feats)
        return self._temporal_output(terms, fake_clip, inputs.plan)

    def discriminator_temporal(self, D: Vid2VidDiscriminators, *, real_clip: torch.Tensor, fake_clip: torch.Tensor,
                               flow_ref_clip: torch.Tensor, max_windows: int | None = None,
                               new_frames: int | None = None) -> LossOutput:
        """Temporal-D terms ½(real + fake) per active scale k: D_real_T{k}, D_fake_T{k}; fakes detached here."""
        inputs = build_temporal_inputs(real_clip, fake_clip.detach(), flow_ref_clip, n_scales=D.n_scales_temporal,
                                       n_frames_d=D.n_frames_d, max_windows=max_windows,
                                       new_frames=new_frames)
        terms: dict[str, torch.Tensor] = {}
        for batch in inputs.batches:
            k = batch.scale.index
            n = batch.real.shape[0]
            feats = D.forward_temporal(k, torch.cat([batch.real, batch.fake.to(batch.real.dtype)], 0))
            logits = [scale[-1] for scale in feats]
            terms[f"D_real_T{k}"] = 0.5 * self.gan.real([p[:n] for p in logits])
            terms[f"D_fake_T{k}"] = 0.5 * self.gan.fake([p[n:] for p in logits])
        return self._temporal_output(terms, real_clip, inputs.plan)

    @staticmethod
    def _temporal_output(terms: dict[str, torch.Tensor], ref: torch.Tensor, plan: Any) -> LossOutput:
        if plan.skipped:
            log.debug("clip of %d frames: temporal scales %s skipped (spans %s)", plan.clip_length,
                      plan.skipped_indices, [s.span for s in plan.skipped])
        return _output(terms, ref, active_temporal=plan.active_indices, skipped_temporal=plan.skipped_indices)
