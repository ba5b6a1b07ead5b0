"""The CUDA paths (issue 25), run by ``pytest -m gpu`` where a GPU is present (``benchmarks/gpu_check.sh`` runs them):
bf16/fp16 training steps, channels_last, torch.compile of G, NCCL with world size 1, synthesis on CUDA against the
CPU, FID features on CUDA against the CPU. Without CUDA every test here is skipped (CI has no GPU)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (pytest -m gpu on a GPU machine)")]

TINY = Path(__file__).resolve().parents[1] / "examples" / "configs" / "tiny.yaml"


def _model(device: str, *sets: str) -> Any:
    from v2v_plugins.world import world_label_set

    from v2vcli.config import load_config
    from v2vcli.registry import get_registry

    cfg = load_config([TINY], ["data.size=[64,64]", *sets])
    torch.manual_seed(0)
    model = get_registry().get_model("vid2vid")(cfg, world_label_set(), device)
    model.setup_training()
    return model


def _batch(t: int = 6, size: int = 64) -> Any:
    from v2vcli.data.clips import ClipBatch

    g = torch.Generator().manual_seed(0)
    seg = torch.randint(0, 10, (1, t, size, size), generator=g).to(torch.uint8)
    flow = torch.randn(1, t, 2, size, size, generator=g)
    flow[:, 0] = 0
    return ClipBatch(frames=torch.randint(0, 255, (1, t, 3, size, size), dtype=torch.uint8, generator=g),
                     inputs={"seg": seg, "inst": seg.to(torch.int32)}, flow=flow)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_steps_are_finite_and_update(precision: str) -> None:
    model = _model("cuda", f"train.precision={precision}")
    before = [p.detach().clone() for p in model.generator.parameters()]
    for _ in range(3):
        result = model.train_step(_batch())
    assert all(np.isfinite(v) for v in result.losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.generator.parameters()))


def test_channels_last_step_matches_the_contiguous_one() -> None:
    a = _model("cuda", "model.channels_last=false")
    b = _model("cuda", "model.channels_last=true")
    b.generator.load_state_dict(a.generator.state_dict())
    b.discriminators.load_state_dict(a.discriminators.state_dict())
    ra, rb = a.train_step(_batch()), b.train_step(_batch())
    for k in ("G_GAN", "F_flow", "G_total"):
        assert rb.losses[k] == pytest.approx(ra.losses[k], rel=2e-3, abs=1e-4), k


def test_compiled_generator_matches_eager_on_cuda() -> None:
    from v2v_plugins.vid2vid.generator import GeneratorInput

    model = _model("cuda")
    g = model.generator.eval()
    compiled = torch.compile(g)
    labels = torch.rand(1, 3, model.spec.input_nc, 64, 64, device="cuda")
    prev = torch.rand(1, 2, 3, 64, 64, device="cuda") * 2 - 1
    with torch.no_grad():
        eager = g(GeneratorInput(labels, prev)).final
        comp = compiled(GeneratorInput(labels, prev)).final
    assert float((eager - comp).abs().max()) < 1e-3


def test_nccl_with_world_size_one_trains(monkeypatch: pytest.MonkeyPatch) -> None:
    """One NCCL rank with v2v's distributed switch on: G, D and D_T0 train inside DistributedDataParallel on CUDA."""
    import torch.distributed as dist

    import v2vcli.parallel

    monkeypatch.setattr(v2vcli.parallel, "is_distributed", lambda: True)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        dist.init_process_group("nccl", rank=0, world_size=1)
        t = torch.ones(4, device="cuda")
        dist.all_reduce(t)
        assert float(t.sum()) == 4.0
        model = _model("cuda")
        result = model.train_step(_batch())
        assert not result.skipped
        assert {"G", "D"} <= set(model.data_parallel._wrappers)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_synthesis_on_cuda_equals_the_cpu() -> None:
    cpu = _model("cpu")
    gpu = _model("cuda")
    gpu.generator.load_state_dict(cpu.generator.state_dict())
    batch = _batch(t=5)
    frames = []
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        gen = model.frame_generator(use_ema=False)
        real = batch.frames.float() / 127.5 - 1
        out = []
        for t in range(5):
            inputs = {"seg": batch.inputs["seg"][0, t].to(device), "inst": batch.inputs["inst"][0, t].to(device)}
            out.append(gen.step(inputs, real=real[0, t] if t < 2 else None).frame.float().cpu())
        frames.append(torch.stack(out))
    assert float((frames[0] - frames[1]).abs().max()) < 2e-3


def test_fid_features_on_cuda_equal_the_cpu() -> None:
    from v2v_plugins.evaluate.inception import FIDInceptionFeatures, build_fid_inception_v3

    torch.manual_seed(0)
    net = FIDInceptionFeatures(build_fid_inception_v3().eval(), dims=2048).eval()
    images = torch.rand(2, 3, 299, 299) * 2 - 1
    with torch.no_grad():
        a = net(images)
        b = net.cuda()(images.cuda()).cpu()
    assert float((a - b).abs().max()) < 1e-3 * max(1.0, float(a.abs().max()))
