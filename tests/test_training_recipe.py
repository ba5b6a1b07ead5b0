"""vid2vid trains as the official code does (issue 19): chunks with detached carry-over, back-propagated frames,
the temporal-D buffer and scale activation, per-scale history, raw frames in D, --init-from discriminators, the
config rule for temporal scales and ``v2v train --plan``."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from v2vcli.config import load_config
from v2vcli.errors import ConfigError

TINY = Path(__file__).resolve().parents[1] / "examples" / "configs"
SIZE = ["data.size=[32,32]", "data.num_workers=0"]


def _model(*sets: str) -> Any:
    from v2v_plugins.world import world_label_set

    from v2vcli.registry import get_registry

    torch.manual_seed(0)
    cfg = load_config([TINY / "tiny.yaml"], [*SIZE, *sets])
    model = get_registry().get_model("vid2vid")(cfg, world_label_set(), "cpu")
    model.setup_training()
    return model


def _batch(b: int, t: int, size: int = 32) -> Any:
    from v2vcli.data.clips import ClipBatch

    g = torch.Generator().manual_seed(1)
    seg = torch.randint(0, 5, (b, t, size, size), generator=g).to(torch.uint8)
    inst = torch.randint(0, 3, (b, t, size, size), generator=g).to(torch.int32)
    frames = torch.randint(0, 255, (b, t, 3, size, size), dtype=torch.uint8, generator=g)
    flow = torch.randn(b, t, 2, size, size, generator=g) * 0.5
    flow[:, 0] = 0
    return ClipBatch(frames=frames, inputs={"seg": seg, "inst": inst}, flow=flow)


class _Recorder:
    """Wraps a model's generator call and optimizer steps to record what a train_step did."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls: list[Any] = []  # GeneratorInput per generated frame
        self.outs: list[Any] = []
        self.steps: list[Any] = []  # optimizer names per optimize() call
        g_call = model.chunk_generator._call  # the per-frame generator call inside a chunk
        optimize = model.optimize

        def record_g(inp: Any) -> Any:
            out = g_call(inp)
            self.calls.append(inp)
            self.outs.append(out)
            return out

        def record_opt(names: Any, loss: Any) -> Any:
            self.steps.append([names] if isinstance(names, str) else list(names))
            return optimize(names, loss)

        model.chunk_generator.__dict__["_call"] = record_g
        model.optimize = record_opt


def test_a_sequence_trains_in_chunks_with_detached_carry_over() -> None:
    model = _model("train.frames_per_step=2")
    rec = _Recorder(model)
    result = model.train_step(_batch(1, 2 + 5))  # 5 generated frames: chunks of 2, 2 and 1
    assert not result.skipped and result.info["chunks"] == 3 and result.info["frames_per_step"] == 2
    assert [s[0] for s in rec.steps] == ["G", "D", "G", "D", "G", "D"]  # one G step, then one D step, per chunk
    assert len(rec.calls) == 5
    # max_frames_backpropagate 1 (the official default): every previous frame is fed detached
    assert all(not inp.prev.requires_grad for inp in rec.calls)
    # the carried frames are the previous chunk's outputs: frame 2 of the sequence (first of chunk 2) sees the
    # outputs of frames 0 and 1 as its history
    second = rec.calls[2].prev
    assert torch.equal(second[:, -1], rec.outs[1].final.detach()) and torch.equal(second[:, -2], rec.outs[0].final.detach())


def test_backpropagated_frames_follow_the_official_schedule() -> None:
    from v2v_plugins.vid2vid.training import backpropagated_frames

    assert [backpropagated_frames(1, 12, e, 5) for e in (0, 5, 10, 20)] == [1, 1, 1, 1]
    # max 4: 2^k after k niter_step boundaries, rounded so that it divides the chunk: 12 // ceil(12 / n)
    assert [backpropagated_frames(4, 12, e, 5) for e in (0, 5, 10, 15)] == [1, 2, 4, 4]
    assert backpropagated_frames(4, 5, 10, 5) == 2  # 5 // ceil(5 / 4)
    assert backpropagated_frames(8, 1, 30, 5) == 1

    model = _model("train.frames_per_step=4", "model.max_frames_backpropagate=2", "data.n_frames_total=4")
    model.on_epoch(5)  # one niter_step boundary: 2 frames back-propagated
    rec = _Recorder(model)
    model.train_step(_batch(1, 2 + 4))
    # inside the chunk the window is cut every 2nd frame; the real history of frame 0 is never attached
    assert [inp.prev.requires_grad for inp in rec.calls] == [False, True, False, True]


def test_official_window_ends_match_the_official_slicing() -> None:
    """temporal_window_ends against a literal list version of the official get_skipped_frames slicing."""
    from v2v_plugins.gan.discriminators import TemporalScale, temporal_window_ends

    def official(buffer_len: int, new: int, s: int, tD: int = 3) -> list[list[int]]:
        frames = list(range(buffer_len))
        tDs, span = tD ** s, tD ** s * (tD - 1)
        n_groups = min(buffer_len - span, new)
        out = []
        for t in range(0, max(0, n_groups), tD):
            out.append(frames[-span - t - 1:-t:tDs] if t != 0 else frames[-span - 1::tDs])
        return sorted(out)

    for buffer_len in range(1, 20):
        for new in range(1, buffer_len + 1):
            for s in (0, 1, 2):
                scale = TemporalScale(s, 3 ** s, 3)
                ends = temporal_window_ends(buffer_len, new, scale)
                windows = [[e - (2 - i) * scale.stride for i in range(3)] for e in ends]
                assert windows == official(buffer_len, new, s), (buffer_len, new, s)


def test_temporal_buffer_activates_scales_across_chunks_with_generated_frames_only() -> None:
    from v2v_plugins.gan import losses as L

    model = _model("model.n_scales_temporal=2", "train.frames_per_step=4", "data.n_frames_total=8")
    rec = _Recorder(model)
    seen: list[tuple[Any, Any, int]] = []
    original = L.Vid2VidLoss.generator_temporal

    def capture(self: Any, D: Any, **kw: Any) -> Any:
        seen.append((kw["real_clip"], kw["fake_clip"].detach(), kw["new_frames"]))
        return original(self, D, **kw)

    model.loss_fn.generator_temporal = types.MethodType(capture, model.loss_fn)
    batch = _batch(1, 2 + 8)
    result = model.train_step(batch)
    # chunk 1: a buffer of 4 generated frames feeds only scale 0 (3 frames); chunk 2: 4 earlier + 4 new = 8 ≥ 7
    d_steps = [s for s in rec.steps if s[0] == "D"]
    assert d_steps == [["D", "D_T0"], ["D", "D_T0", "D_T1"]]
    assert result.info["temporal_active"] == [0, 1]
    generated = torch.stack([o.final.detach() for o in rec.outs], 1)
    real = batch.frames.float() / 127.5 - 1
    (r1, f1, n1), (r2, f2, n2) = seen
    assert (n1, n2) == (4, 4) and f1.shape[1] == 4 and f2.shape[1] == 8
    assert torch.equal(f1, generated[:, :4]) and torch.equal(f2, generated)  # fake windows: generated frames only
    assert torch.allclose(r2, real[:, 2:]) and torch.allclose(r1, real[:, 2:6])  # real ones: the same positions


def test_each_spatial_scale_keeps_its_own_history() -> None:
    from v2v_plugins.vid2vid.generator import pyramid_down

    model = _model("model.n_scales_spatial=2", "train.frames_per_step=3", "data.n_frames_total=3")
    rec = _Recorder(model)
    batch = _batch(1, 2 + 3)
    model.train_step(batch)
    real = batch.frames.float() / 127.5 - 1
    first, third = rec.calls[0], rec.calls[2]
    # real history enters as its pyramid (the official build_pyr)
    assert torch.allclose(first.prev_scales[0][:, -1], pyramid_down(real[:, 1]), atol=1e-6)
    # generated history: the coarse scale's own output, not the pooled fine output
    own = rec.outs[1].scales[0].final.detach()
    assert torch.equal(third.prev_scales[0][:, -1], own)
    assert not torch.allclose(own, pyramid_down(rec.outs[1].final.detach()), atol=1e-3)

    # synthesis keeps the same per-scale history
    gen = model.frame_generator(use_ema=False)
    calls: list[Any] = []
    inner = gen.G

    class Spy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner
            self.scales = inner.scales

        def forward(self, inp: Any) -> Any:
            out = self.inner(inp)
            calls.append((inp, out))
            return out

    gen.G = Spy()
    inputs = [{"seg": batch.inputs["seg"][0, t], "inst": batch.inputs["inst"][0, t]} for t in range(5)]
    gen.step(inputs[0], real=real[0, 0])
    gen.step(inputs[1], real=real[0, 1])
    gen.step(inputs[2])
    gen.step(inputs[3])
    (_, out2), (inp3, _) = calls
    assert torch.equal(inp3.prev_scales[0][:, -1], out2.scales[0].final.float())


def test_empty_history_shows_raw_frames_to_the_discriminator() -> None:
    from v2v_plugins.gan import losses as L

    model = _model("model.history=empty", "train.frames_per_step=2", "data.n_frames_total=3")
    raws: list[Any] = []
    original = L.Vid2VidLoss.discriminator_frame

    def capture(self: Any, D: Any, **kw: Any) -> Any:
        raws.append(kw.get("raw"))
        return original(self, D, **kw)

    model.loss_fn.discriminator_frame = types.MethodType(capture, model.loss_fn)
    result = model.train_step(_batch(1, 3))
    assert len(raws) == 2 and all(r is not None for r in raws)
    assert "D_fake_raw" in result.losses and "G_GAN_raw" in result.losses


def test_init_from_also_loads_the_discriminators_that_fit() -> None:
    coarse = _model("model.num_D=1")
    with torch.no_grad():
        for p in coarse.discriminators.parameters():
            p.add_(1.0)
    weights = coarse.weights()
    meta = types.SimpleNamespace(extra={"n_scales_spatial": 1}, config={}, step=7)
    from v2v_plugins.world import world_label_set

    from v2vcli.registry import get_registry

    cfg = load_config([TINY / "tiny.yaml"], [*SIZE, "model.n_scales_spatial=2", "model.num_D=2"])
    fine = get_registry().get_model("vid2vid")(cfg, world_label_set(), "cpu")
    fine.init_from(weights, meta)
    fine.setup_training()
    src = coarse.discriminators.state_dict()
    own = fine.discriminators.state_dict()
    same = [k for k in own if k in src and own[k].shape == src[k].shape]
    fresh = [k for k in own if k not in src]
    assert same and fresh  # the finer run's second image-D scale starts fresh
    assert all(torch.equal(own[k], src[k]) for k in same)


def test_a_temporal_scale_the_schedule_never_feeds_is_a_config_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from v2v_plugins.train.loop import check_training_config

    from v2vcli.cli import build_app

    with pytest.raises(ConfigError, match=r"temporal scale 1 needs 7 generated frames.*never trains on more than 4"):
        check_training_config(load_config([TINY / "tiny.yaml"], ["model.n_scales_temporal=2",
                                                                 "data.n_frames_total=4", "train.niter_step=0"]))
    # street_512 reaches 6·2^3 = 48 frames in its 20 epochs: scale 3 (55 frames) never trains
    with pytest.raises(ConfigError, match="set model.n_scales_temporal=3"):
        check_training_config(load_config([TINY / "street_512.yaml"], ["model.n_scales_temporal=5"]))
    check_training_config(load_config([TINY / "tiny.yaml"], ["model.n_scales_temporal=2"]))  # 4 → 8 frames: fine
    # through the CLI: one Error line before anything starts, no run folder
    from v2v_plugins.world import write_world

    data = write_world(tmp_path / "world", seed=0, size=(64, 32), frames=8, sequences=2, val=0, progress=False)
    res = CliRunner().invoke(build_app(), ["train", "--config", str(TINY / "tiny.yaml"), "--data", str(data),
                                           "--run-dir", str(tmp_path / "run"), "--set", "model.n_scales_temporal=4"])
    assert res.exit_code != 0 and "Error: model.n_scales_temporal=4: temporal scale 3 needs 55" in res.output
    assert not (tmp_path / "run").exists()
    # scales the schedule reaches but 6-frame clips (8-frame sequences) cannot feed: a warning, training goes on
    res = CliRunner().invoke(build_app(), ["train", "--config", str(TINY / "tiny.yaml"), "--data", str(data),
                                           "--run-dir", str(tmp_path / "run2"), "--max-steps", "1", "--device", "cpu",
                                           "--set", "model.n_scales_temporal=3", *[x for s in SIZE for x in ("--set", s)]])
    assert res.exit_code == 0, res.output
    assert "temporal scale(s) [1, 2] never train on this dataset" in " ".join(res.output.split())  # 8 - 2 frames


def test_plan_shows_the_official_curriculum(tmp_path: Path) -> None:
    from typer.testing import CliRunner
    from v2v_plugins.world import write_world

    from v2vcli.cli import build_app

    data = tmp_path / "world"
    write_world(data, seed=0, size=(64, 32), frames=30, sequences=2, val=0)
    runner = CliRunner()

    def plan(preset: str, *extra: str) -> dict[str, Any]:
        res = runner.invoke(build_app(), ["train", "--config", str(TINY / f"{preset}.yaml"), "--data", str(data),
                                          "--plan", "--json", *extra])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)  # type: ignore[no-any-return]

    street = plan("street_512")
    assert street["longest_sequence"] == 30 and street["max_frames_per_sequence"] == 28
    frames = [e["frames_per_sequence"] for e in street["epochs"]]
    assert frames == [6] * 5 + [12] * 5 + [24] * 5 + [28] * 5
    e1, e6, e11, e16 = (street["epochs"][i] for i in (0, 5, 10, 15))
    assert (e1["frames_per_step"], e1["g_steps_per_sequence"], e1["temporal_scales"]) == (6, 1, [0])
    assert (e6["frames_per_step"], e6["temporal_scales"]) == (12, [0, 1])
    assert (e11["g_steps_per_sequence"], e16["g_steps_per_sequence"], e16["d_steps_per_sequence"]) == (2, 3, 3)
    assert e1["lr"]["G"] == e1["lr"]["D_T1"] == pytest.approx(2e-4)
    assert street["epochs"][11]["lr"]["D"] == pytest.approx(0.9 * 2e-4)  # the 12th epoch: the official decay
    assert e1["spatial_scales"] == [0]

    big = plan("street_2048", "--init-from", "coarser-run")
    assert [e["frames_per_sequence"] for e in big["epochs"]] == [4, 8, 16, 28] + [28] * 6
    assert big["epochs"][0]["spatial_scales"] == [2] and big["epochs"][5]["spatial_scales"] == [0, 1, 2]
    assert big["epochs"][3]["g_steps_per_sequence"] == 7  # 28 frames in chunks of 4

    table = runner.invoke(build_app(), ["train", "--config", str(TINY / "street_512.yaml"), "--data", str(data),
                                        "--plan"])
    assert table.exit_code == 0 and "frames/seq" in table.stdout and "T0,T1" in table.stdout
