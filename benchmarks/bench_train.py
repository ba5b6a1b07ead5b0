"""Benchmark of the trainer (`v2v train`'s loop): step time, frames/s and peak memory per preset; MFU on CUDA.

Usage::

    python benchmarks/bench_train.py --out benchmarks/results/train_cpu.json             # CPU: tiny, street_256_g1
    python benchmarks/bench_train.py --out train_gpu.json --cpu-presets '' --peak-tflops 989  # GPU, bf16
    python benchmarks/bench_train.py --cpu-presets tiny --steps 2                              # quick look

Each preset runs in its own process (``--one``, so peak memory is that preset's) through the real trainer
(:func:`v2v_plugins.train.loop.train`): a synthetic-world dataset is rendered at the preset's ``data.size``, the
loader runs with 2 workers, and ``--steps`` timed steps follow one warm-up step. The warm-up step runs under
``torch.utils.flop_counter.FlopCounterMode`` to count the FLOP of a whole training step (G, image and temporal Ds,
VGG, forward and backward; 1 MAC = 2 FLOP), from which achieved TFLOP/s and, on CUDA, MFU = achieved /
``--peak-tflops`` (dense bf16 peak of the device; H100/H200 SXM 989) follow. Figures: ``step_s`` (median),
``frames_per_s`` (generated frames × batch / step), ``peak_mem_mib`` (``torch.cuda.max_memory_allocated`` on CUDA,
peak RSS of the process on the CPU).

Departures from the presets, recorded in the JSON: the world's label set has 10 classes, not Cityscapes' 35
(``model.label_nc`` comes from the dataset, so the first 7×7 convs are a few % cheaper), and the VGG of the
perceptual loss has random weights (same cost as the ``vgg19`` file).

The GPU section (default street_512 and street_1024, bf16 autocast, channels_last) runs only when CUDA is present,
otherwise it is recorded as skipped; from the measured street_1024 throughput it also projects the paper's 2K
schedule (street_512 → street_1024 → street_2048 on Cityscapes' 2975 training sequences) on 8 GPUs, assuming
linear DDP scaling (the paper: about 10 days on 8 V100s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs"
# G GFLOP per generated frame (docs/architecture.md parity table) used to scale street_1024 throughput to 2048×1024.
GFLOP_PER_FRAME = {"street_1024": 3301.0, "street_2048": 5064.0}
CITYSCAPES_TRAIN_SEQUENCES = 2975
# (preset, epochs = niter + niter_decay, generated frames per clip) of the paper's coarse-to-fine street schedule.
SCHEDULE_2K = [("street_512", 20, 6), ("street_1024", 20, 4), ("street_2048", 10, 4)]


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(preset: str, device: str, steps: int, precision: str, batch: int, gen_frames: int | None,
            channels_last: bool, peak_tflops: float | None) -> dict[str, Any]:
    """Train ``preset`` for 1 + ``steps`` steps through the trainer and return its figures."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from v2v_plugins.gan.perceptual import VGGLoss
    from v2v_plugins.train.loop import train
    from v2v_plugins.world import write_world
    from v2vcli.config import build_config, load_yaml, merge, parse_set

    raw = load_yaml(CONFIGS / f"{preset}.yaml")
    w, h = (raw.get("data") or {}).get("size", [256, 128])
    frames_total = int(gen_frames or (raw.get("data") or {}).get("n_frames_total", 6))
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        data = write_world(Path(tmp) / "world", seed=0, size=(int(w), int(h)), frames=frames_total + 4,
                           sequences=max(2, batch), val=0, progress=False)
        sets = [f"data.root={data}", f"run_dir={Path(tmp) / 'run'}", f"train.device={device}",
                f"train.max_steps={steps + 1}", "train.checkpoint_every=100000", "train.log_every=1000",
                f"train.precision={precision}", f"data.batch_size={batch}", f"data.n_frames_total={frames_total}",
                "data.num_workers=2", "data.clips_per_sequence=64", "model.label_nc=0",
                f"model.channels_last={str(channels_last).lower()}"]
        for s in sets:
            raw = merge(raw, parse_set(s))
        cfg = build_config(raw)
        times: list[float] = []
        counted: dict[str, Any] = {}
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        def hook(model: Any) -> None:
            if float(getattr(cfg.loss, "lambda_vgg", 0) or 0) > 0:
                model.vgg_module = VGGLoss(random_init=True)
            step = model.train_step

            def timed(b: Any) -> Any:
                if "flop" not in counted:
                    with FlopCounterMode(display=False) as fc:
                        out = step(b)
                    counted["flop"] = float(fc.get_total_flops())
                    counted["frames"] = int(out.frames)
                    counted["params_G"] = sum(p.numel() for p in model.generator.parameters())
                    return out
                sync()
                t0 = time.perf_counter()
                out = step(b)
                sync()
                times.append(time.perf_counter() - t0)
                return out

            model.train_step = timed  # type: ignore[method-assign]

        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        train(cfg, model_hook=hook)
        wall = time.perf_counter() - t0
    step_s = statistics.median(times) if times else float("nan")
    frames = counted.get("frames", 0)
    result: dict[str, Any] = {
        "preset": preset, "device": device, "precision": precision, "size": [int(w), int(h)], "batch": batch,
        "generated_frames_per_clip": frames_total, "steps_timed": len(times), "step_s": step_s,
        "step_s_all": times, "frames_per_s": frames / step_s if times else float("nan"),
        "train_flop_per_step": counted.get("flop"), "G_params": counted.get("params_G"),
        "achieved_tflops": counted.get("flop", 0.0) / step_s / 1e12 if times else float("nan"),
        "peak_mem_mib": (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _peak_rss_mib()),
        "wall_s_including_setup": wall, "label_nc": "from the world dataset (10 classes)",
        "vgg": "random weights" if float(getattr(cfg.loss, "lambda_vgg", 0) or 0) > 0 else "off",
        "threads": torch.get_num_threads(),
    }
    if device == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
        if peak_tflops:
            result["peak_tflops"] = peak_tflops
            result["mfu"] = result["achieved_tflops"] / peak_tflops
    return result


def project_2k(results: dict[str, dict[str, Any]], gpus: int = 8) -> dict[str, Any]:
    """Days for the paper's 2K street schedule on ``gpus`` GPUs from measured single-GPU frames/s."""
    fps = {k: v["frames_per_s"] for k, v in results.items() if v.get("frames_per_s")}
    if "street_1024" not in fps:
        return {"skipped": "needs a measured street_1024"}
    fps.setdefault("street_2048", fps["street_1024"] * GFLOP_PER_FRAME["street_1024"] / GFLOP_PER_FRAME["street_2048"])
    fps.setdefault("street_512", fps["street_1024"] * 2)
    stages, total = [], 0.0
    for preset, epochs, frames in SCHEDULE_2K:
        seconds = epochs * CITYSCAPES_TRAIN_SEQUENCES * frames / (fps[preset] * gpus)
        stages.append({"preset": preset, "epochs": epochs, "frames_per_clip": frames,
                       "single_gpu_frames_per_s": fps[preset], "days": seconds / 86400})
        total += seconds
    return {"gpus": gpus, "stages": stages, "days": total / 86400,
            "assumptions": "linear DDP scaling; full clip length every epoch (doubling makes early epochs shorter); "
                           "street_2048 frames/s = street_1024's × 3301/5064 GFLOP when not measured; street_512 "
                           "= 2 × street_1024's when not measured", "paper": "about 10 days on 8 V100s"}


def _spawn(preset: str, device: str, args: argparse.Namespace, precision: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--one", preset, "--device", device, "--steps", str(args.steps),
           "--precision", precision, "--batch", str(args.batch)]
    if args.gen_frames:
        cmd += ["--gen-frames", str(args.gen_frames)]
    if args.peak_tflops:
        cmd += ["--peak-tflops", str(args.peak_tflops)]
    if device == "cuda":
        cmd += ["--channels-last"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"preset": preset, "device": device, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--cpu-presets", default="tiny,street_256_g1")
    ap.add_argument("--gpu-presets", default="street_512,street_1024")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--gen-frames", type=int, default=0, help="generated frames per clip (default: the preset's)")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="dense bf16 peak for MFU (H100/H200 SXM: 989)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    ap.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.device, args.steps, args.precision, args.batch, args.gen_frames or None,
                                 args.channels_last, args.peak_tflops or None)))
        return
    import torch

    doc: dict[str, Any] = {"benchmark": "train", "python": platform.python_version(), "torch": torch.__version__,
                           "cpu_count": os.cpu_count(), "steps": args.steps, "cpu": [], "gpu": []}
    for preset in [p for p in args.cpu_presets.split(",") if p]:
        doc["cpu"].append(_spawn(preset, "cpu", args, "fp32"))
    gpu_presets = [p for p in args.gpu_presets.split(",") if p]
    if gpu_presets and torch.cuda.is_available():
        doc["gpu"] = [_spawn(p, "cuda", args, "bf16") for p in gpu_presets]
        doc["projection_2k_8gpus"] = project_2k({r["preset"]: r for r in doc["gpu"] if "error" not in r})
    elif gpu_presets:
        doc["gpu_skipped"] = "CUDA is not available on this machine"
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
