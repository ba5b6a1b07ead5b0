"""Flow-warping error: ≈ 0 on a video made by warping one frame with a known smooth flow, far larger on the same
frames shuffled; the per-pair formula; the reference (--real) motion; `v2v eval warp-error`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import moving_pattern
from v2v_plugins.evaluate.warp_error import warp_error_pair
from v2vcli.flow import FlowEstimator
from v2vcli.hookspecs import hookimpl
from v2vcli.metric import compute_metric

H, W, T = 64, 96, 7


def _known_flow(h: int = H, w: int = W) -> np.ndarray:
    """A smooth backward flow field (pixels): mostly rightward motion with gentle shear."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx = -1.5 - 0.8 * np.sin(2 * np.pi * ys / h)
    dy = 0.6 * np.cos(2 * np.pi * xs / w)
    return np.stack([dx, dy], axis=-1).astype(np.float32)


def _warped_video(t: int = T) -> np.ndarray:
    """(T, H, W, 3) uint8: frame 0 a smooth texture, frame t = warp(frame t-1, known flow), rounded to uint8."""
    from v2vcli.warp import warp_numpy

    frames = [moving_pattern(t=1, h=H, w=W, seed=4)[0]]
    flow = _known_flow()
    for _ in range(t - 1):
        frames.append(np.clip(warp_numpy(frames[-1], flow) + 0.5, 0, 255).astype(np.uint8))
    return np.stack(frames)


def _write_folder(folder: Path, frames: np.ndarray) -> Path:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:06d}.png"), np.ascontiguousarray(frame[..., ::-1]))
    return folder


class OracleFlow(FlowEstimator):
    """Returns the known flow and full confidence: isolates the metric from flow estimation errors."""

    name = "oracle"

    def backward(self, cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
        return _known_flow(*cur.shape[:2])

    def with_confidence(self, cur: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.backward(cur, prev), np.full(cur.shape[:2], 255, np.uint8)


class OraclePlugin:
    @hookimpl
    def v2v_register_flow_estimators(self, register: Any) -> None:
        register("oracle", OracleFlow)


@pytest.fixture
def videos(tmp_path: Path) -> tuple[Path, Path]:
    frames = _warped_video()
    order = np.random.default_rng(0).permutation(T)
    assert (order != np.arange(T)).any()
    return _write_folder(tmp_path / "smooth", frames), _write_folder(tmp_path / "shuffled", frames[order])


def test_warp_error_pair_formula() -> None:
    zeros = np.zeros((8, 10, 3), np.uint8)
    flow = np.zeros((8, 10, 2), np.float32)
    full = np.full((8, 10), 255, np.uint8)
    assert warp_error_pair(zeros, zeros, flow, full) == (0.0, 80)
    grey = np.full((8, 10, 3), 51, np.uint8)  # 0.2 in every channel: squared RGB distance 3 * 0.04
    err, kept = warp_error_pair(zeros, grey, flow, full)
    assert err == pytest.approx(0.12, rel=1e-6) and kept == 80
    half = full.copy()
    half[:, 5:] = 0
    cur = zeros.copy()
    cur[:, 5:] = 255  # large errors only where the mask says occluded
    assert warp_error_pair(zeros, cur, flow, half) == (0.0, 40)
    assert warp_error_pair(zeros, grey, flow, np.zeros((8, 10), np.uint8)) == (0.0, 0)  # Lai et al.: counts 0


def test_oracle_flow_gives_zero_error(register_plugin: Any, videos: tuple[Path, Path]) -> None:
    register_plugin(OraclePlugin())
    smooth, shuffled = videos
    ok = compute_metric("warp_error", None, smooth, {"flow": "oracle"}, device="cpu")
    bad = compute_metric("warp_error", None, shuffled, {"flow": "oracle"}, device="cpu")
    assert ok.value < 2e-5  # only uint8 rounding of the warped frames remains
    assert bad.value > 100 * max(ok.value, 1e-6)
    assert len(ok.per_frame["smooth"]) == T - 1 and ok.protocol["flow_on"] == "fake"


def test_dis_flow_small_error_vs_shuffled(videos: tuple[Path, Path]) -> None:
    smooth, shuffled = videos
    ok = compute_metric("warp_error", None, smooth, device="cpu")
    bad = compute_metric("warp_error", None, shuffled, device="cpu")
    assert ok.protocol["flow"] == "dis"
    assert ok.value < 2e-3
    assert bad.value > 10 * ok.value
    assert ok.details["frame_pairs"] == T - 1


def test_reference_motion_from_real(register_plugin: Any, videos: tuple[Path, Path], tmp_path: Path) -> None:
    """With --real the real video's motion is the reference: a flickering fake is penalised, the real is not."""
    register_plugin(OraclePlugin())
    smooth, _ = videos
    frames = _warped_video()
    offsets = np.array([0, 25, -20, 30, -25, 20, -30])[:, None, None, None]
    flicker = np.clip(frames.astype(int) + offsets, 0, 255).astype(np.uint8)
    fake = _write_folder(tmp_path / "smooth_fake", flicker)
    real_self = compute_metric("warp_error", smooth, smooth, {"flow": "oracle"}, device="cpu")
    with_ref = compute_metric("warp_error", smooth, fake, {"flow": "oracle"}, device="cpu")
    assert real_self.value < 2e-5
    assert with_ref.value > 0.01 and with_ref.protocol["flow_on"] == "real"
    assert with_ref.details["pairs"] == [["smooth", "smooth_fake"]]


def test_cli_warp_error(cli: Any, videos: tuple[Path, Path]) -> None:
    smooth, shuffled = videos
    res = cli("eval", "warp-error", "--fake", smooth, "--json", "--device", "cpu")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["metric"] == "warp_error" and data["protocol"]["flow"] == "dis"
    assert len(data["per_frame"]["smooth"]) == T - 1
    lib = compute_metric("warp_error", None, smooth, device="cpu")
    assert data["value"] == pytest.approx(lib.value, rel=1e-9)
    res = cli("eval", "warp-error", "--real", smooth, "--fake", shuffled, "--flow", "farneback")
    assert res.exit_code == 0, res.output
    assert "warp-error (lower is better)" in res.stdout and "farneback" in res.stdout


def test_cli_warp_error_errors(cli: Any, videos: tuple[Path, Path], tmp_path: Path) -> None:
    res = cli("eval", "warp-error", "--fake", tmp_path / "nothing")
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --fake") and "nothing" in lines[0]
    res = cli("eval", "warp-error", "--fake", videos[0], "--flow", "diss")
    assert res.exit_code == 1 and "did you mean 'dis'" in res.stderr
    one = _write_folder(tmp_path / "one", _warped_video(1))
    res = cli("eval", "warp-error", "--fake", one)
    assert res.exit_code == 1 and "at least 2 frames" in res.stderr
