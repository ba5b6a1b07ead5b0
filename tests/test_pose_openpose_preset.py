"""The pose_*_openpose presets (issue 21): the official --openpose_only, trained from `v2v extract pose` output alone.

A user's route, end to end: extract pose from a real clip (the offline mediapipe backend), train pose_256_openpose
for a few steps at a tiny width (the preset's inputs, flow on the fly, empty history; only sizes shrunk), then
synthesize from the dataset's pose sequence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import invoke_one_thread as invoke

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"
TINY_WIDTH = ["--set", "data.size=[32,48]", "--set", "data.batch_size=1", "--set", "data.num_workers=0",
              "--set", "data.n_frames_total=4", "--set", "model.ngf=8", "--set", "model.n_downsample=2",
              "--set", "model.n_blocks=1", "--set", "model.ndf=8", "--set", "model.num_D=1",
              "--set", "model.n_layers_D=2", "--set", "model.n_scales_temporal=1", "--set", "loss.lambda_vgg=0",
              "--set", "optim.niter=1", "--set", "optim.niter_decay=1", "--set", "train.frames_per_step=2",
              "--set", "train.log_every=1"]


def test_openpose_presets_take_only_the_pose_rendering_and_need_no_flow_folder() -> None:
    from v2vcli.config import load_config

    for n in (256, 512, 1024):
        full, alone = load_config([CONFIGS / f"pose_{n}.yaml"]), load_config([CONFIGS / f"pose_{n}_openpose.yaml"])
        assert list(full.data.inputs) == ["pose", "densepose"] and list(alone.data.inputs) == ["pose"]
        assert alone.data.flow == "dis" and alone.data.random_drop_prob == 0.0
        for section in ("model", "optim", "train"):  # otherwise the paper's preset
            assert getattr(alone, section) == getattr(full, section), (n, section)
        assert (alone.data.size, alone.data.crop, alone.data.scale_range, alone.data.flip) == (
            full.data.size, full.data.crop, full.data.scale_range, full.data.flip)


def test_pose_256_openpose_trains_and_synthesizes_from_extract_pose_alone(carphone_mp4: Path,
                                                                         tmp_path: Path) -> None:
    pytest.importorskip("mediapipe")
    from v2vcli.io.files import read_image

    data = tmp_path / "dance"
    res = invoke("extract", "pose", carphone_mp4, "-o", data, "--end", "0.5")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in data.iterdir() if not p.name.startswith(".")) == ["frames", "meta", "pose"]
    seq = data / "pose" / "carphone_pristine"
    frames = len(list(seq.glob("*.png")))
    assert frames >= 8 and read_image(seq / "000000.png").any()  # the person is drawn

    run = tmp_path / "run"
    res = invoke("train", "--config", CONFIGS / "pose_256_openpose.yaml", "--data", data, "--run-dir", run,
                 "--max-steps", 3, "--device", "cpu", *TINY_WIDTH)
    assert res.exit_code == 0, res.output
    assert (run / "checkpoints" / "step_00000003").exists(), res.output

    out = tmp_path / "fake.mp4"
    res = invoke("synthesize", "--checkpoint", run, "--labels", seq, "-o", out, "--device", "cpu")
    assert res.exit_code == 0, res.output
    from v2vcli.io.video import open_video

    with open_video(out) as reader:
        assert reader.size == (32, 48)
        video = np.stack(list(reader))
    assert len(video) == frames and video.std() > 0
