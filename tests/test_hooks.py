"""One ``test_hook_<name>`` per hookspec (datasette's rule, enforced by test_hooks_documented.py): each implements
the hook in a small plugin and checks its effect through the code that consumes it (CLI, registry users, trainer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import HookEvents, moving_pattern, write_video

from v2vcli.extractor import Extractor
from v2vcli.flow import FlowEstimator
from v2vcli.hookspecs import hookimpl
from v2vcli.io.files import read_label, write_image
from v2vcli.io.video import VideoReader, open_video
from v2vcli.metric import Metric, MetricResult
from v2vcli.weights import WeightsEntry, cache_dir, sha256_file


def test_hook_v2v_register_commands(register_plugin: Any, cli: Any) -> None:
    class Hello:
        @hookimpl
        def v2v_register_commands(self, app: Any) -> None:
            @app.command("hook-hello")
            def hello(name: str = "world") -> None:
                """Say hello."""
                import typer

                typer.echo(f"hello {name}")

    register_plugin(Hello())
    assert "hook-hello" in cli("--help").output
    result = cli("hook-hello", "--name", "v2v")
    assert result.exit_code == 0 and result.output == "hello v2v\n"


class Luma(Extractor):
    kind, backend, outputs = "luma", "mean", ("luma",)

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        return {"luma": frame.mean(axis=2).round().astype(np.uint8)}


def test_hook_v2v_register_extractors(register_plugin: Any, cli: Any, tmp_path: Path) -> None:
    class Plugin:
        @hookimpl
        def v2v_register_extractors(self, register: Any) -> None:
            register("luma", "mean", Luma)

    register_plugin(Plugin())
    frames = tmp_path / "clip"
    for i in range(3):
        write_image(frames / f"{i:06d}.png", np.full((16, 24, 3), 30 * i, np.uint8), quality=100)
    result = cli("extract", "luma", frames, "-o", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    maps = sorted((tmp_path / "ds" / "luma" / "clip").glob("*.png"))
    assert [int(read_label(p)[0, 0]) for p in maps] == [0, 30, 60]


def test_hook_v2v_register_models(register_plugin: Any, cli: Any) -> None:
    from dataclasses import dataclass

    from v2vcli.config import build_config

    @dataclass(kw_only=True)
    class WideConfig:
        name: str = "wide"
        width: int = 8

    @dataclass(kw_only=True)
    class WideLoss:
        lambda_l1: float = 1.0

    class Wide:  # a real model subclasses VideoModel (test_example_plugin trains the template one)
        name, Config, LossConfig = "wide", WideConfig, WideLoss

    class Plugin:
        @hookimpl
        def v2v_register_models(self, register: Any) -> None:
            register("wide", Wide)

    register_plugin(Plugin())
    cfg = build_config({"model": {"name": "wide", "width": 32}, "loss": {"lambda_l1": 2.0}})
    assert isinstance(cfg.model, WideConfig) and cfg.model.width == 32 and cfg.loss.lambda_l1 == 2.0
    shown = cli("config", "show", "--set", "model.name=wide", "--set", "model.width=4")
    assert shown.exit_code == 0, shown.output
    assert "width: 4" in shown.output


class FrameCount(Metric):
    name, higher_is_better = "frame_count", True

    def compute(self, real: str | Path | None, fake: str | Path) -> MetricResult:
        with open_video(fake) as reader:
            return self.result(sum(1 for _ in reader))


def test_hook_v2v_register_metrics(register_plugin: Any, cli: Any, tmp_path: Path) -> None:
    class Plugin:
        @hookimpl
        def v2v_register_metrics(self, register: Any) -> None:
            register("frame_count", FrameCount)

    register_plugin(Plugin())
    video = write_video(tmp_path / "fake.mp4", moving_pattern(t=5))
    result = cli("eval", "frame-count", "--real", video, "--fake", video, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["value"] == 5


class ZeroFlow(FlowEstimator):
    name = "zero"

    def backward(self, cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
        return np.zeros(cur.shape[:2] + (2,), np.float32)


def test_hook_v2v_register_flow_estimators(register_plugin: Any, cli: Any, tmp_path: Path) -> None:
    class Plugin:
        @hookimpl
        def v2v_register_flow_estimators(self, register: Any) -> None:
            register("zero", ZeroFlow)

    register_plugin(Plugin())
    still = tmp_path / "still"
    for i in range(3):
        write_image(still / f"{i:06d}.png", np.full((16, 16, 3), 90, np.uint8), quality=100)
    result = cli("eval", "warp-error", "--fake", still, "--flow", "zero", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["value"] < 1e-12 and record["protocol"]["options"]["flow"] == "zero"  # still frames, zero flow


def test_hook_v2v_register_weights(register_plugin: Any, cli: Any) -> None:
    path = cache_dir() / "hook_net-0001.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")

    class Plugin:
        @hookimpl
        def v2v_register_weights(self, register: Any) -> None:
            register(WeightsEntry("hook_net", "hook_net-0001.pth", sha256=sha256_file(path)))

    register_plugin(Plugin())
    result = cli("weights", "path", "hook_net")
    assert result.exit_code == 0, result.output
    assert Path(result.stdout.strip()) == path
    assert cli("weights", "verify", "hook_net").exit_code == 0


class SolidReader(VideoReader):
    """``N.solid``: N grey frames of 8×4 at 5 fps."""

    def __init__(self, path: str) -> None:
        super().__init__(path, 5.0, (8, 4), int(Path(path).stem))

    def _source_frames(self, first: int) -> Any:
        for i in range(first, self.source_count or 0):
            yield np.full((4, 8, 3), 10 * i, np.uint8)


def test_hook_v2v_open_video(register_plugin: Any) -> None:
    class Plugin:
        @hookimpl
        def v2v_open_video(self, path: str) -> Any:
            return SolidReader(path) if path.endswith(".solid") else None

    register_plugin(Plugin())
    with open_video("3.solid") as reader:
        frames = list(reader)
    assert [int(f[0, 0, 0]) for f in frames] == [0, 10, 20] and frames[0].shape == (4, 8, 3)


@pytest.fixture(scope="module")
def training_events(tmp_path_factory: pytest.TempPathFactory) -> tuple[HookEvents, Path]:
    """A 2-step perframe run on a tiny world, with a plugin listening to its events."""
    import torch
    from typer.testing import CliRunner

    from v2v_plugins.world import write_world
    from v2vcli.cli import build_app
    from v2vcli.plugins import get_plugin_manager
    from v2vcli.registry import Registry, reset_registry

    root = tmp_path_factory.mktemp("hooks")
    world = write_world(root / "world", seed=0, size=(32, 32), frames=3, sequences=2, val=0, progress=False)
    cfg = root / "perframe.yaml"
    cfg.write_text("data: {inputs: [seg], size: [32, 32], n_frames_total: 1, num_workers: 0}\n"
                   "model: {name: perframe, ngf: 4, n_downsample: 1, n_blocks: 0, num_D: 1, n_layers_D: 1, ndf: 4}\n"
                   "loss: {lambda_vgg: 0.0}\ntrain: {log_every: 1, checkpoint_every: 2}\n")
    events = HookEvents()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("V2V_HOME", str(root / "home"))
        reset_registry(Registry(get_plugin_manager([events])))
        try:
            result = CliRunner().invoke(build_app(), ["train", "--config", str(cfg), "--data", str(world),
                                                      "--run-dir", str(root / "run"), "--max-steps", "2",
                                                      "--device", "cpu"], catch_exceptions=False)
        finally:
            reset_registry()
            torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return events, root / "run"


def test_hook_v2v_on_log(training_events: tuple[HookEvents, Path]) -> None:
    events, _ = training_events
    assert [(stage, step) for stage, step, _ in events.logs] == [("train", 1), ("train", 2)]
    assert all(np.isfinite(m["G_total"]) and m["D_total"] > 0 for _, _, m in events.logs)


def test_hook_v2v_on_checkpoint(training_events: tuple[HookEvents, Path]) -> None:
    events, run = training_events
    assert len(events.checkpoints) == 1
    path, step = events.checkpoints[0]
    assert step == 2 and Path(path).parent == run / "checkpoints" and Path(path).exists()
