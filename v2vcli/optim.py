"""The optimizers of a :class:`~v2vcli.model.VideoModel`: one Adam per parameter group, the linear-decay LR schedule,
and the guarded step (non-finite gradients skip it on every rank, decided on the device).

The guard is torch's own :class:`torch.amp.GradScaler`: for fp16 with a dynamic loss scale, for fp32/bf16 with the
scale fixed at 1 (multiplying by 1 is exact). The scaler checks the gradients for NaN/Inf and hands the verdict to
fused Adam as a device tensor, so a step needs no host sync; where fused Adam is unavailable the scaler reads the
verdict on the host before stepping.

torch is imported inside functions: :mod:`v2vcli.model` imports :class:`StepFlag` at registration time.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from v2vcli.errors import CheckpointError

if TYPE_CHECKING:
    import torch

__all__ = ["Optimizers", "StepFlag", "linear_decay"]


class StepFlag:
    """Whether :meth:`Optimizers.step` stepped, decided on the device: ``bool(flag)`` reads it, which waits for the
    device (call it once the step's work is queued, e.g. with the step's logged values)."""

    def __init__(self, ok: Any) -> None:
        self._ok = ok  # a bool, or a 0-dim bool tensor

    def __bool__(self) -> bool:
        return self._ok if isinstance(self._ok, bool) else bool(self._ok.item())

    def __repr__(self) -> str:
        return f"StepFlag({self._ok!r})"


def linear_decay(niter: int, niter_decay: int) -> Callable[[int], float]:
    """LR factor of the 0-based ``epoch``, as the official vid2vid (train.py + ``update_learning_rate``): epochs
    0..niter run at 1 (the official 1-based epochs 1..niter+1, the decay being applied at the *end* of an epoch
    > niter), then epoch e runs at 1 − (e − niter)/niter_decay. With niter 10 + niter_decay 10: the 12th epoch
    runs at 0.9, the 20th (last) at 0.1."""

    def factor(epoch: int) -> float:
        if epoch <= niter or niter_decay <= 0:
            return 1.0
        return max(0.0, 1.0 - (epoch - niter) / float(niter_decay))

    return factor


def _fused_devices() -> list[str]:
    """Device types with fused Adam kernels (torch's own list; empty on old releases)."""
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        return list(_get_fused_kernels_supported_devices())
    except ImportError:  # pragma: no cover - torch < 2.4
        return []


def _grad_norm(params: Sequence[torch.Tensor]) -> torch.Tensor:
    import torch

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


class Optimizers:
    """Adam per named parameter group (``lr``, ``beta1``/``beta2`` of the ``optim`` config section), a
    :func:`linear_decay` schedule per optimizer (one scheduler step per epoch) and the guarded :meth:`step`."""

    def __init__(self, groups: Mapping[str, Sequence[torch.Tensor]], optim_cfg: Any, device: torch.device,
                 precision: str) -> None:
        import torch

        o = optim_cfg
        decay = linear_decay(o.niter, o.niter_decay)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self.grad_clip = float(o.grad_clip)
        for name, params in groups.items():
            if not params:
                continue
            fused = all(p.device.type in _fused_devices() and p.is_floating_point() for p in params)
            opt = torch.optim.Adam(list(params), lr=o.lr, betas=(o.beta1, o.beta2), fused=fused or None)
            self.optimizers[name] = opt
            self.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(opt, decay)
        #: fp16 scales the loss dynamically; fp32/bf16 use the scaler only as the device-side guard, at scale 1
        self.loss_scaling = precision == "fp16"
        try:
            self.scaler: Any = torch.amp.GradScaler(device.type, init_scale=65536.0 if self.loss_scaling else 1.0)
        except (RuntimeError, ValueError, AssertionError):  # a device type without GradScaler support
            self.scaler = None

    def learning_rates(self) -> dict[str, float]:
        return {name: float(opt.param_groups[0]["lr"]) for name, opt in self.optimizers.items()}

    def start_epoch(self, epoch: int) -> None:
        """Bring every LR schedule to ``epoch`` (each scheduler step is one epoch)."""
        with warnings.catch_warnings():
            # an optimizer that has not stepped yet (a temporal D whose scale is not active) still follows the epoch
            # schedule: torch's "scheduler before optimizer" warning does not apply to a per-epoch LambdaLR
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            for sched in self.schedulers.values():
                while sched.last_epoch < epoch:
                    sched.step()

    def zero_grad(self, names: Sequence[str]) -> None:
        for n in names:
            self.optimizers[n].zero_grad(set_to_none=True)

    def params(self, names: Sequence[str]) -> list[torch.Tensor]:
        return [p for n in names for g in self.optimizers[n].param_groups for p in g["params"]]

    def backward(self, names: Sequence[str], loss: torch.Tensor) -> None:
        """Clear the gradients of ``names`` and back-propagate ``loss``. A non-finite loss is turned into NaN
        gradients (×NaN instead of ×1), so the step is skipped by the gradient check on this rank and, once
        gradients are averaged, on every rank."""
        import torch

        self.zero_grad(names)
        finite = torch.isfinite(loss.detach()).all()
        poison = torch.where(finite, torch.ones((), device=loss.device), torch.full((), float("nan"),
                                                                                   device=loss.device))
        loss = loss * poison.to(loss.dtype)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, names: Sequence[str]) -> StepFlag:
        """Clip (``optim.grad_clip`` per optimizer, 0 = off) and step the optimizers ``names`` unless a gradient is
        not finite; the gradients are cleared either way."""
        import torch

        scaler, clip = self.scaler, self.grad_clip
        norms = []
        for n in names:
            opt = self.optimizers[n]
            if scaler is not None:
                scaler.unscale_(opt)
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            if clip > 0:
                norms.append(torch.nn.utils.clip_grad_norm_(params, clip))
            elif params:
                norms.append(_grad_norm(params))
        finite: Any = torch.stack([x.float() for x in norms]).isfinite().all() if norms else True
        if scaler is None:
            if bool(finite):
                for n in names:
                    self.optimizers[n].step()
        else:
            for n in names:
                scaler.step(self.optimizers[n])
            scaler.update(None if self.loss_scaling else 1.0)
        self.zero_grad(names)
        return StepFlag(True if self.loss_scaling else finite)

    # -- checkpoint state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Optimizers, schedulers and (fp16 only: the others keep scale 1) the loss scaler."""
        return {"optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
                "scaler": self.scaler.state_dict() if self.loss_scaling and self.scaler is not None else {}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        opts = state.get("optimizers", {})
        missing = sorted(set(self.optimizers) - set(opts))
        if missing:
            raise CheckpointError(f"the training state has no optimizer for {', '.join(missing)}; it was written by a "
                                  f"differently configured model: start a new run or use --init-from")
        try:
            for n, opt in self.optimizers.items():
                opt.load_state_dict(opts[n])
            for n, sched in self.schedulers.items():
                if n in state.get("schedulers", {}):
                    sched.load_state_dict(state["schedulers"][n])
        except (ValueError, KeyError, RuntimeError) as exc:
            first = (str(exc).splitlines() or [""])[0]
            raise CheckpointError(f"the training state does not fit this model ({first}); start a new run or use "
                                  f"--init-from") from exc
        if self.loss_scaling and self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
