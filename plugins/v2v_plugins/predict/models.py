"""The trainable prediction models ``label_predictor`` and ``frame_predictor`` behind the model contract.

Both are sequential generators over the future (paper §5): from the K previous states and their backward flows,
:class:`~.networks.PredictorNet` predicts the next state as ``m·h + (1-m)·warp(y_{t-1}, w)``.

* ``label_predictor``: states are one-hot semantic maps (probabilities once predicted). Loss: cross-entropy of
  the predicted probabilities against the next real map (``P_ce``), L1 of the predicted flow against the
  reference flow (``P_flow``), optionally a conditional PatchGAN on (previous map, next map) (``G_GAN``,
  ``G_feat``; ``loss.lambda_gan`` > 0).
* ``frame_predictor``: states are RGB frames in [-1, 1], for data without labels. Loss: L1 to the next frame
  (``P_l1``), ``P_flow`` and the optional GAN on (previous frame, next frame).

One ``train_step`` takes clips of K real frames followed by ``data.n_frames_total`` frames predicted
autoregressively, each fed back as history (its predicted flow as that state's flow), exactly as at prediction
time; gradients reach back through at most ``model.max_frames_backpropagate`` - 1 predictions (1: detached).

:class:`Rollout` is the inference API (observe real states, then predict), also behind ``frame_generator()``.
torch is imported inside functions: the plugin module stays light.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from v2v_plugins.gan.conditioning import one_hot_labels
from v2vcli.errors import ConfigError, DatasetError
from v2vcli.io.preview import colorize_inputs
from v2vcli.model import FrameGenerator, FrameOutput, StepResult, VideoModel

if TYPE_CHECKING:
    import torch
    from torch import nn

    from v2vcli.config import V2VConfig
    from v2vcli.data.clips import ClipBatch
    from v2vcli.data.layout import LabelSet

    from .networks import PredictionOutput

__all__ = [
    "PredictorConfig",
    "PredictorLossConfig",
    "LabelPredictor",
    "FramePredictor",
    "Rollout",
    "RolloutFrameGenerator",
]

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class PredictorConfig:
    """The ``model`` section of ``label_predictor`` / ``frame_predictor``."""

    name: str = "label_predictor"
    n_past: int = 2  # K: past states (and their flows) the generator sees
    ngf: int = 32
    n_downsample: int = 2
    n_blocks: int = 4
    norm: Literal["instance", "batch"] = "instance"
    init_std: float = 0.02
    flow_prior: Literal["last", "zero"] = "last"  # predicted flow = last observed flow + residual, or residual only
    mask_bias: float = -2.0  # initial occlusion-mask logit (negative: start by warping)
    label_nc: int = 0  # label_predictor: 0 = from the dataset's label set (a check otherwise)
    # optional GAN (loss.lambda_gan > 0): conditional PatchGAN on (previous state, next state)
    num_D: int = 1
    n_layers_D: int = 2
    ndf: int = 32
    flow_estimator: str = "farneback"  # flow of a plain video context at prediction time (no flow/ modality)
    max_frames_backpropagate: int = 1  # official meaning: 1 = predictions fed back detached; k: k - 1 attached

    def __post_init__(self) -> None:
        if self.n_past < 1:
            raise ConfigError(f"model.n_past must be at least 1, got {self.n_past}")
        for key in ("ngf", "num_D", "n_layers_D", "ndf"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be at least 1, got {getattr(self, key)}")
        if self.n_downsample < 0 or self.n_blocks < 0:
            raise ConfigError("model.n_downsample and model.n_blocks must be 0 or more")
        if self.max_frames_backpropagate < 0:
            raise ConfigError(f"model.max_frames_backpropagate must be 0 or more, got {self.max_frames_backpropagate}")


@dataclass(kw_only=True)
class PredictorLossConfig:
    """The ``loss`` section of the predictors (a weight of 0 disables its term)."""

    lambda_ce: float = 1.0  # label_predictor: cross-entropy of the next map
    lambda_l1: float = 10.0  # frame_predictor: L1 of the next frame (images in [-1, 1])
    lambda_flow: float = 0.1  # L1 (pixels) of the predicted flow vs the reference flow
    lambda_gan: float = 0.0  # optional GAN; 0 = off (no discriminator is built)
    lambda_feat: float = 10.0  # feature matching (relative to lambda_gan), when the GAN is on
    gan_mode: Literal["lsgan", "hinge", "bce"] = "lsgan"

    def __post_init__(self) -> None:
        for key in ("lambda_ce", "lambda_l1", "lambda_flow", "lambda_gan", "lambda_feat"):
            if getattr(self, key) < 0:
                raise ConfigError(f"loss.{key} must be 0 or more, got {getattr(self, key)}")


class Rollout:
    """Autoregressive prediction with a sliding window of K states and flows (no gradients).

    ``observe(state, flow)`` appends a real state ((B, C, H, W): one-hot map or RGB in [-1, 1]) with its backward
    flow (B, 2, H, W) (None: zero, e.g. at a sequence start); ``predict()`` predicts the next state, appends it
    with its predicted flow and returns the :class:`~.networks.PredictionOutput`. Until K states are observed the
    oldest one is repeated with zero flow.
    """

    def __init__(self, net: nn.Module, n_past: int, device: Any) -> None:
        self.net, self.n_past, self.device = net, n_past, device
        self.reset()

    def reset(self) -> None:
        self.states: list[torch.Tensor] = []
        self.flows: list[torch.Tensor] = []

    def observe(self, state: torch.Tensor, flow: torch.Tensor | None = None) -> None:
        import torch

        state = state.to(self.device).float()
        state = state.unsqueeze(0) if state.dim() == 3 else state
        if flow is None:
            flow = torch.zeros(state.shape[0], 2, *state.shape[-2:], device=self.device)
        flow = flow.to(self.device).float()
        flow = flow.unsqueeze(0) if flow.dim() == 3 else flow
        self.states = (self.states + [state])[-self.n_past:]
        self.flows = (self.flows + [flow])[-self.n_past:]

    def window(self) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        if not self.states:
            raise ConfigError("prediction needs at least one observed frame")
        pad = self.n_past - len(self.states)
        states = [self.states[0]] * pad + self.states
        flows = [torch.zeros_like(self.flows[0])] * pad + self.flows
        return torch.stack(states, 1), torch.stack(flows, 1)

    def predict(self) -> PredictionOutput:
        import torch

        states, flows = self.window()
        was = self.net.training
        self.net.eval()
        try:
            with torch.no_grad():
                out = self.net(states, flows)
        finally:
            self.net.train(was)
        self.states = (self.states + [out.state.float()])[-self.n_past:]
        self.flows = (self.flows + [out.flow.float()])[-self.n_past:]
        return out


class RolloutFrameGenerator(FrameGenerator):
    """The contract's frame generator over a :class:`Rollout`.

    ``step(inputs, real=frame)`` observes that frame (the label predictor observes ``inputs["seg"]``; a
    ``inputs["flow"]`` (B, 2, H, W) is used as its flow, else zero flow); ``step(inputs)`` predicts the next
    state from the past only (the frame's own conditioning is ignored: it is the future). The returned frame is
    the state as a picture (the label map in the palette's colours, or the RGB frame); extras hold ``labels``
    (argmax ids), ``probs``, ``flow`` and ``mask``.
    """

    def __init__(self, model: _PredictorBase, net: nn.Module) -> None:
        self.model = model
        self.rollout = Rollout(net, model.cfg.model.n_past, model.device)
        self.history_frames = model.history_frames

    def reset(self) -> None:
        self.rollout.reset()

    def step(self, inputs: Mapping[str, Any], real: torch.Tensor | None = None) -> FrameOutput:
        flow = inputs.get("flow")
        if real is not None:
            state = self.model.state_from(inputs, real)
            self.rollout.observe(state, flow)
            return FrameOutput(self.model.picture(state))
        out = self.rollout.predict()
        extras = {"flow": out.flow, "mask": out.mask}
        if self.model.kind == "labels":
            extras["probs"] = out.state
            extras["labels"] = out.state.argmax(1)
        return FrameOutput(self.model.picture(out.state), extras)


class _PredictorBase(VideoModel):
    """What both predictors share: the network, the autoregressive training step, the optional GAN."""

    Config: ClassVar[type] = PredictorConfig
    LossConfig: ClassVar[type] = PredictorLossConfig
    kind: ClassVar[str] = ""

    def __init__(self, cfg: V2VConfig, label_set: LabelSet | None = None, device: Any = "cpu") -> None:
        import torch

        from .networks import PredictorNet

        super().__init__(cfg, label_set, device)
        m = cfg.model
        if m.name != self.name:
            raise ConfigError(f"model.name is '{m.name}' but this is the '{self.name}' model")
        k = 2 ** m.n_downsample
        w, h = cfg.data.size
        if w % k or h % k:
            raise ConfigError(f"size {w}x{h} does not fit model.n_downsample={m.n_downsample}: width and height must "
                              f"be multiples of {k}")
        self.state_nc = self._state_nc()
        with torch.device(self.device):
            self.nets: dict[str, nn.Module] = {"G": PredictorNet(
                state_nc=self.state_nc, n_past=m.n_past, kind=self.kind, ngf=m.ngf, n_downsample=m.n_downsample,
                n_blocks=m.n_blocks, norm=m.norm, flow_prior=m.flow_prior, mask_bias=m.mask_bias,
                init_std=m.init_std)}
        self.loss_fn: Any = None

    # -- what the two kinds differ in ------------------------------------------------------------------------------
    @abstractmethod
    def _state_nc(self) -> int:
        """Channels of one state."""

    @abstractmethod
    def states_of(self, batch: ClipBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(states (B, T, C, H, W), targets) of a device batch."""

    @abstractmethod
    def state_from(self, inputs: Mapping[str, Any], real: torch.Tensor) -> torch.Tensor:
        """One observed state (B, C, H, W) from a frame's modalities and RGB frame."""

    @abstractmethod
    def picture(self, state: torch.Tensor) -> torch.Tensor:
        """A state as an RGB picture (B, 3, H, W) in [-1, 1]."""

    @abstractmethod
    def reconstruction(self, out: PredictionOutput, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted reconstruction terms of one predicted step against its target."""

    # -- contract --------------------------------------------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        return dict(self.nets)

    @property
    def history_frames(self) -> int:
        return int(self.cfg.model.n_past)

    @property
    def needs_flow(self) -> bool:
        return True

    @property
    def gan(self) -> bool:
        return float(self.cfg.loss.lambda_gan) > 0

    @property
    @abstractmethod
    def recon_names(self) -> tuple[str, ...]:
        """Names of the reconstruction terms."""

    @property
    def loss_names(self) -> tuple[str, ...]:
        lc = self.cfg.loss
        names = list(self.recon_names) + (["P_flow"] if lc.lambda_flow else [])
        if self.gan:
            names += ["G_GAN"] + (["G_feat"] if lc.lambda_feat else []) + ["D_real", "D_fake"]
        return tuple(names)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"kind": self.kind, "n_past": int(self.cfg.model.n_past), "state_nc": int(self.state_nc)}

    def build_training(self) -> None:
        import torch

        if not self.gan:
            return
        from v2v_plugins.gan.discriminators import Vid2VidDiscriminators
        from v2v_plugins.gan.losses import Vid2VidLoss

        m, lc = self.cfg.model, self.cfg.loss
        if "D" not in self.nets:
            with torch.device(self.device):
                self.nets["D"] = Vid2VidDiscriminators(label_channels=self.state_nc, image_channels=self.state_nc,
                                                       ndf=m.ndf, n_layers_d=m.n_layers_D, num_d=m.num_D,
                                                       n_scales_temporal=0)
        self.loss_fn = Vid2VidLoss(gan_mode=lc.gan_mode, lambda_feat=lc.lambda_feat, lambda_vgg=0, lambda_flow=0,
                                   lambda_warp=0, lambda_temporal=0, lambda_mask=0).to(self.device)

    def train_step(self, batch: ClipBatch) -> StepResult:
        import torch

        from v2v_plugins.gan.parallel import parallel_discriminators

        b = batch.to(self.device, non_blocking=True)
        K = self.history_frames
        T = b.length
        if T <= K:
            raise ConfigError(f"clips of {T} frames leave nothing to predict after {K} past frames (model.n_past); "
                              f"use longer sequences or a smaller model.n_past")
        if b.flow is None:
            raise DatasetError("the predictors need the reference flow; keep the flow/ modality or set data.flow")
        states, targets = self.states_of(b)  # (B, T, C, H, W)
        flow_ref = b.flow
        lc = self.cfg.loss
        nb = int(self.cfg.model.max_frames_backpropagate) - 1  # official meaning: 1 = always detached
        G = self.data_parallel("G", self.nets["G"])  # a DDP wrapper in a distributed run: every parameter is used
        D = self.nets.get("D")                          # by every frame, so the frames' forwards may come before
        #                                                 the one backward
        if D is not None:
            self.set_requires_grad(D, False)
        hist = [states[:, i] for i in range(K)]
        hist_flow = [flow_ref[:, i] for i in range(K)]
        depth = [0] * K
        sums: dict[str, torch.Tensor] = {}
        fakes, prevs, reals = [], [], []
        mask_sum = 0.0
        with self.autocast():
            for t in range(K, T):
                window, reach = [], 0
                for s, d in zip(hist[-K:], depth[-K:]):
                    if s.requires_grad and d <= nb:  # d: predictions in this state's attached chain
                        window.append(s)
                        reach = max(reach, d)
                    else:
                        window.append(s.detach())
                out = G(torch.stack(window, 1), torch.stack(hist_flow[-K:], 1))
                terms = self.reconstruction(out, targets[:, t])
                if lc.lambda_flow:
                    terms["P_flow"] = lc.lambda_flow * (out.flow.float() - flow_ref[:, t]).abs().mean()
                for k, v in terms.items():
                    sums[k] = sums[k] + v if k in sums else v
                if D is not None:
                    fakes.append(out.state)
                    prevs.append(hist[-1].detach())
                    reals.append(states[:, t])
                hist.append(out.state)
                hist_flow.append(out.flow.detach().float())
                depth.append(reach + 1)
                mask_sum += float(out.mask.detach().float().mean())
            n = T - K
            g_terms = {k: v / n for k, v in sums.items()}
            if D is not None:
                g = self.loss_fn.generator_frame(D, labels=torch.cat(prevs), real=torch.cat(reals),
                                                 fake=torch.cat(fakes))
                for k, v in g.terms.items():
                    g_terms[k] = lc.lambda_gan * v
            g_total = torch.stack(list(g_terms.values())).sum()
        ok_g = self.optimize("G", g_total)
        d_terms: dict[str, torch.Tensor] = {}
        ok_d: Any = True  # bool or StepFlag: read together with the logged values below
        if D is not None:
            self.set_requires_grad(D, True)
            with self.autocast():
                d = self.loss_fn.discriminator_frame(parallel_discriminators(D, self.data_parallel),
                                                     labels=torch.cat(prevs), real=torch.cat(reals),
                                                     fake=torch.cat(fakes).detach())
            d_terms = {k: v for k, v in d.terms.items() if k in ("D_real", "D_fake")}
            ok_d = self.optimize("D", d.total)
            d_total = d.total
        names = list(g_terms) + list(d_terms) + ["G_total"] + (["D_total"] if D is not None else [])
        tensors = list(g_terms.values()) + list(d_terms.values()) + [g_total] + ([d_total] if D is not None else [])
        values = torch.stack([v.detach().float() for v in tensors]).tolist()
        with torch.no_grad():
            pred = torch.stack([self.picture(s.detach()) for s in hist[K:]], 1)
            gen = torch.cat([torch.stack([self.picture(s) for s in states[:1, :K].unbind(1)], 1)[:1], pred[:1]], 1)
        self.set_visuals(labels=colorize_inputs(b.inputs, self.label_set)[:1] if self._has_picture_inputs(b)
                         else b.frames[:1], generated=gen, real=b.frames[:1])
        return StepResult(dict(zip(names, values)), frames=int(b.batch_size * n), skipped=not (ok_g and ok_d),
                          info={"clip_frames": int(T)}, stats={"mask_mean": mask_sum / n})

    def _has_picture_inputs(self, b: ClipBatch) -> bool:
        return any(m in b.inputs for m in ("seg", "pose", "densepose", "edges", "edge_dist"))

    def frame_generator(self, use_ema: bool = True) -> RolloutFrameGenerator:
        return RolloutFrameGenerator(self, self.eval_generator() if use_ema else self.nets["G"])

    def rollout(self, use_ema: bool = True) -> Rollout:
        """A fresh :class:`Rollout` over the EMA generator (or G)."""
        return Rollout(self.eval_generator() if use_ema else self.nets["G"], self.history_frames, self.device)


class LabelPredictor(_PredictorBase):
    """Future semantic maps: K past one-hot maps + K past flows → the next map (model ``label_predictor``)."""

    name: ClassVar[str] = "label_predictor"
    kind: ClassVar[str] = "labels"

    def _state_nc(self) -> int:
        if "seg" not in self.cfg.data.inputs:
            raise ConfigError(f"the label predictor predicts 'seg' maps: data.inputs must include seg (it is "
                              f"{self.cfg.data.inputs})")
        if self.label_set is None:
            if self.cfg.model.label_nc <= 0:
                raise ConfigError("the label predictor needs the dataset's label set (meta/seg.json) or "
                                  "model.label_nc")
            return int(self.cfg.model.label_nc)
        n = int(self.label_set.num_classes)
        if self.cfg.model.label_nc and self.cfg.model.label_nc != n:
            raise ConfigError(f"model.label_nc is {self.cfg.model.label_nc} but the dataset's label set "
                              f"'{self.label_set.name}' has {n} classes; remove model.label_nc")
        return n

    @property
    def ignore_id(self) -> int | None:
        return None if self.label_set is None else self.label_set.ignore_id

    def one_hot(self, seg: Any) -> torch.Tensor:
        return one_hot_labels(seg, self.state_nc, self.ignore_id).to(self.device)

    @property
    def recon_names(self) -> tuple[str, ...]:
        return ("P_ce",) if self.cfg.loss.lambda_ce else ()

    def states_of(self, batch: ClipBatch) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        seg = batch.inputs["seg"].long()
        target = seg.clone()
        if self.ignore_id is not None:
            target = torch.where(seg == self.ignore_id, torch.full_like(seg, -100), seg)
        return self.one_hot(seg), target

    def state_from(self, inputs: Mapping[str, Any], real: torch.Tensor) -> torch.Tensor:
        if "seg" not in inputs:
            raise ConfigError("the label predictor observes seg maps: the inputs have no 'seg'")
        return self.one_hot(inputs["seg"])

    def picture(self, state: torch.Tensor) -> torch.Tensor:
        ids = state.argmax(-3)
        if self.label_set is None:
            return colorize_inputs({"seg": ids})
        return colorize_inputs({"seg": ids}, self.label_set)

    def reconstruction(self, out: PredictionOutput, target: torch.Tensor) -> dict[str, torch.Tensor]:
        import torch
        import torch.nn.functional as F

        lc = self.cfg.loss
        if not lc.lambda_ce:
            return {}
        logp = torch.log(out.state.float().clamp_min(1e-6))
        return {"P_ce": lc.lambda_ce * F.nll_loss(logp, target, ignore_index=-100)}


class FramePredictor(_PredictorBase):
    """Future RGB frames without labels: K past frames + K past flows → the next frame (``frame_predictor``)."""

    name: ClassVar[str] = "frame_predictor"
    kind: ClassVar[str] = "frames"

    def _state_nc(self) -> int:
        return 3

    @property
    def recon_names(self) -> tuple[str, ...]:
        return ("P_l1",) if self.cfg.loss.lambda_l1 else ()

    def states_of(self, batch: ClipBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return batch.frames, batch.frames

    def state_from(self, inputs: Mapping[str, Any], real: torch.Tensor) -> torch.Tensor:
        return real.to(self.device).float()

    def picture(self, state: torch.Tensor) -> torch.Tensor:
        return state.float().clamp(-1, 1)

    def reconstruction(self, out: PredictionOutput, target: torch.Tensor) -> dict[str, torch.Tensor]:
        lc = self.cfg.loss
        if not lc.lambda_l1:
            return {}
        return {"P_l1": lc.lambda_l1 * (out.state.float() - target.float()).abs().mean()}
