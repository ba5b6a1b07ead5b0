"""Future prediction (issue 13): label_predictor / frame_predictor models, baselines, mIoU, ``v2v predict``.

The module fixture renders a small synthetic world with camera and car motion (so copying the last frame is
imperfect) and trains a tiny label predictor on it with the real trainer (``v2v train`` and the shipped config);
the tests then score it on the held-out val sequences and drive ``v2v predict`` end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
LABEL_CONFIG = ROOT / "examples" / "configs" / "predict_world.yaml"
FRAME_CONFIG = ROOT / "examples" / "configs" / "predict_frames_world.yaml"
SMALL = ["--set", "data.size=[64,64]", "--set", "model.ngf=8", "--set", "model.n_blocks=2", "--set",
         "data.batch_size=2", "--set", "data.n_frames_total=3", "--set", "data.num_workers=0", "--set",
         "data.clips_per_sequence=4"]
STEPS = 24  # about 20 s of training on one core


def _invoke(*args: Any) -> Any:
    from v2vcli.cli import build_app

    return CliRunner().invoke(build_app(), [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny convolutions gain nothing from a second thread and lose a lot when the CPU is shared.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 64×64 world (4 train + 2 val sequences of 20 frames) and a label predictor trained STEPS steps on it."""
    from v2v_plugins.world import write_world

    root = tmp_path_factory.mktemp("predict")
    ds = root / "world"
    write_world(ds, seed=3, size=(64, 64), frames=20, sequences=6, val=2)
    run = root / "label_run"
    res = _invoke("train", "--config", LABEL_CONFIG, "--data", ds, "--run-dir", run, "--max-steps", STEPS, "--device",
                  "cpu", *SMALL)
    assert res.exit_code == 0, res.output
    return {"root": root, "data": ds, "label_run": run}


@pytest.fixture(scope="module")
def renderer(world: dict[str, Path]) -> Path:
    """A vid2vid run (tiny preset, random weights, saved as `v2v train` does) for rendering predicted maps."""
    from v2vcli.checkpoint import CheckpointMeta, save_checkpoint
    from v2vcli.config import dump_config, load_config, to_dict
    from v2vcli.data.layout import Dataset
    from v2vcli.registry import get_registry

    cfg = load_config([ROOT / "examples" / "configs" / "tiny.yaml"], overrides={"data": {"root": str(world["data"])}})
    label_set = Dataset(world["data"]).label_set("seg")
    model = get_registry().get_model("vid2vid")(cfg, label_set, "cpu")
    run = world["root"] / "renderer"
    meta = CheckpointMeta(model="vid2vid", config=to_dict(cfg), label_set=label_set.to_dict(), networks=["G"])
    save_checkpoint(run, 1, model.weights(), meta, {}, config_text=dump_config(cfg))
    return run


def test_plugin_import_is_light() -> None:
    code = ("import sys, v2v_plugins.predict as p; from v2vcli.registry import get_registry; "
            "get_registry().get_model('label_predictor'); get_registry().get_model('frame_predictor'); "
            "print(sorted(m for m in ('torch', 'cv2', 'mediapipe') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_miou_and_confusion() -> None:
    from v2vcli.metric import confusion, miou

    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 2]])
    conf = confusion(gt, pred, 3)
    assert conf.tolist() == [[3, 1, 0], [0, 3, 1], [0, 0, 0]]
    # class 0: 3/(4+3-3)=0.75; class 1: 3/(4+4-3)=0.6; class 2: 0/(1)=0
    assert miou(conf) == pytest.approx((0.75 + 0.6 + 0.0) / 3)
    assert confusion(gt, pred, 3, ignore_id=1).sum() == 4
    assert np.isnan(miou(np.zeros((3, 3), dtype=np.int64)))


def test_baselines_follow_translation() -> None:
    from v2v_plugins.predict.evaluation import constant_flow, copy_last

    img = torch.zeros(1, 1, 8, 16)
    img[..., 2:6, 3:5] = 1.0
    flow = torch.zeros(1, 2, 8, 16)
    flow[:, 0] = -2.0  # backward flow: content moves 2 px right per frame
    preds = constant_flow(img, flow, 3)
    for k, p in enumerate(preds, start=1):
        assert torch.equal((p[0, 0, 2:6] > 0.5).nonzero()[:, 1].unique(), torch.tensor([3 + 2 * k, 4 + 2 * k]))
    assert all(torch.equal(c, img) for c in copy_last(img, 3))


def test_untrained_network_starts_at_constant_flow() -> None:
    from v2v_plugins.predict.networks import PredictorNet

    torch.manual_seed(0)
    net = PredictorNet(state_nc=4, n_past=2, kind="labels", ngf=8, n_downsample=1, n_blocks=2).eval()
    seg = torch.randint(0, 4, (1, 2, 16, 16))
    states = torch.nn.functional.one_hot(seg, 4).permute(0, 1, 4, 2, 3).float()
    flows = torch.zeros(1, 2, 2, 16, 16)
    flows[:, :, 1] = 1.0
    with torch.no_grad():
        out = net(states, flows)
    assert torch.allclose(out.flow, flows[:, -1])  # residual head starts at zero: the last flow is kept
    assert float(out.mask.max()) < 0.3  # mostly warp
    from v2vcli.warp import warp

    assert torch.equal(out.state.argmax(1), warp(states[:, -1], flows[:, -1]).argmax(1))
    assert torch.allclose(out.state.sum(1), torch.ones(1, 16, 16), atol=1e-5)  # still a distribution


def test_carry_instances_moves_car_ids() -> None:
    from v2v_plugins.predict.pipeline import carry_instances

    inst = torch.full((1, 6, 8), 1, dtype=torch.long)  # stuff: class id 1
    inst[0, 2:4, 1:3] = 9001  # car (class 9), instance 1
    seg = torch.full((1, 6, 8), 1, dtype=torch.long)
    seg[0, 2:4, 3:5] = 9  # the car moved 2 px right
    flow = torch.zeros(1, 2, 6, 8)
    flow[:, 0] = -2.0
    out = carry_instances(inst, seg, flow)
    assert (out[0, 2:4, 3:5] == 9001).all()
    assert (out[seg != 9] == 1).all()


def test_label_predictor_trains_with_the_shipped_config(world: dict[str, Path]) -> None:
    from v2vcli.checkpoint import read_meta

    meta = read_meta(world["label_run"])
    assert meta.model == "label_predictor" and meta.step == STEPS
    assert meta.extra == {"kind": "labels", "n_past": 2, "state_nc": 10}
    assert "G_ema" in meta.networks and "D" not in meta.networks  # no GAN by default
    log = [json.loads(line) for line in (world["label_run"] / "metrics.jsonl").read_text().splitlines()]
    steps = [rec for rec in log if "P_ce" in rec]
    assert len(steps) >= 2 and {"P_ce", "P_flow", "G_total", "mask_mean"} <= set(steps[0])
    assert steps[-1]["P_ce"] < steps[0]["P_ce"]


def test_label_predictor_beats_copy_last(world: dict[str, Path]) -> None:
    from v2v_plugins.predict.evaluation import evaluate_predictor

    from v2vcli.model import load_model_for_inference

    model, meta = load_model_for_inference(world["label_run"])
    assert meta.model == "label_predictor" and meta.step == STEPS
    scores = evaluate_predictor(model, world["data"], split="val", horizon=5, stride=2)
    assert scores.samples >= 10
    assert len(scores.per_step["model"]["miou"]) == 5
    ours, copy = scores.mean("model", "miou"), scores.mean("copy_last", "miou")
    assert ours > copy + 0.02, scores.to_dict()["mean"]
    # the world moves: copying the last map gets worse with the horizon
    assert scores.per_step["copy_last"]["miou"][-1] < scores.per_step["copy_last"]["miou"][0]


def test_predict_cli_eval_writes_video_preview_report(world: dict[str, Path], renderer: Path,
                                                      tmp_path: Path) -> None:
    from v2vcli.io.video import open_video

    out = tmp_path / "pred" / "future.mp4"
    res = _invoke("predict", "--predictor", world["label_run"], "--renderer", renderer, "--context",
                  world["data"] / "frames" / "world_005", "--horizon", 4, "-o", out, "--eval", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["frames"] == 4 and summary["observed"] == 2
    with open_video(out) as reader:
        frames = list(reader)
    assert len(frames) == 4 and frames[0].shape == (64, 64, 3)
    preview = tmp_path / "pred" / "future.preview.png"
    from v2vcli.io.files import read_image

    img = read_image(preview)
    # 4 rows (maps, frames, true maps, true frames) of 1 + 4 tiles, enlarged 2x, under a header, right of the names
    assert img.shape[0] == 18 + 128 * 4 and img.shape[1] > 128 * 5
    report = json.loads((tmp_path / "pred" / "future.eval.json").read_text())
    for method in ("model", "copy_last", "constant_flow"):
        for metric in ("psnr", "ssim", "miou"):
            assert len(report["per_step"][method][metric]) == 4
    assert report["per_step"]["copy_last"]["miou"][0] < 1.0
    assert (tmp_path / "pred" / "future.eval.md").read_text().startswith("# Prediction")
    assert not [p for p in (tmp_path / "pred").iterdir() if p.name.startswith(".")]  # no temp files left


def test_predict_cli_errors(world: dict[str, Path], renderer: Path, tmp_path: Path) -> None:
    seq = world["data"] / "frames" / "world_005"
    res = _invoke("predict", "--predictor", world["label_run"], "--renderer", renderer, "--context", seq,
                  "--horizon", 19, "--eval", "-o", tmp_path / "x.mp4")
    assert res.exit_code == 1 and "needs at least 21" in res.output
    assert len(res.output.strip().splitlines()) == 1 and res.output.startswith("Error:")
    res = _invoke("predict", "--predictor", world["label_run"], "--context", seq, "--horizon", 2)
    assert res.exit_code == 1 and "--renderer" in res.output
    res = _invoke("predict", "--predictor", renderer, "--renderer", renderer, "--context", seq, "--horizon", 2)
    assert res.exit_code == 1 and "label_predictor or frame_predictor" in res.output
    res = _invoke("predict", "--predictor", world["label_run"], "--renderer", renderer, "--context", seq,
                  "--horizon", 2, "-o", tmp_path / "x.avi")
    assert res.exit_code == 1 and ".mp4" in res.output
    res = _invoke("predict", "--predictor", world["label_run"], "--renderer", renderer, "--context",
                  tmp_path / "missing", "--horizon", 2)
    assert res.exit_code == 1 and "does not exist" in res.output
    assert not (tmp_path / "x.mp4").exists()


def test_frame_predictor_trains_and_predicts(world: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "frames_run"
    res = _invoke("train", "--config", FRAME_CONFIG, "--data", world["data"], "--run-dir", run, "--max-steps", 3,
                  "--device", "cpu", *SMALL, "--set", "train.log_every=1")
    assert res.exit_code == 0, res.output
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("P_l1" in rec for rec in log)
    out = tmp_path / "f.mp4"
    res = _invoke("predict", "--predictor", run, "--context", world["data"] / "frames" / "world_004", "--horizon", 3,
                  "-o", out, "--eval", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "f.eval.json").read_text())
    assert set(report["per_step"]) == {"model", "copy_last", "constant_flow"}
    assert "miou" not in report["per_step"]["model"]  # no labels without a label predictor
    assert all(np.isfinite(v) for v in report["per_step"]["model"]["psnr"])
    assert out.is_file()
    from v2v_plugins.predict.evaluation import evaluate_predictor

    from v2vcli.model import load_model_for_inference

    model, _ = load_model_for_inference(run)
    scores = evaluate_predictor(model, world["data"], horizon=3, stride=8, max_sequences=1)
    assert scores.samples == 2 and set(scores.per_step["model"]) == {"psnr", "ssim"}
    # copying the last frame of a moving scene is worse three frames on than one frame on
    assert scores.per_step["copy_last"]["psnr"][2] < scores.per_step["copy_last"]["psnr"][0]


def test_label_predictor_gan_step_and_loss_names() -> None:
    from v2v_plugins.world import world_label_set

    from v2vcli.config import load_config
    from v2vcli.data.clips import ClipBatch
    from v2vcli.registry import get_registry

    cfg = load_config([LABEL_CONFIG], ["data.size=[32,32]", "model.ngf=4", "model.n_blocks=2", "model.ndf=4",
                                       "loss.lambda_gan=1.0", "model.max_frames_backpropagate=1"])
    model = get_registry().get_model("label_predictor")(cfg, world_label_set(), "cpu")
    model.setup_training()
    assert set(model.networks()) == {"G", "D"}
    assert model.loss_names == ("P_ce", "P_flow", "G_GAN", "G_feat", "D_real", "D_fake")
    g = torch.Generator().manual_seed(0)
    seg = torch.randint(0, 10, (1, 4, 32, 32), generator=g).to(torch.uint8)
    batch = ClipBatch(frames=torch.randint(0, 255, (1, 4, 3, 32, 32), dtype=torch.uint8, generator=g),
                      inputs={"seg": seg}, flow=torch.zeros(1, 4, 2, 32, 32))
    before = [p.detach().clone() for p in model.networks()["D"].parameters()]
    result = model.train_step(batch)
    assert not result.skipped and result.frames == 2
    assert set(model.loss_names) <= set(result.losses) and {"G_total", "D_total"} <= set(result.losses)
    assert all(np.isfinite(v) for v in result.losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.networks()["D"].parameters()))


def test_frame_predictor_on_a_video_context(world: dict[str, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain video (no dataset, no flow files): flow comes from the configured estimator."""
    from v2vcli.io.files import read_image
    from v2vcli.io.video import open_video, write_video

    run = tmp_path / "frames_run"
    res = _invoke("train", "--config", FRAME_CONFIG, "--data", world["data"], "--run-dir", run, "--max-steps", 1,
                  "--device", "cpu", *SMALL)
    assert res.exit_code == 0, res.output
    frames = [read_image(p) for p in sorted((world["data"] / "frames" / "world_005").iterdir())[:6]]
    video = tmp_path / "ctx.mp4"
    write_video(video, frames, fps=10.0)
    monkeypatch.chdir(tmp_path)
    res = _invoke("predict", "--predictor", run, "--context", video, "--horizon", 2)
    assert res.exit_code == 0, res.output
    with open_video(tmp_path / "ctx_predicted.mp4") as reader:  # the default output name
        assert len(list(reader)) == 2
    assert (tmp_path / "ctx_predicted.preview.png").is_file()
