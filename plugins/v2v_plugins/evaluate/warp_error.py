"""Flow-warping error (Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018, Eq. 7).

For every pair of consecutive frames t-1, t of a sequence:

1. the backward flow t→t-1 and its forward-backward occlusion mask M_t (Sundaram et al. 2010, as
   :func:`v2vcli.flow.forward_backward_confidence`) are computed on the *reference* video: ``--real`` when given
   (how consistent is the fake with the real motion), else the fake itself;
2. the previous fake frame is warped to t with that flow (:func:`v2vcli.warp.warp_numpy`: bilinear, border);
3. E_t = Σ_p M_t(p) ‖V_t(p) − warp(V_{t-1})(p)‖² / Σ_p M_t(p), colours in [0, 1], the squared norm over RGB
   (so it is 3× a per-channel MSE), as in Lai et al.'s evaluation code; a fully occluded pair counts 0.

A sequence's error is the mean of E_t over its T-1 pairs; the reported value is the mean over sequences (Lai et
al. average per video). The flow backend is any registered flow estimator (``--flow dis`` by default, ``farneback``,
``raft_small``/``raft_large`` with weights), so numbers are comparable only for the same backend.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from v2vcli.errors import VideoError
from v2vcli.io.inputs import (InputSequence, estimated_frames, iter_frames, pair_inputs, paired_frames,
                             resolve_input)
from v2vcli.metric import Metric, MetricResult
from v2vcli.registry import get_registry
from v2vcli.runtime import progress
from v2vcli.weights import weights_entries

__all__ = ["WarpErrorConfig", "WarpError", "warp_error_pair", "warp_error_frames"]

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class WarpErrorConfig:
    """Options of ``v2v eval warp-error``."""

    flow: str = field(default="dis", metadata={
        "help": "Flow estimator run on the reference video (dis, farneback, raft_small, raft_large, ...)."})
    resize_fake: bool = field(default=False, metadata={
        "help": "Resize fake frames to the real frame size when they differ (else an error)."})


def warp_error_pair(fake_prev: Any, fake_cur: Any, flow: Any, conf: Any) -> tuple[float, int]:
    """E_t of one pair: RGB uint8 frames, backward flow (H, W, 2), confidence uint8 (255 = visible).

    Returns the error and the number of pixels the mask kept.
    """
    from v2vcli.warp import warp_numpy

    prev = np.asarray(fake_prev, dtype=np.float32) / 255.0
    cur = np.asarray(fake_cur, dtype=np.float64) / 255.0
    warped = warp_numpy(prev, flow).astype(np.float64)
    mask = (np.asarray(conf) >= 128).astype(np.float64)
    kept = int(mask.sum())
    if kept == 0:
        return 0.0, 0
    sq = np.sum((warped - cur) ** 2, axis=-1)
    return float(np.sum(sq * mask) / kept), kept


def warp_error_frames(pairs: Iterable[tuple[Any, Any]], estimator: Any,
                      advance: Any = None) -> tuple[list[float], int]:
    """Per-pair warping errors of a sequence given (reference frame, fake frame) tuples in order.

    Returns the T-1 errors and how many pairs were fully occluded.
    """
    errors: list[float] = []
    occluded = 0
    prev_ref = prev_fake = None
    for ref, fake in pairs:
        if prev_ref is not None:
            flow, conf = estimator.with_confidence(ref, prev_ref)
            err, kept = warp_error_pair(prev_fake, fake, flow, conf)
            errors.append(err)
            occluded += kept == 0
        prev_ref, prev_fake = ref, fake
        if advance is not None:
            advance(1)
    return errors, occluded


class WarpError(Metric):
    """Flow-warping error of the fake video under the reference video's motion (lower is better)."""

    name = "warp_error"
    description = "Flow-warping error (Lai et al. 2018): occlusion-masked error of the fake's warped previous frame."
    higher_is_better = False
    needs_real = False
    Config = WarpErrorConfig

    def estimator(self) -> Any:
        cfg: WarpErrorConfig = self.config
        cls = get_registry().get_flow_estimator(cfg.flow)
        config = None
        options = getattr(cls, "Config", None)
        # Learned estimators (raft_*) take a weights file: `--weights raft_large=PATH` reaches them here, and
        # the file's sha256 goes into the result.
        if is_dataclass(options) and "weights" in {f.name for f in fields(options)}:
            if cfg.flow in weights_entries():
                # cast: Config is a class, though is_dataclass would also admit an instance
                config = cast(Any, options)(weights=str(self.weights_path(cfg.flow)))
        return cls(config, self.device)

    def compute(self, real: str | Path | None, fake: str | Path) -> MetricResult:
        cfg: WarpErrorConfig = self.config
        fake_in = resolve_input(fake, "--fake")
        pairs: list[tuple[InputSequence | None, InputSequence]]
        if real is None:
            pairs = [(None, s) for s in fake_in.sequences]
        else:
            pairs = list(pair_inputs(resolve_input(real, "--real"), fake_in))
        estimator = self.estimator()
        notes: list[str] = []
        per_frame: dict[str, list[float]] = {}
        occluded: dict[str, int] = {}
        with progress(estimated_frames(f for _, f in pairs), "warp error") as advance:
            for r, f in pairs:
                frames = (paired_frames(r, f, resize_fake=cfg.resize_fake, notes=notes) if r is not None
                          else ((x, x) for x in iter_frames(f)))
                errors, n_occ = warp_error_frames(frames, estimator, advance)
                if not errors:
                    raise VideoError(f"sequence '{f.name}' needs at least 2 frames for the warping error")
                per_frame[f.name] = errors
                occluded[f.name] = n_occ
        per_sequence = {name: math.fsum(v) / len(v) for name, v in per_frame.items()}
        value = math.fsum(per_sequence.values()) / len(per_sequence)
        return self.result(
            value,
            per_sequence=per_sequence,
            per_frame=per_frame,
            protocol={"flow": cfg.flow, "flow_on": "real" if real is not None else "fake",
                      "occlusion": "forward-backward consistency (alpha 0.01, beta 0.5)",
                      "error": "masked squared RGB distance in [0, 1], mean over frame pairs, then over sequences",
                      "warp": "bilinear, border padding, align_corners=True", "reference": "Lai et al. 2018"},
            details={"frame_pairs": sum(len(v) for v in per_frame.values()), "fully_occluded_pairs": occluded,
                     "pairs": [[r.name if r is not None else None, f.name] for r, f in pairs]},
            warnings=notes)
