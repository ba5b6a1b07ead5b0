"""The optimizer-step guard (issues 7 and 8): a non-finite loss or gradient skips the step (parameters, Adam moments
and step counts unchanged), decided on the device so a training step reads nothing back from the device before its
last backward; `train.max_bad_steps` non-finite steps in a row stop training with one error line; bf16/fp16 steps
run under autocast, with a dynamic loss scale only for fp16."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

TINY = Path(__file__).resolve().parents[1] / "examples" / "configs" / "tiny.yaml"


def _model(*sets: str) -> Any:
    from v2v_plugins.world import world_label_set

    from v2vcli.config import load_config
    from v2vcli.registry import get_registry

    cfg = load_config([TINY], ["data.size=[32,32]", "model.ngf=4", "model.ndf=4", *sets])
    torch.manual_seed(0)
    model = get_registry().get_model("vid2vid")(cfg, world_label_set(), "cpu")
    model.setup_training()
    return model


def _batch(t: int = 4) -> Any:
    from v2vcli.data.clips import ClipBatch

    g = torch.Generator().manual_seed(0)
    seg = torch.randint(0, 10, (1, t, 32, 32), generator=g).to(torch.uint8)
    return ClipBatch(frames=torch.randint(0, 255, (1, t, 3, 32, 32), dtype=torch.uint8, generator=g),
                     inputs={"seg": seg, "inst": seg.to(torch.int32)}, flow=torch.zeros(1, t, 2, 32, 32))


def _snapshot(model: Any, name: str) -> tuple[list[torch.Tensor], dict[int, Any]]:
    opt = model.optim.optimizers[name]
    params = [p.detach().clone() for g in opt.param_groups for p in g["params"]]
    state = {i: {k: v.clone() for k, v in st.items()} for i, st in enumerate(opt.state.values())}
    return params, state


@pytest.mark.parametrize("clip", [0.0, 1.0])
def test_a_non_finite_loss_or_gradient_skips_the_step_on_the_device(clip: float) -> None:
    model = _model(f"optim.grad_clip={clip}")
    G = model.networks()["G"]
    assert model.optim.optimizers["G"].defaults["fused"]  # the device-side guard is in use on the CPU too
    x = torch.ones(1, requires_grad=True)
    p0 = next(G.parameters())

    assert bool(model.optimize("G", (p0.sum() * x).sum()))  # a first real step fills Adam's state
    params, state = _snapshot(model, "G")
    bad_losses = [p0.sum() * float("nan"), p0.sum() * float("inf")]
    if clip:
        bad_losses.append(p0.sum() + (p0 * 1e30).pow(2).sum() * 0 + (p0 * 1e38).sum() * 1e38)  # inf gradient
    for loss in bad_losses:
        flag = model.optimize("G", loss)
        assert not bool(flag)
        after, after_state = _snapshot(model, "G")
        assert all(torch.equal(a, b) for a, b in zip(params, after))
        for i in state:
            for k in state[i]:
                assert torch.equal(state[i][k], after_state[i][k]), k  # moments and step count untouched
        assert all(p.grad is None for p in G.parameters())
    assert bool(model.optimize("G", p0.sum()))
    after, after_state = _snapshot(model, "G")
    assert not torch.equal(params[0], after[0])
    assert float(after_state[0]["step"]) == float(state[0]["step"]) + 1


def test_a_training_step_reads_nothing_back_before_its_last_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    """No host sync in the middle of a step: every read of a tensor's value (item, tolist, bool, float, cpu,
    numpy) comes after the step's last backward (the logged values and the guard's flags, read together)."""
    from v2v_plugins.gan import conditioning

    model = _model()
    batch = _batch()
    model.train_step(batch)  # warm-up (lazy state)
    events: list[str] = []
    # as on an accelerator: the label-id check runs only for CPU tensors (the loader has checked the ids)
    monkeypatch.setattr(conditioning, "check_label_ids", lambda *a, **k: None)

    def spy(name: str, original: Any) -> Any:
        def wrapper(self: Any, *a: Any, **k: Any) -> Any:
            events.append(name)
            return original(self, *a, **k)
        return wrapper

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, spy(name, getattr(torch.Tensor, name)))
    original_backward = torch.autograd.backward

    def backward(*a: Any, **k: Any) -> Any:
        events.append("backward")
        return original_backward(*a, **k)

    monkeypatch.setattr(torch.autograd, "backward", backward)
    result = model.train_step(batch)
    monkeypatch.undo()
    assert events.count("backward") == 2  # G, then the discriminators
    last = len(events) - 1 - events[::-1].index("backward")
    assert not [e for e in events[:last] if e != "backward"], events
    assert not result.skipped and all(np.isfinite(v) for v in result.losses.values())


def test_max_bad_steps_in_a_row_stop_training_with_one_error(tmp_path: Path) -> None:
    from v2v_plugins.train.loop import train
    from v2v_plugins.world import write_world

    from v2vcli.config import load_config
    from v2vcli.model import TrainingError

    data = write_world(tmp_path / "world", seed=0, size=(32, 32), frames=6, sequences=2, val=0, progress=False)
    cfg = load_config([TINY], ["data.size=[32,32]", "data.num_workers=0", "data.n_frames_total=2",
                               "train.max_bad_steps=3", "train.max_steps=20", "train.checkpoint_every=2"],
                      overrides={"data": {"root": str(data)}, "run_dir": str(tmp_path / "run")})
    poisoned: dict[str, int] = {"steps": 0}

    def hook(model: Any) -> None:
        step, optimize = model.train_step, model.optimize

        def counting_step(batch: Any) -> Any:
            poisoned["steps"] += 1
            return step(batch)

        def nan_after_two_steps(names: Any, loss: Any) -> Any:  # a diverged loss; the weights stay finite
            return optimize(names, loss * float("nan") if poisoned["steps"] > 2 else loss)

        model.train_step, model.optimize = counting_step, nan_after_two_steps

    with pytest.raises(TrainingError, match=r"step 5: 3 steps in a row had non-finite losses.*step_00000004"):
        train(cfg, model_hook=hook)
    from v2vcli.checkpoint import load_weights

    good, _ = load_weights(tmp_path / "run" / "checkpoints" / "step_00000002")
    after, _ = load_weights(tmp_path / "run" / "checkpoints" / "step_00000004")
    assert all(torch.equal(good[k], after[k]) for k in good)  # the skipped steps changed no weight
    records = [line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"step"' in line]
    assert records  # the good steps were logged


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_run_under_autocast_with_a_loss_scale_only_for_fp16(precision: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`--precision bf16|fp16`: the generator runs under autocast in that dtype, losses stay finite, only fp16
    scales the loss (and its scaler state is checkpointed), and the weights stay fp32."""
    model = _model(f"train.precision={precision}")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    seen: list[torch.dtype] = []
    G = model.networks()["G"]
    handle = G.scales[0].label_encoder[1].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    result = model.train_step(_batch())
    handle.remove()
    assert seen and set(seen) == {dtype}
    assert not result.skipped and all(np.isfinite(v) for v in result.losses.values())
    assert model.optim.loss_scaling == (precision == "fp16")  # bf16: the scaler only guards, at scale 1
    assert model.optim.scaler.get_scale() == 1.0 or precision == "fp16"
    assert bool(model.training_state()["scaler"]) == (precision == "fp16")
    assert all(p.dtype == torch.float32 for p in G.parameters())
