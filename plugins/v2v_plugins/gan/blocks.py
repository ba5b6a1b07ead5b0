"""Building blocks of the generators (vid2vid, perframe, predict): normalisation choice, reflect-padded convolutions,
residual blocks, down/up-sampling stages and the N(0, 0.02) initialisation (docs/architecture.md, "The vid2vid
model").

Every convolution followed by a normalisation keeps its bias, as the official networks do: the parity parameter
counts include those biases and the norms' affine parameters.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["make_norm", "conv7", "conv7_out", "down", "up", "ResBlock", "res_blocks", "init_weights"]


def make_norm(kind: str, channels: int) -> nn.Module:
    """``instance`` → InstanceNorm2d(affine=True) (the parity default), ``batch`` → BatchNorm2d, ``syncbatch``."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "syncbatch":
        # Outside an initialised process group SyncBatchNorm computes plain batch norm.
        return nn.SyncBatchNorm(channels)
    raise ValueError(f"unknown norm '{kind}' (instance, batch, syncbatch)")


def conv7(cin: int, cout: int, norm: str) -> list[nn.Module]:
    """Reflect-pad 3 + 7×7 conv + norm + ReLU: the full-resolution entry of every stream."""
    return [nn.ReflectionPad2d(3), nn.Conv2d(cin, cout, 7), make_norm(norm, cout), nn.ReLU(True)]


def conv7_out(cin: int, cout: int) -> nn.Sequential:
    """Reflect-pad 3 + 7×7 conv without norm: an output layer (tanh/sigmoid are applied by the caller)."""
    return nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(cin, cout, 7))


def down(cin: int, cout: int, norm: str) -> list[nn.Module]:
    """3×3 stride-2 conv (padding 1) + norm + ReLU: halves H and W."""
    return [nn.Conv2d(cin, cout, 3, stride=2, padding=1), make_norm(norm, cout), nn.ReLU(True)]


def up(cin: int, cout: int, norm: str) -> list[nn.Module]:
    """3×3 stride-2 transposed conv (padding 1, output_padding 1) + norm + ReLU: doubles H and W exactly."""
    return [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1), make_norm(norm, cout),
            nn.ReLU(True)]


class ResBlock(nn.Module):
    """x + [reflect-pad, 3×3 conv, norm, ReLU, reflect-pad, 3×3 conv, norm](x).

    With ``checkpointing`` on, the block's activations are recomputed in backward (training memory for compute).
    """

    def __init__(self, channels: int, norm: str, checkpointing: bool = False) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), make_norm(norm, channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), make_norm(norm, channels),
        )
        self.checkpointing = checkpointing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return x + checkpoint(self.block, x, use_reentrant=False)
        return x + self.block(x)


def res_blocks(n: int, channels: int, norm: str, checkpointing: bool = False) -> list[nn.Module]:
    return [ResBlock(channels, norm, checkpointing) for _ in range(n)]


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Conv weights ~ N(0, std), biases 0; norm weights ~ N(1, std), biases 0 (no-op on the meta device)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d, nn.SyncBatchNorm)) and m.affine:
            weight: Any = m.weight
            nn.init.normal_(weight, 1.0, std)
            nn.init.zeros_(m.bias)
