"""DDP plumbing (issue 25) inside one process: a gloo group of world size 1 with v2v's distributed switch on, so every
trained network runs through torch's DistributedDataParallel exactly as on N ranks (the 2-rank equivalence, resume
and restart tests are in test_train_ddp.py). With one rank the average is the identity: the step must equal the
plain step bit for bit, and gradients that bypass the wrappers are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from v2vcli.errors import V2VError

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"
PRESET = {"vid2vid": "tiny.yaml", "perframe": "tiny_perframe.yaml", "label_predictor": "predict_world.yaml"}


@pytest.fixture
def one_rank_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import torch.distributed as dist

    import v2vcli.parallel

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    monkeypatch.setattr(v2vcli.parallel, "is_distributed", lambda: True)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _model(name: str, *sets: str) -> Any:
    from v2v_plugins.world import world_label_set

    from v2vcli.config import load_config
    from v2vcli.registry import get_registry

    extra = ["loss.lambda_gan=0.1"] if name == "label_predictor" else []
    cfg = load_config([CONFIGS / PRESET[name]], ["data.size=[32,32]", "model.ngf=4", "model.ndf=4", *extra, *sets])
    torch.manual_seed(0)
    model = get_registry().get_model(name)(cfg, world_label_set(), "cpu")
    model.setup_training()
    return model


def _batch(t: int) -> Any:
    from v2vcli.data.clips import ClipBatch

    g = torch.Generator().manual_seed(0)
    seg = torch.randint(0, 10, (1, t, 32, 32), generator=g).to(torch.uint8)
    return ClipBatch(frames=torch.randint(0, 255, (1, t, 3, 32, 32), dtype=torch.uint8, generator=g),
                     inputs={"seg": seg, "inst": seg.to(torch.int32)}, flow=torch.randn(1, t, 2, 32, 32, generator=g))


def _two_steps(model: Any, t: int) -> dict[str, torch.Tensor]:
    for _ in range(2):
        result = model.train_step(_batch(t))
        assert not result.skipped
    return model.weights()


@pytest.mark.parametrize(("name", "frames", "wrapped"), [
    ("vid2vid", 6, {"G", "D", "D_T0"}),  # 4 generated frames in chunks of 4: the temporal D is active
    ("perframe", 2, {"G", "D"}),
    ("label_predictor", 5, {"G", "D"}),  # lambda_gan 0.1; the predictor runs G once per frame before the one backward
])
def test_ddp_wrapped_step_equals_the_plain_step(one_rank_group: None, name: str, frames: int,
                                                wrapped: set[str]) -> None:
    import v2vcli.parallel

    ddp = _model(name)
    got = _two_steps(ddp, frames)
    assert set(ddp.data_parallel._wrappers) == wrapped
    assert all(isinstance(w[3], torch.nn.parallel.DistributedDataParallel)
               for w in ddp.data_parallel._wrappers.values())
    v2vcli.parallel.is_distributed = lambda: False  # type: ignore[assignment]  # restored by monkeypatch
    plain = _model(name)
    ref = _two_steps(plain, frames)
    assert not plain.data_parallel._wrappers
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0, msg=k)


def test_frozen_scales_remake_the_generator_wrapper(one_rank_group: None) -> None:
    """DDP fixes its buckets when built: freezing G0 (model.niter_fix_global after --init-from) makes a new
    wrapper over the trainable parameters only, and the frozen ones get no gradient."""
    model = _model("vid2vid", "model.n_scales_spatial=2")
    model.train_step(_batch(4))
    first = model.data_parallel._wrappers["G"][3]
    model.init_scales, model._frozen = 1, False
    model.cfg.model.niter_fix_global = 5
    model.on_epoch(0)
    model.train_step(_batch(4))
    second = model.data_parallel._wrappers["G"][3]
    assert second is not first
    frozen = list(model.generator.scales[0].parameters())
    assert frozen and all(not p.requires_grad for p in frozen)


def test_gradients_that_bypass_the_wrappers_are_refused(one_rank_group: None) -> None:
    model = _model("perframe")
    G = model.networks()["G"]
    x = torch.zeros(1, model.spec.input_nc, 32, 32)
    with pytest.raises(V2VError, match=r"optimizer 'G' has gradients no DDP wrapper averaged.*data_parallel"):
        model.optimize("G", G(x).mean())
    assert bool(model.optimize("G", model.data_parallel("G", G)(x).mean()))
