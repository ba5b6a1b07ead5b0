"""A template metric: ``mean_abs_error``, the mean absolute difference of paired frames in 8-bit levels.

Copy this file to add a metric. The contract (:class:`v2vcli.metric.Metric`):

* ``name`` is fixed and snake_case (``v2v eval mean-abs-error`` on the command line, ``compute_metric
  ("mean_abs_error", ...)`` from Python);
* ``Config`` is a keyword-only dataclass; each field becomes ``--field-name`` (help from ``metadata["help"]``);
* ``compute(real, fake)`` takes two input PATHs (video, frame folder, dataset sequence folder or dataset root) and
  returns ``self.result(value, ...)``, which fills in the options and library versions. :mod:`v2vcli.io.inputs`
  resolves and pairs the PATHs the way every built-in metric does.

The module is imported when the ``v2v eval`` commands are built, so it stays light: numpy only (a metric that
needs torch imports it inside ``compute``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from v2vcli.errors import ConfigError, VideoError
from v2vcli.io.inputs import pair_inputs, paired_frames, resolve_input
from v2vcli.metric import Metric, MetricResult

__all__ = ["MeanAbsErrorConfig", "MeanAbsError"]

# BT.601 luma weights of RGB
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(kw_only=True)
class MeanAbsErrorConfig:
    """Options of ``v2v eval mean-abs-error``."""

    luma: bool = field(default=False, metadata={"help": "Compare the luma (BT.601) instead of the RGB channels."})
    resize_fake: bool = field(default=False, metadata={
        "help": "Resize fake frames to the real frame size when they differ (else an error)."})


class MeanAbsError(Metric):
    """Mean |real − fake| over every pixel of every paired frame (lower is better; 0 for identical videos)."""

    name: ClassVar[str] = "mean_abs_error"
    description: ClassVar[str] = "Mean absolute difference of paired frames in 8-bit levels (template metric)."
    higher_is_better: ClassVar[bool] = False
    Config: ClassVar[type] = MeanAbsErrorConfig

    def frame_value(self, real: np.ndarray, fake: np.ndarray) -> float:
        """The metric of one RGB uint8 (H, W, 3) frame pair."""
        diff = real.astype(np.float64) - fake.astype(np.float64)
        if self.config.luma:
            diff = diff @ _LUMA
        return float(np.abs(diff).mean())

    def compute(self, real: str | Path | None, fake: str | Path) -> MetricResult:
        if real is None:
            raise ConfigError(f"{self.name} needs --real PATH")
        pairs = pair_inputs(resolve_input(real, "--real"), resolve_input(fake, "--fake"))
        notes: list[str] = []
        per_frame: dict[str, list[float]] = {}
        for r, f in pairs:
            values = [self.frame_value(a, b)
                      for a, b in paired_frames(r, f, resize_fake=self.config.resize_fake, notes=notes)]
            if not values:
                raise VideoError(f"sequence '{f.name}' has no frame pairs to compare")
            per_frame[f.name] = values
        every = [v for values in per_frame.values() for v in values]
        protocol: dict[str, Any] = {"unit": "8-bit levels", "channels": "luma" if self.config.luma else "rgb"}
        return self.result(float(np.mean(every)),
                           per_sequence={name: float(np.mean(values)) for name, values in per_frame.items()},
                           per_frame=per_frame, protocol=protocol,
                           details={"frames": len(every), "pairs": [[r.name, f.name] for r, f in pairs]},
                           warnings=notes)
