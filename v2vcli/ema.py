"""The exponential moving average of a generator, which synthesis uses by default (``optim.ema_beta``)."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ema_copy", "ema_update_", "warmed_up_beta"]


def ema_copy(generator: nn.Module) -> nn.Module:
    """A frozen copy of ``generator`` in eval mode: the EMA's starting point."""
    ema = copy.deepcopy(generator).eval()
    ema.requires_grad_(False)
    return ema


def warmed_up_beta(beta: float, updates: int) -> float:
    """min(β, (1 + n)/(10 + n)) after n updates, so short runs are not dominated by the initial weights."""
    return min(beta, (1.0 + updates) / (10.0 + updates))


@torch.no_grad()
def ema_update_(ema: nn.Module, generator: nn.Module, beta: float) -> None:
    """ema ← β·ema + (1-β)·G for parameters; buffers (e.g. BatchNorm statistics) copied."""
    for e, p in zip(ema.parameters(), generator.parameters()):
        e.lerp_(p.detach(), 1.0 - beta)
    for b_e, b in zip(ema.buffers(), generator.buffers()):
        b_e.copy_(b)
