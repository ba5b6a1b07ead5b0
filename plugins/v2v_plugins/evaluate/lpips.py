"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"), VGG variant.

For a (real, fake) frame pair, as the ``lpips`` package (BSD-2, v0.1, ``net="vgg"``) computes it:

1. RGB uint8 → [−1, 1] (2x/255 − 1), then the package's scaling layer (x − shift) / scale with
   shift (−0.030, −0.088, −0.188), scale (0.458, 0.448, 0.450);
2. torchvision VGG16 ``features`` (registry weights ``vgg16``), activations after relu1_2, relu2_2, relu3_3,
   relu4_3, relu5_3;
3. each activation normalised to unit length over channels (x / (‖x‖₂ + 1e-10));
4. squared difference, a 1×1 convolution without bias to one channel (the learned "linear heads": registry
   weights ``lpips_vgg``, the package's ``weights/v0.1/vgg.pth`` with keys ``lin{k}.model.1.weight``),
   averaged over space;
5. summed over the five layers.

Frames are compared at their own size (no resizing, as the package does); the reported value is the mean over
all frame pairs (lower is better).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from v2v_plugins.evaluate.image_metrics import PairedConfig, PairedFrameMetric
from v2vcli.errors import WeightsError

__all__ = ["LPIPS", "LPIPSNet", "LPIPS_SHIFT", "LPIPS_SCALE", "VGG16_TAPS", "LPIPS_CHANNELS"]

log = logging.getLogger(__name__)

LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
# Index after which each tapped ReLU sits in torchvision's vgg16().features (relu1_2 ... relu5_3).
VGG16_TAPS = (3, 8, 15, 22, 29)
LPIPS_CHANNELS = (64, 128, 256, 512, 512)


def _lpips_module() -> Any:
    import torch
    from torch import nn

    class _Net(nn.Module):
        """VGG16 trunk up to relu5_3 and the five linear heads."""

        shift: torch.Tensor  # buffers registered in __init__
        scale: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            from torchvision.models.vgg import cfgs, make_layers

            # vgg16().features without building the 120M-parameter classifier LPIPS never uses.
            self.trunk = make_layers(cfgs["D"])[:VGG16_TAPS[-1] + 1]
            self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in LPIPS_CHANNELS)
            self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
            self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))

        def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
            x = (x - self.shift) / self.scale
            out = []
            for i, layer in enumerate(self.trunk):
                x = layer(x)
                if i in VGG16_TAPS:
                    out.append(x)
            return out

        def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
            """LPIPS of (B, 3, H, W) images in [−1, 1] → (B,)."""
            total = torch.zeros(x0.shape[0], device=x0.device)
            for head, f0, f1 in zip(self.heads, self.taps(x0), self.taps(x1)):
                n0 = f0 / (f0.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
                n1 = f1 / (f1.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
                total = total + head((n0 - n1) ** 2).mean(dim=(1, 2, 3))
            return total

    return _Net


def LPIPSNet(vgg16_path: str | Path | None = None, heads_path: str | Path | None = None,
             device: Any = "cpu") -> Any:
    """The LPIPS-VGG network (eval mode) with torchvision VGG16 weights and lpips v0.1 heads from files.

    Either path may be None (random weights: tests only).
    """
    import torch

    net = _lpips_module()()
    if vgg16_path is not None:
        state = torch.load(str(vgg16_path), map_location="cpu", weights_only=True)
        feats = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        try:
            net.trunk.load_state_dict({k: v for k, v in feats.items() if int(k.split(".")[0]) <= VGG16_TAPS[-1]})
        except RuntimeError as exc:
            raise WeightsError(f"'{vgg16_path}' is not a torchvision VGG16 state dict: {exc}") from exc
    if heads_path is not None:
        state = torch.load(str(heads_path), map_location="cpu", weights_only=True)
        try:
            net.heads.load_state_dict({k.removeprefix("lin").replace(".model.1.", "."): v
                                       for k, v in state.items()})
        except RuntimeError as exc:
            raise WeightsError(f"'{heads_path}' is not the lpips v0.1 vgg.pth (keys lin0..lin4.model.1.weight): "
                               f"{exc}") from exc
    return net.eval().to(device)


class LPIPS(PairedFrameMetric):
    """Learned perceptual image patch similarity of paired frames, VGG variant (lower is better)."""

    name = "lpips"
    description = "LPIPS (VGG16, lpips v0.1 linear heads) of paired frames."
    higher_is_better = False
    weight_names = ("vgg16", "lpips_vgg")
    Config = PairedConfig

    def __init__(self, config: PairedConfig | None = None, device: str = "cpu", weights: Any = None, *,
                 verify_weights: bool = True) -> None:
        super().__init__(config, device, weights, verify_weights=verify_weights)
        self._net: Any = None

    def net(self) -> Any:
        if self._net is None:
            self._net = LPIPSNet(self.weights_path("vgg16"), self.weights_path("lpips_vgg"), self.device)
        return self._net

    def frame_value(self, real: Any, fake: Any) -> float:
        return float(self.batch_values([real], [fake])[0])

    def batch_values(self, reals: list[Any], fakes: list[Any]) -> list[float]:
        """LPIPS of RGB uint8 frame pairs (all of one size)."""
        import torch

        def prep(frames: list[Any]) -> torch.Tensor:
            x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
            return (x / 255 * 2 - 1).to(self.device)

        net = self.net()
        with torch.inference_mode():
            return [float(v) for v in net(prep(reals), prep(fakes)).cpu()]

    def protocol(self) -> dict[str, Any]:
        return {"network": "torchvision VGG16 features, taps relu1_2 relu2_2 relu3_3 relu4_3 relu5_3",
                "heads": "lpips v0.1 vgg.pth linear heads", "input": "RGB 2x/255-1, lpips scaling layer",
                "size": "frames at their own size", "aggregate": "mean over all frame pairs",
                "reference": "lpips package 0.1.4 (net='vgg', version='0.1')"}
