"""The model contract the trainer drives, for every registered video model (vid2vid, perframe, later ones).

A model class registered through ``v2v_register_models`` subclasses :class:`VideoModel` and declares its
``Config``/``LossConfig`` dataclasses (the ``model``/``loss`` config sections). Its life:

1. ``Model(cfg, label_set, device)`` builds what synthesis needs: the generator ``networks()["G"]``.
2. ``setup_training()`` adds what training needs (:meth:`VideoModel.build_training`: discriminators, losses),
   then one Adam per entry of :meth:`VideoModel.optimizer_params`, a linear-decay LR schedule for every optimizer,
   the EMA copy of G and the fp16 grad scaler.
3. The trainer calls ``start_epoch(epoch)`` at each epoch start (LR schedule, frozen scales) and
   ``train_step(batch)`` per batch; the step generates frames, computes named losses and steps its optimizers
   through :meth:`VideoModel.optimize` (NaN/inf guard, gradients averaged over the ranks of a distributed run,
   grad clipping, GradScaler), then the trainer calls ``ema_update()``. In a distributed run every rank starts
   from rank 0's networks (:meth:`VideoModel.sync_networks`), so the ranks stay identical.
4. Checkpoints: ``weights()`` / ``load_weights()`` (every network under its name, EMA as ``G_ema``) and
   ``training_state()`` / ``load_training_state()`` (optimizers, schedulers, scaler, EMA count).
5. Synthesis: ``frame_generator()`` returns a :class:`FrameGenerator` that makes one frame at a time with a
   sliding history, using ``eval_generator()`` (the EMA of G when there is one).

torch is imported inside functions: a plugin module defining a subclass stays light to import.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from v2vcli.errors import CheckpointError, V2VError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from v2vcli.config import V2VConfig
    from v2vcli.data.clips import ClipBatch
    from v2vcli.data.layout import LabelSet

__all__ = [
    "TrainingError",
    "check_finite_weights",
    "StepResult",
    "StepFlag",
    "FrameOutput",
    "FrameGenerator",
    "VideoModel",
    "linear_decay",
    "colorize_inputs",
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


class StepFlag:
    """Whether :meth:`VideoModel.optimize` stepped, decided on the device: ``bool(flag)`` reads it, which waits
    for the device (call it once the step's work is queued, e.g. with the step's logged values)."""

    def __init__(self, ok: Any) -> None:
        self._ok = ok  # a bool, or a 0-dim bool tensor

    def __bool__(self) -> bool:
        return self._ok if isinstance(self._ok, bool) else bool(self._ok.item())

    def __repr__(self) -> str:
        return f"StepFlag({self._ok!r})"


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


def _fused_devices() -> list[str]:
    """Device types with fused Adam kernels (torch's own list; empty on old releases)."""
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        return list(_get_fused_kernels_supported_devices())
    except ImportError:  # pragma: no cover - torch < 2.4
        return []


def linear_decay(niter: int, niter_decay: int) -> Any:
    """LR factor of the 0-based ``epoch``, as the official vid2vid (train.py + ``update_learning_rate``): epochs
    0..niter run at 1 (the official 1-based epochs 1..niter+1, the decay being applied at the *end* of an epoch
    > niter), then epoch e runs at 1 − (e − niter)/niter_decay. With niter 10 + niter_decay 10: the 12th epoch
    runs at 0.9, the 20th (last) at 0.1."""

    def factor(epoch: int) -> float:
        if epoch <= niter or niter_decay <= 0:
            return 1.0
        return max(0.0, 1.0 - (epoch - niter) / float(niter_decay))

    return factor


def colorize_inputs(inputs: Mapping[str, Any], label_set: LabelSet | None = None) -> torch.Tensor:
    """A picture of the conditioning for samples: (..., 3, H, W) float in [-1, 1].

    seg through the label set's palette, else the first of pose/densepose (RGB), edges or edge_dist (grey);
    instance boundaries drawn white on top.
    """
    import numpy as np
    import torch

    picture: torch.Tensor | None = None
    if "seg" in inputs and label_set is not None:
        seg = inputs["seg"].long().clamp(0, 255)
        pal = torch.from_numpy(np.asarray(label_set.palette(), dtype=np.float32)).to(seg.device)
        picture = pal[seg].movedim(-1, -3) / 127.5 - 1.0
    else:
        for m in ("pose", "densepose"):
            if m in inputs:
                x = inputs[m]
                picture = x.float() / 127.5 - 1.0 if not x.is_floating_point() else x.float()
                break
        if picture is None:
            for m in ("edges", "edge_dist", "seg"):
                if m in inputs:
                    x = inputs[m].float()
                    if m == "seg":
                        x = x / max(float(x.max()), 1.0) * 255.0
                    if m == "edge_dist":
                        x = x.amax(dim=-3) * 255.0
                    grey = x / 127.5 - 1.0
                    picture = grey.unsqueeze(-3).expand(*grey.shape[:-2], 3, *grey.shape[-2:])
                    break
    if picture is None:
        raise ValueError(f"no modality to draw among {sorted(inputs)}")
    if "inst" in inputs:
        ids = inputs["inst"]
        edge = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
        dx = ids[..., :, 1:] != ids[..., :, :-1]
        dy = ids[..., 1:, :] != ids[..., :-1, :]
        edge[..., :, 1:] |= dx
        edge[..., 1:, :] |= dy
        picture = torch.where(edge.unsqueeze(-3), torch.ones_like(picture), picture)
    return picture.contiguous()


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
        self._optimizers: dict[str, torch.optim.Optimizer] = {}
        self._schedulers: dict[str, Any] = {}
        self._scaler: Any = None
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
        """Build training parts, one Adam per :meth:`optimizer_params` entry, schedules, EMA and grad scaler."""
        import torch

        if self.training_ready:
            return
        self.build_training()
        o = self.cfg.optim
        decay = linear_decay(o.niter, o.niter_decay)
        for name, params in self.optimizer_params().items():
            if not params:
                continue
            # fused Adam takes a device-side "found inf" flag and skips the update on the device (optimize()):
            # the NaN/inf guard then needs no host sync in the middle of a step
            fused = all(p.device.type in _fused_devices() and p.is_floating_point() for p in params)
            opt = torch.optim.Adam(params, lr=o.lr, betas=(o.beta1, o.beta2), fused=fused or None)
            self._optimizers[name] = opt
            self._schedulers[name] = torch.optim.lr_scheduler.LambdaLR(opt, decay)
        self._scaler = torch.amp.GradScaler(self.device_type, enabled=self.precision == "fp16")
        self.sync_networks()
        self.reset_ema()
        self.train(True)
        self.training_ready = True

    def sync_networks(self) -> None:
        """Give every rank rank 0's networks (ranks are seeded apart, so their random inits differ)."""
        from v2vcli.distributed import broadcast_module_, is_distributed

        if is_distributed():
            for net in self.networks().values():
                broadcast_module_(net)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return dict(self._optimizers)

    def schedulers(self) -> dict[str, Any]:
        return dict(self._schedulers)

    def learning_rates(self) -> dict[str, float]:
        return {name: float(opt.param_groups[0]["lr"]) for name, opt in self._optimizers.items()}

    def start_epoch(self, epoch: int) -> None:
        """Bring every LR schedule to ``epoch`` (each scheduler step is one epoch), then :meth:`on_epoch`."""
        for sched in self._schedulers.values():
            while sched.last_epoch < epoch:
                sched.step()
        self.on_epoch(epoch)

    def zero_grad(self, names: Sequence[str]) -> None:
        for n in names:
            self._optimizers[n].zero_grad(set_to_none=True)

    def optimize(self, names: str | Sequence[str], loss: torch.Tensor) -> StepFlag:
        """Backward ``loss`` and step the optimizers ``names``; the returned flag is false (nothing stepped) when
        the loss or, with clipping, the gradient norm was not finite.

        The guard runs on the device: fused Adam gets the "found inf" flag and leaves parameters, moments and step
        counts alone when it is set, so a step makes no host sync until its caller reads the flag (or its logged
        values) at the end. Where fused Adam is unavailable the flag is read before stepping. In a distributed run
        the gradients are averaged over the ranks first (:meth:`average_gradients`; every rank must call
        ``optimize`` with the same ``names``), and a non-finite loss on any rank skips the step on all of them.
        Gradients are clipped to ``optim.grad_clip`` (per optimizer, 0 = off); fp16 goes through the GradScaler,
        which skips steps with overflowing gradients itself.
        """
        import torch

        from v2vcli.distributed import is_distributed

        names = [names] if isinstance(names, str) else [n for n in names if n in self._optimizers]
        if not names:
            return StepFlag(True)
        scaler = self._scaler
        finite = torch.isfinite(loss.detach()).all()  # (0-dim bool, on the device)
        self.zero_grad(names)
        scaler.scale(loss).backward()  # a non-finite loss gives non-finite gradients, which are not applied
        if is_distributed():
            if not self.average_gradients(names, finite):
                self.zero_grad(names)
                return StepFlag(False)
            finite = torch.ones((), dtype=torch.bool, device=loss.device)
        clip = float(self.cfg.optim.grad_clip)
        for n in names:
            opt = self._optimizers[n]
            if scaler.is_enabled():
                scaler.unscale_(opt)
            if clip > 0:
                params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
                norm = torch.nn.utils.clip_grad_norm_(params, clip)
                if not scaler.is_enabled():
                    finite = finite & torch.isfinite(norm)
        if scaler.is_enabled():  # the scaler finds overflows (a non-finite loss included) and skips by itself
            for n in names:
                scaler.step(self._optimizers[n])
            scaler.update()
            self.zero_grad(names)
            return StepFlag(True)
        fused = all(opt.defaults.get("fused") for opt in (self._optimizers[n] for n in names))
        if not fused and not bool(finite):  # host check: the only way to skip an unfused step
            self.zero_grad(names)
            return StepFlag(False)
        found_inf = (~finite).float()
        for n in names:
            opt = self._optimizers[n]
            if fused:
                opt.found_inf = found_inf  # type: ignore[attr-defined]
            try:
                opt.step()
            finally:
                if fused:
                    del opt.found_inf  # type: ignore[attr-defined]
        self.zero_grad(names)
        return StepFlag(finite if fused else True)

    def average_gradients(self, names: Sequence[str], finite: Any = True,
                          bucket_elements: int = 1 << 25) -> bool:
        """Average the gradients of optimizers ``names`` over all ranks (the data-parallel step); False if any
        rank's loss was not finite (then every rank skips the step, so they stay in lockstep).

        Gradients travel in flat buckets of at most ``bucket_elements`` values with one extra slot per parameter
        saying whether any rank has a gradient for it (a parameter no rank used keeps ``None``, as with DDP's
        unused parameters, and Adam leaves it alone). Only the optimizers being stepped take part, so each
        temporal discriminator is synchronised only on the steps where its scale is active.
        """
        import torch

        from v2vcli.distributed import all_reduce_, get_world_size

        world = get_world_size()
        seen: set[int] = set()
        params: list[torch.Tensor] = []
        n: str | int  # an optimizer name here, a parameter's size in the buckets below
        for n in names:
            for group in self._optimizers[n].param_groups:
                for p in group["params"]:
                    if p.requires_grad and id(p) not in seen:
                        seen.add(id(p))
                        params.append(p)
        if isinstance(finite, torch.Tensor):
            bad = (~finite.reshape(1)).float().to(self.device)
        else:
            bad = torch.tensor([0.0 if finite else 1.0], device=self.device)
        if not params:
            return float(all_reduce_(bad)[0]) == 0.0
        buckets: list[list[torch.Tensor]] = [[]]
        size = 0
        for p in params:
            if buckets[-1] and size + p.numel() > bucket_elements:
                buckets.append([])
                size = 0
            buckets[-1].append(p)
            size += p.numel()
        for i, bucket in enumerate(buckets):
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in bucket]
            flags = torch.tensor([float(p.grad is not None) for p in bucket], device=self.device)
            parts = [g.reshape(-1).float() for g in grads] + [flags] + ([bad] if i == 0 else [])
            flat = all_reduce_(torch.cat(parts))
            offset = 0
            used = flat[-len(bucket) - (1 if i == 0 else 0):][:len(bucket)].tolist()
            for p, g, u in zip(bucket, grads, used):
                n = p.numel()
                p.grad = (flat[offset:offset + n].view_as(p) / world).to(g.dtype) if u > 0 else None
                offset += n
            if i == 0:
                bad = flat[offset + len(bucket):offset + len(bucket) + 1]
        return float(bad[0]) == 0.0

    # -- EMA -------------------------------------------------------------------------------------------------------
    def reset_ema(self) -> None:
        """The EMA starts as a copy of G (after ``--init-from`` loading, so it starts from the loaded weights)."""
        import torch

        if float(self.cfg.optim.ema_beta) <= 0:
            self.ema = None
            return
        self.ema = copy.deepcopy(self.generator).eval()
        self.ema.requires_grad_(False)
        self.ema_updates = 0
        with torch.no_grad():
            for p in self.ema.parameters():
                p.detach_()

    @property
    def ema_beta(self) -> float:
        """optim.ema_beta, warmed up as min(β, (1 + n)/(10 + n)) so short runs are not dominated by the init."""
        beta = float(self.cfg.optim.ema_beta)
        n = self.ema_updates
        return min(beta, (1.0 + n) / (10.0 + n))

    def ema_update(self) -> None:
        """ema ← β·ema + (1-β)·G for parameters; buffers (e.g. BatchNorm statistics) copied."""
        import torch

        if self.ema is None:
            return
        beta = self.ema_beta
        e: torch.Tensor  # a parameter, then a buffer
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.generator.parameters()):
                e.lerp_(p.detach(), 1.0 - beta)
            for e, b in zip(self.ema.buffers(), self.generator.buffers()):
                e.copy_(b)
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
        out: dict[str, torch.Tensor] = {}
        nets = dict(self.networks())
        if self.ema is not None:
            nets["G_ema"] = self.ema
        for name, net in nets.items():
            for key, value in net.state_dict().items():
                out[f"{name}.{key}"] = value
        return out

    def load_weights(self, weights: Mapping[str, Any], *, networks: Sequence[str] | None = None,
                     strict: bool = True) -> list[str]:
        """Load ``weights`` (as :meth:`weights` gives) into the networks; returns the names loaded.

        ``networks`` limits loading to those names (``G_ema`` included); a mismatch is a :class:`CheckpointError`.
        A checkpoint with ``G_ema`` gives this model an EMA generator even outside training.
        """
        from v2vcli.checkpoint import split_networks

        parts = split_networks(dict(weights))
        nets = dict(self.networks())
        if "G_ema" in parts and (networks is None or "G_ema" in networks):
            if self.ema is None:
                self.ema = copy.deepcopy(self.generator).eval()
                self.ema.requires_grad_(False)
            nets["G_ema"] = self.ema
        wanted = list(networks) if networks is not None else [n for n in nets if n in parts]
        loaded = []
        for name in wanted:
            if name not in nets:
                raise CheckpointError(f"model '{self.name}' has no network '{name}' (it has "
                                      f"{', '.join(sorted(nets))})")
            if name not in parts:
                if strict:
                    raise CheckpointError(f"the checkpoint has no weights for network '{name}' (it has "
                                          f"{', '.join(sorted(parts))})")
                continue
            _load_state(nets[name], parts[name], name, strict)
            loaded.append(name)
        if self.ema is not None and "G" in loaded and "G_ema" not in parts:
            self.ema.load_state_dict(self.generator.state_dict())
        return loaded

    def training_state(self) -> dict[str, Any]:
        """Optimizers, schedulers, grad scaler, EMA count and :meth:`extra_training_state` (tensors-only)."""
        return {
            "optimizers": {n: o.state_dict() for n, o in self._optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self._schedulers.items()},
            "scaler": self._scaler.state_dict() if self._scaler is not None else {},
            "ema_updates": int(self.ema_updates),
            "model": self.extra_training_state(),
        }

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        opts = state.get("optimizers", {})
        missing = sorted(set(self._optimizers) - set(opts))
        if missing:
            raise CheckpointError(f"the training state has no optimizer for {', '.join(missing)}; it was written by a "
                                  f"differently configured model: start a new run or use --init-from")
        try:
            for n, opt in self._optimizers.items():
                opt.load_state_dict(opts[n])
            for n, sched in self._schedulers.items():
                if n in state.get("schedulers", {}):
                    sched.load_state_dict(state["schedulers"][n])
        except (ValueError, KeyError, RuntimeError) as exc:
            first = (str(exc).splitlines() or [""])[0]
            raise CheckpointError(f"the training state does not fit this model ({first}); start a new run or use "
                                  f"--init-from") from exc
        if self._scaler is not None and state.get("scaler"):
            self._scaler.load_state_dict(state["scaler"])
        self.ema_updates = int(state.get("ema_updates", 0))
        self.load_extra_training_state(dict(state.get("model", {})))


def _load_state(net: nn.Module, state: dict[str, Any], name: str, strict: bool) -> None:
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if strict and (missing or unexpected or shape):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. '{missing[0]}')")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. '{unexpected[0]}')")
        if shape:
            k = shape[0]
            parts.append(f"{len(shape)} of another shape (e.g. '{k}' {tuple(state[k].shape)} vs "
                         f"{tuple(own[k].shape)})")
        raise CheckpointError(f"network '{name}' does not fit the checkpoint: {'; '.join(parts)}; the checkpoint was "
                              f"trained with another model config")
    usable = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    net.load_state_dict(usable, strict=False)


def load_model_for_inference(checkpoint: Any, device: Any = "cpu",
                             cfg_overrides: Sequence[str] = ()) -> tuple[VideoModel, Any]:
    """Build the registered model a checkpoint was trained with and load its generators (G and, if saved, G_ema).

    Returns (model, :class:`~v2vcli.checkpoint.CheckpointMeta`). The model's config and label set come from the
    checkpoint's metadata; ``cfg_overrides`` are ``section.key=value`` strings applied on top.
    """
    from v2vcli.checkpoint import load_weights, read_meta
    from v2vcli.config import build_config, merge, parse_set
    from v2vcli.data.layout import LabelSet
    from v2vcli.registry import get_registry

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
