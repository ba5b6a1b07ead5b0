"""``v2v predict`` as a library: read a context, predict N future frames, render, write, and optionally score.

:func:`predict_video` does the whole command:

1. Load the predictor run (``label_predictor`` or ``frame_predictor``) and, for a label predictor, the vid2vid
   renderer run; their label sets must match.
2. Read the context at the predictor's size (centre crop, as the evaluation loader does): a dataset sequence
   folder (``DATASET/frames/SEQ`` or any ``DATASET/<modality>/SEQ``) uses its seg/inst/flow files; a video or a
   plain frame folder gets its flow from the configured flow estimator and, for a label predictor, its labels
   from ``v2v extract seg`` (default backend) into a temporary dataset.
3. With ``evaluate``, the last N frames of the context are held out as the ground truth; the K frames before
   them are observed. Without it the last K frames are observed and the prediction continues past the end.
4. The label predictor predicts N maps autoregressively; instance maps for the renderer are carried forward by
   warping the last instance map with the predicted flow (kept where the warped instance has the predicted
   class, else the class id, the Cityscapes/world convention). The renderer starts from the real observed frames
   and renders the predicted maps one after another.
5. Outputs (each written atomically): ``OUT`` (mp4 of the N predicted frames), ``OUT.preview.png`` (named rows:
   predicted label maps, predicted frames; with ``evaluate`` also the true maps and frames; columns: the last
   observed frame, t+1 .. t+N), and with
   ``evaluate`` ``OUT.eval.json`` / ``OUT.eval.md``: per-step PSNR, SSIM, LPIPS (when an ``lpips`` metric and its
   weights are available) and label mIoU for the model and the two baselines of :mod:`.evaluation`.

Frames are streamed: each predicted frame is rendered and written to the video as soon as it exists, so memory
does not grow with the horizon. ``--horizon`` is at most :data:`MAX_HORIZON` (and, with ``--eval``, at most the
frames the context holds beyond the observed ones). The preview shows every step up to :data:`PREVIEW_STEPS`
steps, else that many steps evenly spread over the horizon (always the last).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from v2vcli.checkpoint import read_meta
from v2vcli.data.clips import ClipDataset
from v2vcli.data.layout import Dataset
from v2vcli.errors import CheckpointError, ConfigError, DatasetError, PluginError, V2VError, VideoError, WeightsError
from v2vcli.extract import run_extraction
from v2vcli.io.files import encode_image, write_bytes_atomic
from v2vcli.io.inputs import dataset_of_sequence_folder
from v2vcli.io.preview import labelled_grid
from v2vcli.io.video import VideoWriter, open_video, write_frames_folder
from v2vcli.metric import compute_metric, confusion, miou, psnr, ssim
from v2vcli.model import load_model_for_inference
from v2vcli.registry import get_registry
from v2vcli.runtime import to_uint8
from v2vcli.warp import base_grid

from .evaluation import METHODS, HorizonScores, constant_flow, copy_last

__all__ = ["Context", "PredictResult", "load_context", "carry_instances", "predict_video", "output_paths"]

log = logging.getLogger(__name__)

PREDICTORS = ("label_predictor", "frame_predictor")
MAX_HORIZON = 10_000  # predicted frames per run (an autoregressive rollout drifts long before)
PREVIEW_STEPS = 16  # columns of predicted steps in the preview
RENDERABLE = ("seg", "inst")


@dataclass
class Context:
    """A context sequence at the model's size: ``frames`` (T, H, W, 3) uint8, ``seg``/``inst`` (T, H, W) or None,
    ``flow`` (T, H, W, 2) backward flows in pixels (``flow[0]`` zero)."""

    name: str
    frames: np.ndarray
    flow: np.ndarray
    seg: np.ndarray | None = None
    inst: np.ndarray | None = None
    fps: float = 10.0

    @property
    def length(self) -> int:
        return int(self.frames.shape[0])

    def window(self, start: int, stop: int) -> Context:
        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[start:stop]

        return Context(self.name, self.frames[start:stop], self.flow[start:stop], cut(self.seg), cut(self.inst),
                       self.fps)


@dataclass
class PredictResult:
    """What :func:`predict_video` wrote and measured."""

    video: Path
    preview: Path
    frames: int
    observed: int
    report: Path | None = None
    scores: HorizonScores | None = None
    notes: list[str] = field(default_factory=list)


def output_paths(out: Path) -> dict[str, Path]:
    """The files written next to ``out``: the video, the preview, the evaluation report (JSON and Markdown)."""
    stem = out.with_suffix("")
    return {"video": out, "preview": Path(f"{stem}.preview.png"), "json": Path(f"{stem}.eval.json"),
            "md": Path(f"{stem}.eval.md")}


# -- context ----------------------------------------------------------------------------------------------------------
def _read_dataset_sequence(root: Path, seq: str, data: Any, need: list[str], label_set: Any,
                           flow_estimator: str) -> Context:
    cfg = copy.deepcopy(data)
    cfg.root = str(root)
    cfg.inputs = list(need)
    cfg.num_workers = 0
    ds = Dataset(root)
    cfg.flow = "dataset" if ds.modality_dir("flow").is_dir() else flow_estimator
    meta = ds.frames_meta()["sequences"][seq]
    clips = ClipDataset(cfg, history=0, need_flow=True, augment=False, label_set=label_set)
    clips.sequences, clips.counts = [seq], {seq: int(meta.get("count", 0))}
    if clips.counts[seq] < 1:
        raise DatasetError(f"sequence '{seq}' of '{root}' has no frames")
    b = clips.clip(0, clips.counts[seq])
    return Context(seq, b.frames[0].permute(0, 2, 3, 1).numpy(), b.flow[0].permute(0, 2, 3, 1).numpy(),
                   b.inputs["seg"][0].numpy() if "seg" in b.inputs else None,
                   b.inputs["inst"][0].numpy() if "inst" in b.inputs else None, float(meta.get("fps") or 10.0))


def _cover_crop(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to cover (W, H) keeping the aspect ratio, then centre-crop (the evaluation loader's geometry)."""
    w, h = size
    h0, w0 = img.shape[:2]
    s = max(w / w0, h / h0)
    rw, rh = max(w, math.ceil(w0 * s - 1e-6)), max(h, math.ceil(h0 * s - 1e-6))
    if (rw, rh) != (w0, h0):
        img = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_AREA if rw < w0 else cv2.INTER_LINEAR)
    x, y = (rw - w) // 2, (rh - h) // 2
    return np.ascontiguousarray(img[y:y + h, x:x + w])


def load_context(path: str | Path, data: Any, *, labels: bool, instances: bool = False, label_set: Any = None,
                 flow_estimator: str = "farneback") -> Context:
    """Read a context (dataset sequence folder, video file or frame folder) at ``data.size`` (module docstring)."""
    p = Path(path)
    if not p.exists():
        raise VideoError(f"context '{p}' does not exist; pass a dataset sequence folder (DATASET/frames/SEQ), a "
                         f"video file or a frame folder")
    need = (["seg"] if labels else []) + (["inst"] if instances else [])
    root = dataset_of_sequence_folder(p) if p.is_dir() else None
    if root is not None:
        seq = p.name
        for m in need:
            if not (root / m / seq).is_dir():
                raise DatasetError(f"context sequence '{seq}' of '{root}' has no '{m}' maps; extract them (`v2v "
                                   f"extract {m} {root}`)")
        return _read_dataset_sequence(root, seq, data, need, label_set, flow_estimator)
    if labels:
        with tempfile.TemporaryDirectory(prefix="v2v_predict_") as tmp:
            log.info("extracting seg from '%s' (default backend) for the label predictor", p)
            run_extraction("seg", [p], tmp, progress=False)
            seq = next(iter(sorted((Path(tmp) / "frames").iterdir()))).name
            if instances and not (Path(tmp) / "inst" / seq).is_dir():
                raise DatasetError("the renderer needs instance maps but the seg extractor wrote none; use a renderer "
                                   "trained without inst or a dataset sequence as the context")
            return _read_dataset_sequence(Path(tmp), seq, data, need, label_set, flow_estimator)
    size = (int(data.size[0]), int(data.size[1]))
    with open_video(p) as reader:
        frames = np.stack([_cover_crop(f, size) for f in reader]) if reader is not None else None
        fps = float(getattr(reader, "fps", 10.0) or 10.0)
    if frames is None or len(frames) == 0:
        raise VideoError(f"context '{p}' has no frames")
    estimator = get_registry().get_flow_estimator(flow_estimator)(device="cpu")
    flows = [np.zeros((size[1], size[0], 2), dtype=np.float32)]
    for t in range(1, len(frames)):
        flows.append(np.asarray(estimator.backward(frames[t], frames[t - 1]), dtype=np.float32))
    return Context(p.stem if p.is_file() else p.name, frames, np.stack(flows), fps=fps)


# -- instances ---------------------------------------------------------------------------------------------------------
def carry_instances(prev_inst: torch.Tensor, seg: torch.Tensor, flow: torch.Tensor, factor: int = 1000) -> torch.Tensor:
    """Instance map (B, H, W) for predicted labels ``seg``: the previous instance map warped (nearest) by the
    predicted backward ``flow`` where the warped id is an instance of the predicted class (id // factor == class),
    else the class id (stuff convention of Cityscapes and the synthetic world)."""
    b, h, w = seg.shape
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=flow.device)
    grid = base_grid(h, w, flow.device, torch.float32) + flow.float().permute(0, 2, 3, 1) * scale
    # ids up to 2^24 are exact in float32; nearest sampling never mixes two ids
    warped = F.grid_sample(prev_inst.double().unsqueeze(1), grid.double(), mode="nearest", padding_mode="border",
                           align_corners=True)[:, 0].round().long()
    seg = seg.long()
    keep = (warped >= factor) & (torch.div(warped, factor, rounding_mode="floor") == seg)
    return torch.where(keep, warped, seg)


# -- prediction --------------------------------------------------------------------------------------------------------
def _to_state_frames(frames: np.ndarray, device: Any) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(device)


def _resize(x: torch.Tensor, size: tuple[int, int], nearest: bool) -> torch.Tensor:
    w, h = size
    if tuple(x.shape[-2:]) == (h, w):
        return x
    if nearest:
        return F.interpolate(x.unsqueeze(1).double(), size=(h, w), mode="nearest")[:, 0].round().to(x.dtype)
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def _check_label_sets(pred: Any, rend: Any, pred_path: str, rend_path: str) -> None:
    a = None if pred.label_set is None else pred.label_set.to_dict().get("classes")
    b = None if rend.label_set is None else rend.label_set.to_dict().get("classes")
    if a != b:
        na = getattr(pred.label_set, "name", None)
        nb = getattr(rend.label_set, "name", None)
        raise ConfigError(f"the predictor '{pred_path}' (label set '{na}') and the renderer '{rend_path}' (label set "
                          f"'{nb}') were trained on different label sets; use a renderer trained on the same dataset")


def predict_video(predictor: str | Path, context: str | Path, horizon: int, *, renderer: str | Path | None = None,
                  out: str | Path | None = None, evaluate: bool = False, device: str = "cpu",
                  weights: dict[str, str] | None = None, fps: float | None = None) -> PredictResult:
    """Run ``v2v predict`` (see the module docstring); returns the written paths and, with ``evaluate``, scores."""
    if horizon < 1:
        raise ConfigError(f"--horizon must be at least 1, got {horizon}")
    if horizon > MAX_HORIZON:
        raise ConfigError(f"--horizon must be at most {MAX_HORIZON} (an autoregressive rollout drifts long before), "
                          f"got {horizon}; predict in shorter runs")
    if not Path(context).exists():  # before loading any model: the cheapest mistake is reported first
        raise VideoError(f"context '{context}' does not exist; pass a dataset sequence folder (DATASET/frames/SEQ), "
                         f"a video or a frame folder")
    meta = read_meta(predictor)
    if meta.model not in PREDICTORS:
        raise CheckpointError(f"--predictor '{predictor}' is a '{meta.model}' run; pass a run of "
                              f"{' or '.join(PREDICTORS)} (`v2v train --config predict_world`)")
    model: Any  # a LabelPredictor or a FramePredictor (meta.model is one of PREDICTORS), as the helpers take it
    model, _ = load_model_for_inference(predictor, device=device)
    labels = model.kind == "labels"
    rend = None
    if labels:
        if renderer is None:
            raise ConfigError("a label predictor needs --renderer RUN (a vid2vid run) to turn the predicted maps into "
                              "frames")
        rend, rmeta = load_model_for_inference(renderer, device=device)
        if rmeta.model in PREDICTORS:
            raise ConfigError(f"--renderer '{renderer}' is a '{rmeta.model}' run; pass a vid2vid run")
        extra = sorted(set(rend.cfg.data.inputs) - set(RENDERABLE))
        if extra or "seg" not in rend.cfg.data.inputs:
            raise ConfigError(f"the renderer '{renderer}' is conditioned on {rend.cfg.data.inputs}; the label "
                              f"predictor predicts seg (and carries inst): use a renderer trained on seg[, inst]")
        _check_label_sets(model, rend, str(predictor), str(renderer))
    instances = rend is not None and "inst" in rend.cfg.data.inputs
    ctx = load_context(context, model.cfg.data, labels=labels, instances=instances, label_set=model.label_set,
                       flow_estimator=model.cfg.model.flow_estimator)
    K = model.history_frames
    L_r = 0 if rend is None else int(rend.frame_generator().history_frames)
    need = max(K, L_r, 1)
    have = ctx.length - (horizon if evaluate else 0)
    if have < need:
        what = f" plus the {horizon} held-out frames --eval compares with" if evaluate else ""
        raise ConfigError(f"the context '{context}' has {ctx.length} frames; the predictor observes the last {need}"
                          f"{what}, so it needs at least {need + (horizon if evaluate else 0)}")
    observed = ctx.window(have - need, have)
    truth = ctx.window(have, have + horizon) if evaluate else None
    out_path = Path(out) if out is not None else Path(f"{ctx.name}_predicted.mp4")
    if out_path.suffix.lower() != ".mp4":
        raise ConfigError(f"-o '{out_path}' must name an .mp4 file")
    if out_path.exists() and out_path.is_dir():
        raise ConfigError(f"-o '{out_path}' is a folder; name an .mp4 file")

    # -- the model's prediction, streamed to the video -------------------------------------------------------------
    dev = model.device
    obs_frames = _to_state_frames(observed.frames, dev)  # (n, 3, H, W)
    obs_flow = torch.from_numpy(observed.flow).permute(0, 3, 1, 2).float().to(dev)
    first_flow_zero = have - need == 0
    rollout = model.rollout()
    if labels:
        assert observed.seg is not None  # noqa: S101 - load_context read seg for a label predictor
        states = model.one_hot(torch.from_numpy(observed.seg).long().to(dev))
    else:
        states = obs_frames
    for j in range(need - K, need):
        rollout.observe(states[j:j + 1], None if (j == 0 and first_flow_zero) else obs_flow[j:j + 1])
    render = _renderer(rend, observed, obs_frames, instances) if labels and rend is not None else None
    steps = preview_steps(horizon)
    shown = set(steps)
    keep = truth is not None  # scoring needs every step: bounded by the context's held-out frames
    pred_seg: list[torch.Tensor] = []  # kept only with --eval
    kept_u8: list[np.ndarray] = []  # kept only with --eval
    shown_u8: list[np.ndarray] = []
    shown_maps: list[np.ndarray] = []

    out_path.parent.mkdir(parents=True, exist_ok=True)
    paths = output_paths(out_path)
    with VideoWriter(out_path, float(fps or ctx.fps)) as writer:  # an error removes the partial video
        for k in range(horizon):
            o = rollout.predict()
            seg = o.state.argmax(1) if labels else None
            frame = render(seg, o.flow) if render is not None else o.state.clamp(-1, 1)
            if not bool(torch.isfinite(frame).all()):
                raise CheckpointError(f"the predictor produced non-finite values (NaN or Inf) at step {k + 1}; its "
                                      f"weights are broken: use an earlier checkpoint or retrain")
            u8 = to_uint8(frame)[0]
            writer.write(u8)
            if keep:
                kept_u8.append(u8)
                if seg is not None:
                    pred_seg.append(seg)
            if k in shown:
                shown_u8.append(u8)
                if seg is not None:
                    shown_maps.append(to_uint8(model.picture(model.one_hot(seg)))[0])
    pred_u8 = np.stack(kept_u8) if keep else np.zeros((0,), np.uint8)

    # -- preview and report ----------------------------------------------------------------------------------------
    rows, names = [], []
    if labels:
        rows.append(np.stack(shown_maps))
        names.append("predicted labels")
    rows.append(np.stack(shown_u8))
    names.append("rendered" if labels else "predicted")
    if truth is not None:
        if labels and truth.seg is not None:
            rows.append(np.concatenate([to_uint8(model.picture(model.one_hot(torch.from_numpy(truth.seg[k][None])
                                                                              .long()))) for k in steps]))
            names.append("true labels")
        rows.append(truth.frames[steps])
        names.append("true frames")
    _write_preview(paths["preview"], observed, rows, names, model if labels else None, steps)
    result = PredictResult(out_path, paths["preview"], horizon, need)
    if truth is not None:
        scores = _score(model, observed, truth, pred_seg, pred_u8, horizon, device, weights or {})
        result.scores, result.notes = scores, list(scores.notes)
        _write_report(paths["json"], paths["md"], scores, predictor=str(predictor), renderer=str(renderer or ""),
                      context=str(context), observed=need)
        result.report = paths["json"]
    return result


def preview_steps(horizon: int, limit: int = PREVIEW_STEPS) -> list[int]:
    """Indices (0-based) of the predicted steps the preview shows: all, or ``limit`` spread evenly (the last
    included)."""
    if horizon <= limit:
        return list(range(horizon))
    return sorted({round(i * (horizon - 1) / (limit - 1)) for i in range(limit)})


def _render(rend: Any, observed: Context, obs_frames: torch.Tensor, pred_seg: list[torch.Tensor],
            pred_flow: list[torch.Tensor], instances: bool) -> list[torch.Tensor]:
    """Run the vid2vid renderer from the real observed frames over the predicted maps (at the renderer's size)."""
    render = _renderer(rend, observed, obs_frames, instances)
    return [render(seg, flow) for seg, flow in zip(pred_seg, pred_flow)]


def _renderer(rend: Any, observed: Context, obs_frames: torch.Tensor, instances: bool) -> Any:
    """The vid2vid renderer started from the real observed frames; returns ``render(seg, flow) -> frame`` for one
    predicted map at a time (at the context's size), so frames can be streamed."""
    size = (int(rend.cfg.data.size[0]), int(rend.cfg.data.size[1]))
    dev = rend.device
    h, w = obs_frames.shape[-2:]
    gen = rend.frame_generator()
    gen.reset()
    seg_obs = torch.from_numpy(observed.seg).long()
    inst_obs = torch.from_numpy(observed.inst).long() if instances and observed.inst is not None else None
    for j in range(observed.length):
        inputs = {"seg": _resize(seg_obs[j:j + 1], size, True).to(dev)}
        if inst_obs is not None:
            inputs["inst"] = _resize(inst_obs[j:j + 1], size, True).to(dev)
        gen.step(inputs, real=_resize(obs_frames[j:j + 1], size, False).to(dev))
    carried = [inst_obs[-1:] if inst_obs is not None else None]

    def render(seg: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        inputs = {"seg": _resize(seg.cpu(), size, True).to(dev)}
        if carried[0] is not None:
            carried[0] = carry_instances(carried[0], seg.cpu(), flow.cpu())
            inputs["inst"] = _resize(carried[0], size, True).to(dev)
        frame = gen.step(inputs).frame
        return _resize(frame.float().cpu(), (w, h), False)

    return render


def _score(model: Any, observed: Context, truth: Context, pred_seg: list[torch.Tensor], pred_u8: np.ndarray,
           horizon: int, device: str, weights: dict[str, str]) -> HorizonScores:
    labels = model.kind == "labels"
    last = _to_state_frames(observed.frames[-1:], "cpu")
    last_flow = torch.from_numpy(observed.flow[-1:]).permute(0, 3, 1, 2).float()
    frames = {"model": list(pred_u8),
              "copy_last": [to_uint8(f)[0] for f in copy_last(last, horizon)],
              "constant_flow": [to_uint8(f)[0] for f in constant_flow(last, last_flow, horizon)]}
    scores = HorizonScores(horizon, samples=1)
    for m in METHODS:
        scores.per_step[m] = {"psnr": [psnr(truth.frames[k], frames[m][k]) for k in range(horizon)],
                              "ssim": [ssim(truth.frames[k], frames[m][k]) for k in range(horizon)]}
    if labels and truth.seg is not None and observed.seg is not None:
        C = model.state_nc
        onehot = model.one_hot(torch.from_numpy(observed.seg[-1:]).long()).cpu()
        maps = {"model": [s.cpu()[0] for s in pred_seg],
                "copy_last": [s.argmax(1)[0] for s in copy_last(onehot, horizon)],
                "constant_flow": [s.argmax(1)[0] for s in constant_flow(onehot, last_flow, horizon)]}
        for m in METHODS:
            scores.per_step[m]["miou"] = [miou(confusion(truth.seg[k], maps[m][k].numpy(), C, model.ignore_id))
                                          for k in range(horizon)]
    _lpips(scores, truth.frames, frames, device, weights)
    return scores


def _lpips(scores: HorizonScores, real: np.ndarray, fakes: dict[str, list[np.ndarray]], device: str,
           weights: dict[str, str]) -> None:
    """Per-step LPIPS through the registered ``lpips`` metric, when there is one and its weights are found."""
    try:
        get_registry().get_metric("lpips")
    except PluginError:
        scores.notes.append("lpips: no 'lpips' metric is registered in this installation; LPIPS left out")
        return
    try:
        with tempfile.TemporaryDirectory(prefix="v2v_predict_lpips_") as tmp:
            write_frames_folder(list(real), Path(tmp) / "real", ext="png")
            for m, frames in fakes.items():
                write_frames_folder(frames, Path(tmp) / m, ext="png")
                res = compute_metric("lpips", Path(tmp) / "real", Path(tmp) / m, device=device, weights=weights)
                values = next(iter(res.per_frame.values()), [])
                scores.per_step[m]["lpips"] = [float(v) for v in values]
    except (WeightsError, V2VError) as exc:
        scores.notes.append(f"lpips: left out ({exc})")
        for m in fakes:
            scores.per_step[m].pop("lpips", None)


def _write_preview(path: Path, observed: Context, rows: list[np.ndarray], names: list[str], model: Any,
                   steps: list[int] | None = None) -> None:
    """One PNG: each row (named on the left) starts with the last observed frame (or map, for rows of maps) and
    shows the predicted steps ``steps`` (0-based; default: every step of the rows)."""
    last_frame = observed.frames[-1]
    last_map = None
    if model is not None and observed.seg is not None:
        last_map = to_uint8(model.picture(model.one_hot(torch.from_numpy(observed.seg[-1:]).long())))[0]
    images = []
    for name, row in zip(names, rows):
        first = last_map if (last_map is not None and name.endswith("labels")) else last_frame
        images += [first] + list(row)
    steps = list(range(len(rows[0]))) if steps is None else steps
    scale = max(1, 128 // max(1, last_frame.shape[0]))  # small models' frames are enlarged to be readable
    grid = labelled_grid(images, len(steps) + 1, names, ["last seen"] + [f"t+{k + 1}" for k in steps], scale)
    write_bytes_atomic(path, encode_image(grid, ".png"))


def _write_report(json_path: Path, md_path: Path, scores: HorizonScores, **info: Any) -> None:
    data = {**info, **scores.to_dict()}
    write_bytes_atomic(json_path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    metrics = list(next(iter(scores.per_step.values())).keys())
    lines = [f"# Prediction: {info.get('context', '')}", "",
             f"{info.get('observed')} observed frames, {scores.horizon} predicted.", ""]
    for metric in metrics:
        lines += [f"## {metric}", "", "| method | " + " | ".join(f"t+{k + 1}" for k in range(scores.horizon))
                  + " | mean |", "|---" * (scores.horizon + 2) + "|"]
        for m in scores.per_step:
            vals = scores.per_step[m].get(metric, [])
            lines.append(f"| {m} | " + " | ".join(f"{v:.4g}" for v in vals) + f" | {scores.mean(m, metric):.4g} |")
        lines.append("")
    if scores.notes:
        lines += ["Notes: " + "; ".join(scores.notes), ""]
    write_bytes_atomic(md_path, "\n".join(lines).encode("utf-8"))
