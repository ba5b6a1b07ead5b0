"""Benchmark of the vid2vid networks: generator forward, forward+backward, and one full G+D training step.

Usage::

    python benchmarks/bench_model.py --out benchmarks/results/model.json                  # CPU: tiny, street_256_g1
    python benchmarks/bench_model.py --out gpu.json --presets '' --peak-tflops 989         # GPU presets only
    python benchmarks/bench_model.py --gpu-device cpu --gpu-presets tiny --no-compile      # smoke-test the GPU path

What is measured, per preset of examples/configs/ (batch ``--batch``, the preset's ``data.size``):

* ``g_forward``: generated frames/s of ``G`` with a full history, ``torch.no_grad``;
* ``g_forward_backward``: frames/s of ``G`` forward + backward of a sum over its outputs (final, flow, mask);
* ``train_step``: generated frames/s of one training step as the trainer runs it: ``--gen-frames`` frames
  generated one after another from L real history frames, the generator losses (image D on final and raw,
  feature matching, VGG, flow/warp/temporal/mask, temporal Ds of every scale that fits the clip), backward and
  Adam step of G, then the discriminator losses, backward and Adam step of the Ds.

Each figure is the median over ``--iters`` timed iterations after one warm-up iteration; the warm-up iteration
runs eagerly under ``torch.utils.flop_counter.FlopCounterMode`` to count the FLOP (conv/matmul, 1 MAC = 2 FLOP)
of one iteration, from which achieved TFLOP/s and, on CUDA, MFU = achieved / ``--peak-tflops`` (the device's
dense bf16 peak; H100 SXM 989) are derived. The VGG of the perceptual loss has random weights (same cost as the
``vgg19`` file, which benchmarks do not need). The networks are built through the ``vid2vid`` model class
(:meth:`Vid2Vid.build_generator`) and :class:`Vid2VidDiscriminators`; label sets are synthetic (35 classes,
``car`` = 26, as Cityscapes).

The GPU section (``--gpu-presets``, default street_512, street_1024, street_2048) runs in bf16 autocast with
channels_last and ``torch.compile`` of G and of every D, and records peak memory
(``torch.cuda.max_memory_allocated``). Without CUDA it is recorded as skipped. Prints and writes one JSON document.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs"

__all__ = ["Bench", "build_bench", "bench_preset", "main"]


@dataclass
class Bench:
    """Everything one preset's measurements need, on one device."""

    name: str
    cfg: Any
    spec: Any
    G: Any
    D: Any
    loss: Any
    device: Any
    batch: int
    precision: str
    size: tuple[int, int]


def _label_set(n: int = 35) -> Any:
    from v2vcli.data.layout import LabelClass, LabelSet

    names = {26: "car"}
    return LabelSet("bench", [LabelClass(i, names.get(i, f"class{i}"), (i, i, i)) for i in range(n)])


def build_bench(preset: str, device: str, batch: int, precision: str = "fp32", channels_last: bool = False,
                sets: tuple[str, ...] = ()) -> Bench:
    import torch

    from v2v_plugins.gan.discriminators import Vid2VidDiscriminators
    from v2v_plugins.gan.efficiency import channels_last as to_cl
    from v2v_plugins.gan.losses import Vid2VidLoss
    from v2v_plugins.gan.perceptual import VGGLoss
    from v2v_plugins.vid2vid.networks import Vid2Vid
    from v2vcli.config import load_config

    cfg = load_config([CONFIGS / f"{preset}.yaml"], sets=list(sets))
    label_set = _label_set(cfg.model.label_nc or 35)
    spec = Vid2Vid.conditioning(cfg, label_set)
    dev = torch.device(device)
    G = Vid2Vid.build_generator(cfg, spec, dev)
    with dev:
        D = Vid2VidDiscriminators.from_config(cfg.model, label_channels=spec.input_nc,
                                              image_channels=cfg.model.output_nc)
    vgg = VGGLoss(random_init=True) if cfg.loss.lambda_vgg > 0 else None
    loss = Vid2VidLoss.from_config(cfg.model, cfg.loss, vgg=vgg).to(dev)
    if channels_last:
        G, D, loss = to_cl(G), to_cl(D), to_cl(loss)
    w, h = tuple(cfg.data.size)
    return Bench(preset, cfg, spec, G, D, loss, dev, batch, precision, (w, h))


def _inputs(b: Bench, frames: int, seed: int = 0) -> dict[str, Any]:
    """Random clip of ``frames`` frames: one-hot labels + boundary, frames in [-1, 1], small reference flows."""
    import torch

    g = torch.Generator().manual_seed(seed)
    w, h = b.size
    n_cls = b.spec.label_nc
    c = b.spec.input_nc
    cond = torch.zeros(b.batch, frames, c, h, w)
    if n_cls:
        ids = torch.randint(0, n_cls, (b.batch, frames, 1, h // 8, w // 8), generator=g)
        ids = ids.repeat_interleave(8, -2).repeat_interleave(8, -1)
        cond[:, :, :n_cls].scatter_(2, ids, 1.0)
    if c > n_cls:
        cond[:, :, n_cls:] = (torch.rand(b.batch, frames, c - n_cls, h, w, generator=g) > 0.9).float()
    real = torch.rand(b.batch, frames, 3, h, w, generator=g) * 2 - 1
    flow = torch.randn(b.batch, frames, 2, h, w, generator=g)
    # (B, T, C, H, W) clips have no channels_last layout; the networks get 4-D slices and convert themselves
    return {"cond": cond.to(b.device), "real": real.to(b.device), "flow": flow.to(b.device)}


def _autocast(b: Bench) -> contextlib.AbstractContextManager[Any]:
    from v2v_plugins.gan.efficiency import autocast

    return autocast(b.precision, b.device.type)


def _sync(b: Bench) -> None:
    import torch

    if b.device.type == "cuda":
        torch.cuda.synchronize(b.device)


def make_steps(b: Bench, gen_frames: int, G: Any = None, D: Any = None) -> dict[str, tuple[Callable[[], None], int]]:
    """The three measured callables and the frames each generates; ``G``/``D`` may be compiled twins."""
    import torch

    from v2v_plugins.vid2vid.generator import GeneratorInput

    G = G or b.G
    D = D or b.D
    L = b.cfg.model.n_past
    data = _inputs(b, L + gen_frames)
    labels0 = data["cond"][:, :L + 1]
    prev0 = data["real"][:, :L]
    opt_g = torch.optim.Adam(b.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(b.D.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def g_forward() -> None:
        with torch.no_grad(), _autocast(b):
            G(GeneratorInput(labels0, prev0))

    def g_forward_backward() -> None:
        with _autocast(b):
            out = G(GeneratorInput(labels0, prev0))
            total = out.final.float().sum() + out.flow.float().sum() + out.mask.float().sum()
        total.backward()
        b.G.zero_grad(set_to_none=True)

    def train_step() -> None:
        real, cond, flow_ref = data["real"], data["cond"], data["flow"]
        T = real.shape[1]
        b.D.requires_grad_(False)
        with _autocast(b):
            prev = [real[:, i] for i in range(L)]
            outs = []
            for t in range(L, T):
                # truncated back-propagation of one frame, as the official max_frames_backpropagate 1
                window = torch.stack([p if j == L - 1 else p.detach() for j, p in enumerate(prev[-L:])], 1)
                out = G(GeneratorInput(cond[:, t - L:t + 1], window))
                outs.append(out)
                prev.append(out.final)
            fake = torch.stack([o.final for o in outs], 1)
            raw = torch.stack([o.raw for o in outs], 1)
            g = b.loss.generator_frame(D, labels=cond[:, L:], real=real[:, L:], fake=fake, raw=raw,
                                       real_prev=real[:, L - 1:T - 1], fake_prev=torch.stack(prev[L - 1:T - 1], 1),
                                       flow=torch.stack([o.flow for o in outs], 1),
                                       mask=torch.stack([o.mask for o in outs], 1), flow_ref=flow_ref[:, L:])
            clip = torch.cat([real[:, :L], fake], 1)
            gt = b.loss.generator_temporal(D, real_clip=real, fake_clip=clip, flow_ref_clip=flow_ref)
            g_total = g.total + gt.total
        opt_g.zero_grad(set_to_none=True)
        g_total.backward()
        opt_g.step()
        b.D.requires_grad_(True)
        with _autocast(b):
            d = b.loss.discriminator_frame(D, labels=cond[:, L:], real=real[:, L:], fake=fake, raw=raw)
            dt = b.loss.discriminator_temporal(D, real_clip=real, fake_clip=clip, flow_ref_clip=flow_ref)
            d_total = d.total + dt.total
        opt_d.zero_grad(set_to_none=True)
        d_total.backward()
        opt_d.step()

    return {"g_forward": (g_forward, b.batch), "g_forward_backward": (g_forward_backward, b.batch),
            "train_step": (train_step, b.batch * gen_frames)}


def _count_flops(fn: Callable[[], None]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def _time(b: Bench, fn: Callable[[], None], iters: int) -> list[float]:
    times = []
    for _ in range(iters):
        _sync(b)
        t0 = time.perf_counter()
        fn()
        _sync(b)
        times.append(time.perf_counter() - t0)
    return times


def bench_preset(b: Bench, *, iters: int, gen_frames: int, compile_: bool = False,
                 peak_tflops: float | None = None, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Measure the three steps of one preset; see the module docstring."""
    import torch

    from v2v_plugins.gan.discriminators import temporal_scale_plan

    eager = make_steps(b, gen_frames)
    timed = eager
    if compile_:
        # A shallow twin of the D set whose image/temporal/face Ds are compiled (same parameters): the losses
        # call D.image / D.temporal[k] / D.face, while the eager set stays available for counting FLOP.
        D_c = copy.copy(b.D)
        D_c._modules = dict(b.D._modules)
        D_c.image = torch.compile(b.D.image)
        D_c.temporal = torch.nn.ModuleList([torch.compile(m) for m in b.D.temporal])
        if b.D.face is not None:
            D_c.face = torch.compile(b.D.face)
        timed = make_steps(b, gen_frames, G=torch.compile(b.G), D=D_c)
    plan = temporal_scale_plan(b.cfg.model.n_past + gen_frames, b.D.n_scales_temporal, b.D.n_frames_d)
    result: dict[str, Any] = {
        "size": list(b.size), "batch": b.batch, "precision": b.precision, "compile": compile_,
        "channels_last": bool(b.cfg.model.channels_last), "device": str(b.device),
        "G_params": sum(p.numel() for p in b.G.parameters()), "D_params": sum(p.numel() for p in b.D.parameters()),
        "gen_frames_per_step": gen_frames, "history_frames": b.cfg.model.n_past,
        "temporal_scales_active": plan.active_indices, "temporal_scales_skipped": plan.skipped_indices,
        "vgg": "random weights" if b.loss.vgg is not None else "off (lambda_vgg 0)",
    }
    for name, (fn, frames) in eager.items():
        if only and name not in only:
            continue
        if b.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(b.device)
        flops = _count_flops(fn)  # the eager warm-up, counted
        if compile_:
            timed[name][0]()  # compile warm-up
        times = _time(b, timed[name][0], iters)
        med = statistics.median(times)
        row: dict[str, Any] = {"frames_per_s": frames / med, "s_per_iter": med, "iters": iters,
                               "frames_per_iter": frames, "tflop_per_iter": flops / 1e12,
                               "achieved_tflops": flops / med / 1e12}
        if peak_tflops:
            row["mfu"] = flops / med / 1e12 / peak_tflops
        if b.device.type == "cuda":
            row["peak_memory_gib"] = torch.cuda.max_memory_allocated(b.device) / 2**30
        result[name] = row
    return result


def _environment() -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "platform": platform.platform(), "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name(0)
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="write the JSON here too")
    p.add_argument("--presets", default="tiny,street_256_g1", help="CPU presets (comma list, '' for none)")
    p.add_argument("--iters", default="tiny=5,street_256_g1=1", help="timed iterations per CPU preset (name=N)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--gen-frames", type=int, default=1, help="frames generated per training step")
    p.add_argument("--gpu-presets", default="street_512,street_1024,street_2048")
    p.add_argument("--gpu-device", default="cuda")
    p.add_argument("--gpu-iters", type=int, default=5)
    p.add_argument("--gpu-gen-frames", type=int, default=2)
    p.add_argument("--precision", default="bf16", help="GPU section precision (fp32, bf16, fp16)")
    p.add_argument("--no-compile", action="store_true", help="GPU section without torch.compile")
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="dense bf16 peak of the GPU for MFU (H100 SXM: 989)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)

    import torch

    sys.path.insert(0, str(ROOT / "plugins"))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    iters = {k: int(v) for k, v in (kv.split("=") for kv in args.iters.split(",") if kv)}
    report: dict[str, Any] = {"benchmark": "model", "environment": _environment(), "cpu": {}, "gpu": {}}
    for preset in [x for x in args.presets.split(",") if x]:
        b = build_bench(preset, "cpu", args.batch)
        report["cpu"][preset] = bench_preset(b, iters=iters.get(preset, 2), gen_frames=args.gen_frames)
        print(json.dumps({preset: report["cpu"][preset]}, indent=1), file=sys.stderr)
        del b
    gpu_presets = [x for x in args.gpu_presets.split(",") if x]
    if args.gpu_device == "cuda" and not torch.cuda.is_available():
        report["gpu"] = {"skipped": "no CUDA device (torch.cuda.is_available() is False)"}
    else:
        for preset in gpu_presets:
            try:
                b = build_bench(preset, args.gpu_device, args.batch, args.precision, channels_last=True,
                                sets=("model.channels_last=true",))
                report["gpu"][preset] = bench_preset(b, iters=args.gpu_iters, gen_frames=args.gpu_gen_frames,
                                                     compile_=not args.no_compile, peak_tflops=args.peak_tflops)
            except torch.OutOfMemoryError as exc:
                report["gpu"][preset] = {"error": f"out of memory: {str(exc).splitlines()[0]}"}
            print(json.dumps({preset: report["gpu"][preset]}, indent=1), file=sys.stderr)
            b = None  # type: ignore[assignment]
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
