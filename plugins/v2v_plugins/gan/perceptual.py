"""VGG19 perceptual loss of vid2vid (docs/architecture.md "Losses").

Features relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 of torchvision's VGG19 architecture (``features`` indices
1, 6, 11, 20, 29), weighted 1/32, 1/16, 1/8, 1/4, 1; L1 between the fake's features and the (detached) real's.
Images arrive in [-1, 1]. ``input_norm="official"`` (the default) feeds them to VGG19 unchanged, as the official
vid2vid/pix2pixHD ``VGGLoss`` does; ``"imagenet"`` maps them to [0, 1] and applies the ImageNet mean/std torchvision's
weights were trained with (features about 2× larger, so the effective ``lambda_vgg`` changes). Both are
average-pooled by 2 until their width is ≤ ``max_width`` (1024), which keeps 2048-wide training affordable.

Weights come from the registry name ``vgg19`` (torchvision's ``vgg19-dcbb9e9d.pth``) through
:func:`v2vcli.weights.resolve_weights`, loaded with ``torch.load(weights_only=True)``; only the ``features.*``
tensors up to relu5_1 are kept. Tests pass ``random_init=True`` or their own ``features`` module instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from v2vcli.errors import ConfigError, WeightsError, did_you_mean
from v2vcli.weights import resolve_weights

__all__ = ["VGG19_LAYERS", "VGG19_LAYER_WEIGHTS", "IMAGENET_MEAN", "IMAGENET_STD", "VGG_INPUTS", "VGG19Features",
           "load_vgg19_features", "pool_to_width", "VGGLoss"]

VGG19_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
VGG19_LAYER_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_INPUTS: tuple[str, ...] = ("official", "imagenet")  # loss.vgg_input: raw [-1, 1] | ImageNet-normalised
_CUTS = (2, 7, 12, 21, 30)  # slice ends in torchvision's vgg19().features: after relu1_1, relu2_1, ...


class VGG19Features(nn.Module):
    """torchvision's VGG19 ``features`` up to relu5_1, split into the five slices; ``forward`` → 5 maps.

    Built with torchvision's own ``make_layers`` and configuration "E", so ``features.N.*`` state-dict keys
    of torchvision checkpoints map one to one onto ``self.features``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = make_layers(cfgs["E"], batch_norm=False)[:_CUTS[-1]]
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        start = 0
        for end in _CUTS:
            for i in range(start, end):
                x = self.features[i](x)
            out.append(x)
            start = end
        return out

    def load_torchvision_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load the ``features.*`` tensors of a torchvision VGG19 state dict (classifier tensors are ignored)."""
        wanted = self.features.state_dict().keys()
        sub = {k[len("features."):]: v for k, v in state.items()
               if k.startswith("features.") and k[len("features."):] in wanted}
        missing = sorted(set(wanted) - set(sub))
        if missing:
            raise WeightsError(f"the vgg19 weights lack {len(missing)} feature tensors (e.g. 'features."
                               f"{missing[0]}'); use torchvision's vgg19-dcbb9e9d.pth")
        self.features.load_state_dict({k: v.float() for k, v in sub.items()})


def load_vgg19_features(weights: str | Path | None = None, *, name: str = "vgg19",
                        verify: bool = True) -> VGG19Features:
    """VGG19 features with the registry's ``name`` weights (``weights``: an explicit path, as --weights gives).

    ``name`` lets a plugin register another torchvision-format VGG19 file; a missing file is a WeightsError that
    says where to get it.
    """
    path = resolve_weights(name, weights, verify=verify)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt/unsafe pickle
        raise WeightsError(f"cannot load vgg19 weights from '{path}': {exc}") from exc
    if not isinstance(state, Mapping):
        raise WeightsError(f"'{path}' does not hold a state dict; use torchvision's vgg19-dcbb9e9d.pth")
    model = VGG19Features()
    model.load_torchvision_state_dict(state)
    return model


def pool_to_width(x: torch.Tensor, max_width: int) -> torch.Tensor:
    """Average-pool by 2 (2×2, stride 2) until the width is ≤ ``max_width``."""
    while x.shape[-1] > max_width:
        x = F.avg_pool2d(x, 2)
    return x


class VGGLoss(nn.Module):
    """Σ_l w_l · L1(φ_l(fake), φ_l(real)) over the five VGG19 layers; real features carry no gradient.

    One of: ``features`` (any module returning a list of maps, e.g. a test double), ``random_init=True``
    (random VGG19, for tests), or the ``vgg19`` weights (``weights`` path or the registry lookup; a
    :class:`WeightsError` when absent). The extractor is frozen and always in eval mode. It runs under the caller's
    autocast (bf16 features are accurate enough and halve its cost); the L1 is taken in float32.
    """

    mean: torch.Tensor  # buffers registered in __init__
    std: torch.Tensor

    def __init__(self, *, features: nn.Module | None = None, weights: str | Path | None = None,
                 weights_name: str = "vgg19", random_init: bool = False, verify: bool = True,
                 layer_weights: Sequence[float] = VGG19_LAYER_WEIGHTS, max_width: int = 1024,
                 input_norm: str = "official") -> None:
        super().__init__()
        if input_norm not in VGG_INPUTS:
            raise ConfigError(f"loss.vgg_input '{input_norm}' is not one of {', '.join(VGG_INPUTS)}"
                              f"{did_you_mean(input_norm, VGG_INPUTS)}")
        self.input_norm = input_norm
        if features is None:
            features = VGG19Features() if random_init else load_vgg19_features(weights, name=weights_name,
                                                                                verify=verify)
        self.net = features.eval().requires_grad_(False)
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.max_width = max_width
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGLoss:
        super().train(mode)
        self.net.eval()  # a frozen extractor: no dropout, no BN statistics updates, whatever the trainer does
        return self

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images → pooled to ≤ max_width; unchanged (official) or ImageNet-normalised (imagenet)."""
        x = pool_to_width(x, self.max_width)
        if self.input_norm == "official":
            return x
        return ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) each, in [-1, 1]
        return self.multi([fake], real)[0]

    def multi(self, fakes: Sequence[torch.Tensor], real: torch.Tensor) -> list[torch.Tensor]:
        """One loss per fake batch against the same ``real``: the real features are computed once and the
        fakes go through the extractor as one batch (final and raw frames share a pass)."""
        n = real.shape[0]
        f_fake = self.net(self.prepare(torch.cat([f.to(real.dtype) for f in fakes], 0)))
        with torch.no_grad():
            f_real = self.net(self.prepare(real))
        if len(f_fake) != len(self.layer_weights):
            raise ValueError(f"feature extractor gave {len(f_fake)} maps for {len(self.layer_weights)} weights")
        losses = []
        for i in range(len(fakes)):
            loss = real.new_zeros((), dtype=torch.float32)
            for w, a, b in zip(self.layer_weights, f_fake, f_real):
                loss = loss + w * F.l1_loss(a[i * n:(i + 1) * n].float(), b.detach().float())
            losses.append(loss)
        return losses
