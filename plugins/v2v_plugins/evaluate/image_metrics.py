"""PSNR and SSIM of paired frames (real frame t vs fake frame t), per frame, per sequence and overall.

Both follow scikit-image so numbers match ``skimage.metrics`` on uint8 RGB frames:

* PSNR = 10 log10(255² / MSE), MSE over all pixels and channels in float64 (``peak_signal_noise_ratio`` with
  ``data_range=255``); identical frames give +inf (written as "inf" in JSON).
* SSIM as ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255, channel_axis=-1)``: an 11×11 Gaussian window (σ 1.5, truncated at 3.5σ), K1 0.01, K2 0.03,
  the SSIM map averaged over the pixels at least 5 from the border, then over channels. Computed here in torch
  float64 with valid convolutions, which is exact because skimage crops exactly the border its padding touches.

The value reported is the mean over all frame pairs of all paired sequences; ``per_sequence`` holds each
sequence's mean and ``per_frame`` every frame's value.
"""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from v2vcli.errors import ConfigError, VideoError
from v2vcli.io.inputs import estimated_frames, pair_inputs, paired_frames, resolve_input
from v2vcli.metric import (SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_TRUNCATE, Metric, MetricResult, gaussian_window, psnr,
                           ssim)
from v2vcli.runtime import progress

__all__ = ["PairedConfig", "PairedFrameMetric", "PSNR", "SSIM"]

log = logging.getLogger(__name__)

@dataclass(kw_only=True)
class PairedConfig:
    """Options of the paired-frame metrics (``v2v eval psnr``, ``v2v eval ssim``)."""

    resize_fake: bool = field(default=False, metadata={
        "help": "Resize fake frames to the real frame size when they differ (else an error)."})


class PairedFrameMetric(Metric):
    """A metric of each (real, fake) frame pair, averaged over all pairs."""

    Config = PairedConfig
    unit = ""

    @abstractmethod
    def frame_value(self, real: Any, fake: Any) -> float:
        """The metric of one RGB uint8 (H, W, 3) frame pair."""

    def compute(self, real: str | Path | None, fake: str | Path) -> MetricResult:
        if real is None:
            raise ConfigError(f"{self.name} needs --real PATH")
        cfg: PairedConfig = self.config
        pairs = pair_inputs(resolve_input(real, "--real"), resolve_input(fake, "--fake"))
        notes: list[str] = []
        per_frame: dict[str, list[float]] = {}
        with progress(estimated_frames(r for r, _ in pairs), self.name) as advance:
            for r, f in pairs:
                values = []
                for r_frame, f_frame in paired_frames(r, f, resize_fake=cfg.resize_fake, notes=notes):
                    values.append(self.frame_value(r_frame, f_frame))
                    advance(1)
                if not values:
                    raise VideoError(f"sequence '{f.name}' has no frame pairs to compare")
                per_frame[f.name] = values
        every = [v for vals in per_frame.values() for v in vals]
        return self.result(
            _mean(every),
            per_sequence={name: _mean(vals) for name, vals in per_frame.items()},
            per_frame=per_frame,
            protocol=self.protocol(),
            details={"frames": len(every), "pairs": [[r.name, f.name] for r, f in pairs]},
            warnings=notes)

    def protocol(self) -> dict[str, Any]:
        return {}


def _mean(values: list[float]) -> float:
    if any(math.isinf(v) for v in values):
        return math.inf if all(v > 0 for v in values if math.isinf(v)) else math.nan
    return math.fsum(values) / len(values)


class PSNR(PairedFrameMetric):
    """Peak signal-to-noise ratio of paired frames in dB (higher is better)."""

    name = "psnr"
    description = "PSNR (dB) of paired frames, as skimage's peak_signal_noise_ratio with data_range=255."
    higher_is_better = True
    unit = "dB"

    def frame_value(self, real: Any, fake: Any) -> float:
        return psnr(real, fake)

    def protocol(self) -> dict[str, Any]:
        return {"data_range": 255, "mse": "over all pixels and RGB channels, float64",
                "aggregate": "mean of per-frame PSNR over all frame pairs", "reference": "skimage.metrics"}


class SSIM(PairedFrameMetric):
    """Structural similarity of paired frames (higher is better)."""

    name = "ssim"
    description = "SSIM of paired frames, as skimage's structural_similarity with a Gaussian window."
    higher_is_better = True

    def frame_value(self, real: Any, fake: Any) -> float:
        return ssim(real, fake)

    def protocol(self) -> dict[str, Any]:
        return {"data_range": 255, "gaussian_weights": True, "sigma": SSIM_SIGMA, "truncate": SSIM_TRUNCATE,
                "win_size": len(gaussian_window()), "K1": SSIM_K1, "K2": SSIM_K2, "use_sample_covariance": False,
                "channels": "SSIM per RGB channel, averaged", "aggregate": "mean over all frame pairs",
                "reference": "skimage.metrics.structural_similarity"}
