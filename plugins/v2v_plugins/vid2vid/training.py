"""vid2vid behind the model contract (:class:`v2vcli.model.VideoModel`): sequential generation, losses, steps.

One ``train_step`` on a batch of clips (B, T frames, the first L = n_frames_G - 1 real unless the model starts
from an empty history):

1. Frames t = L..T-1 are generated one after another, each from the label stack t-L..t and the L previous
   outputs (real history frames for the first). Truncated back-propagation: a previous output is fed attached
   only while the chain of attached outputs behind it stays within ``train.max_frames_backpropagate`` frames,
   so the loss of frame t reaches at most that many earlier generations (0: none).
2. Generator loss: the image-D terms (GAN, feature matching, VGG on final and raw), the flow/warp/temporal/mask
   terms of :mod:`.losses`, and the temporal-D terms of every temporal scale whose span fits the clip. One Adam
   step of G (discriminators frozen meanwhile).
3. Discriminator loss: image (and face) D on real vs detached fakes, each active temporal D on real vs fake
   windows. Every D has its own Adam (``D``, ``D_T0``, ``D_T1`` ...); only active temporal Ds are stepped.

``--init-from`` a run with one spatial scale fewer loads its G0..G(s-1); while the epoch is below
``train.niter_fix_global`` only the new finest scale trains. torch is imported inside methods (plugin import
stays light).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from v2vcli.errors import CheckpointError, ConfigError
from v2vcli.model import FrameGenerator, FrameOutput, StepResult, VideoModel, colorize_inputs

from .config import Vid2VidConfig, Vid2VidLossConfig
from .model import Vid2Vid

if TYPE_CHECKING:
    import torch
    from torch import nn

    from v2vcli.config import V2VConfig
    from v2vcli.data.clips import ClipBatch
    from v2vcli.data.layout import LabelSet

    from .conditioning import ConditioningSpec

__all__ = ["Vid2VidModel", "Vid2VidFrameGenerator", "combine_losses", "possible_temporal_scales"]

log = logging.getLogger(__name__)


def possible_temporal_scales(cfg: V2VConfig, history: int) -> list[int]:
    """Temporal scales whose span fits the longest clip (n_frames_total generated + history)."""
    from .discriminators import temporal_scale_plan

    if cfg.model.n_scales_temporal <= 0:
        return []
    plan = temporal_scale_plan(cfg.data.n_frames_total + history, cfg.model.n_scales_temporal, cfg.model.n_frames_D)
    return plan.active_indices


def combine_losses(parts: list[tuple[int, Any]]) -> tuple[Any, dict[str, Any]]:
    """Frame-weighted mean of :class:`~.losses.LossOutput` parts computed over ``n`` frames each.

    A term present in only some parts is the mean over those parts' frames.
    """
    terms: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for n, out in parts:
        for k, v in out.terms.items():
            terms[k] = terms[k] + n * v if k in terms else n * v
            counts[k] = counts.get(k, 0) + n
    merged = {k: v / counts[k] for k, v in terms.items()}
    import torch

    total = torch.stack(list(merged.values())).sum() if merged else None
    return total, merged


class Vid2VidFrameGenerator(FrameGenerator):
    """One frame at a time with the generator's sliding window of L label maps and L previous outputs."""

    def __init__(self, generator: nn.Module, spec: ConditioningSpec, n_past: int, device: Any,
                 history_frames: int, autocast: Any = None) -> None:
        self.G = generator
        self.spec = spec
        self.n_past = n_past
        self.device = device
        self.history_frames = history_frames
        self._autocast = autocast
        self.reset()

    def reset(self) -> None:
        self._labels: list[torch.Tensor] = []
        self._prev: list[torch.Tensor] = []

    def step(self, inputs: Mapping[str, Any], real: torch.Tensor | None = None) -> FrameOutput:
        import contextlib

        import torch

        from .generator import GeneratorInput

        cond = self.spec.build(inputs).to(self.device)
        if cond.dim() == 3:
            cond = cond.unsqueeze(0)
        self._labels = (self._labels + [cond])[-(self.n_past + 1):]
        if real is not None:
            frame = real.to(self.device).float()
            frame = frame.unsqueeze(0) if frame.dim() == 3 else frame
            self._prev = (self._prev + [frame])[-self.n_past:]
            return FrameOutput(frame)
        prev = torch.stack(self._prev[-self.n_past:], dim=1) if self._prev else None
        was_training = self.G.training
        self.G.eval()
        try:
            with torch.no_grad(), (self._autocast() if self._autocast else contextlib.nullcontext()):
                out = self.G(GeneratorInput(torch.stack(self._labels, dim=1), prev))
        finally:
            self.G.train(was_training)
        frame = out.final.float()
        self._prev = (self._prev + [frame])[-self.n_past:]
        extras = {"raw": out.raw.float(), "hallucinated": out.hallucinated.float(), "flow": out.flow.float(),
                  "mask": out.mask.float()}
        if out.warped is not None:
            extras["warped"] = out.warped.float()
        return FrameOutput(frame, extras)


class Vid2VidModel(Vid2Vid, VideoModel):
    """The trainable vid2vid model: C's network builder (:class:`.model.Vid2Vid`) + the training contract."""

    name: ClassVar[str] = "vid2vid"
    Config: ClassVar[type] = Vid2VidConfig
    LossConfig: ClassVar[type] = Vid2VidLossConfig

    #: A ready VGG loss module (e.g. random weights in tests); None builds it from loss.vgg_weights when needed.
    vgg_module: nn.Module | None = None

    def __init__(self, cfg: V2VConfig, label_set: LabelSet | None = None, device: Any = "cpu") -> None:
        self._init_contract(cfg, label_set, device)
        self.check_size(cfg)
        Vid2Vid.__init__(self, cfg, label_set, device)
        if cfg.train.activation_checkpointing:
            from .blocks import ResBlock

            for m in self.generator.modules():
                if isinstance(m, ResBlock):
                    m.checkpointing = True
        self.loss_fn: Any = None
        self.init_scales = 0  # coarse scales loaded by --init-from (frozen for niter_fix_global epochs)
        self._frozen = False
        self._g_call: Any = None

    # -- contract: description ---------------------------------------------------------------------------------
    @property
    def history_frames(self) -> int:
        return 0 if self.cfg.model.history == "empty" else self.cfg.model.n_past

    @property
    def needs_keypoints(self) -> bool:
        return bool(self.cfg.model.face_D) and float(self.cfg.loss.lambda_face) > 0

    @property
    def temporal_scales(self) -> list[int]:
        return possible_temporal_scales(self.cfg, self.history_frames)

    @property
    def loss_names(self) -> tuple[str, ...]:
        lc = self.cfg.loss
        names = ["G_GAN", "G_GAN_raw"]
        if lc.lambda_feat:
            names += ["G_feat", "G_feat_raw"]
        if lc.lambda_vgg:
            names += ["G_vgg", "G_vgg_raw"]
        names += [n for n, w in (("F_flow", lc.lambda_flow), ("F_warp", lc.lambda_warp),
                                 ("G_temporal", lc.lambda_temporal), ("F_mask", lc.lambda_mask)) if w]
        if self.needs_keypoints:
            names += ["G_GAN_face"] + (["G_feat_face"] if lc.lambda_feat else [])
        for k in self.temporal_scales:
            names += [f"G_GAN_T{k}"] + ([f"G_feat_T{k}"] if lc.lambda_feat else [])
        names += ["D_real", "D_fake", "D_fake_raw"]
        if self.needs_keypoints:
            names += ["D_real_face", "D_fake_face"]
        for k in self.temporal_scales:
            names += [f"D_real_T{k}", f"D_fake_T{k}"]
        return tuple(names)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"n_scales_spatial": int(self.cfg.model.n_scales_spatial), "init_scales": self.init_scales,
                "history_frames": self.history_frames, "input_nc": int(self.spec.input_nc)}

    def extra_training_state(self) -> dict[str, Any]:
        return {"init_scales": int(self.init_scales)}

    def load_extra_training_state(self, state: dict[str, Any]) -> None:
        self.init_scales = int(state.get("init_scales", self.init_scales))

    # -- contract: training setup ------------------------------------------------------------------------------
    @property
    def discriminators(self) -> Any:
        return self.nets.get("D")

    def build_training(self) -> None:
        import torch

        from .discriminators import Vid2VidDiscriminators
        from .losses import Vid2VidLoss

        if "D" not in self.nets:
            with torch.device(self.device):
                D = Vid2VidDiscriminators.from_config(self.cfg.model, label_channels=self.spec.input_nc,
                                                      image_channels=self.cfg.model.output_nc)
            if self.cfg.model.channels_last:
                D = D.to(memory_format=torch.channels_last)
            self.nets["D"] = D
        self.loss_fn = Vid2VidLoss.from_config(self.cfg.model, self.cfg.loss, vgg=self.vgg_module).to(self.device)
        self._g_call = torch.compile(self.generator) if self.cfg.train.compile else self.generator

    def optimizer_params(self) -> dict[str, list[Any]]:
        D = self.discriminators
        groups: dict[str, list[Any]] = {"G": list(self.generator.parameters()),
                                        "D": list(D.image.parameters()) + (list(D.face.parameters())
                                                                           if D.face is not None else [])}
        for k in self.temporal_scales:
            groups[f"D_T{k}"] = list(D.temporal[k].parameters())
        return groups

    def on_epoch(self, epoch: int) -> None:
        frozen = self.init_scales > 0 and epoch < self.cfg.train.niter_fix_global
        if frozen != self._frozen or epoch == 0:
            for s, scale in enumerate(self.generator.scales):
                scale.requires_grad_(not (frozen and s < self.init_scales))
            if frozen:
                log.info("epoch %d: training only the finest scale G%d (train.niter_fix_global %d)", epoch,
                         self.cfg.model.n_scales_spatial - 1, self.cfg.train.niter_fix_global)
            elif self._frozen:
                log.info("epoch %d: training all %d scales", epoch, self.cfg.model.n_scales_spatial)
            self._frozen = frozen

    def init_from(self, weights: dict[str, Any], meta: Any) -> None:
        """Load G0..G(s-1) of a run with one spatial scale fewer (``--init-from RUN``)."""
        from v2vcli.checkpoint import split_networks

        parts = split_networks(weights)
        src = parts.get("G") or parts.get("G_ema")
        if src is None:
            raise CheckpointError("--init-from: the checkpoint has no generator weights (G)")
        old = int(meta.extra.get("n_scales_spatial")
                  or (meta.config.get("model") or {}).get("n_scales_spatial", 0) or 0)
        new = int(self.cfg.model.n_scales_spatial)
        if old != new - 1:
            raise ConfigError(f"--init-from needs a run with model.n_scales_spatial={new - 1} (one fewer than this "
                              f"config's {new}), but it has {old}; set model.n_scales_spatial={old + 1}")
        own = self.generator.state_dict()
        take = {k: v for k, v in src.items() if k.split(".")[:2] in [["scales", str(s)] for s in range(old)]}
        want = [k for k in own if k.split(".")[:2] in [["scales", str(s)] for s in range(old)]]
        missing = [k for k in want if k not in take]
        bad = [k for k in want if k in take and tuple(take[k].shape) != tuple(own[k].shape)]
        if missing or bad:
            k = (missing or bad)[0]
            raise CheckpointError(f"--init-from: the coarser run's generator does not fit scales 0..{old - 1} of this "
                                  f"model (e.g. '{k}'); it must have the same ngf, n_downsample and inputs")
        self.generator.load_state_dict(take, strict=False)
        self.init_scales = old
        log.info("initialised G0..G%d from the coarser run (step %d)", old - 1, meta.step)

    # -- contract: one step --------------------------------------------------------------------------------------
    def train_step(self, batch: ClipBatch) -> StepResult:
        import torch

        from .discriminators import HEAD_KEYPOINTS
        from .generator import GeneratorInput

        b = batch.to(self.device, non_blocking=True)
        real = b.frames  # (B, T, 3, H, W) in [-1, 1]
        B, T = real.shape[:2]
        L = self.history_frames
        if T <= L:
            raise ConfigError(f"clips of {T} frames leave nothing to generate after {L} history frames")
        D, lossf = self.discriminators, self.loss_fn
        n_past = self.cfg.model.n_past
        nb = int(self.cfg.train.max_frames_backpropagate)
        cond = self.spec.build(b.inputs)  # (B, T, C, H, W)
        flow_ref = b.flow  # (B, T, 2, H, W) backward t→t-1
        heads = None
        if self.needs_keypoints and b.keypoints is not None:
            heads = b.keypoints[:, L:, list(HEAD_KEYPOINTS)]

        # 1. sequential generation with truncated back-propagation
        self.set_requires_grad(D, False)
        prev_frames: list[torch.Tensor] = [real[:, i] for i in range(L)]
        depth: list[int] = [0] * L
        outs = []
        with self.autocast():
            for t in range(L, T):
                labels = cond[:, max(0, t - n_past):t + 1]
                k = min(len(prev_frames), n_past)
                prev, reach = None, 0
                if k:
                    window = []
                    for j in range(k, 0, -1):
                        f, d = prev_frames[-j], depth[-j]
                        if f.requires_grad and j + d <= nb:
                            window.append(f)
                            reach = max(reach, j + d)
                        else:
                            window.append(f.detach())
                    prev = torch.stack(window, dim=1)
                out = self._g_call(GeneratorInput(labels, prev))
                outs.append(out)
                prev_frames.append(out.final)
                depth.append(reach)
            fake = torch.stack([o.final for o in outs], 1)  # (B, Tg, 3, H, W)
            raw = torch.stack([o.raw for o in outs], 1)
            flow = torch.stack([o.flow for o in outs], 1)
            mask = torch.stack([o.mask for o in outs], 1)
            real_g, labels_g, ref_g = real[:, L:], cond[:, L:], flow_ref[:, L:]
            fake_clip = torch.cat([real[:, :L], fake], 1) if L else fake

            # 2. generator losses
            if L:
                g_frame = lossf.generator_frame(D, labels=labels_g, real=real_g, fake=fake, raw=raw,
                                                real_prev=real[:, L - 1:T - 1],
                                                fake_prev=torch.stack(prev_frames[L - 1:T - 1], 1), flow=flow,
                                                mask=mask, flow_ref=ref_g, head_points=heads)
                parts = [(1, g_frame)]
            else:  # empty history: the first frame has no previous frame, so no flow/warp/temporal terms
                parts = [(B, lossf.generator_frame(D, labels=labels_g[:, :1], real=real_g[:, :1], fake=fake[:, :1],
                                                   head_points=None if heads is None else heads[:, :1]))]
                if T > 1:
                    parts.append((B * (T - 1), lossf.generator_frame(
                        D, labels=labels_g[:, 1:], real=real_g[:, 1:], fake=fake[:, 1:], raw=raw[:, 1:],
                        real_prev=real[:, :T - 1], fake_prev=fake[:, :T - 1], flow=flow[:, 1:], mask=mask[:, 1:],
                        flow_ref=ref_g[:, 1:], head_points=None if heads is None else heads[:, 1:])))
            _, g_terms = combine_losses(parts)
            active: list[int] = []
            skipped_t: list[int] = []
            if D.n_scales_temporal > 0:
                g_temp = lossf.generator_temporal(D, real_clip=real, fake_clip=fake_clip, flow_ref_clip=flow_ref)
                g_terms.update(g_temp.terms)
                active, skipped_t = g_temp.active_temporal, g_temp.skipped_temporal
            g_total = torch.stack(list(g_terms.values())).sum()
        ok_g = self.optimize("G", g_total)

        # 3. discriminator losses (fakes detached inside the loss functions)
        self.set_requires_grad(D, True)
        with self.autocast():
            d_frame = lossf.discriminator_frame(D, labels=labels_g, real=real_g, fake=fake.detach(),
                                                raw=raw.detach() if L else None, head_points=heads)
            d_terms = dict(d_frame.terms)
            if D.n_scales_temporal > 0:
                d_temp = lossf.discriminator_temporal(D, real_clip=real, fake_clip=fake_clip.detach(),
                                                      flow_ref_clip=flow_ref)
                d_terms.update(d_temp.terms)
            d_total = torch.stack(list(d_terms.values())).sum()
        ok_d = self.optimize(["D"] + [f"D_T{k}" for k in active], d_total)

        names = list(g_terms) + list(d_terms) + ["G_total", "D_total"]
        with torch.no_grad():
            gen_ref = ref_g[:, 1:] if not L else ref_g  # the first frame of an empty history has no flow
            gen_flow = flow[:, 1:] if not L else flow
            stats = [mask.float().mean(), (gen_flow.float() - gen_ref.float()).norm(dim=2).mean()
                     if gen_flow.shape[1] else mask.new_zeros(())]
        values = torch.stack([v.detach().float() for v in list(g_terms.values()) + list(d_terms.values())]
                             + [g_total.detach().float(), d_total.detach().float()] + stats).tolist()
        stat_values = values[len(names):]
        values = values[:len(names)]
        self.set_visuals(labels=colorize_inputs(b.inputs, self.label_set), generated=fake_clip.detach(), real=real)
        return StepResult(dict(zip(names, values)), frames=B * (T - L), skipped=not (ok_g and ok_d),
                          info={"temporal_active": active, "temporal_skipped": skipped_t, "clip_frames": T},
                          stats={"mask_mean": stat_values[0], "flow_epe": stat_values[1]})

    # -- contract: synthesis ---------------------------------------------------------------------------------------
    def frame_generator(self, use_ema: bool = True) -> Vid2VidFrameGenerator:
        G = self.eval_generator() if use_ema else self.generator
        return Vid2VidFrameGenerator(G, self.spec, self.cfg.model.n_past, self.device, self.history_frames,
                                     self.autocast)
