"""CPU seconds per frame of the detectron2 backends (pose Keypoint R-CNN, DensePose R-CNN, Panoptic FPN seg) at
several ``--min-size`` values: the table of docs/extract.md.

Usage::

    python benchmarks/bench_detectron2.py --out benchmarks/results/detectron2.json
    python benchmarks/bench_detectron2.py --sizes 800 320 --frame 1280x720 --threads 4 --repeat 5

The models are the default configs (R50-FPN, 1000 proposals) with random weights made through detectron2's API,
biased so every proposal is a person (so the keypoint and DensePose heads run on ``--max-people`` people, as they
would on a crowded real frame); the cost of the backbone and the heads does not depend on the weights' values.
Each case runs one warm-up frame, then ``--repeat`` frames of ``--frame`` random pixels through the extractor's
``process`` (resize, model, conversion to v2v's outputs). Needs detectron2 and DensePose (``make detectron2``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def _random_weights(config_file: str, folder: Path, name: str, densepose: bool = False) -> str:
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    if densepose:
        from densepose import add_densepose_config

        add_densepose_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        head = model.roi_heads.box_predictor
        for p in (head.cls_score.weight, head.cls_score.bias, head.bbox_pred.weight, head.bbox_pred.bias):
            p.zero_()
        head.cls_score.bias[0] = 6.0  # class 0 (person) wins every proposal
        if hasattr(model.roi_heads, "keypoint_head"):  # keep heatmap logits finite after exp()
            model.roi_heads.keypoint_head.score_lowres.weight.mul_(2.5e-3)
    DetectionCheckpointer(model, save_dir=str(folder)).save(name)
    return str(folder / f"{name}.pth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[800, 512, 320])
    parser.add_argument("--frame", default="640x360", help="W×H of the frames")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-people", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import numpy as np
    import torch
    from detectron2 import model_zoo

    from v2v_plugins.extract.densepose import DEFAULT_DENSEPOSE_CONFIG, DensePoseExtractor, DensePoseOptions
    from v2v_plugins.extract.detectron2_backend import detectron2_versions
    from v2v_plugins.extract.pose_detectron2 import DEFAULT_KEYPOINT_MODEL, Detectron2Pose, Detectron2PoseOptions
    from v2v_plugins.extract.seg import DEFAULT_DETECTRON2_MODEL, Detectron2Options, Detectron2Seg

    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.frame.lower().split("x"))
    frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        kp = _random_weights(model_zoo.get_config_file(DEFAULT_KEYPOINT_MODEL), folder, "kp")
        dp = _random_weights(DEFAULT_DENSEPOSE_CONFIG, folder, "dp", densepose=True)
        pan = _random_weights(model_zoo.get_config_file(DEFAULT_DETECTRON2_MODEL), folder, "pan")
        for size in args.sizes:
            cases = {
                "pose": lambda: Detectron2Pose(Detectron2PoseOptions(weights=kp, min_size=size,
                                                                     max_people=args.max_people)),
                "densepose": lambda: DensePoseExtractor(DensePoseOptions(weights=dp, min_size=size,
                                                                         max_people=args.max_people)),
                "seg": lambda: Detectron2Seg(Detectron2Options(weights=pan, min_size=size)),
            }
            for name, make in cases.items():
                extractor = make()
                extractor.process(frame, 0)
                t0 = time.perf_counter()
                for i in range(args.repeat):
                    extractor.process(frame, i)
                seconds = (time.perf_counter() - t0) / args.repeat
                extractor.close()
                results.append({"extractor": name, "min_size": size, "seconds_per_frame": round(seconds, 3)})
                print(f"{name:10s} --min-size {size:5d}: {seconds:6.2f} s/frame", flush=True)
    doc = {"frame": [w, h], "threads": args.threads, "max_people": args.max_people, **detectron2_versions(),
           "results": results}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
