"""Scoring future prediction: per-step label mIoU (or PSNR/SSIM), the two baselines, a held-out benchmark.

Baselines (both see exactly what the model sees, the K observed frames and their flows):

* ``copy_last``: every future frame/map is the last observed one.
* ``constant_flow``: the last observed backward flow is assumed to hold for every future step, so the last
  observed state is warped by it again and again (label maps are warped as one-hot probabilities, then argmax).

mIoU follows the usual protocol: a confusion matrix is accumulated over every scored map of a horizon step
(all sequences and start frames), then IoU = TP / (TP + FP + FN) per class and the mean over the classes present
in the ground truth or the prediction of that step. Pixels with the label set's ignore id are not scored.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from v2vcli.data.clips import ClipDataset
from v2vcli.errors import DatasetError
from v2vcli.metric import confusion, miou, psnr, ssim
from v2vcli.runtime import json_safe, to_uint8
from v2vcli.warp import warp

if TYPE_CHECKING:
    import torch

    from .models import LabelPredictor, _PredictorBase

__all__ = [
    "METHODS",
    "copy_last",
    "constant_flow",
    "HorizonScores",
    "evaluate_predictor",
]

log = logging.getLogger(__name__)

#: The scored methods in report order: the model and the two baselines.
METHODS = ("model", "copy_last", "constant_flow")


def copy_last(last: torch.Tensor, horizon: int) -> list[torch.Tensor]:
    """``horizon`` copies of the last observed state (B, C, H, W)."""
    return [last.clone() for _ in range(horizon)]


def constant_flow(last: torch.Tensor, flow: torch.Tensor, horizon: int) -> list[torch.Tensor]:
    """Warp the last state (B, C, H, W) by the last backward flow (B, 2, H, W) once per future step."""
    out, cur = [], last.float()
    for _ in range(horizon):
        cur = warp(cur, flow.float())
        out.append(cur)
    return out


@dataclass
class HorizonScores:
    """Per-method, per-step scores. ``per_step[method][metric]`` is a list over the horizon steps 1..N."""

    horizon: int
    per_step: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    samples: int = 0  # predicted sequences (start frames) scored
    notes: list[str] = field(default_factory=list)

    def mean(self, method: str, metric: str) -> float:
        values = [v for v in self.per_step.get(method, {}).get(metric, []) if not math.isnan(v)]
        if not values:
            return math.nan
        if any(math.isinf(v) for v in values):
            return math.inf
        return float(np.mean(values))

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"horizon": self.horizon, "samples": self.samples,
                          "mean": {m: {k: self.mean(m, k) for k in v} for m, v in self.per_step.items()},
                          "per_step": self.per_step, "notes": self.notes})


def evaluate_predictor(model: _PredictorBase, dataset: str | Path, *, split: str = "val", horizon: int = 5,
                       stride: int = 1, max_sequences: int = 0, use_ema: bool = True) -> HorizonScores:
    """Per-step scores of ``model`` and both baselines on the ``split`` sequences of ``dataset``.

    A label predictor is scored by mIoU, a frame predictor by PSNR and SSIM (mean over predictions of each step).
    Every sequence is read at the model's size (centre crop, stride 1, the training loader's geometry). From
    each start frame t0 = K, K + stride, ... with t0 + horizon ≤ count, the K frames before t0 are observed and
    ``horizon`` states are predicted.
    """
    labels = model.kind == "labels"
    data = copy.deepcopy(model.cfg.data)
    data.root = str(dataset)
    data.inputs = ["seg"] if labels else []
    data.num_workers = 0
    clips = ClipDataset(data, split=split, history=0, need_flow=True, augment=False, label_set=model.label_set)
    if not clips.sequences:
        raise DatasetError(f"split '{split}' of '{dataset}' has no sequences to evaluate on")
    K, C = model.history_frames, model.state_nc
    confs = {m: [np.zeros((C, C), dtype=np.int64) for _ in range(horizon)] for m in METHODS}
    values: dict[str, dict[str, list[list[float]]]] = {
        m: {k: [[] for _ in range(horizon)] for k in ("psnr", "ssim")} for m in METHODS}
    samples = 0
    n_seq = len(clips.sequences) if max_sequences <= 0 else min(max_sequences, len(clips.sequences))
    rollout = model.rollout(use_ema)
    for i in range(n_seq):
        seq = clips.sequences[i]
        count = clips.counts[seq]
        if count < K + horizon:
            log.warning("sequence '%s' has %d frames, fewer than %d observed + %d predicted: skipped", seq, count, K,
                        horizon)
            continue
        batch = clips.clip(i, count).to(model.device)
        flow = batch.flow[0]  # (T, 2, H, W)
        if labels:
            seg = batch.inputs["seg"][0].long()  # (T, H, W)
            states = cast("LabelPredictor", model).one_hot(seg)  # (T, C, H, W); labels: a LabelPredictor
            gt = seg.cpu().numpy()
        else:
            states = batch.frames[0]  # (T, 3, H, W) in [-1, 1]
            gt = to_uint8(states)
        for t0 in range(K, count - horizon + 1, max(1, stride)):
            rollout.reset()
            for j in range(t0 - K, t0):
                rollout.observe(states[j:j + 1], flow[j:j + 1] if j > 0 else None)
            preds = {"model": [rollout.predict().state for _ in range(horizon)],
                     "copy_last": copy_last(states[t0 - 1:t0], horizon),
                     "constant_flow": constant_flow(states[t0 - 1:t0], flow[t0 - 1:t0], horizon)}
            for m, pred in preds.items():
                for k, state in enumerate(pred):
                    if labels:
                        confs[m][k] += confusion(gt[t0 + k], state.argmax(1)[0].cpu().numpy(), C,
                                                 cast("LabelPredictor", model).ignore_id)
                    else:
                        img = to_uint8(state[0])
                        values[m]["psnr"][k].append(psnr(gt[t0 + k], img))
                        values[m]["ssim"][k].append(ssim(gt[t0 + k], img))
            samples += 1
    if samples == 0:
        raise DatasetError(f"no sequence of split '{split}' has the {K + horizon} frames a {horizon}-step evaluation "
                           f"needs")
    scores = HorizonScores(horizon, samples=samples)
    for m in METHODS:
        if labels:
            scores.per_step[m] = {"miou": [miou(c) for c in confs[m]]}
        else:
            scores.per_step[m] = {k: [float(np.mean(v)) for v in per] for k, per in values[m].items()}
    return scores
