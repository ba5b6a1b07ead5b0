"""What training writes for people and tools: metrics.jsonl, progress, TensorBoard, sample videos, validation.

- ``RUN/metrics.jsonl``: one JSON object per logged step: ``stage`` (train/val), ``step``, ``epoch``, every loss
  term (averaged over the steps since the last line), ``lr/<optimizer>``, ``clip_frames``, ``temporal_active``
  (list of temporal-D scales used), the model's other statistics (vid2vid: ``mask_mean`` occlusion mask,
  ``flow_epe`` end-point error to the reference flow), ``frames_per_s`` (all ranks together), ``mem_mib`` (peak
  CUDA memory, or the process's peak RSS on CPU), ``skipped_steps``. Schedule events (clip length changes) are
  lines with ``"event"``.
- Rich progress with ETA when stderr is a terminal; nothing otherwise.
- TensorBoard (``train.tensorboard``, needs ``tensorboard<2.20``) under ``RUN/tensorboard``.
- Sample videos ``RUN/samples/step_<step>.mp4``: labels | generated | real side by side.
- Validation on the val split: each val sequence generated with the eval generator from the model's real history;
  PSNR of generated vs real frames and the warping error of the generated frames (mean |x_t − warp(x_{t-1},
  flow_ref)| where the real frames are photometrically consistent), plus a sample video per sequence.
- ``v2v_on_log`` / ``v2v_on_checkpoint`` go through the registry (main process only).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from v2vcli.io.files import write_bytes_atomic
from v2vcli.io.preview import colorize_inputs
from v2vcli.io.video import VideoWriter
from v2vcli.metric import psnr
from v2vcli.registry import get_registry
from v2vcli.runtime import ProgressBar, to_uint8
from v2vcli.warp import warp

if TYPE_CHECKING:
    from v2vcli.data.clips import ClipBatch, ClipDataset
    from v2vcli.model import StepResult, VideoModel

__all__ = ["MetricsFile", "TrainLogger", "side_by_side", "write_sample", "warp_error",
           "generate_clip", "validate"]

log = logging.getLogger(__name__)


def _strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (others as ``json.dumps(default=float)`` gives)."""
    if isinstance(value, Mapping):
        return {str(k): _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


class MetricsFile:
    """Append-only JSON lines; on resume, lines past the resumed step are dropped (they will be redone)."""

    def __init__(self, path: str | Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            kept = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    if int(json.loads(line).get("step", 0)) <= resume_step:
                        kept.append(line)
                except (ValueError, AttributeError):
                    continue  # a line cut by a kill

            write_bytes_atomic(self.path, ("\n".join(kept) + ("\n" if kept else "")).encode("utf-8"))
        elif resume_step is None and self.path.is_file():
            self.path.unlink()
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run

    def write(self, record: Mapping[str, Any]) -> None:
        """One line of strict JSON: a NaN or Inf value (not JSON) is written as null."""
        self._f.write(json.dumps(_strict_json(record), allow_nan=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    except (ImportError, OSError):  # pragma: no cover - non-POSIX
        return 0.0


#: without a terminal (CI, nohup, a batch job) a progress line is logged at least this often
PLAIN_LINE_SECONDS = 30.0


class TrainLogger:
    """Averages step results and writes them every ``log_every`` steps to every sink (main process only).

    On a terminal a progress bar shows the step, losses and time left. Without one (stderr redirected: CI, nohup,
    a cluster job) a plain line is logged instead, as tqdm-less training scripts do: every ``log_every`` steps or
    every :data:`PLAIN_LINE_SECONDS` seconds, whichever comes first, with the step, epoch, losses, frames/s and ETA.
    """

    def __init__(self, run_dir: Path, *, log_every: int, total_steps: int, start_step: int, device: torch.device,
                 tensorboard: bool, resume: bool, enabled: bool = True, world_size: int = 1) -> None:
        self.enabled = enabled
        self.world_size = max(1, int(world_size))  # ranks train equal slices: frames/s is rank 0's × this
        self.log_every = max(1, int(log_every))
        self.device = device
        self.total_steps = total_steps
        self.metrics = MetricsFile(run_dir / "metrics.jsonl", start_step if resume else None) if enabled else None
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._frames = 0
        self._skipped = 0
        self._t0 = time.perf_counter()
        self._info: dict[str, Any] = {}
        self.tb: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1 if resume else None)
            except ImportError:
                log.warning("train.tensorboard is on but tensorboard is not installed (pip install 'tensorboard<2.20')"
                            "; logging to metrics.jsonl only")
        self._start_step = start_step
        self._start_time = time.perf_counter()
        self._line_time = self._start_time
        self._line_frames = 0
        self.plain_lines = enabled and not sys.stderr.isatty()
        self._bar = ProgressBar(total_steps, "train", enabled=enabled and sys.stderr.isatty() and total_steps > 0,
                                status=True, transient=False, completed=start_step)

    def event(self, step: int, epoch: int, name: str, **fields: Any) -> None:
        """A schedule event (clip length change, frozen scales ...): metrics.jsonl and the log."""
        if not self.enabled:
            return
        record = {"stage": "train", "step": step, "epoch": epoch, "event": name, **fields}
        assert self.metrics is not None  # noqa: S101 - enabled implies a metrics file
        self.metrics.write(record)
        log.info("step %d (epoch %d): %s %s", step, epoch, name, " ".join(f"{k}={v}" for k, v in fields.items()))

    def step(self, step: int, epoch: int, result: StepResult, lrs: Mapping[str, float]) -> dict[str, Any] | None:
        """Accumulate one step; every ``log_every`` steps write the averages and return the record."""
        if not self.enabled:
            return None
        for k, v in {**result.losses, **result.stats}.items():
            if math.isfinite(v):
                self._sums[k] = self._sums.get(k, 0.0) + v
                self._counts[k] = self._counts.get(k, 0) + 1
        self._frames += result.frames
        self._skipped += int(result.skipped)
        self._info = dict(result.info)
        if self._bar.shown:
            g, d = result.losses.get("G_total", float("nan")), result.losses.get("D_total", float("nan"))
            self._bar.update(step, f"epoch {epoch} G {g:.3f} D {d:.3f}")
        self._line_frames += result.frames
        if self.plain_lines:
            now = time.perf_counter()
            if step % self.log_every == 0 or now - self._line_time >= PLAIN_LINE_SECONDS or step == self.total_steps:
                log.info("%s", self.plain_line(step, epoch, result.losses, now))
        if step % self.log_every:
            return None
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        record: dict[str, Any] = {"stage": "train", "step": step, "epoch": epoch}
        record.update({k: self._sums[k] / self._counts[k] for k in self._sums})
        record.update({f"lr/{k}": v for k, v in lrs.items()})
        record["clip_frames"] = int(self._info.get("clip_frames", 0))
        if "temporal_active" in self._info:
            record["temporal_active"] = list(self._info["temporal_active"])
        record["frames_per_s"] = self._frames * self.world_size / elapsed
        record["mem_mib"] = _memory_mib(self.device)
        record["skipped_steps"] = self._skipped
        self._write(record)
        self._sums, self._counts, self._frames, self._skipped = {}, {}, 0, 0
        self._t0 = time.perf_counter()
        return record

    def plain_line(self, step: int, epoch: int, losses: Mapping[str, float], now: float | None = None) -> str:
        """``step 120/2000 (6%) epoch 3 | G_total 4.12 D_total 0.61 ... | 38.2 frames/s | ETA 12m05s``; resets the
        frame counter of the frames/s figure."""
        now = time.perf_counter() if now is None else now
        fps = self._line_frames * self.world_size / max(now - self._line_time, 1e-9)
        done = step - self._start_step
        total = f"/{self.total_steps} ({100 * step / self.total_steps:.0f}%)" if self.total_steps > 0 else ""
        parts = [f"step {step}{total} epoch {epoch}"]
        shown = {k: v for k, v in losses.items() if k.endswith("_total")} or dict(losses)
        if shown:
            parts.append(" ".join(f"{k} {v:.4g}" for k, v in sorted(shown.items())))
        parts.append(f"{fps:.1f} frames/s")
        if self.total_steps > step and done > 0:
            left = (now - self._start_time) / done * (self.total_steps - step)
            parts.append(f"ETA {_duration(left)}")
        self._line_time, self._line_frames = now, 0
        return " | ".join(parts)

    def _write(self, record: dict[str, Any]) -> None:
        assert self.metrics is not None  # noqa: S101 - only called when enabled
        self.metrics.write(record)
        scalars = {k: float(v) for k, v in record.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step",)}
        if "temporal_active" in record:
            scalars["temporal_active"] = float(len(record["temporal_active"]))
        get_registry().on_log(str(record["stage"]), int(record["step"]), scalars)
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(f"{record['stage']}/{k}", v, int(record["step"]))
        if not self._bar.shown and record["stage"] == "train":
            g, d = record.get("G_total"), record.get("D_total")
            log.debug("step %d: G %.4f D %.4f", record["step"], g or 0.0, d or 0.0)

    def validation(self, step: int, epoch: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        self._write({"stage": "val", "step": step, "epoch": epoch, **metrics})
        log.info("step %d validation: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    def close(self) -> None:
        self._bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.metrics is not None:
            self.metrics.close()


def _duration(seconds: float) -> str:
    """``12m05s``, ``3h02m``, ``41s``."""
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


# -- pictures ---------------------------------------------------------------------------------------------------------
def side_by_side(*clips: torch.Tensor) -> np.ndarray:
    """Clips (T, 3, H, W) in [-1, 1] → (T, H, W·n, 3) uint8 frames, shortest length."""
    t = min(int(c.shape[0]) for c in clips)
    return np.concatenate([to_uint8(c[:t]) for c in clips], axis=2)


def write_sample(path: Path, *clips: torch.Tensor, fps: float = 10.0) -> Path:
    """An mp4 of the clips side by side (labels | generated | real), written atomically."""
    with VideoWriter(path, fps) as writer:
        for frame in side_by_side(*clips):
            writer.write(frame)
    return path


# -- measures ---------------------------------------------------------------------------------------------------------
def warp_error(frames: torch.Tensor, real: torch.Tensor, flow: torch.Tensor, threshold: float = 0.02) -> float:
    """Mean |x_t − warp(x_{t-1}, flow_t)| of ``frames`` (T, 3, H, W) over pixels where the real frames agree with
    the same warp (‖·‖₂ < threshold); ``flow`` (T, 2, H, W) backward, ``flow[0]`` unused. NaN for one frame."""
    if frames.shape[0] < 2:
        return float("nan")
    f = flow[1:].float()
    fake_err = (frames[1:].float() - warp(frames[:-1].float(), f)).abs().mean(1, keepdim=True)
    real_err = (real[1:].float() - warp(real[:-1].float(), f)).pow(2).sum(1, keepdim=True).sqrt()
    conf = (real_err < threshold).float()
    if not bool(conf.any()):
        return float("nan")
    return float((fake_err * conf).sum() / conf.sum())


def generate_clip(model: VideoModel, batch: ClipBatch, *, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """Run the model's frame generator over a clip (batch 1) from its real history; returns (T, ·, H, W) clips
    ``generated`` (history frames real), ``real``, ``labels``, ``flow_ref`` (the clip's reference flow, when it
    has one) and the generator's stacked extras for the generated frames only (``mask``, ``flow`` ...)."""
    b = batch.to(model.device)
    gen = model.frame_generator(use_ema=use_ema)
    gen.reset()
    L = gen.history_frames
    outs: list[torch.Tensor] = []
    extras: dict[str, list[torch.Tensor]] = {}
    v: torch.Tensor | list[torch.Tensor]  # one frame's extra in the loop, one name's list of them after it
    for t in range(b.length):
        inputs = {k: v[:, t] for k, v in b.inputs.items()}
        if b.flow is not None and "flow" not in inputs:  # the reference flow, for models that observe it
            inputs["flow"] = b.flow[:, t]
        out = gen.step(inputs, real=b.frames[:, t] if t < L else None)
        outs.append(out.frame)
        for k, v in out.extras.items():
            extras.setdefault(k, []).append(v)
    result = {"generated": torch.stack(outs, 1)[0].cpu(), "real": b.frames[0].cpu(),
              "labels": colorize_inputs(b.inputs, model.label_set)[0].cpu()}
    for k, v in extras.items():
        result[k] = torch.stack(v, 1)[0].cpu()
    if b.flow is not None:  # after the extras: the generator's predicted "flow" must not hide the reference
        result["flow_ref"] = b.flow[0].cpu()
    return result


def validate(model: VideoModel, dataset: ClipDataset, n_frames: int, *, step: int, sample_dir: Path | None,
             max_sequences: int = 4, fps: float = 10.0) -> dict[str, float]:
    """PSNR and warping error of the eval generator on up to ``max_sequences`` val sequences (the model's real
    history, then ``n_frames`` generated frames, from frame 0 without augmentation); sample videos to disk."""
    L = model.history_frames
    psnrs, werrs = [], []
    n = min(len(dataset.sequences), max_sequences)
    for i in range(n):
        clip = generate_clip(model, dataset.clip(i, n_frames))
        gen, real = clip["generated"][L:], clip["real"][L:]
        psnrs.append(psnr(real, gen, data_range=2.0))
        if "flow_ref" in clip:
            werr = warp_error(clip["generated"], clip["real"], clip["flow_ref"])
            if not math.isnan(werr):
                werrs.append(werr)
        if sample_dir is not None:
            seq = dataset.sequences[i]
            write_sample(sample_dir / f"step_{step:08d}_{seq}.mp4", clip["labels"], clip["generated"], clip["real"],
                         fps=fps)
    out = {"psnr": float(torch.tensor(psnrs).mean()) if psnrs else float("nan")}
    if werrs:
        out["warp_error"] = float(torch.tensor(werrs).mean())
    return out
