"""Benchmark of FID feature extraction: images/s of v2v against pytorch-fid on the same images, in one run.

Usage::

    python benchmarks/bench_eval.py --out benchmarks/results/eval.json
    python benchmarks/bench_eval.py --images 200 --size 128 --rounds 3 --device cpu

What is measured: pool3 (2048-d) Inception features of ``--images`` PNG files of ``--size``² pixels in one folder
(smooth random textures), by

* ``pytorch_fid``: ``pytorch_fid.fid_score.get_activations`` with its defaults (batch 50, a DataLoader with
  ``--workers`` processes, default min(8, CPUs) as its command line uses) and its ``InceptionV3([3])``;
* ``v2v``: :meth:`v2v_plugins.evaluate.fid.FID.features` with the default (exact) settings: pytorch-fid's kernels,
  decoding and batching in a background thread, ``torch.inference_mode``, batch 64, cache off;
* ``v2v_fast``: the same with ``fast=True`` (channels-last layout, BatchNorm folded into the convolutions).

All three load one random FID Inception state dict (BatchNorm statistics recalibrated on a few images so that the
activations are those of a working network, not overflowing ones). Networks are built before timing; each
implementation runs ``--rounds`` times, interleaved so that a busy machine slows all alike, and the best round
counts. The JSON also reports the largest feature difference of each v2v mode from pytorch-fid.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

__all__ = ["make_images", "random_inception", "main"]


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """``n`` smooth random RGB PNGs of size×size in ``folder``."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        base = rng.integers(0, 256, size=(max(2, size // 8), max(2, size // 8), 3)).astype(np.uint8)
        img = cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)
        path = folder / f"{i:06d}.png"
        cv2.imwrite(str(path), img)
        files.append(path)
    return files


def random_inception(path: Path, calib: list[Path]) -> Path:
    """Save a random FID Inception state dict with BatchNorm statistics recalibrated on ``calib`` images."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from v2v_plugins.evaluate.inception import build_fid_inception_v3

    torch.manual_seed(0)
    net = build_fid_inception_v3()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in calib])
    x = 2 * F.interpolate(x.float() / 255, size=(299, 299), mode="bilinear", align_corners=False) - 1
    net.train()
    with torch.no_grad():
        net(x)
    torch.save(net.eval().state_dict(), path)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=120, help="number of images")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per implementation (best counts)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=None,
                        help="pytorch-fid DataLoader workers (default: min(8, CPUs) as its command line)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args(argv)

    import torch
    from pytorch_fid import fid_score
    from pytorch_fid import inception as pfid_inception

    from v2v_plugins.evaluate.fid import FID, FIDConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    workers = args.workers if args.workers is not None else min(8, len(os.sched_getaffinity(0)))
    tmp = Path(tempfile.mkdtemp(prefix="v2v-bench-eval-"))
    os.environ["V2V_HOME"] = str(tmp / "home")  # nothing of the user's cache is read or written
    files = make_images(tmp / "images", args.images, args.size)
    weights = random_inception(tmp / "inception.pth", files[:4])

    pfid_inception.load_state_dict_from_url = (  # type: ignore[attr-defined]
        lambda *a, **k: torch.load(weights, map_location="cpu", weights_only=True))
    fid_score.tqdm = lambda x: x  # type: ignore[attr-defined]
    ref_model = pfid_inception.InceptionV3([3]).to(args.device)
    v2v = {mode: FID(FIDConfig(cache=False, fast=(mode == "v2v_fast")), args.device,
                     {"inception_fid": str(weights)}, verify_weights=False)
           for mode in ("v2v", "v2v_fast")}
    for metric in v2v.values():
        metric.extractor()  # build the network before timing, as for pytorch-fid

    def run_pfid() -> Any:
        return fid_score.get_activations(files, ref_model, batch_size=50, dims=2048, device=args.device,
                                         num_workers=workers)

    runs: dict[str, Any] = {"pytorch_fid": run_pfid}
    for mode, metric in v2v.items():
        runs[mode] = lambda metric=metric: metric.features(tmp / "images")

    # warm-up (one-time allocations, thread pools) on a few images
    warm = tmp / "warm"
    make_images(warm, 4, args.size, seed=1)
    fid_score.get_activations(sorted(warm.glob("*.png")), ref_model, batch_size=4, dims=2048, device=args.device,
                              num_workers=0)
    for metric in v2v.values():
        metric.features(warm)

    times: dict[str, list[float]] = {name: [] for name in runs}
    feats: dict[str, Any] = {}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            feats[name] = np.asarray(fn())
            times[name].append(time.perf_counter() - t0)

    best = {name: min(ts) for name, ts in times.items()}
    ips = {name: args.images / t for name, t in best.items()}
    result = {
        "benchmark": "fid_feature_extraction",
        "images": args.images, "size": [args.size, args.size], "dims": 2048, "device": args.device,
        "rounds": args.rounds, "pytorch_fid_workers": workers,
        "seconds": {name: [round(t, 3) for t in ts] for name, ts in times.items()},
        "images_per_s": {name: round(v, 3) for name, v in ips.items()},
        "speedup_vs_pytorch_fid": {name: round(ips[name] / ips["pytorch_fid"], 3) for name in ("v2v", "v2v_fast")},
        "max_abs_feature_diff_vs_pytorch_fid": {
            name: float(np.abs(feats[name] - feats["pytorch_fid"]).max()) for name in ("v2v", "v2v_fast")},
        "goal": "v2v >= 1.5x pytorch-fid images/s",
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine(),
                    "load_avg_1min": os.getloadavg()[0]},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
