"""The v2v trainer: one loop, read top to bottom, for any model behind :class:`v2vcli.model.VideoModel`.

Launch (one GPU, or the CPU)::

    v2v demo world --out world
    v2v train --config examples/configs/tiny.yaml --data world --run-dir runs/tiny --max-steps 2000
    v2v train --run-dir runs/tiny --resume --max-steps 4000     # continue to the absolute step 4000

What happens: the config is resolved and written to ``RUN/config.yaml`` (changed keys marked); the model is built
from the dataset's label set (``--init-from RUN`` loads a coarser run's scales; ``--resume`` loads the latest
checkpoint of ``RUN`` with its optimizers, schedules, EMA, RNG states and loader position); then, batch after
batch, ``model.train_step`` steps every optimizer, the EMA of G follows, and the loop logs, writes samples,
validates and checkpoints on its schedule. An epoch is one pass over the train split's clips; each epoch start
brings every LR schedule to that epoch (linear decay over ``optim.niter_decay`` after ``optim.niter``) and the
clip length to ``data.n_frames_total`` doubled every ``train.niter_step`` epochs, at most min(128, longest
training sequence) - (n_frames_G - 1), as the official code grows it (``v2v train --plan`` prints the curriculum).
SIGTERM or SIGINT finishes the current step, writes a checkpoint and stops (exit 0 for
SIGTERM, 130 for SIGINT); a second signal stops at once.

Several processes (``v2v train --gpus N`` launches them through torchrun's elastic agent, see
:mod:`v2vcli.distributed`; a process started by ``torchrun`` itself joins the same way)::

    v2v train -c examples/configs/street_512.yaml --data DATA --run-dir RUN --gpus 8                 # one node
    v2v train -c ... --gpus 8 --nnodes 2 --rdzv-endpoint node0:29400                                   # each node
    torchrun --nproc-per-node 8 --no-python v2v train -c ... --gpus 8                               # joins

Every rank joins the process group (NCCL on CUDA, gloo on CPU), starts from rank 0's networks, takes its slice of
each global batch (the sampler shards by rank, so N ranks × batch b see what one process × batch N·b sees and
resume is exact), seeds its RNGs with ``seed + rank`` and runs each trained network through torch's
DistributedDataParallel (:mod:`v2vcli.parallel`), which averages its gradients during backward, so all ranks hold the
same weights; clip lengths and stop signals are agreed on every step. Only rank 0 logs, writes samples, validates and writes checkpoints (with every
rank's RNG state). After an elastic restart (``--max-restarts``) the workers resume from the last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from v2vcli.checkpoint import (CheckpointMeta, dataset_provenance, latest_checkpoint, load_training_state, load_weights,
                               save_checkpoint)
from v2vcli.config import dump_config, to_dict
from v2vcli.data.clips import ClipBatchSampler, ClipDataset, ClipSchedule, make_loader
from v2vcli.data.layout import Dataset
from v2vcli.distributed import all_gather_object, all_reduce_, barrier, init_distributed, is_main, restart_count
from v2vcli.errors import ConfigError, DatasetError, V2VError
from v2vcli.io.files import write_bytes_atomic
from v2vcli.model import TrainingError, VideoModel, check_finite_weights, linear_decay
from v2vcli.registry import get_registry
from v2vcli.runtime import resolve_device

from .logging import TrainLogger, validate, write_sample

if TYPE_CHECKING:
    from v2vcli.config import V2VConfig

__all__ = ["TrainResult", "LoopState", "train", "training_plan", "clip_schedule",
           "check_training_config", "config_history_frames", "rng_state", "set_rng_state"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """How a training run ended. ``stopped_by``: max_steps, schedule, SIGTERM, SIGINT, or nothing_to_do (a resume
    whose run was already at its target step)."""

    run_dir: Path
    step: int
    epoch: int
    checkpoint: Path | None
    stopped_by: str
    exit_code: int = 0


@dataclass
class LoopState:
    """Where the loop is: the next batch to train on is batch ``next_batch`` of epoch ``epoch``."""

    step: int = 0
    epoch: int = 0
    next_batch: int = 0
    bad_steps: int = 0


def check_sync_batch_norm(cfg: V2VConfig, device_type: str, world_size: int) -> None:
    """torch's SyncBatchNorm synchronises statistics only on accelerators: refuse it for several CPU ranks (one
    CPU process computes plain batch norm, which is fine)."""
    if getattr(cfg.model, "norm", None) == "syncbatch" and device_type == "cpu" and world_size > 1:
        raise ConfigError(f"model.norm=syncbatch needs CUDA with {world_size} ranks (torch's SyncBatchNorm does not "
                          f"synchronise CPU tensors); use model.norm=batch or instance on CPU ranks")


# -- RNG states (tensors and plain values only: the training state loads with weights_only=True) ------------------
def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                                       "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "python" in state:
        random.setstate(_tuplify(state["python"]))
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


class _StopSignals:
    """SIGTERM/SIGINT set a flag the loop checks after each step; a second signal interrupts at once."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            raise KeyboardInterrupt(name)
        self.received = name
        log.warning("%s received: finishing this step, writing a checkpoint, then stopping", name)

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _check_dataset(root: str) -> Any:
    if not root:
        raise ConfigError("no dataset given: pass --data DATASET (make one with `v2v demo world --out DATASET`)")
    ds = Dataset(root)
    if not ds.root.is_dir():
        raise DatasetError(f"dataset '{root}' does not exist; create it with `v2v extract KIND VIDEO -o {root}` or "
                           f"`v2v demo world --out {root}`")
    ds.frames_meta()
    return ds


def train(cfg: V2VConfig, *, resume: bool = False, init_from: str | None = None,
          model_hook: Callable[[VideoModel], None] | None = None) -> TrainResult:
    """:func:`_train`; a run folder this call created is removed again when training fails before its first
    checkpoint because of bad data, or before its first step for any reason (a bad --init-from ...), so a failed
    start leaves nothing behind (a run that trained and then failed otherwise keeps its logs)."""
    run_dir = Path(cfg.run_dir)
    created = not run_dir.exists()
    try:
        return _train(cfg, resume=resume, init_from=init_from, model_hook=model_hook)
    except BaseException as exc:
        if created and is_main() and run_dir.is_dir() and latest_checkpoint(run_dir) is None \
                and (isinstance(exc, DatasetError) or not _trained_any_step(run_dir)):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _trained_any_step(run_dir: Path) -> bool:
    """Whether metrics.jsonl records a finished step (then a failed run keeps its folder, for its logs)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return False
    for line in path.read_text(errors="replace").splitlines():
        try:
            if int(json.loads(line).get("step", 0)) >= 1:
                return True
        except (ValueError, TypeError, AttributeError):
            continue
    return False


def check_training_config(cfg: V2VConfig) -> None:
    """The model's own rules for a training config (vid2vid: every temporal scale can become active within the
    schedule); checked when training or planning starts, not when a finished run's config is read back."""
    check = getattr(get_registry().get_model(cfg.model.name), "check_config", None)
    if callable(check):
        check(cfg)


def config_history_frames(cfg: V2VConfig) -> int:
    """The real history frames a training clip starts with, from the config alone (no model built): 0 for an
    empty history, else the generator's past frames (vid2vid's ``history_frames``)."""
    return 0 if getattr(cfg.model, "history", "real") == "empty" else int(getattr(cfg.model, "n_past", 0) or 0)


def clip_schedule(cfg: V2VConfig, dataset: Any, history: int) -> Any:
    """The clip-length schedule of a run on ``dataset`` (a :class:`~v2vcli.data.clips.ClipDataset`): the official
    cap min(128, longest training sequence) - (n_frames_G - 1)."""
    n_past = int(getattr(cfg.model, "n_past", history) or 0)
    longest = max(dataset.counts.values()) if dataset.counts else None
    return ClipSchedule.from_config(cfg.data, cfg.train.niter_step, longest=longest, n_past=n_past)


def training_plan(cfg: V2VConfig, *, init_from: bool = False, world_size: int = 1) -> dict[str, Any]:
    """The curriculum of ``cfg`` on its dataset (``cfg.data.root``), epoch by epoch, without building the model
    (``v2v train --plan``): frames per sequence, frames per optimizer step, G/D steps per sequence, back-propagated
    frames, active temporal scales, learning rates and the spatial scales that train."""
    check_training_config(cfg)
    ds = _check_dataset(cfg.data.root)
    label_set = ds.label_set("seg") if "seg" in cfg.data.inputs else None
    history = config_history_frames(cfg)
    model_cls = get_registry().get_model(cfg.model.name)
    dataset = ClipDataset(cfg.data, history=history, seed=cfg.seed, need_flow=False, label_set=label_set)
    if len(dataset) == 0:
        raise DatasetError(f"split '{cfg.data.split}' of '{ds.root}' has no sequence long enough for a clip "
                           f"({history + 1} frames)")
    schedule = clip_schedule(cfg, dataset, history)
    epochs = cfg.optim.niter + cfg.optim.niter_decay
    batches = len(dataset) // max(1, cfg.data.batch_size * world_size)
    factor = linear_decay(cfg.optim.niter, cfg.optim.niter_decay)
    plan_epoch = getattr(model_cls, "plan_epoch", None)
    rows = []
    for epoch in range(epochs):
        frames = schedule.frames(epoch)
        row: dict[str, Any] = {"epoch": epoch + 1, "frames_per_sequence": frames}
        if callable(plan_epoch):
            row.update(plan_epoch(cfg, epoch, frames, init_from=init_from))
        else:
            row.update({"frames_per_step": frames, "g_steps_per_sequence": 1, "d_steps_per_sequence": 1})
        lr = cfg.optim.lr * factor(epoch)
        names = ["G", "D"] + [f"D_T{k}" for k in row.get("temporal_scales_configured", row.get("temporal_scales", []))]
        row["lr"] = {n: lr for n in dict.fromkeys(names)}
        row["batches"] = batches
        rows.append(row)
    return {"model": cfg.model.name, "dataset": str(ds.root), "sequences": len(dataset.sequences),
            "longest_sequence": max(dataset.counts.values()), "history_frames": history,
            "max_frames_per_sequence": schedule.cap, "niter_step": cfg.train.niter_step,
            "batch_size": cfg.data.batch_size, "world_size": world_size, "epochs": rows}


def _train(cfg: V2VConfig, *, resume: bool = False, init_from: str | None = None,
           model_hook: Callable[[VideoModel], None] | None = None) -> TrainResult:
    """Train ``cfg`` (a resolved config; ``cfg.data.root`` the dataset) until ``train.max_steps`` or the schedule's
    end. ``model_hook`` is called on the model before training is set up (tests use it to inject modules)."""
    check_training_config(cfg)
    device = resolve_device(cfg.train.device)
    check_sync_batch_norm(cfg, device.type, int(os.environ.get("WORLD_SIZE", "1") or 1))
    dist = init_distributed(device.type)
    main = is_main()
    run_dir = Path(cfg.run_dir)
    ds = _check_dataset(cfg.data.root)

    # -- where to start ------------------------------------------------------------------------------------------
    latest = latest_checkpoint(run_dir)
    if restart_count() > 0 and latest is not None and not resume:
        log.warning("elastic restart %d: resuming from %s", restart_count(), latest)
        resume = True
    if resume and latest is None:
        raise ConfigError(f"--resume: run folder '{run_dir}' has no checkpoint to resume; start it without --resume")
    if not resume and latest is not None:
        raise ConfigError(f"run folder '{run_dir}' already has checkpoints ({latest.name}); pass --resume to continue "
                          f"it, or choose another --run-dir")
    torch.manual_seed(cfg.seed + dist.rank)
    random.seed(cfg.seed + dist.rank)
    np.random.seed((cfg.seed + dist.rank) % 2**32)

    # -- model ---------------------------------------------------------------------------------------------------
    label_set = ds.label_set("seg") if "seg" in cfg.data.inputs else None
    model_cls = get_registry().get_model(cfg.model.name)
    if not issubclass(model_cls, VideoModel):
        raise ConfigError(f"model '{cfg.model.name}' is registered but is not trainable (it does not follow the "
                          f"v2vcli.model.VideoModel contract)")
    model = model_cls(cfg, label_set, device)
    if model_hook is not None:
        model_hook(model)
    if init_from and not resume:
        weights, meta = load_weights(init_from, device="cpu")  # G (and D: vid2vid keeps what fits)
        model.init_from(weights, meta)
    model.setup_training()
    loop = LoopState()
    if resume:
        assert latest is not None  # noqa: S101 - checked above
        weights, _ = load_weights(latest, device="cpu")
        model.load_weights(weights)
        state = load_training_state(latest, map_location="cpu")
        model.load_training_state(state["model"])
        loop = LoopState(**state["loop"])
        old_world = int(state.get("world_size", 1))
        if old_world != dist.world_size:  # the same clips seen so far, counted in this run's global batches
            seen = loop.next_batch * old_world * cfg.data.batch_size
            loop.next_batch = seen // (dist.world_size * cfg.data.batch_size)
            log.warning("the checkpoint was written by %d process(es), this run has %d: resuming epoch %d at clip "
                        "%d (batch %d); the rest of the run is not bit-identical to an uninterrupted one", old_world,
                        dist.world_size, loop.epoch, seen, loop.next_batch)
        ranks = state.get("rng_ranks")
        if isinstance(ranks, list) and len(ranks) == dist.world_size:
            set_rng_state(ranks[dist.rank])
        elif dist.rank == 0:
            set_rng_state(state.get("rng", {}))
        else:  # another world size: rank 0's stream is restored, the others keep their seed + rank streams
            log.info("the checkpoint was written by %s rank(s), this run has %d: RNG streams of ranks > 0 restart",
                     len(ranks) if isinstance(ranks, list) else 1, dist.world_size)
        log.info("resuming %s at step %d (epoch %d, batch %d)", run_dir, loop.step, loop.epoch, loop.next_batch)

    # -- data ----------------------------------------------------------------------------------------------------
    dataset = ClipDataset(cfg.data, history=model.history_frames, seed=cfg.seed, need_flow=model.needs_flow,
                          keypoints=model.needs_keypoints, label_set=label_set)
    if len(dataset) == 0:
        raise DatasetError(f"split '{cfg.data.split}' of '{ds.root}' has no sequence long enough for a clip "
                           f"({model.history_frames + 1} frames)")
    schedule = clip_schedule(cfg, dataset, model.history_frames)
    check_schedule = getattr(model, "check_schedule", None)
    if callable(check_schedule) and main:
        check_schedule(schedule.max_frames(cfg.optim.niter + cfg.optim.niter_decay))
    epochs = cfg.optim.niter + cfg.optim.niter_decay
    sampler = ClipBatchSampler(len(dataset), cfg.data.batch_size, seed=cfg.seed, schedule=schedule, epochs=epochs,
                               start_epoch=loop.epoch, start_batch=loop.next_batch, rank=dist.rank,
                               world_size=dist.world_size)
    bpe = sampler.batches_per_epoch
    schedule_end = epochs * bpe
    max_steps = cfg.train.max_steps if cfg.train.max_steps > 0 else schedule_end
    if max_steps > schedule_end:
        log.warning("the schedule ends at step %d (%d epochs of %d batches), before max steps %d (--max-steps or "
                    "train.max_steps): training stops there; raise optim.niter/optim.niter_decay or "
                    "data.clips_per_sequence to train longer",
                    schedule_end, epochs, bpe, max_steps)
        max_steps = schedule_end
    end_reason = "max_steps" if max_steps < schedule_end or cfg.train.max_steps == schedule_end else "schedule"
    val_set = None
    if cfg.train.val_every > 0:
        if ds.splits().get("val"):
            val_set = ClipDataset(cfg.data, split="val", history=model.history_frames, seed=cfg.seed,
                                  need_flow=model.needs_flow, keypoints=model.needs_keypoints, augment=False,
                                  label_set=label_set)
        else:
            log.info("train.val_every is set but '%s' has no val split (`v2v dataset split`): validation off", ds.root)
    fps = float(ds.frames_meta()["sequences"].get(dataset.sequences[0], {}).get("fps") or 10.0)

    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(run_dir / "config.yaml", dump_config(cfg, mark_non_defaults=True).encode("utf-8"))
    logger = TrainLogger(run_dir, log_every=cfg.train.log_every, total_steps=max_steps, start_step=loop.step,
                         device=device, tensorboard=cfg.train.tensorboard, resume=resume, enabled=main,
                         world_size=dist.world_size)
    provenance = dataset_provenance(ds.root)
    last_saved: Path | None = latest if resume else None
    saved_step = loop.step if resume else -1

    def save() -> Path | None:
        nonlocal last_saved, saved_step
        if saved_step == loop.step:
            return last_saved
        position = LoopState(**asdict(loop))
        if position.next_batch >= bpe:
            position.epoch, position.next_batch = position.epoch + 1, 0
        rngs = all_gather_object(rng_state())  # every rank takes part; rank 0 stores them
        if main:
            nets = sorted(model.networks()) + (["G_ema"] if model.ema is not None else [])
            meta = CheckpointMeta(model=model.name, config=to_dict(cfg),
                                  label_set=label_set.to_dict() if label_set is not None else None,
                                  provenance=provenance, networks=nets, extra=model.checkpoint_extra())
            state = {"format": 1, "model": model.training_state(), "loop": asdict(position), "rng": rngs[0],
                     "rng_ranks": rngs, "world_size": dist.world_size}
            last_saved = save_checkpoint(run_dir, loop.step, model.weights(), meta, state,
                                         config_text=dump_config(cfg, mark_non_defaults=True),
                                         keep_last=cfg.train.keep_last)
            get_registry().on_checkpoint(str(last_saved), loop.step)
            log.info("checkpoint %s", last_saved)
        barrier()
        saved_step = loop.step
        return last_saved

    if loop.step >= max_steps:
        logger.close()
        log.info("run is already at step %d (target %d): nothing to do", loop.step, max_steps)
        return TrainResult(run_dir, loop.step, loop.epoch, last_saved, "nothing_to_do")

    # -- the loop ------------------------------------------------------------------------------------------------
    loader = make_loader(dataset, sampler, num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda")
    started_epoch: int | None = None
    announce = True  # the clip length is logged at the start (and on resume) and at every change
    stopped_by = "schedule"
    with _StopSignals() as stop:
        batches = iter(loader)
        try:
            for batch in batches:
                if isinstance(batch, BaseException):
                    raise batch
                if dist.distributed:  # a short sequence cuts one rank's batch: every rank cuts to the shortest
                    t = all_reduce_(torch.tensor([batch.length], device=device), "min")  # NCCL: device tensors
                    if int(t[0]) < batch.length:
                        batch = batch.slice_time(0, int(t[0]))
                if batch.epoch != started_epoch:
                    if batch.epoch != loop.epoch:  # the previous epoch ended
                        loop.epoch, loop.next_batch = batch.epoch, 0
                    model.start_epoch(loop.epoch)
                    started_epoch = loop.epoch
                    frames = schedule.frames(loop.epoch)
                    if announce or frames != schedule.frames(loop.epoch - 1):
                        logger.event(loop.step, loop.epoch, "clip_length", generated_frames=frames,
                                     clip_frames=frames + model.history_frames,
                                     frames_per_step=min(frames, max(1, int(getattr(cfg.train, "frames_per_step",
                                                                                     frames)))))
                        announce = False
                result = model.train_step(batch)
                loop.step += 1
                loop.next_batch += 1
                if result.skipped:
                    loop.bad_steps += 1
                    log.warning("step %d: non-finite loss or gradient, optimizer step skipped (%d in a row)",
                                loop.step, loop.bad_steps)
                    if 0 < cfg.train.max_bad_steps <= loop.bad_steps:
                        where = f"; last checkpoint: {last_saved}" if last_saved else ""
                        raise TrainingError(f"training stopped at step {loop.step}: {loop.bad_steps} steps in a row "
                                            f"had non-finite losses or gradients (train.max_bad_steps); lower "
                                            f"optim.lr, set optim.grad_clip or use --precision fp32{where}")
                else:
                    loop.bad_steps = 0
                    model.ema_update()
                    check_finite_weights(model, loop.step, last_saved)
                logger.step(loop.step, loop.epoch, result, model.learning_rates())
                if main and cfg.train.sample_every > 0 and loop.step % cfg.train.sample_every == 0:
                    vis = model.visuals()
                    write_sample(run_dir / "samples" / f"step_{loop.step:08d}.mp4", vis["labels"], vis["generated"],
                                 vis["real"], fps=fps)
                if main and val_set is not None and loop.step % cfg.train.val_every == 0:
                    logger.validation(loop.step, loop.epoch,
                                      validate(model, val_set, cfg.data.n_frames_total,
                                               step=loop.step, sample_dir=run_dir / "samples", fps=fps))
                if cfg.train.checkpoint_every > 0 and loop.step % cfg.train.checkpoint_every == 0:
                    save()
                if dist.distributed:  # a signal seen by one rank stops all of them after the same step
                    flag = all_reduce_(torch.tensor([1 if stop.received else 0], device=device), "max")
                    if int(flag[0]) and not stop.received:
                        stop.received = "SIGTERM"
                if stop.received:
                    stopped_by = stop.received
                    break
                if loop.step >= max_steps:
                    stopped_by = end_reason
                    break
        except V2VError:
            raise
        except RuntimeError as exc:
            if stop.received and "DataLoader worker" in str(exc):  # workers stopped by the same signal
                stopped_by = stop.received
            else:
                raise
        finally:
            del batches
        checkpoint = save()
    logger.close()
    code = 130 if stopped_by == "SIGINT" else 0
    log.info("stopped at step %d (%s)", loop.step, stopped_by)
    return TrainResult(run_dir, loop.step, loop.epoch, checkpoint, stopped_by, code)
