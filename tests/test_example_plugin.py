"""The example third-party plugin (examples/v2v-plugin-example): installed with pip, its extractor, template model
and template metric run through the CLI."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import moving_pattern, write_video

from v2vcli.io.files import read_image, read_json, read_label

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "v2v-plugin-example"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the example (a real wheel build from its pyproject) into a temp folder, once per module."""
    if importlib.util.find_spec("setuptools") is None or importlib.util.find_spec("pip") is None:
        pytest.skip("pip and setuptools are needed to build the example plugin")
    tmp = tmp_path_factory.mktemp("example")
    source = tmp / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, capture_output=True)
    return target


@pytest.fixture
def installed_example(example_site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The installed example on sys.path for one test (the registry is rebuilt by conftest's autouse fixture)."""
    target = example_site
    monkeypatch.syspath_prepend(str(target))
    sys.modules.pop("v2v_plugin_example", None)
    return target


def test_example_plugin_is_listed_and_extracts_through_the_cli(installed_example: Path, cli: Any,
                                                               tmp_path: Path) -> None:
    plugins = json.loads(cli("plugins", "--json").stdout)
    example = next(p for p in plugins if p["name"] == "example")
    assert example["distribution"] == "v2v-plugin-example" and example["version"] == "0.1.0"
    assert example["registered"] == {"extractors": ["sobel/opencv"], "models": ["template"],
                                     "metrics": ["mean_abs_error"]}
    assert str(installed_example) in sys.modules["v2v_plugin_example"].__file__

    help_text = cli("extract", "sobel", "--help").output
    assert "--ksize" in help_text and "--no-normalize" in help_text

    video = write_video(tmp_path / "clip.mp4", moving_pattern(t=4))
    ds = tmp_path / "ds"
    result = cli("extract", "sobel", video, "-o", ds, "--ksize", "5", "--normalize")
    assert result.exit_code == 0, result.output
    maps = sorted((ds / "sobel" / "clip").glob("*.png"))
    assert [p.name for p in maps] == [f"{i:06d}.png" for i in range(4)]
    edges = read_label(maps[0])
    assert edges.shape == (48, 64) and edges.max() == 255  # --normalize: the strongest gradient maps to 255
    meta = read_json(ds / "meta" / "sobel.json")
    assert meta["plugin"] == "example" and meta["backend"] == "opencv" and meta["units"] == "8-bit gradient magnitude"
    assert meta["options"] == {"ksize": 5, "blur": 0.0, "gain": 0.25, "normalize": True}
    assert cli("dataset", "check", ds).exit_code == 0

    bad = cli("extract", "sobel", video, "-o", tmp_path / "bad", "--ksize", "4")
    assert bad.exit_code == 1 and bad.stderr.strip() == "Error: --ksize must be 1, 3, 5 or 7, got 4"


def test_sobel_extractor_finds_a_step_edge(installed_example: Path) -> None:
    from v2v_plugin_example import SobelConfig, SobelExtractor

    frame = np.zeros((16, 20, 3), np.uint8)
    frame[:, 10:] = 200  # vertical step between columns 9 and 10
    out = SobelExtractor(SobelConfig(gain=0.25)).process(frame, 0)["sobel"]
    assert out.dtype == np.uint8 and out.shape == (16, 20)
    assert out[8, :8].max() == 0 and out[8, 12:].max() == 0
    assert out[8, 9] == out[8, 10] == 200  # |gx| = 4·200 for ksize 3, times gain 0.25


def test_template_model_trains_and_synthesizes_through_the_cli(installed_example: Path, cli: Any,
                                                               tmp_path: Path) -> None:
    from v2v_plugins.world import write_world

    from v2vcli.checkpoint import read_meta

    world = write_world(tmp_path / "world", seed=0, size=(32, 32), frames=4, sequences=2, val=0, progress=False)
    run = tmp_path / "run"
    res = cli("train", "--data", world, "--run-dir", run, "--device", "cpu", "--max-steps", "12",
              "--set", "model.name=template", "--set", "data.inputs=[seg]", "--set", "data.size=[32,32]",
              "--set", "data.n_frames_total=2", "--set", "data.num_workers=0", "--set", "optim.lr=0.01",
              "--set", "train.log_every=1", "--set", "train.sample_every=12")
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["G_L1"] for r in records if r.get("stage") == "train" and "event" not in r]
    assert len(losses) == 12  # the L1 falls: the contract's optimizer steps G
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:2]), losses
    assert read_meta(run).model == "template" and (run / "samples" / "step_00000012.mp4").is_file()

    out = tmp_path / "out"
    res = cli("synthesize", "--checkpoint", run, "--labels", world / "seg" / "world_000", "-o", out,
              "--format", "png", "--device", "cpu")
    assert res.exit_code == 0, res.output
    frames = sorted(out.glob("*.png"))
    assert len(frames) == 4 and read_image(frames[0]).shape == (32, 32, 3)

    res = cli("eval", "mean-abs-error", "--real", world / "frames" / "world_000", "--fake", out, "--json")
    assert res.exit_code == 0, res.output
    assert 0 < json.loads(res.stdout)["value"] < 128


def test_template_metric_through_the_cli_and_compute_metric(installed_example: Path, cli: Any,
                                                            tmp_path: Path) -> None:
    from v2v_plugins.evaluate import compute_metric

    from v2vcli.io.files import write_image

    rng = np.random.default_rng(0)
    real = rng.integers(20, 200, size=(3, 16, 16, 3)).astype(np.uint8)
    fake = real.copy()
    fake[..., 0] += 30  # red channel 30 levels up
    for name, frames in (("real", real), ("fake", fake)):
        for i, frame in enumerate(frames):
            write_image(tmp_path / name / f"{i:06d}.png", frame)

    assert "--luma" in cli("eval", "mean-abs-error", "--help").output
    rgb = json.loads(cli("eval", "mean-abs-error", "--real", tmp_path / "real", "--fake", tmp_path / "fake",
                         "--json").stdout)
    assert rgb["metric"] == "mean_abs_error" and rgb["value"] == pytest.approx(10.0)  # 30 in one of 3 channels
    assert rgb["per_frame"] == {"fake": [pytest.approx(10.0)] * 3}
    luma = compute_metric("mean_abs_error", tmp_path / "real", tmp_path / "fake", {"luma": True}, device="cpu")
    assert luma.value == pytest.approx(0.299 * 30) and luma.protocol["channels"] == "luma"
    assert compute_metric("mean-abs-error", tmp_path / "real", tmp_path / "real", device="cpu").value == 0.0
