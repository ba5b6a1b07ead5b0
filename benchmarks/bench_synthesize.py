"""Benchmark of ``v2v synthesize``: frames/s, GFLOP per frame and peak memory, end to end with random weights.

Usage::

    python benchmarks/bench_synthesize.py --out benchmarks/results/synthesize.json             # CPU presets
    python benchmarks/bench_synthesize.py --frames 4 --presets tiny --gpu-presets ''          # quick smoke run
    python benchmarks/bench_synthesize.py --presets '' --peak-tflops 989                      # GPU section only

Per preset of examples/configs/ (its ``data.size``), a vid2vid model with random weights is saved as a checkpoint
next to a synthetic dataset of the preset's modalities (blocky random label maps with instance ids, or random
pose/densepose images), then synthesized through the library (:class:`Synthesizer`, the code behind the command):

* ``frames_per_second``: end to end over the sequence (reading inputs, generation, H.264 encoding), after load;
* ``generator_frames_per_second``: median over steady-state frames (full history) of the generator step alone;
* ``gflop_per_frame``: the generator's conv/matmul FLOP of one frame with a full history (model summary);
* ``peak_rss_mib`` (CPU): the process's peak resident memory (each preset runs in its own subprocess);
* ``load_seconds``: checkpoint loading.

The GPU section (``--gpu-presets``, default street_512, street_1024, street_2048; CUDA only, else recorded as
skipped) runs in bf16 autocast with channels_last and ``torch.compile``, and adds MFU = achieved TFLOP/s /
``--peak-tflops`` (dense bf16 peak; H100 SXM 989) and ``torch.cuda.max_memory_allocated`` for sequences of
``--mem-frames`` (default 100 and 1000) frames, which must be equal: the history is a sliding window. The target
to report against: street_2048 at >= 60 frames/s on one H100 (about 5 TFLOP per frame).

CPU threads: ``--threads`` (default 1; on a shared machine more OpenMP threads than free cores is much slower).
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

__all__ = ["make_case", "bench_preset", "main"]


def _label_set(preset_cfg: Any) -> Any:
    from v2vcli.data.layout import LabelClass, LabelSet

    if "seg" not in preset_cfg.data.inputs:
        return None
    n = int(preset_cfg.model.label_nc or 10)
    fg = list(preset_cfg.model.fg_classes) if preset_cfg.model.fg else []
    names = {i: f"class{i}" for i in range(n)}
    for k, name in enumerate(fg):  # foreground classes by name, at the Cityscapes id of car when it fits
        names[26 - k if n > 26 else n - 1 - k] = name
    return LabelSet("bench", [LabelClass(i, names[i], (i * 7 % 256, i * 13 % 256, i * 29 % 256)) for i in range(n)])


def make_case(preset: str, root: Path, frames: int, sets: tuple[str, ...] = ()) -> tuple[Path, Path, Any]:
    """A checkpoint with random weights and a one-sequence dataset of ``frames`` frames; returns (ckpt, seq, cfg)."""
    import numpy as np

    from v2v_plugins.vid2vid.training import Vid2VidModel
    from v2vcli.checkpoint import CheckpointMeta, save_checkpoint
    from v2vcli.config import load_config, to_dict
    from v2vcli.data.layout import Dataset
    from v2vcli.io.files import write_image, write_instance, write_json, write_label

    cfg = load_config([CONFIGS / f"{preset}.yaml"], sets=list(sets))
    label_set = _label_set(cfg)
    w, h = (int(v) for v in cfg.data.size)
    ds_root = root / "data"
    ds = Dataset(ds_root)
    rng = np.random.default_rng(0)
    seq = "bench"
    n_cls = label_set.num_classes if label_set is not None else 0
    for i in range(frames):
        if "seg" in cfg.data.inputs:
            seg = rng.integers(0, n_cls, size=(h // 16 + 1, w // 16 + 1)).astype(np.uint8)
            seg = np.kron(seg, np.ones((16, 16), dtype=np.uint8))[:h, :w]
            seg = np.roll(seg, i, axis=1)
            write_label(ds.frame_path("seg", seq, i), seg)
            if "inst" in cfg.data.inputs:
                write_instance(ds.frame_path("inst", seq, i), seg.astype(np.uint16) * 1000)
        for m in ("pose", "densepose"):
            if m in cfg.data.inputs:
                write_image(ds.frame_path(m, seq, i), rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
        if "edges" in cfg.data.inputs:
            write_label(ds.frame_path("edges", seq, i), (rng.random((h, w)) > 0.9).astype(np.uint8) * 255)
    ds.write_frames_meta({"format": "jpg", "sequences": {seq: {"fps": 30.0, "size": [w, h], "count": frames,
                                                               "source": "bench", "options": {}}}})
    if label_set is not None:
        write_json(ds.meta_path("seg"), {"kind": "seg", "backend": "bench", "label_set": label_set.to_dict()})
    model = Vid2VidModel(cfg, label_set, "cpu")
    meta = CheckpointMeta(model="vid2vid", config=to_dict(cfg),
                          label_set=label_set.to_dict() if label_set is not None else None, networks=["G"])
    ckpt = save_checkpoint(root / "run", 0, model.weights(), meta, {"format": 1})
    del model
    seq_dir = ds_root / ("seg" if "seg" in cfg.data.inputs else cfg.data.inputs[0]) / seq
    write_json(root / "case.json", {"checkpoint": str(ckpt), "sequence": str(seq_dir)})
    return ckpt, seq_dir, cfg


def _case_paths(case_dir: Path) -> tuple[Path, Path]:
    info = json.loads((case_dir / "case.json").read_text(encoding="utf-8"))
    return Path(info["checkpoint"]), Path(info["sequence"])


def _size_of(ckpt: Path) -> list[int]:
    from v2vcli.checkpoint import read_meta

    return [int(v) for v in read_meta(ckpt).config["data"]["size"]]


def _gflop(cfg: Any, label_set: Any) -> float:
    from v2v_plugins.vid2vid.networks import Vid2Vid

    return float(Vid2Vid.summary(cfg, label_set).networks["G"].gflop_per_frame)


def _peak_rss_mib() -> float | None:
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def bench_preset(preset: str, frames: int, device: str, *, precision: str = "fp32", compile: bool = False,
                 channels_last: bool = False, peak_tflops: float | None = None,
                 mem_frames: tuple[int, ...] = (), case_dir: Path | None = None) -> dict[str, Any]:
    """Measure one preset (see the module docstring). ``case_dir``: a folder :func:`make_case` already filled
    (so building the random model does not count towards this process's peak memory)."""
    import torch

    from v2v_plugins.synthesize.engine import load_synthesizer
    from v2v_plugins.synthesize.sources import resolve_labels

    sets = ("model.channels_last=true",) if channels_last else ()
    out: dict[str, Any] = {"preset": preset, "device": device, "precision": precision, "compile": compile,
                           "channels_last": channels_last, "frames": frames}
    with tempfile.TemporaryDirectory(prefix="v2v-bench-synth-") as tmp:
        longest = max([frames, *mem_frames])
        if case_dir is None:
            ckpt, seq_dir, _ = make_case(preset, Path(tmp), longest, sets)
        else:
            ckpt, seq_dir = _case_paths(case_dir)
        out["size"] = _size_of(ckpt)
        t0 = time.perf_counter()
        synth = load_synthesizer(ckpt, device=device, precision=precision, compile=compile, cfg_overrides=sets)
        out["load_seconds"] = round(time.perf_counter() - t0, 3)
        out["gflop_per_frame"] = round(_gflop(synth.model.cfg, synth.label_set), 2)
        gen = synth.generator
        orig = gen.step
        times: list[float] = []

        def timed(inputs: Any, real: Any = None) -> Any:
            if synth.device.type == "cuda":
                torch.cuda.synchronize(synth.device)
            t = time.perf_counter()
            result = orig(inputs, real)
            if synth.device.type == "cuda":
                torch.cuda.synchronize(synth.device)
            times.append(time.perf_counter() - t)
            return result

        gen.step = timed  # type: ignore[method-assign]
        seq = resolve_labels(seq_dir).sequences[0]
        results = _run_n(synth, seq, frames, Path(tmp) / "out.mp4")
        steady = times[min(len(times) - 1, 2):]  # frames 0-1 build the history (and compile)
        out["seconds"] = round(results, 3)
        out["frames_per_second"] = round(frames / results, 3) if results > 0 else None
        out["generator_frames_per_second"] = round(1.0 / statistics.median(steady), 3)
        out["generator_seconds_per_frame"] = [round(t, 4) for t in times]
        tflops = out["gflop_per_frame"] * out["generator_frames_per_second"] / 1000.0
        out["achieved_tflops"] = round(tflops, 4)
        if synth.device.type == "cuda":
            out["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(synth.device) / 2**20, 1)
            if peak_tflops:
                out["mfu"] = round(tflops / peak_tflops, 4)
            mem: dict[str, float] = {}
            for n in mem_frames:
                torch.cuda.reset_peak_memory_stats(synth.device)
                _run_n(synth, seq, n, Path(tmp) / f"mem{n}.mp4")
                mem[str(n)] = round(torch.cuda.max_memory_allocated(synth.device) / 2**20, 1)
            if mem:
                out["peak_memory_mib_by_frames"] = mem
        out["peak_rss_mib"] = _peak_rss_mib()
    return out


def _run_n(synth: Any, seq: Any, n: int, path: Path) -> float:
    """Synthesize the first ``n`` frames of ``seq`` into ``path``; returns the seconds taken."""
    from v2v_plugins.synthesize.sources import LabelSequence

    short = LabelSequence(seq.name, seq.root, seq.split, n, seq.fps)
    t = time.perf_counter()
    synth.run([short], {short.name: path}, fmt="mp4", first_frames="empty")  # every frame through the generator
    return time.perf_counter() - t


def _one(args: argparse.Namespace, preset: str, device: str, gpu: bool) -> dict[str, Any]:
    """Build the case here, then measure it in a fresh subprocess so peak memory is synthesis's own."""
    with tempfile.TemporaryDirectory(prefix="v2v-bench-synth-") as tmp:
        mem = [int(v) for v in args.mem_frames.split(",") if v] if gpu else []
        sets = ("model.channels_last=true",) if gpu else ()
        make_case(preset, Path(tmp), max([args.frames, *mem]), sets)
        import gc

        gc.collect()
        return _measure(args, preset, device, gpu, Path(tmp))


def _measure(args: argparse.Namespace, preset: str, device: str, gpu: bool, case: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--one", preset, "--device", device, "--frames", str(args.frames),
           "--threads", str(args.threads), "--case-dir", str(case)]
    if gpu:
        cmd += ["--gpu-mode", "--peak-tflops", str(args.peak_tflops), "--mem-frames", args.mem_frames]
        if args.no_compile:
            cmd.append("--no-compile")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return {"preset": preset, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None, help="JSON file to write (printed either way).")
    p.add_argument("--presets", default="tiny,street_256_g1,pose_256", help="CPU presets (comma-separated).")
    p.add_argument("--gpu-presets", default="street_512,street_1024,street_2048", help="GPU presets (CUDA only).")
    p.add_argument("--frames", type=int, default=8, help="Frames per measured sequence.")
    p.add_argument("--mem-frames", default="100,1000", help="GPU: sequence lengths whose peak memory is compared.")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch and OpenMP).")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="Dense bf16 peak of the GPU for MFU.")
    p.add_argument("--no-compile", action="store_true", help="GPU: skip torch.compile.")
    p.add_argument("--gpu-device", default="cuda", help="Device of the GPU section (cpu to smoke-test it).")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    p.add_argument("--gpu-mode", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, args.threads))
    if args.one:
        mem = tuple(int(v) for v in args.mem_frames.split(",") if v) if args.gpu_mode else ()
        res = bench_preset(args.one, args.frames, args.device,
                           precision="bf16" if args.gpu_mode else "fp32",
                           compile=args.gpu_mode and not args.no_compile, channels_last=args.gpu_mode,
                           peak_tflops=args.peak_tflops if args.gpu_mode else None, mem_frames=mem,
                           case_dir=args.case_dir)
        print(json.dumps(res))
        return res

    report: dict[str, Any] = {
        "benchmark": "synthesize", "python": platform.python_version(), "torch": torch.__version__,
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "threads": args.threads,
        "frames": args.frames, "cpu": [], "gpu": [],
    }
    for preset in [s for s in args.presets.split(",") if s]:
        report["cpu"].append(_one(args, preset, "cpu", gpu=False))
        print(json.dumps(report["cpu"][-1]), file=sys.stderr)
    gpu_presets = [s for s in args.gpu_presets.split(",") if s]
    if gpu_presets and (args.gpu_device != "cuda" or torch.cuda.is_available()):
        report["gpu_name"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else args.gpu_device
        for preset in gpu_presets:
            report["gpu"].append(_one(args, preset, args.gpu_device, gpu=True))
            print(json.dumps(report["gpu"][-1]), file=sys.stderr)
    else:
        report["gpu_skipped"] = "no CUDA device" if gpu_presets else "no GPU presets asked for"
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
