"""GPU-efficiency helpers shared by the vid2vid networks, losses and trainer.

- ``channels_last``: convert modules and 4-D tensors to NHWC memory, the layout cuDNN's tensor-core convolutions
  run fastest in; other tensors pass through unchanged.
- ``autocast`` / ``autocast_dtype``: the mixed-precision context for a precision string (``fp32`` disables it,
  ``bf16``, ``fp16``); ``fp32_region`` turns autocast off for code that must run in float32 (warps, losses, norms).
- ``InstanceNorm2dFP32``: an ``nn.InstanceNorm2d`` that normalises in float32 and returns the input dtype, so
  bf16/fp16 activations do not lose the statistics' precision. Same parameters and state-dict keys as the torch one.
- Activation checkpointing: blocks derive from :class:`CheckpointableBlock` (implement ``forward_impl``) or call
  :func:`checkpointed` themselves; :func:`set_activation_checkpointing` switches every such block under a root
  module. Checkpointing uses ``torch.utils.checkpoint`` with ``use_reentrant=False`` (works with DDP, compile and
  inputs that do not require grad) and only runs while training with grad enabled. State-dict keys do not change,
  so checkpoints load either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from v2vcli.errors import ConfigError, did_you_mean

__all__ = [
    "PRECISIONS",
    "channels_last",
    "autocast_dtype",
    "autocast",
    "fp32_region",
    "needs_grad_scaler",
    "InstanceNorm2dFP32",
    "checkpointed",
    "CheckpointableBlock",
    "set_activation_checkpointing",
]

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")

_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

M = TypeVar("M", nn.Module, torch.Tensor)


def channels_last(obj: M) -> M:
    """Return ``obj`` in channels_last memory format: a module's 4-D weights, or a 4-D tensor.

    Tensors of other ranks (flows stacked as (B, T, C, H, W), scalars) come back unchanged, so callers can pass
    whatever they hold.
    """
    if isinstance(obj, nn.Module):
        return obj.to(memory_format=torch.channels_last)
    if obj.dim() == 4:
        return obj.contiguous(memory_format=torch.channels_last)
    return obj


def autocast_dtype(precision: str) -> torch.dtype | None:
    """``fp32`` → None (autocast off), ``bf16`` → bfloat16, ``fp16`` → float16; anything else a ConfigError."""
    if precision not in _DTYPES:
        raise ConfigError(f"precision '{precision}' is not supported{did_you_mean(precision, PRECISIONS)}; "
                          f"use one of {', '.join(PRECISIONS)}")
    return _DTYPES[precision]


def autocast(precision: str, device_type: str = "cuda") -> contextlib.AbstractContextManager[Any]:
    """The autocast context for ``precision`` on ``device_type`` (``cuda`` or ``cpu``); fp32 disables autocast."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return torch.autocast(device_type=device_type, enabled=False)
    return torch.autocast(device_type=device_type, dtype=dtype)


def fp32_region(device_type: str = "cuda") -> contextlib.AbstractContextManager[Any]:
    """Disable autocast inside the block; inputs must still be cast with ``.float()`` by the caller."""
    return torch.autocast(device_type=device_type, enabled=False)


def needs_grad_scaler(precision: str) -> bool:
    """Only fp16 needs loss scaling; bf16 has fp32's exponent range."""
    return autocast_dtype(precision) is torch.float16


class InstanceNorm2dFP32(nn.InstanceNorm2d):
    """InstanceNorm2d computed in float32 whatever the input dtype; output keeps the input dtype.

    Under bf16 autocast the per-channel mean/variance over large feature maps would otherwise be accumulated from
    8-bit-mantissa values. The cast costs one elementwise pass and keeps channels_last layout.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (torch's name)
        if input.dtype == torch.float32:
            return super().forward(input)
        with torch.autocast(device_type=input.device.type, enabled=False):
            return super().forward(input.float()).to(input.dtype)


def checkpointed(fn: Callable[..., torch.Tensor], *args: Any, enabled: bool = True) -> torch.Tensor:
    """``fn(*args)``, recomputed in backward instead of storing activations when ``enabled`` and grad is on."""
    if enabled and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        return checkpoint(fn, *args, use_reentrant=False)  # type: ignore[no-any-return]
    return fn(*args)


class CheckpointableBlock(nn.Module):
    """Base for blocks that may trade compute for memory: subclasses implement ``forward_impl``.

    ``activation_checkpointing`` is off by default; :func:`set_activation_checkpointing` turns it on for a whole
    network. It only applies in training mode, so eval/synthesis never pays the recompute.
    """

    activation_checkpointing: bool = False

    def forward_impl(self, *args: Any) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must implement forward_impl")

    def forward(self, *args: Any) -> torch.Tensor:
        return checkpointed(self.forward_impl, *args, enabled=self.activation_checkpointing and self.training)


_FLAGS = ("activation_checkpointing", "checkpointing")


def set_activation_checkpointing(root: nn.Module, enabled: bool = True,
                                 types: tuple[type[nn.Module], ...] | None = None) -> int:
    """Switch activation checkpointing on (or off) for the blocks under ``root``; returns how many were switched.

    Without ``types``, every submodule carrying a boolean ``activation_checkpointing`` (:class:`CheckpointableBlock`)
    or ``checkpointing`` attribute (the generator's ``ResBlock``) is switched; with ``types``, instances of those.
    0 means the network has no such blocks, worth a log line.
    """
    count = 0
    for module in root.modules():
        if types is not None and not isinstance(module, types):
            continue
        for flag in _FLAGS:
            if isinstance(getattr(module, flag, None), bool):
                setattr(module, flag, enabled)
                count += 1
                break
    return count
