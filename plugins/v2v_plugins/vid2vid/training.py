"""vid2vid behind the model contract (:class:`v2vcli.model.VideoModel`): sequential generation, losses, steps.

One ``train_step`` trains one batch of clips (B, T frames, the first L = n_frames_G - 1 real unless the model
starts from an empty history) the way the official code trains a sequence:

1. The generated frames L..T-1 are cut into chunks of ``train.frames_per_step`` frames (the official
   n_frames_load). Each chunk is generated frame after frame from the label stack t-L..t and the L previous
   frames; every spatial scale keeps its *own* previous outputs (the official ``fake_B_pyr``). Previous frames
   from earlier chunks are detached; inside a chunk the window of previous frames is detached at every
   ``n_bp``-th frame, n_bp = 1 (always detached) for ``model.max_frames_backpropagate`` 1, the official default.
2. Generator loss of the chunk: the image-D terms (GAN, feature matching, VGG on final and raw), the flow, warp,
   temporal and mask terms of :mod:`.losses`, and the temporal-D terms. The temporal Ds see windows of a buffer
   that holds this sequence's earlier generated frames (detached, at most tD^(S_T-1)·(tD-1)) and the chunk's
   frames; windows end at the chunk's newest frame and every tD-th before it (the official
   ``get_skipped_frames``), and scale k is active once the buffer holds (tD-1)·tD^k + 1 frames. One Adam step
   of G (discriminators frozen meanwhile).
3. One step of the image (and face) D on real vs detached fakes, final and raw, and one step of each active
   temporal D (own Adam each: ``D``, ``D_T0``, ``D_T1`` ...).

``--init-from`` a run with one spatial scale fewer loads its G0..G(s-1) and every discriminator tensor whose name
and shape match (the official ``load_pretrain``); while the epoch is below ``model.niter_fix_global`` only the
new finest scale trains. torch is imported inside methods (plugin import stays light).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from v2vcli.errors import CheckpointError, ConfigError
from v2vcli.io.preview import colorize_inputs
from v2vcli.model import FrameGenerator, FrameOutput, StepResult, VideoModel

from .config import Vid2VidConfig, Vid2VidLossConfig
from .networks import Vid2Vid

if TYPE_CHECKING:
    import torch
    from torch import nn

    from v2v_plugins.gan.conditioning import ConditioningSpec
    from v2vcli.config import V2VConfig
    from v2vcli.data.clips import ClipBatch
    from v2vcli.data.layout import LabelSet

__all__ = ["Vid2VidModel", "Vid2VidFrameGenerator", "combine_losses", "possible_temporal_scales",
           "backpropagated_frames", "pyramid"]

log = logging.getLogger(__name__)


def possible_temporal_scales(cfg: V2VConfig) -> list[int]:
    """Temporal scales that some chunk of the schedule can feed: the buffer of a sequence reaches the longest clip
    of the schedule (``data.n_frames_total`` doubled every ``train.niter_step`` epochs, at most 128 - L frames)."""
    from v2vcli.data.clips import ClipSchedule

    from v2v_plugins.gan.discriminators import TemporalScale

    n, tD = int(cfg.model.n_scales_temporal), int(cfg.model.n_frames_D)
    if n <= 0:
        return []
    epochs = int(cfg.optim.niter) + int(cfg.optim.niter_decay)
    longest = ClipSchedule.from_config(cfg.data, cfg.train.niter_step, n_past=cfg.model.n_past).max_frames(epochs)
    return [k for k in range(n) if TemporalScale(k, tD ** k, tD).span <= longest]


def backpropagated_frames(max_frames_backpropagate: int, chunk: int, epoch: int, niter_step: int) -> int:
    """The official ``n_frames_bp``: 1 (previous outputs always detached) for max_frames_backpropagate 1; above,
    min(max, 2^k) after k niter_step boundaries, rounded so that it divides the chunk evenly."""
    if max_frames_backpropagate <= 1 or chunk <= 1:
        return 1
    k = epoch // niter_step if niter_step > 0 else 0
    nfb = min(int(max_frames_backpropagate), 2 ** min(k, 30))
    return max(1, chunk // math.ceil(chunk / nfb))


def pyramid(frame: torch.Tensor, n_scales: int) -> tuple[torch.Tensor, ...]:
    """A frame at every spatial scale, coarsest first (the official ``build_pyr``: 3×3 average pooling)."""
    from .generator import pyramid_down

    levels = [frame]
    for _ in range(n_scales - 1):
        levels.append(pyramid_down(levels[-1]))
    return tuple(reversed(levels))


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
        self._prev: list[tuple[torch.Tensor, ...]] = []  # per previous frame: every spatial scale, coarsest first

    @property
    def n_scales(self) -> int:
        return len(getattr(self.G, "scales", ())) or 1

    def step(self, inputs: Mapping[str, Any], real: torch.Tensor | None = None) -> FrameOutput:
        import torch

        from .generator import GeneratorInput

        cond = self.spec.build(inputs).to(self.device)
        if cond.dim() == 3:
            cond = cond.unsqueeze(0)
        self._labels = (self._labels + [cond])[-(self.n_past + 1):]
        if real is not None:
            frame = real.to(self.device).float()
            frame = frame.unsqueeze(0) if frame.dim() == 3 else frame
            entry = pyramid(frame, self.n_scales)
            if not self._prev and self.history_frames > 0:
                # a model trained with L real frames starting from a single given frame (--first-frame IMAGE):
                # it fills the whole history, rather than the zeros an empty history starts with
                self._prev = [entry] * self.n_past
            else:
                self._prev = (self._prev + [entry])[-self.n_past:]
            return FrameOutput(frame)
        prev = prev_scales = None
        if self._prev:
            prev_scales = [torch.stack([p[s] for p in self._prev], dim=1) for s in range(self.n_scales)]
            prev = prev_scales[-1]
        was_training = self.G.training
        self.G.eval()
        try:
            with torch.no_grad(), (self._autocast() if self._autocast else contextlib.nullcontext()):
                out = self.G(GeneratorInput(torch.stack(self._labels, dim=1), prev,
                                            prev_scales if self.n_scales > 1 else None))
        finally:
            self.G.train(was_training)
        frame = out.final.float()
        scales = tuple(o.final.float() for o in out.scales) if len(out.scales) == self.n_scales else (frame,)
        self._prev = (self._prev + [scales])[-self.n_past:]
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
        self.loss_fn: Any = None
        self.init_scales = 0  # coarse scales loaded by --init-from (frozen for niter_fix_global epochs)
        self._frozen = False
        self.chunk_generator: Any = None  # made by build_training()
        self._epoch = 0
        self._init_d: dict[str, Any] | None = None  # discriminator tensors of --init-from, loaded with D

    # -- configuration rules -------------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: V2VConfig) -> None:
        """Every temporal scale must be able to become active within the schedule (else its D never trains)."""
        n = int(cfg.model.n_scales_temporal)
        possible = possible_temporal_scales(cfg)
        if len(possible) < n:
            from v2vcli.data.clips import ClipSchedule

            from v2v_plugins.gan.discriminators import TemporalScale

            epochs = int(cfg.optim.niter) + int(cfg.optim.niter_decay)
            longest = ClipSchedule.from_config(cfg.data, cfg.train.niter_step,
                                               n_past=cfg.model.n_past).max_frames(epochs)
            k = len(possible)
            need = TemporalScale(k, cfg.model.n_frames_D ** k, cfg.model.n_frames_D).span
            raise ConfigError(f"model.n_scales_temporal={n}: temporal scale {k} needs {need} generated frames in a "
                              f"sequence, but the schedule never trains on more than {longest} "
                              f"(data.n_frames_total {cfg.data.n_frames_total} doubled every train.niter_step "
                              f"{cfg.train.niter_step} epochs over {epochs} epochs, at most 128 - "
                              f"{cfg.model.n_past}); set model.n_scales_temporal={k} or train on longer clips")

    def check_schedule(self, longest_clip: int) -> None:
        """Warn about temporal scales this dataset can never feed (its sequences are too short for their span)."""
        from v2v_plugins.gan.discriminators import TemporalScale

        tD = int(self.cfg.model.n_frames_D)
        never = [k for k in range(int(self.cfg.model.n_scales_temporal))
                 if TemporalScale(k, tD ** k, tD).span > longest_clip]
        if never:
            log.warning("temporal scale(s) %s never train on this dataset: the longest training clip has %d generated "
                        "frames, scale %d needs %d; use longer sequences or set model.n_scales_temporal=%d",
                        never, longest_clip, never[0], TemporalScale(never[0], tD ** never[0], tD).span, never[0])

    @classmethod
    def plan_epoch(cls, cfg: V2VConfig, epoch: int, clip_frames: int, *, init_from: bool = False) -> dict[str, Any]:
        """What one training sequence of ``clip_frames`` generated frames does in ``epoch`` (``v2v train --plan``)."""
        from v2v_plugins.gan.discriminators import TemporalScale, temporal_buffer_frames, temporal_window_ends

        chunk = max(1, min(int(cfg.train.frames_per_step), clip_frames))
        steps = math.ceil(clip_frames / chunk)
        n_t, tD = int(cfg.model.n_scales_temporal), int(cfg.model.n_frames_D)
        keep = temporal_buffer_frames(n_t, tD)
        active: set[int] = set()
        done = 0
        for c in range(steps):  # replay the buffer of one sequence chunk by chunk
            m = min(chunk, clip_frames - c * chunk)
            buf = min(done, keep) + m
            for k in range(n_t):
                if temporal_window_ends(buf, m, TemporalScale(k, tD ** k, tD)):
                    active.add(k)
            done += m
        S = int(cfg.model.n_scales_spatial)
        frozen = init_from and S > 1 and epoch < int(cfg.model.niter_fix_global)
        return {"frames_per_step": chunk, "g_steps_per_sequence": steps, "d_steps_per_sequence": steps,
                "backpropagated_frames": backpropagated_frames(int(cfg.model.max_frames_backpropagate), chunk, epoch,
                                                               int(cfg.train.niter_step)),
                "temporal_scales": sorted(active), "temporal_scales_configured": list(range(n_t)),
                "spatial_scales": [S - 1] if frozen else list(range(S))}

    # -- contract: description ---------------------------------------------------------------------------------
    @property
    def history_frames(self) -> int:
        return 0 if self.cfg.model.history == "empty" else self.cfg.model.n_past

    @property
    def needs_keypoints(self) -> bool:
        return bool(self.cfg.model.face_D) and float(self.cfg.loss.lambda_face) > 0

    @property
    def temporal_scales(self) -> list[int]:
        return possible_temporal_scales(self.cfg)

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

        from v2v_plugins.gan.discriminators import Vid2VidDiscriminators
        from v2v_plugins.gan.losses import Vid2VidLoss

        if "D" not in self.nets:
            with torch.device(self.device):
                D = Vid2VidDiscriminators.from_config(self.cfg.model, label_channels=self.spec.input_nc,
                                                      image_channels=self.cfg.model.output_nc)
            if self.cfg.model.channels_last:
                D = D.to(memory_format=torch.channels_last)
            self.nets["D"] = D
            if self._init_d:
                self._load_init_discriminators(D, self._init_d)
                self._init_d = None
        self.loss_fn = Vid2VidLoss.from_config(self.cfg.model, self.cfg.loss, vgg=self.vgg_module).to(self.device)
        if "densepose" in self.spec.inputs:  # the official face crop: centred on the DensePose head parts (I channel)
            self.loss_fn.face_part_channel = self.spec.offset("densepose") + 2
        from .chunk import ChunkGenerator

        self.chunk_generator = ChunkGenerator(self.generator,
                                              torch.compile(self.generator) if self.cfg.train.compile else None)

    def optimizer_params(self) -> dict[str, list[Any]]:
        D = self.discriminators
        groups: dict[str, list[Any]] = {"G": list(self.generator.parameters()),
                                        "D": list(D.image.parameters()) + (list(D.face.parameters())
                                                                           if D.face is not None else [])}
        for k in self.temporal_scales:
            groups[f"D_T{k}"] = list(D.temporal[k].parameters())
        return groups

    def on_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)
        frozen = self.init_scales > 0 and epoch < self.cfg.model.niter_fix_global
        if frozen != self._frozen or epoch == 0:
            for s, scale in enumerate(self.generator.scales):
                scale.requires_grad_(not (frozen and s < self.init_scales))
            if frozen:
                log.info("epoch %d: training only the finest scale G%d (model.niter_fix_global %d)", epoch,
                         self.cfg.model.n_scales_spatial - 1, self.cfg.model.niter_fix_global)
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
        self._init_d = parts.get("D")
        log.info("initialised G0..G%d from the coarser run (step %d)", old - 1, meta.step)

    @staticmethod
    def _load_init_discriminators(D: nn.Module, src: dict[str, Any]) -> None:
        """The official ``load_pretrain`` also loads D, D_T and D_f, keeping what fits: every tensor whose name and
        shape match (a finer run has more D scales; they start fresh)."""
        own = D.state_dict()
        take = {k: v for k, v in src.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
        D.load_state_dict(take, strict=False)
        log.info("initialised %d of %d discriminator tensors from the coarser run (the rest start fresh)", len(take),
                 len(own))

    # -- contract: one step --------------------------------------------------------------------------------------
    def train_step(self, batch: ClipBatch) -> StepResult:
        import torch

        b = batch.to(self.device, non_blocking=True)
        real = b.frames  # (B, T, 3, H, W) in [-1, 1]
        B, T = real.shape[:2]
        L = self.history_frames
        if T <= L:
            raise ConfigError(f"clips of {T} frames leave nothing to generate after {L} history frames")
        chunk = max(1, min(int(self.cfg.train.frames_per_step), T - L))
        state = _SequenceState(self, b, chunk)
        for c0 in range(L, T, chunk):
            state.train_chunk(c0, min(T, c0 + chunk))
        return state.result()

    # -- contract: synthesis ---------------------------------------------------------------------------------------
    def frame_generator(self, use_ema: bool = True) -> Vid2VidFrameGenerator:
        G = self.eval_generator() if use_ema else self.generator
        return Vid2VidFrameGenerator(G, self.spec, self.cfg.model.n_past, self.device, self.history_frames,
                                     self.autocast)


class _SequenceState:
    """One batch of sequences trained chunk by chunk: the history carried between chunks (per spatial scale,
    detached), the temporal-D buffer (real, fake, reference flow; detached) and the logged values."""

    def __init__(self, model: Vid2VidModel, batch: ClipBatch, chunk: int) -> None:
        from v2v_plugins.gan.discriminators import HEAD_KEYPOINTS, temporal_buffer_frames

        self.m, self.b, self.chunk = model, batch, chunk
        cfg = model.cfg
        self.real = batch.frames
        self.L = model.history_frames
        self.n_past = int(cfg.model.n_past)
        self.S = int(cfg.model.n_scales_spatial)
        self.n_bp = backpropagated_frames(int(cfg.model.max_frames_backpropagate), chunk, model._epoch,
                                          int(cfg.train.niter_step))
        self.heads = None
        if model.needs_keypoints and batch.keypoints is not None:
            self.heads = batch.keypoints[:, :, list(HEAD_KEYPOINTS)]
        # history: per previous frame, every scale (coarsest first); the first L are the real frames
        self.hist: list[tuple[Any, ...]] = [pyramid(self.real[:, i], self.S) for i in range(self.L)]
        self.keep = temporal_buffer_frames(model.discriminators.n_scales_temporal, model.discriminators.n_frames_d)
        self.buf: tuple[Any, Any, Any] | None = None  # earlier chunks' (real, fake, flow_ref), detached
        self.generated: list[Any] = []
        self.logged: list[tuple[int, dict[str, Any], Any, Any]] = []  # (frames, terms, G total, D total)
        self.stats: list[tuple[int, Any, Any]] = []
        self.flags: list[Any] = []
        self.active: set[int] = set()

    def _labels(self, lo: int, hi: int) -> Any:
        return self.m.spec.build({k: v[:, lo:hi] for k, v in self.b.inputs.items()})

    def train_chunk(self, c0: int, c1: int) -> None:
        import torch

        from v2v_plugins.gan.parallel import parallel_discriminators

        m, D, lossf = self.m, self.m.discriminators, self.m.loss_fn
        real, L, n_past = self.real, self.L, self.n_past
        n, B = c1 - c0, real.shape[0]
        lo = max(0, c0 - n_past)
        cond = self._labels(lo, c1)  # (B, c1-lo, C, H, W): the chunk's frames and their past labels
        flow_ref = self.b.flow
        heads = None if self.heads is None else self.heads[:, c0:c1]
        before = self.hist[-1][-1] if self.hist else None  # x_{c0-1}: real, or the previous chunk's last frame

        # 1. sequential generation; the window of previous frames is cut from the graph every n_bp frames. One
        # call for the chunk: in a distributed run it goes through G's DDP wrapper, which averages G's gradients
        # during the backward below (parameters the chunk leaves unused, e.g. coarse heads whose outputs feed only
        # detached history, keep no gradient)
        m.set_requires_grad(D, False)
        G = m.data_parallel("G", m.chunk_generator, find_unused=True)
        with m.autocast():
            fake, raw, flow, mask, hist = G(cond, self.hist, n, n_past, self.n_bp)
            real_g, labels_g, ref_g = real[:, c0:c1], cond[:, c0 - lo:], flow_ref[:, c0:c1]

            # 2. generator losses
            if before is not None:
                fake_prev = torch.cat([before.unsqueeze(1), fake[:, :-1]], 1)
                parts = [(1, lossf.generator_frame(D, labels=labels_g, real=real_g, fake=fake, raw=raw,
                                                   real_prev=real[:, c0 - 1:c1 - 1], fake_prev=fake_prev, flow=flow,
                                                   mask=mask, flow_ref=ref_g, head_points=heads))]
            else:  # the first frame of an empty history: nothing before it, so no flow/warp/temporal/mask terms
                parts = [(B, lossf.generator_frame(D, labels=labels_g[:, :1], real=real_g[:, :1], fake=fake[:, :1],
                                                   raw=raw[:, :1], head_points=None if heads is None else heads[:, :1]))]
                if n > 1:
                    parts.append((B * (n - 1), lossf.generator_frame(
                        D, labels=labels_g[:, 1:], real=real_g[:, 1:], fake=fake[:, 1:], raw=raw[:, 1:],
                        real_prev=real[:, c0:c1 - 1], fake_prev=fake[:, :-1], flow=flow, mask=mask,
                        flow_ref=ref_g[:, 1:], head_points=None if heads is None else heads[:, 1:])))
            _, g_terms = combine_losses(parts)
            active: list[int] = []
            if D.n_scales_temporal > 0:
                if self.buf is None:
                    t_real, t_fake, t_flow = real_g, fake, ref_g
                else:
                    t_real = torch.cat([self.buf[0], real_g], 1)
                    t_fake = torch.cat([self.buf[1].to(fake.dtype), fake], 1)
                    t_flow = torch.cat([self.buf[2], ref_g], 1)
                g_temp = lossf.generator_temporal(D, real_clip=t_real, fake_clip=t_fake, flow_ref_clip=t_flow,
                                                  new_frames=n)
                g_terms.update(g_temp.terms)
                active = g_temp.active_temporal
            g_total = torch.stack(list(g_terms.values())).sum()
        self.flags.append(m.optimize("G", g_total))

        # 3. discriminator losses (fakes detached inside the loss functions); each discriminator through its own DDP
        # wrapper in a distributed run, so only the active temporal Ds take part
        m.set_requires_grad(D, True)
        D = parallel_discriminators(D, m.data_parallel)
        with m.autocast():
            d_terms = dict(lossf.discriminator_frame(D, labels=labels_g, real=real_g, fake=fake.detach(),
                                                     raw=raw.detach(), head_points=heads).terms)
            if active:
                d_temp = lossf.discriminator_temporal(D, real_clip=t_real, fake_clip=t_fake.detach(),
                                                      flow_ref_clip=t_flow, new_frames=n)
                d_terms.update(d_temp.terms)
            d_total = torch.stack(list(d_terms.values())).sum()
        self.flags.append(m.optimize(["D"] + [f"D_T{k}" for k in active], d_total))
        self.active.update(active)

        # 4. carry over: the last L frames of every scale (detached by the chunk generator) and the temporal-D buffer
        self.hist = hist
        if D.n_scales_temporal > 0 and self.keep > 0:
            self.buf = (t_real[:, -self.keep:].detach(), t_fake[:, -self.keep:].detach(),
                        t_flow[:, -self.keep:].detach())
        self.generated.append(fake.detach())
        self.logged.append((n, {k: v.detach() for k, v in g_terms.items()} | {k: v.detach() for k, v in
                                                                               d_terms.items()},
                            g_total.detach(), d_total.detach()))
        with torch.no_grad():
            g_ref, g_flow = (ref_g, flow) if before is not None else (ref_g[:, 1:], flow)
            epe = ((g_flow.float() - g_ref.float()).norm(dim=2).mean() if g_flow.shape[1]
                   else mask.new_zeros((), dtype=torch.float32))
            mask_mean = mask.float().mean() if mask.shape[1] else mask.new_zeros((), dtype=torch.float32)
            self.stats.append((n, mask_mean, epe))

    def result(self) -> StepResult:
        """Frame-weighted means over the chunks, read with one host sync."""
        import torch

        m, real, L = self.m, self.real, self.L
        B, T = real.shape[:2]
        total = sum(n for n, *_ in self.logged)
        sums: dict[str, Any] = {}
        counts: dict[str, int] = {}
        for n, terms, _, _ in self.logged:
            for k, v in terms.items():
                sums[k] = sums[k] + n * v.float() if k in sums else n * v.float()
                counts[k] = counts.get(k, 0) + n
        names = list(sums) + ["G_total", "D_total", "mask_mean", "flow_epe"]
        values = [sums[k] / counts[k] for k in sums]
        values.append(sum(n * g.float() for n, _, g, _ in self.logged) / total)
        values.append(sum(n * d.float() for n, _, _, d in self.logged) / total)
        values.append(sum(n * mm for n, mm, _ in self.stats) / total)
        values.append(sum(n * e for n, _, e in self.stats) / total)
        floats = torch.stack([v.detach().float().reshape(()) for v in values]).tolist()
        out = dict(zip(names, floats))
        stats = {"mask_mean": out.pop("mask_mean"), "flow_epe": out.pop("flow_epe")}
        fake_clip = torch.cat(([real[:, :L]] if L else []) + self.generated, 1)
        m.set_visuals(labels=colorize_inputs(self.b.inputs, m.label_set), generated=fake_clip, real=real)
        n_t = m.discriminators.n_scales_temporal
        return StepResult(out, frames=B * (T - L), skipped=not all(bool(f) for f in self.flags),
                          info={"temporal_active": sorted(self.active),
                                "temporal_skipped": [k for k in range(n_t) if k not in self.active],
                                "clip_frames": T, "frames_per_step": self.chunk, "chunks": len(self.logged)},
                          stats=stats)
