"""The model contract the trainer drives, for every registered video model (vid2vid, perframe, later ones).

A model class registered through ``v2v_register_models`` subclasses :class:`VideoModel` and declares its
``Config``/``LossConfig`` dataclasses (the ``model``/``loss`` config sections). Its life:

1. ``Model(cfg, label_set, device)`` builds what synthesis needs: the generator ``networks()["G"]``.
2. ``setup_training()`` adds what training needs (:meth:`VideoModel.build_training`: discriminators, losses),
   then the optimizers (:class:`~v2vcli.optim.Optimizers`: one Adam per entry of
   :meth:`VideoModel.optimizer_params`, linear-decay LR schedules, the guarded step) and the EMA copy of G
   (:mod:`v2vcli.ema`).
3. The trainer calls ``start_epoch(epoch)`` at each epoch start (LR schedule, frozen scales) and
   ``train_step(batch)`` per batch; the step generates frames, computes named losses and steps its optimizers
   through :meth:`VideoModel.optimize` (NaN/inf guard, grad clipping, fp16 loss scale), then the trainer calls
   ``ema_update()``. In a distributed run the step runs each trained network's forward through
   ``self.data_parallel(name, module)`` (:mod:`v2vcli.parallel`: torch's DistributedDataParallel, which averages
   the gradients over the ranks during backward); every rank starts from rank 0's networks
   (:meth:`VideoModel.sync_networks`), so the ranks stay identical.
4. Checkpoints: ``weights()`` / ``load_weights()`` (every network under its name, EMA as ``G_ema``) and
   ``training_state()`` / ``load_training_state()`` (optimizers, schedulers, scaler, EMA count); the state dict
   helpers are in :mod:`v2vcli.model_state`.

Registering a model imports the module that defines it, and registration must not import torch (``v2v --help``
stays fast): this module and :mod:`v2vcli.optim` import torch, and the torch-using collaborators
(:mod:`v2vcli.parallel`, :mod:`v2vcli.ema`, :mod:`v2vcli.model_state`), inside the methods that need them.
5. Synthesis: ``frame_generator()`` returns a :class:`FrameGenerator` that makes one frame at a time with a
   sliding history, using ``eval_generator()`` (the EMA of G when there is one).
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from v2vcli.config import build_config, merge, parse_set
from v2vcli.data.layout import LabelSet
from v2vcli.distributed import broadcast_module_, is_distributed
from v2vcli.errors import CheckpointError, V2VError
from v2vcli.optim import Optimizers, StepFlag, linear_decay
from v2vcli.registry import get_registry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from v2vcli.parallel import DataParallel

    from v2vcli.config import V2VConfig
    from v2vcli.data.clips import ClipBatch

__all__ = [
    "TrainingError",
    "check_finite_weights",
    "StepResult",
    "StepFlag",
    "FrameOutput",
    "FrameGenerator",
    "VideoModel",
    "linear_decay",
    "load_model_for_inference",
]

log = logging.getLogger(__name__)


class TrainingError(V2VError):
    """Training cannot go on (e.g. losses stayed non-finite for ``train.max_bad_steps`` steps)."""


def check_finite_weights(model: VideoModel, step: int, last_saved: Any = None) -> None:
    """Stop training (:class:`TrainingError`) once any weight of any network (or the EMA) is NaN or Inf: every
    later step, checkpoint and synthesized frame would be garbage. One fused pass over the weights, one sync."""
    import torch

    nets = dict(model.networks())
    if model.ema is not None:
        nets["G_ema"] = model.ema
    names, flags = [], []
    for name, net in nets.items():
        params = [p.detach() for p in net.parameters() if p.is_floating_point() or p.is_complex()]
        if params:
            names.append(name)
            flags.append(torch.stack([n.float() for n in torch._foreach_norm(params)]).isfinite().all())
    if not flags:
        return
    ok = torch.stack(flags).cpu()
    broken = [n for n, good in zip(names, ok.tolist()) if not good]
    if broken:
        where = f"; the last checkpoint written before is {last_saved}" if last_saved else ""
        raise TrainingError(f"training stopped at step {step}: the weights of {', '.join(broken)} are no longer "
                            f"finite (NaN or Inf); lower optim.lr, set optim.grad_clip or use --precision fp32"
                            f"{where}")


@dataclass
class StepResult:
    """What one ``train_step`` did.

    ``losses``: every named term (weighted, as added to the totals) and the totals ``G_total``/``D_total``, as
    floats. ``frames``: frames generated (batch × generated per clip), for frames/s. ``skipped``: a loss or gradient
    was not finite, so (some) optimizers did not step. ``stats``: other scalars worth logging (averaged like the
    losses; vid2vid: ``mask_mean``, ``flow_epe``). ``info``: model-specific facts for the log, JSON-able
    (vid2vid: ``temporal_active``/``temporal_skipped`` scale indices, ``clip_frames``).
    """

    losses: dict[str, float]
    frames: int
    skipped: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class FrameOutput:
    """One generated frame (B, 3, H, W) in [-1, 1] and named by-products (``mask``, ``flow``, ``raw`` ...)."""

    frame: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


class FrameGenerator(ABC):
    """Makes a video one frame at a time, feeding its own outputs back as the history (synthesis, validation).

    ``step(inputs)`` takes one frame's raw modalities (``{"seg": (B, H, W) ids, ...}``, as the loader yields them
    per frame) and returns the generated frame. ``step(inputs, real=frame)`` instead takes ``frame`` (B, 3, H, W)
    in [-1, 1] as that time step's output: how a sequence starts from real frames. Runs without gradients.
    """

    #: Real frames a training clip starts from (the model's L); 0 means the model starts from an empty history.
    history_frames: int = 0

    @abstractmethod
    def reset(self) -> None:
        """Forget the history: the next frame starts a new sequence."""

    @abstractmethod
    def step(self, inputs: Mapping[str, Any], real: torch.Tensor | None = None) -> FrameOutput:
        """Generate (or, with ``real``, take) the next frame."""

    def __call__(self, inputs: Mapping[str, Any], real: torch.Tensor | None = None) -> torch.Tensor:
        return self.step(inputs, real).frame


class VideoModel(ABC):
    """Base class of trainable video models; see the module docstring for the life cycle.

    Subclasses implement :meth:`networks`, :attr:`loss_names`, :meth:`build_training`, :meth:`train_step` and
    :meth:`frame_generator`, and may override :attr:`history_frames`, :attr:`needs_flow`,
    :attr:`needs_keypoints`, :meth:`optimizer_params`, :meth:`on_epoch`, :meth:`init_from` and
    :meth:`checkpoint_extra`. ``self.cfg`` is the resolved :class:`~v2vcli.config.V2VConfig`.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    LossConfig: ClassVar[type]

    def __init__(self, cfg: V2VConfig, label_set: LabelSet | None = None, device: Any = "cpu") -> None:
        self._init_contract(cfg, label_set, device)

    def _init_contract(self, cfg: V2VConfig, label_set: LabelSet | None, device: Any) -> None:
        """Contract state; a subclass that also inherits another base calls this from its own ``__init__``."""
        import torch

        self.cfg = cfg
        self.label_set = label_set
        self.device = torch.device(device)
        self.precision = cfg.train.precision
        self.ema: nn.Module | None = None
        self.ema_updates = 0
        from v2vcli.parallel import DataParallel

        self.optim: Optimizers | None = None  # made by setup_training()
        self.data_parallel: DataParallel = DataParallel(self.device)
        self._visuals: dict[str, torch.Tensor] = {}
        self.training_ready = False

    # -- what subclasses implement ---------------------------------------------------------------------------------
    @abstractmethod
    def networks(self) -> dict[str, nn.Module]:
        """Every network by checkpoint name: ``"G"`` always, discriminators once training is set up."""

    @property
    @abstractmethod
    def loss_names(self) -> tuple[str, ...]:
        """Names of every loss term this configuration can produce (those with weight 0 are left out)."""

    @abstractmethod
    def build_training(self) -> None:
        """Build what only training needs (discriminators added to ``networks()``, loss modules)."""

    @abstractmethod
    def train_step(self, batch: ClipBatch) -> StepResult:
        """One optimisation step on a batch of clips (CPU batch; the model moves it to its device)."""

    @abstractmethod
    def frame_generator(self, use_ema: bool = True) -> FrameGenerator:
        """A :class:`FrameGenerator` over :meth:`eval_generator` (or the trained G with ``use_ema=False``)."""

    # -- optional overrides ----------------------------------------------------------------------------------------
    @property
    def history_frames(self) -> int:
        """L: real frames a training clip starts with before generated frames (0: empty history)."""
        return 0

    @property
    def needs_flow(self) -> bool:
        """Whether batches must carry the reference flow."""
        return True

    @property
    def needs_keypoints(self) -> bool:
        """Whether batches must carry BODY_25 keypoints (face discriminator)."""
        return False

    def optimizer_params(self) -> dict[str, list[Any]]:
        """Parameters of each Adam optimizer by name; default one per network."""
        return {name: [p for p in net.parameters()] for name, net in self.networks().items()}

    def on_epoch(self, epoch: int) -> None:
        """Called at every epoch start after the LR update (e.g. to freeze coarse scales)."""

    def init_from(self, weights: dict[str, Any], meta: Any) -> None:
        """Initialise from a coarser run's weights (``--init-from``); the default model cannot."""
        raise CheckpointError(f"model '{self.name}' does not support --init-from")

    def checkpoint_extra(self) -> dict[str, Any]:
        """Model facts stored in the weights metadata (JSON-able)."""
        return {}

    def extra_training_state(self) -> dict[str, Any]:
        """Model state to resume exactly beyond optimizers/schedulers/EMA (tensors and plain values)."""
        return {}

    def load_extra_training_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`extra_training_state`."""

    # -- provided: networks ----------------------------------------------------------------------------------------
    @property
    def generator(self) -> nn.Module:
        return self.networks()["G"]

    def eval_generator(self) -> nn.Module:
        """The generator synthesis should use: the EMA copy when there is one, else G."""
        return self.ema if self.ema is not None else self.generator

    def train(self, mode: bool = True) -> None:
        for net in self.networks().values():
            net.train(mode)

    @staticmethod
    def set_requires_grad(nets: nn.Module | Sequence[nn.Module], flag: bool) -> None:
        for net in [nets] if not isinstance(nets, Sequence) else nets:
            for p in net.parameters():
                p.requires_grad_(flag)

    @property
    def device_type(self) -> str:
        return self.device.type

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision for ``train.precision`` (no-op for fp32)."""
        import torch

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=dtype)

    # -- provided: training machinery ------------------------------------------------------------------------------
    def setup_training(self) -> None:
        """Build training parts, the :class:`~v2vcli.optim.Optimizers` over :meth:`optimizer_params`, and the EMA."""
        if self.training_ready:
            return
        self.build_training()
        self.optim = Optimizers(self.optimizer_params(), self.cfg.optim, self.device, self.precision)
        self.sync_networks()
        self.reset_ema()
        self.train(True)
        self.training_ready = True

    def sync_networks(self) -> None:
        """Give every rank rank 0's networks (ranks are seeded apart, so their random inits differ)."""
        if is_distributed():
            for net in self.networks().values():
                broadcast_module_(net)

    def _optim(self) -> Optimizers:
        if self.optim is None:
            raise TrainingError("call setup_training() before training")
        return self.optim

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return dict(self._optim().optimizers)

    def schedulers(self) -> dict[str, Any]:
        return dict(self._optim().schedulers)

    def learning_rates(self) -> dict[str, float]:
        return self._optim().learning_rates()

    def start_epoch(self, epoch: int) -> None:
        """Bring every LR schedule to ``epoch`` (each scheduler step is one epoch), then :meth:`on_epoch`."""
        self._optim().start_epoch(epoch)
        self.on_epoch(epoch)

    def zero_grad(self, names: Sequence[str]) -> None:
        self._optim().zero_grad(names)

    def optimize(self, names: str | Sequence[str], loss: torch.Tensor) -> StepFlag:
        """Backward ``loss`` and step the optimizers ``names``; the returned flag is false (nothing stepped) when
        the loss or a gradient was not finite.

        The guard runs on the device (:class:`~v2vcli.optim.Optimizers`), so a step makes no host sync until its
        caller reads the flag (or its logged values) at the end. In a distributed run the gradients are averaged
        during backward by the DDP wrappers the forward ran through (:attr:`data_parallel`); every rank must call
        ``optimize`` with the same ``names``, and a non-finite loss on any rank skips the step on all of them (its
        NaN gradients reach every rank through the average). Gradients are clipped to ``optim.grad_clip`` (per
        optimizer, 0 = off); fp16 goes through a dynamic loss scale.
        """
        opt = self._optim()
        names = [names] if isinstance(names, str) else list(names)
        names = [n for n in names if n in opt.optimizers]
        if not names:
            return StepFlag(True)
        opt.backward(names, loss)
        params = opt.params(names)
        for n in names:
            self.data_parallel.check(opt.params([n]), n)
        flag = opt.step(names)
        self.data_parallel.stepped(params)
        return flag

    # -- EMA -------------------------------------------------------------------------------------------------------
    def reset_ema(self) -> None:
        """The EMA starts as a copy of G (after ``--init-from`` loading, so it starts from the loaded weights)."""
        from v2vcli.ema import ema_copy

        self.ema = ema_copy(self.generator) if float(self.cfg.optim.ema_beta) > 0 else None
        self.ema_updates = 0

    @property
    def ema_beta(self) -> float:
        """optim.ema_beta, warmed up (:func:`~v2vcli.ema.warmed_up_beta`)."""
        from v2vcli.ema import warmed_up_beta

        return warmed_up_beta(float(self.cfg.optim.ema_beta), self.ema_updates)

    def ema_update(self) -> None:
        """ema ← β·ema + (1-β)·G for parameters; buffers (e.g. BatchNorm statistics) copied."""
        from v2vcli.ema import ema_update_

        if self.ema is None:
            return
        ema_update_(self.ema, self.generator, self.ema_beta)
        self.ema_updates += 1

    # -- visuals ---------------------------------------------------------------------------------------------------
    def visuals(self) -> dict[str, torch.Tensor]:
        """The last step's first clip: ``labels``, ``generated``, ``real`` as (T, 3, H, W) CPU float in [-1, 1]."""
        return {k: v.float().cpu() for k, v in self._visuals.items()}

    def set_visuals(self, **clips: torch.Tensor) -> None:
        # kept on the device: copied to the host only when a sample is written (visuals()), not every step
        self._visuals = {k: v.detach()[0] for k, v in clips.items()}

    # -- checkpoints -----------------------------------------------------------------------------------------------
    def weights(self) -> dict[str, torch.Tensor]:
        """Every network's state under ``<name>.`` (and the EMA under ``G_ema.``)."""
        from v2vcli.model_state import network_weights

        nets = dict(self.networks())
        if self.ema is not None:
            nets["G_ema"] = self.ema
        return network_weights(nets)

    def load_weights(self, weights: Mapping[str, Any], *, networks: Sequence[str] | None = None,
                     strict: bool = True) -> list[str]:
        """Load ``weights`` (as :meth:`weights` gives) into the networks; returns the names loaded.

        ``networks`` limits loading to those names (``G_ema`` included); a mismatch is a :class:`CheckpointError`.
        A checkpoint with ``G_ema`` gives this model an EMA generator even outside training.
        """
        from v2vcli.checkpoint import split_networks
        from v2vcli.ema import ema_copy
        from v2vcli.model_state import load_network_weights

        parts = split_networks(dict(weights))
        nets = dict(self.networks())
        if "G_ema" in parts and (networks is None or "G_ema" in networks):
            if self.ema is None:
                self.ema = ema_copy(self.generator)
            nets["G_ema"] = self.ema
        loaded = load_network_weights(nets, parts, networks, strict, model=self.name)
        if self.ema is not None and "G" in loaded and "G_ema" not in parts:
            self.ema.load_state_dict(self.generator.state_dict())
        return loaded

    def training_state(self) -> dict[str, Any]:
        """Optimizers, schedulers, loss scaler, EMA count and :meth:`extra_training_state` (tensors-only)."""
        return {**self._optim().state_dict(), "ema_updates": int(self.ema_updates),
                "model": self.extra_training_state()}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        self._optim().load_state_dict(state)
        self.ema_updates = int(state.get("ema_updates", 0))
        self.load_extra_training_state(dict(state.get("model", {})))


def load_model_for_inference(checkpoint: Any, device: Any = "cpu",
                             cfg_overrides: Sequence[str] = ()) -> tuple[VideoModel, Any]:
    """Build the registered model a checkpoint was trained with and load its generators (G and, if saved, G_ema).

    Returns (model, :class:`~v2vcli.checkpoint.CheckpointMeta`). The model's config and label set come from the
    checkpoint's metadata; ``cfg_overrides`` are ``section.key=value`` strings applied on top.
    """
    from v2vcli.checkpoint import load_weights, read_meta

    meta = read_meta(checkpoint)
    raw = dict(meta.config)
    for expr in cfg_overrides:
        raw = merge(raw, parse_set(expr))
    cfg = build_config(raw)
    label_set = LabelSet.from_dict(meta.label_set) if meta.label_set else None
    cls = get_registry().get_model(meta.model or cfg.model.name)
    model = cls(cfg, label_set, device)
    if not isinstance(model, VideoModel):
        raise CheckpointError(f"model '{meta.model}' is not a trainable v2v model")
    nets: list[str] = [n for n in ("G", "G_ema") if n in meta.networks or n == "G"]
    weights, _ = load_weights(checkpoint, networks=nets, device=device)
    model.load_weights(weights, networks=nets)
    model.train(False)
    return model, meta
