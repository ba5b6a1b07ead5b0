"""GPU-efficiency helpers of the GAN networks.

- ``channels_last``: convert modules and 4-D tensors to NHWC memory, the layout cuDNN's tensor-core convolutions
  run fastest in; other tensors pass through unchanged.
- ``autocast`` / ``autocast_dtype``: the mixed-precision context for a precision string (``fp32`` disables it,
  ``bf16``, ``fp16``).
- ``InstanceNorm2dFP32``: an ``nn.InstanceNorm2d`` that normalises in float32 and returns the input dtype, so
  bf16/fp16 activations do not lose the statistics' precision. Same parameters and state-dict keys as the torch one.

Activation checkpointing lives in the block that uses it (:class:`~.blocks.ResBlock`).
"""

from __future__ import annotations

import contextlib
from typing import Any, TypeVar

import torch
from torch import nn

from v2vcli.errors import ConfigError, did_you_mean

__all__ = ["PRECISIONS", "channels_last", "autocast_dtype", "autocast", "InstanceNorm2dFP32"]

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
