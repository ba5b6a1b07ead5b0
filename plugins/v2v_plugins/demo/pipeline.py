"""`v2v demo`: the whole pipeline offline: world → train vid2vid and the per-frame ablation → synthesize → evaluate.

Steps (each result goes under ``OUT``):

1. ``world/``: the synthetic street world (``v2v demo world``), train and val splits.
2. ``runs/vid2vid`` and ``runs/perframe``: both models trained by the same trainer with the same wall-clock
   budget. The budget becomes a step count: a short calibration run (deleted afterwards) times the model's steps,
   and the real run is configured so that its whole LR schedule (constant, then linear decay) fits the budget.
3. ``synth/<model>/<seq>/``: every val sequence synthesized by ``v2v synthesize`` from its label maps alone (EMA
   generator, PNG frames). vid2vid was trained with real history frames, so, as in the official vid2vid test, its
   first L = n_frames_G - 1 frames come from the single-image generator: the perframe run
   (``--first-frame-model runs/perframe``); it makes every frame after those.
4. Evaluation against the ground-truth val frames: PSNR, SSIM, flow-warping error (``v2v eval`` metrics) and
   seg_consistency judged by a small segmenter trained on the world's real train frames (:mod:`.segmenter`).
5. ``report.html`` (+ ``report.json``): side-by-side videos (labels | perframe | vid2vid | ground truth), loss
   curves and metric bars as PNG, the table, the verdict on the temporal-consistency target, and the commands
   that reproduce each step.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from v2v_plugins.synthesize import SynthesisOptions, synthesize
from v2v_plugins.train import clip_schedule, config_history_frames, train
from v2v_plugins.world import write_world_report
from v2vcli.config import load_config
from v2vcli.data.clips import ClipDataset
from v2vcli.data.layout import Dataset
from v2vcli.errors import ConfigError
from v2vcli.io.files import read_image, read_label
from v2vcli.metric import compute_metric, confusion, miou
from v2vcli.presets import presets_dir
from v2vcli.runtime import device_name

from .report import write_report
from .segmenter import segment, train_segmenter

__all__ = ["DemoOptions", "DemoResult", "MODELS", "run_demo"]

log = logging.getLogger(__name__)

#: model name → preset (both tiny: same widths, same image D, same data; only the temporal machinery differs)
MODELS = {"perframe": "tiny_perframe.yaml", "vid2vid": "tiny.yaml"}


def _configs_dir() -> Path:
    """The shipped presets (``v2v presets``), in a checkout and in an installed wheel alike."""
    folder = presets_dir()
    if (folder / "tiny.yaml").is_file():
        return folder
    raise ConfigError(f"the demo's presets (tiny.yaml, tiny_perframe.yaml) are missing from '{folder}'; reinstall "
                      f"v2vcli")


@dataclass
class DemoOptions:
    out: Path = Path("demo_out")
    minutes: float = 10.0  # training budget per model
    quick: bool = False
    seed: int = 0
    device: str = "auto"
    size: tuple[int, int] = (128, 64)
    frames: int = 30
    sequences: int = 6
    val: int = 2
    segmenter_seconds: float = 60.0

    @classmethod
    def make(cls, out: Path, minutes: float | None, quick: bool, seed: int, device: str) -> DemoOptions:
        if quick:
            opts = cls(Path(out), 0.1 if minutes is None else minutes, True, seed, device, (64, 64), 8, 3, 1, 3.0)
        else:
            opts = cls(Path(out), 10.0 if minutes is None else minutes, False, seed, device)
        if opts.minutes <= 0:
            raise ConfigError(f"--minutes must be positive, got {opts.minutes}")
        return opts


@dataclass
class DemoResult:
    out: Path
    report: Path
    metrics: dict[str, dict[str, float]]
    training: dict[str, dict[str, Any]]
    verdict: str
    target_met: bool
    seconds: float
    artefacts: list[str] = field(default_factory=list)
    synthesis: dict[str, dict[str, Any]] = field(default_factory=dict)  # model → where its first frames came from


def _cfg(model: str, opts: DemoOptions, world: Path, run_dir: Path, sets: list[str]) -> Any:
    w, h = opts.size
    base = [f"data.size=[{w}, {h}]", f"train.device={opts.device}", f"seed={opts.seed}", "train.log_every=1"]
    if opts.quick:
        base.append("data.num_workers=0")  # starting loader processes costs more than four tiny steps
    return load_config([_configs_dir() / MODELS[model]], base + sets,
                       overrides={"data": {"root": str(world)}, "run_dir": str(run_dir)})


def _timed_steps(model: Any, times: list[float]) -> None:
    """model_hook: record the wall-clock end of every training step."""
    step = model.train_step

    def timed(batch: Any) -> Any:
        out = step(batch)
        times.append(time.perf_counter())
        return out

    model.train_step = timed


def _train(model: str, opts: DemoOptions, world: Path, runs: Path) -> dict[str, Any]:
    """Calibrate the step time, then train ``model`` for the budget with a schedule that ends on time."""
    n_train = len(Dataset(world).split("train"))
    budget = opts.minutes * 60.0
    if opts.quick:  # a few fixed steps: the point is to run every stage, not to learn
        per_step, steps = float("nan"), 4
    else:
        calib_dir = runs / f".calibrate_{model}"
        shutil.rmtree(calib_dir, ignore_errors=True)
        times: list[float] = []
        calib_steps = 6
        try:  # one epoch of calib_steps batches, so no epoch boundary falls inside the timing
            train(_cfg(model, opts, world, calib_dir, [f"train.max_steps={calib_steps}", "optim.niter=1000",
                                                       f"data.clips_per_sequence={calib_steps}",
                                                       "train.checkpoint_every=100000"]),
                  model_hook=lambda m: _timed_steps(m, times))
        finally:
            shutil.rmtree(calib_dir, ignore_errors=True)
        deltas = [b - a for a, b in zip(times, times[1:])]
        per_step = statistics.median(deltas) if deltas else 1.0
        steps = max(calib_steps, int(budget / per_step))
    # an epoch is n_train × clips_per_sequence batches; aim for ~40 epochs so the LR decay is smooth. The clip
    # grows with the official schedule (vid2vid: data.n_frames_total doubled every train.niter_step epochs), and a
    # step's time grows with its frames: the budget is spread over the epochs by their clip lengths (calibrated at
    # the first epoch's length), so the whole schedule still ends on time.
    epochs, clips = 40, max(1, steps // (40 * n_train))
    if not opts.quick:
        epochs, clips = _fit_schedule(model, opts, world, budget, per_step, n_train)
    bpe = n_train * clips
    steps = bpe * epochs if not opts.quick else steps
    epochs = max(2, -(-steps // bpe))
    run_dir = runs / model
    shutil.rmtree(run_dir, ignore_errors=True)
    sets = [f"data.clips_per_sequence={clips}", f"optim.niter={epochs // 2}", f"optim.niter_decay={epochs - epochs // 2}",
            f"train.max_steps={steps}", f"train.checkpoint_every={steps}", f"train.log_every={max(1, steps // 200)}"]
    if opts.quick:
        sets.append("data.num_workers=0")
    log.info("%s: %.2f s per step measured; %d steps (%d epochs of %d) fit %.1f min", model, per_step, steps, epochs,
             bpe, opts.minutes)
    t0 = time.perf_counter()
    result = train(_cfg(model, opts, world, run_dir, sets))
    seconds = time.perf_counter() - t0
    return {"run_dir": str(run_dir), "checkpoint": str(result.checkpoint), "steps": result.step,
            "seconds": round(seconds, 1), "seconds_per_step_calibrated": None if opts.quick else round(per_step, 3),
            "sets": sets,
            "config": str(_configs_dir() / MODELS[model])}


def _fit_schedule(model: str, opts: DemoOptions, world: Path, budget: float, per_step: float,
                  n_train: int) -> tuple[int, int]:
    """(epochs, clips per sequence) whose steps, each costing ``per_step`` × (its clip length / the first one's),
    fill ``budget`` seconds: the most epochs (up to 40, so the clip grows and the LR decays as in the recipe)
    whose cost reaches 85% of the budget without passing it; else the fullest fit."""
    cfg = _cfg(model, opts, world, opts.out / "runs" / f".plan_{model}", [])
    history = config_history_frames(cfg)
    schedule = clip_schedule(cfg, ClipDataset(cfg.data, history=history, need_flow=False), history)
    best: tuple[float, int, int] = (-1.0, 2, 1)
    for epochs in range(40, 1, -1):
        growth = sum(schedule.frames(e) for e in range(epochs)) / schedule.frames(0)  # epochs at the first length
        clips = int(budget / (per_step * n_train * growth))
        cost = clips * per_step * n_train * growth
        if clips >= 1 and cost >= 0.85 * budget:
            return epochs, clips
        if clips >= 1 and cost > best[0]:
            best = (cost, epochs, clips)
    return best[1], best[2]


def _synthesize(checkpoint: str, world: Path, out: Path, device: str,
                first_frame_model: str | None = None) -> dict[str, Any]:
    """Every val sequence from its labels alone, through `v2v synthesize` (EMA G, PNG frames); the first frames of
    a model with real history frames come from ``first_frame_model`` (the perframe run)."""
    report = synthesize(SynthesisOptions(checkpoint=checkpoint, labels=world, output=f"{out}/", split="val",
                                         format="png", device=device, progress=False,
                                         first_frame_model=first_frame_model))
    return {"first_frames": report.first_frames, "first_frame_count": report.first_frame_count,
            "first_frame_model": report.first_frame_model}


def run_demo(opts: DemoOptions) -> DemoResult:
    """Run every step into ``opts.out`` (replacing an earlier demo there) and return what was measured."""
    t0 = time.perf_counter()
    device = device_name(opts.device)
    opts.device = device
    out = Path(opts.out)
    if out.exists() and any(out.iterdir()) and not (out / "report.json").is_file() and not (out / "world").is_dir():
        raise ConfigError(f"--out {out} is a non-empty folder that is not an earlier demo; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("report.html", "report.json"):
        (out / stale).unlink(missing_ok=True)
    w, h = opts.size
    log.info("1/5 world: %d sequences x %d frames at %dx%d", opts.sequences, opts.frames, w, h)
    world = write_world_report(out / "world", seed=opts.seed, size=opts.size, frames=opts.frames,
                               sequences=opts.sequences, val=opts.val, progress=False).root
    ds = Dataset(world)
    val_seqs, train_seqs = ds.split("val"), ds.split("train")

    training: dict[str, dict[str, Any]] = {}
    for model in MODELS:
        log.info("2/5 training %s for %.1f min on %s", model, opts.minutes, device)
        training[model] = _train(model, opts, world, out / "runs")

    log.info("3/5 synthesizing %d val sequence(s) with both models", len(val_seqs))
    synth = out / "synth"
    shutil.rmtree(synth, ignore_errors=True)
    synthesis: dict[str, dict[str, Any]] = {}
    for model in MODELS:  # perframe first: it is also vid2vid's first-frame model
        ff = training["perframe"]["checkpoint"] if model != "perframe" else None
        synthesis[model] = _synthesize(training[model]["checkpoint"], world, synth / model, device, ff)

    log.info("4/5 evaluating")
    label_set = ds.label_set("seg")
    n_classes = max(c.id for c in label_set.classes) + 1
    count = {s: int(ds.frames_meta()["sequences"][s]["count"]) for s in ds.frames_meta()["sequences"]}
    ext = "." + str(ds.frames_meta().get("format", "jpg"))

    def frames_of(seq: str) -> list[Any]:
        return [read_image(ds.frame_path("frames", seq, i, ext)) for i in range(count[seq])]

    def labels_of(seq: str) -> list[Any]:
        return [read_label(ds.frame_path("seg", seq, i, ".png")) for i in range(count[seq])]

    seg_frames = [f for s in train_seqs for f in frames_of(s)]
    seg_labels = [lab for s in train_seqs for lab in labels_of(s)]
    seg_net, seg_info = train_segmenter(seg_frames, seg_labels, n_classes, seconds=opts.segmenter_seconds,
                                        max_steps=40 if opts.quick else 100_000, seed=opts.seed, device=device)
    metrics: dict[str, dict[str, float]] = {}
    per_frame: dict[str, dict[str, list[float]]] = {}
    sources = {"ground truth": None, **{m: synth / m for m in MODELS}}
    for name, folder in sources.items():
        psnr_v, ssim_v, warp_v, conf_total = [], [], [], np.zeros((n_classes, n_classes), np.int64)
        warp_frames: list[float] = []
        for seq in val_seqs:
            real = world / "frames" / seq
            fake = real if folder is None else folder / seq
            if folder is not None:
                psnr_v.append(compute_metric("psnr", real, fake, device=device).value)
                ssim_v.append(compute_metric("ssim", real, fake, device=device).value)
            we = compute_metric("warp_error", real, fake, device=device)
            warp_v.append(we.value)
            warp_frames += [v for vs in we.per_frame.values() for v in vs]
            imgs = frames_of(seq) if folder is None else [read_image(p) for p in sorted(fake.glob("*.png"))]
            conf_total += confusion(np.stack(labels_of(seq)), segment(seg_net, imgs, device), n_classes)
        m: dict[str, float] = {"warp_error": float(np.mean(warp_v)), "seg_miou": miou(conf_total)}
        if psnr_v:
            m["psnr"], m["ssim"] = float(np.mean(psnr_v)), float(np.mean(ssim_v))
        metrics[name] = m
        per_frame[name] = {"warp_error": warp_frames}

    v, p = metrics["vid2vid"], metrics["perframe"]
    ratio = v["warp_error"] / p["warp_error"] if p["warp_error"] > 0 else float("inf")
    target_met = ratio <= 0.8 and v["psnr"] >= p["psnr"] - 0.5
    verdict = (f"vid2vid's warp error is {ratio:.2f}x the per-frame ablation's ({v['warp_error']:.5f} vs "
               f"{p['warp_error']:.5f}) at PSNR {v['psnr']:.2f} dB vs {p['psnr']:.2f} dB: the target (warp error "
               f"<= 0.8x at PSNR >= ablation - 0.5 dB) is {'met' if target_met else 'NOT met'}.")
    log.info("5/5 report: %s", verdict)
    seconds = time.perf_counter() - t0
    result = DemoResult(out, out / "report.html", metrics, training, verdict, target_met, round(seconds, 1),
                        synthesis=synthesis)
    write_report(result, opts, world, val_seqs, synth, per_frame, seg_info, label_set)
    result.artefacts = sorted(str(p_.relative_to(out)) for p_ in out.rglob("*")
                              if p_.is_file() and p_.parent.name in ("videos", "plots") or p_.name.startswith("report"))
    (out / "report.json").write_text(json.dumps(_jsonable(result, opts, seg_info), indent=2))
    return result


def _jsonable(result: DemoResult, opts: DemoOptions, seg_info: dict[str, Any]) -> dict[str, Any]:
    o = asdict(opts)
    o["out"] = str(o["out"])
    return {"options": o, "metrics": result.metrics, "training": result.training, "synthesis": result.synthesis,
            "segmenter": seg_info,
            "verdict": result.verdict, "target_met": result.target_met, "seconds": result.seconds,
            "artefacts": result.artefacts}
