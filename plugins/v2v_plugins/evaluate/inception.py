"""The FID Inception v3 network (TensorFlow's 2015-12-05 graph as ported by pytorch-fid), built from torchvision.

FID numbers are only comparable when computed with TF's Inception graph, which differs from torchvision's
Inception v3 in three ways: 1008 output classes, average pools that do not count zero padding (TF semantics), and
a max pool instead of an average pool in the pool branch of the last block. The network here is torchvision's
``Inception3`` with the mixed blocks swapped for subclasses that change only those pools, so its state-dict keys
are exactly those of the ``inception_fid`` weights file (``pt_inception-2015-12-05-6726825d.pth``). The block
structure and the feature taps (64, 192, 768, 2048 dims) follow pytorch-fid (Apache-2.0), which v2v reproduces
but does not import.

Imported lazily (it imports torch at module level): only the FID metric and tests use it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import inception as tv_inception

from v2vcli.errors import ConfigError, WeightsError

__all__ = [
    "FID_DIMS",
    "FIDInceptionA",
    "FIDInceptionC",
    "FIDInceptionE1",
    "FIDInceptionE2",
    "build_fid_inception_v3",
    "FIDInceptionFeatures",
    "load_fid_inception",
    "fold_batchnorm",
]

log = logging.getLogger(__name__)

# Feature dims → index of the last block needed (pytorch-fid's BLOCK_INDEX_BY_DIM).
FID_DIMS: dict[int, int] = {64: 0, 192: 1, 768: 2, 2048: 3}


def _tf_avg_pool(x: Tensor) -> Tensor:
    # TensorFlow's average pool ignores zero padding.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(tv_inception.InceptionA):
    """torchvision's InceptionA with TF's pool semantics in the pool branch."""

    def _forward(self, x: Tensor) -> list[Tensor]:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_tf_avg_pool(x))
        return [b1, b5, b3, bp]


class FIDInceptionC(tv_inception.InceptionC):
    """torchvision's InceptionC with TF's pool semantics in the pool branch."""

    def _forward(self, x: Tensor) -> list[Tensor]:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            b7d = layer(b7d)
        bp = self.branch_pool(_tf_avg_pool(x))
        return [b1, b7, b7d, bp]


class _FIDInceptionE(tv_inception.InceptionE):
    max_pool = False  # the pool of the pool branch: TF average pool, or max pool (Mixed_7c)

    def _pool(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)

    def _forward(self, x: Tensor) -> list[Tensor]:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        b3d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = torch.cat([self.branch3x3dbl_3a(b3d), self.branch3x3dbl_3b(b3d)], 1)
        bp = self.branch_pool(self._pool(x))
        return [b1, b3, b3d, bp]


class FIDInceptionE1(_FIDInceptionE):
    """First InceptionE block (Mixed_7b): TF average pool."""


class FIDInceptionE2(_FIDInceptionE):
    """Second InceptionE block (Mixed_7c): the TF graph has a max pool here (kept for comparability)."""

    max_pool = True


def build_fid_inception_v3() -> nn.Module:
    """The full FID Inception v3 (1008 classes, no aux head) with torchvision's default (random) init."""
    net = tv_inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE1(1280)
    net.Mixed_7c = FIDInceptionE2(2048)
    return net


class FIDInceptionFeatures(nn.Module):
    """Pooled FID features of preprocessed 299×299 inputs: (B, 3, 299, 299) in [-1, 1] → (B, dims).

    Only the blocks up to the requested tap are kept (64 dims needs three convolutions, 2048 the whole network).
    Spatial maps of the earlier taps are averaged to one vector as pytorch-fid does.
    """

    def __init__(self, inception: nn.Module, dims: int = 2048) -> None:
        super().__init__()
        if dims not in FID_DIMS:
            raise ConfigError(f"FID dims must be one of {sorted(FID_DIMS)}, got {dims}")
        self.dims = dims
        last = FID_DIMS[dims]
        net: Any = inception
        blocks: list[nn.Module] = [nn.Sequential(net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3,
                                                 nn.MaxPool2d(kernel_size=3, stride=2))]
        if last >= 1:
            blocks.append(nn.Sequential(net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2)))
        if last >= 2:
            blocks.append(nn.Sequential(net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b,
                                        net.Mixed_6c, net.Mixed_6d, net.Mixed_6e))
        if last >= 3:
            blocks.append(nn.Sequential(net.Mixed_7a, net.Mixed_7b, net.Mixed_7c))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        y = self.blocks(x)
        return F.adaptive_avg_pool2d(y, output_size=(1, 1)).flatten(1)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every eval-mode ``BasicConv2d`` (conv without bias + BatchNorm) into one biased conv, in place.

    Saves one memory pass per layer on CPU; changes results only by float32 rounding (~1e-6 relative).
    """
    for name, child in list(module.named_children()):
        if isinstance(child, tv_inception.BasicConv2d):
            conv, bn = child.conv, child.bn
            if bn.running_var is None or bn.running_mean is None:  # no statistics to fold
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,  # type: ignore[arg-type]
                              stride=conv.stride, padding=conv.padding, bias=True)  # type: ignore[arg-type]
            assert fused.bias is not None  # noqa: S101 - bias=True creates it
            with torch.no_grad():
                fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
                fused.bias.copy_(bn.bias - bn.running_mean * scale)
            setattr(module, name, nn.Sequential(fused, nn.ReLU(inplace=True)))
        else:
            fold_batchnorm(child)
    return module


def load_fid_inception(path: str | Path, dims: int = 2048, device: str | torch.device = "cpu", *,
                       fuse: bool = False) -> FIDInceptionFeatures:
    """Build the FID network, load the state dict at ``path`` (strict) and return the feature extractor in eval
    mode on ``device``. ``fuse`` folds BatchNorm into the convolutions (faster on CPU, float32 rounding only)."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise WeightsError(f"cannot read Inception weights '{path}' ({type(exc).__name__}: {exc}); expected "
                           f"pytorch-fid's pt_inception-2015-12-05-6726825d.pth") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    net = build_fid_inception_v3()
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"'{path}' is not an FID Inception state dict ({first}); expected pytorch-fid's "
                           f"pt_inception-2015-12-05-6726825d.pth") from exc
    model = FIDInceptionFeatures(net, dims).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if fuse:
        fold_batchnorm(model)
    return model.to(device)
