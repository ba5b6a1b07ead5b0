"""The demo's report: side-by-side videos, PNG charts, report.html with the numbers, verdict and commands."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from v2vcli.data.layout import Dataset
from v2vcli.io.files import read_image, read_label, write_image
from v2vcli.io.preview import colorize_labels
from v2vcli.io.video import write_video

from .plots import bar_chart, line_chart

if TYPE_CHECKING:
    from .pipeline import DemoOptions, DemoResult

__all__ = ["write_report", "side_by_side_frames", "commands"]

SCALE = 2  # videos are shown at twice the world's size


def _caption(img: Any, text: str) -> Any:
    bar = np.full((18, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def side_by_side_frames(world: Path, seq: str, synth: Path, models: list[str], label_set: Any) -> list[Any]:
    """Frames of labels | each model | ground truth, upscaled ×SCALE with captions."""
    ds = Dataset(world)
    meta = ds.frames_meta()
    n = int(meta["sequences"][seq]["count"])
    ext = "." + str(meta.get("format", "jpg"))
    palette = label_set.palette() if label_set is not None else None
    out = []
    for t in range(n):
        lab = colorize_labels(read_label(ds.frame_path("seg", seq, t, ".png")), palette)
        panels = [("labels", lab, cv2.INTER_NEAREST)]
        for m in models:
            panels.append((m, read_image(synth / m / seq / f"{t:06d}.png"), cv2.INTER_CUBIC))
        panels.append(("ground truth", read_image(ds.frame_path("frames", seq, t, ext)), cv2.INTER_CUBIC))
        tiles = []
        for name, img, interp in panels:
            big = cv2.resize(img, (img.shape[1] * SCALE, img.shape[0] * SCALE), interpolation=interp)
            tiles.append(_caption(big, name))
            tiles.append(np.full((tiles[-1].shape[0], 4, 3), 255, np.uint8))
        out.append(np.ascontiguousarray(np.hstack(tiles[:-1])))
    return out


def commands(result: DemoResult, opts: DemoOptions, val_seqs: list[str]) -> list[tuple[str, str]]:
    """(what, command) pairs that reproduce each step with the CLI."""
    out = result.out
    w, h = opts.size
    cmds = [("world", f"v2v demo world --out {out}/world --seed {opts.seed} --size {w}x{h} --frames {opts.frames} "
                      f"--sequences {opts.sequences} --val {opts.val}")]
    for model, info in result.training.items():
        sets = " ".join(f"--set {s}" for s in [f"data.size=[{w},{h}]", f"seed={opts.seed}", *info["sets"]])
        cmds.append((f"train {model}", f"v2v train --config {Path(info['config']).stem} --data "
                                       f"{out}/world --run-dir {out}/runs/{model} --device {opts.device} {sets}"))
    for model in result.training:
        first = f" --first-frame-model {out}/runs/perframe" if model != "perframe" else ""
        cmds.append((f"synthesize {model}", f"v2v synthesize --checkpoint {out}/runs/{model} --labels {out}/world "
                                            f"--split val --format png -o {out}/synth/{model}{first}"))
    seq = val_seqs[0]
    for metric in ("psnr", "ssim", "warp_error"):
        name = metric.replace("_", "-")
        cmds.append((f"eval {metric} ({seq})", f"v2v eval {name} --real {out}/world/frames/{seq} --fake "
                                               f"{out}/synth/vid2vid/{seq}"))
    return cmds


def _first_frames_note(result: DemoResult) -> str:
    """How vid2vid's first frames were made (it was trained with real history frames), as the official test does."""
    info = result.synthesis.get("vid2vid") or {}
    n = int(info.get("first_frame_count") or 0)
    if info.get("first_frames") != "model" or n < 1:
        return ""
    frames = "frame 0" if n == 1 else f"frames 0-{n - 1}"
    return (f" (vid2vid was trained with {n} real history frame{'s' if n > 1 else ''}, so, as in the official "
            f"vid2vid test, its {frames} come from the single-image generator, the perframe run)")


def _losses(run_dir: Path) -> dict[str, tuple[list[float], list[float]]]:
    series: dict[str, tuple[list[float], list[float]]] = {}
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return series
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("stage") != "train":
            continue
        for key in ("G_total", "D_total"):
            if isinstance(rec.get(key), (int, float)):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(float(rec["step"]))
                ys.append(float(rec[key]))
    return series


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def write_report(result: DemoResult, opts: DemoOptions, world: Path, val_seqs: list[str], synth: Path,
                 per_frame: dict[str, dict[str, list[float]]], seg_info: dict[str, Any], label_set: Any) -> Path:
    """Write videos/, plots/ and report.html under ``result.out``; returns the report's path."""
    out = result.out
    models = list(result.training)
    videos, plots = out / "videos", out / "plots"
    videos.mkdir(exist_ok=True)
    plots.mkdir(exist_ok=True)
    fps = float(json.loads((world / "meta" / "frames.json").read_text())["sequences"][val_seqs[0]]["fps"])
    video_rows = []
    for seq in val_seqs:
        frames = side_by_side_frames(world, seq, synth, models, label_set)
        write_video(videos / f"{seq}.mp4", frames, fps)
        write_image(videos / f"{seq}.png", frames[len(frames) // 2])
        video_rows.append(seq)

    charts: list[tuple[str, str]] = []
    for model in models:
        img = line_chart(_losses(Path(result.training[model]["run_dir"])), title=f"{model}: training losses",
                         ylabel="loss")
        write_image(plots / f"losses_{model}.png", img)
        charts.append((f"plots/losses_{model}.png", f"{model} training losses"))
    names = ["ground truth", *models]
    for key, title, ylabel in (("psnr", "PSNR vs ground truth (higher is better)", "dB"),
                               ("ssim", "SSIM vs ground truth (higher is better)", ""),
                               ("warp_error", "flow-warping error (lower is better)", "MSE"),
                               ("seg_miou", "label consistency: segmenter mIoU (higher is better)", "mIoU")):
        img = bar_chart({n: result.metrics[n][key] for n in names if key in result.metrics[n]}, title=title,
                        ylabel=ylabel)
        write_image(plots / f"{key}.png", img)
        charts.append((f"plots/{key}.png", title))
    wf = {n: (list(range(1, len(per_frame[n]["warp_error"]) + 1)), per_frame[n]["warp_error"]) for n in names}
    write_image(plots / "warp_error_per_frame.png",
                line_chart(wf, title="warp error per frame pair (val sequences in order)", xlabel="frame pair",
                           ylabel="MSE"))
    charts.append(("plots/warp_error_per_frame.png", "warp error per frame pair"))

    rows = []
    for n in names:
        m = result.metrics[n]
        rows.append(f"<tr><td>{html.escape(n)}</td><td>{_fmt(m.get('psnr'), 2)}</td><td>{_fmt(m.get('ssim'))}</td>"
                    f"<td>{_fmt(m.get('warp_error'), 5)}</td><td>{_fmt(m.get('seg_miou'))}</td></tr>")
    train_rows = [f"<tr><td>{html.escape(k)}</td><td>{v['steps']}</td><td>{v['seconds']}</td>"
                  f"<td>{v['seconds_per_step_calibrated']}</td></tr>" for k, v in result.training.items()]
    cmd_rows = "".join(f"<dt>{html.escape(a)}</dt><dd><code>{html.escape(b)}</code></dd>"
                       for a, b in commands(result, opts, val_seqs))
    vids = "".join(f'<figure><video controls loop muted src="videos/{s}.mp4" poster="videos/{s}.png"></video>'
                   f"<figcaption>{html.escape(s)}: labels | {' | '.join(models)} | ground truth</figcaption></figure>"
                   for s in video_rows)
    imgs = "".join(f'<figure><img src="{p}" alt="{html.escape(t)}"><figcaption>{html.escape(t)}</figcaption></figure>'
                   for p, t in charts)
    w, h = opts.size
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>v2v demo report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}figure{{display:inline-block;margin:8px}}
video,img{{max-width:100%}}code{{font-size:90%}}.verdict{{padding:10px;border-radius:6px;
background:{'#e6f4ea' if result.target_met else '#fdecea'}}}</style></head><body>
<h1>v2v demo: vid2vid vs the per-frame ablation on the synthetic world</h1>
<p>{opts.sequences} world sequences of {opts.frames} frames at {w}x{h} ({len(val_seqs)} held out for validation);
both models trained by the same trainer for {opts.minutes:g} minutes each on {html.escape(opts.device)}, then asked
to render the held-out sequences from their label maps alone{_first_frames_note(result)}. Total time
{result.seconds:.0f} s.</p>
<p class="verdict">{html.escape(result.verdict)}</p>
<h2>Videos</h2>{vids}
<h2>Numbers</h2>
<table><tr><th>source</th><th>PSNR dB</th><th>SSIM</th><th>warp error</th><th>seg mIoU</th></tr>{''.join(rows)}</table>
<p>PSNR/SSIM: against the ground-truth frames. Warp error: mean squared difference (RGB in [0, 1]) between each
frame and the previous one warped by DIS flow of the ground-truth video, on pixels its forward-backward check keeps
(Lai et al. 2018); the ground-truth row is the floor natural motion leaves. seg mIoU: a small segmenter trained on
the real train frames ({seg_info.get('steps')} steps, {seg_info.get('seconds')} s) labels each frame; mIoU against
the input label maps (the ground-truth row is its ceiling).</p>
<table><tr><th>model</th><th>steps</th><th>seconds</th><th>s/step (calibration)</th></tr>{''.join(train_rows)}
</table>
<h2>Charts</h2>{imgs}
<h2>Reproduce</h2><dl>{cmd_rows}</dl>
</body></html>
"""
    path = out / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
