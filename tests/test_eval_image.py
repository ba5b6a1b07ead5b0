"""PSNR and SSIM against scikit-image, input resolution and pairing, and `v2v eval psnr|ssim`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import moving_pattern, write_video
from v2vcli.errors import DatasetError, VideoError
from v2vcli.io.inputs import pair_inputs, resolve_input
from v2vcli.metric import compute_metric, psnr, ssim

skm = pytest.importorskip("skimage.metrics", reason="scikit-image is the reference (a test dependency)")


def _noisy(frames: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(frames.astype(np.float64) + rng.normal(0, sigma, frames.shape), 0, 255).round().astype(np.uint8)


def _write_folder(folder: Path, frames: np.ndarray) -> Path:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:06d}.png"), np.ascontiguousarray(frame[..., ::-1]))
    return folder


def _sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    kwargs: dict[str, Any] = {"channel_axis": -1} if a.ndim == 3 else {}
    return float(skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                           data_range=255, **kwargs))


@pytest.mark.parametrize("shape", [(48, 64, 3), (31, 45, 3), (20, 17), (11, 11, 3)])
def test_psnr_ssim_match_skimage(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    for sigma in (2.0, 20.0, 80.0):
        a = rng.integers(0, 256, size=shape).astype(np.uint8)
        b = _noisy(a, sigma, seed=int(sigma))
        assert psnr(a, b) == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=255), rel=1e-12)
        assert ssim(a, b) == pytest.approx(_sk_ssim(a, b), abs=1e-10)
    smooth = moving_pattern(t=2, h=48, w=64)
    assert ssim(smooth[0], smooth[1]) == pytest.approx(_sk_ssim(smooth[0], smooth[1]), abs=1e-10)
    assert ssim(smooth[0], smooth[0]) == pytest.approx(1.0, abs=1e-12)
    assert psnr(smooth[0], smooth[0]) == math.inf


def test_ssim_rejects_tiny_frames() -> None:
    with pytest.raises(VideoError, match="11x11"):
        ssim(np.zeros((8, 20, 3), np.uint8), np.zeros((8, 20, 3), np.uint8))


def test_metrics_on_frame_folders_match_skimage(tmp_path: Path) -> None:
    real = moving_pattern(t=5, h=40, w=56, seed=1)
    fake = _noisy(real, 12.0, seed=5)
    real_dir, fake_dir = _write_folder(tmp_path / "real", real), _write_folder(tmp_path / "fake", fake)
    res_psnr = compute_metric("psnr", real_dir, fake_dir, device="cpu")
    res_ssim = compute_metric("ssim", real_dir, fake_dir, device="cpu")
    ref_psnr = [skm.peak_signal_noise_ratio(r, f, data_range=255) for r, f in zip(real, fake)]
    ref_ssim = [_sk_ssim(r, f) for r, f in zip(real, fake)]
    np.testing.assert_allclose(res_psnr.per_frame["fake"], ref_psnr, rtol=1e-12)
    np.testing.assert_allclose(res_ssim.per_frame["fake"], ref_ssim, atol=1e-10)
    assert res_psnr.value == pytest.approx(np.mean(ref_psnr), rel=1e-12)
    assert res_ssim.value == pytest.approx(np.mean(ref_ssim), abs=1e-10)
    assert res_psnr.higher_is_better and res_ssim.protocol["sigma"] == 1.5
    assert res_psnr.details["real"] == str(real_dir)


def _dataset(root: Path, seqs: dict[str, np.ndarray]) -> Path:
    from v2vcli.data.layout import Dataset

    ds = Dataset(root)
    meta = {"sequences": {}, "format": "png"}
    for name, frames in seqs.items():
        _write_folder(root / "frames" / name, frames)
        meta["sequences"][name] = {"fps": 10.0, "size": [frames.shape[2], frames.shape[1]],  # type: ignore[index]
                                   "count": len(frames), "source": f"{name}.mp4", "options": {}}
    ds.write_frames_meta(meta)
    return root


def test_dataset_root_pairs_by_name_with_a_folder_of_videos(tmp_path: Path) -> None:
    a, b, c = (moving_pattern(t=4, h=32, w=48, seed=s) for s in (1, 2, 3))
    real = _dataset(tmp_path / "data", {"a": a, "b": b, "c": c})
    fakes = tmp_path / "out"
    _write_folder(fakes / "a", _noisy(a, 5.0, 1))  # a frame folder
    fakes.mkdir(exist_ok=True)
    write_video(fakes / "b.mp4", _noisy(b, 5.0, 2))  # and a video
    pairs = pair_inputs(resolve_input(real), resolve_input(fakes))
    assert [(r.name, f.name, f.kind) for r, f in pairs] == [("a", "a", "frames"), ("b", "b", "video")]
    assert pairs[0][0].path == real / "frames" / "a"
    res = compute_metric("psnr", real, fakes, device="cpu")
    assert set(res.per_sequence) == {"a", "b"} and len(res.per_frame["b"]) == 4
    ref_a = np.mean([skm.peak_signal_noise_ratio(r, f, data_range=255) for r, f in zip(a, _noisy(a, 5.0, 1))])
    assert res.per_sequence["a"] == pytest.approx(ref_a, rel=1e-12)
    assert 20 < res.per_sequence["b"] < 60  # H.264 adds a little error
    # a sequence folder of the dataset is one sequence, paired with a single fake whatever its name
    one = pair_inputs(resolve_input(real / "frames" / "c"), resolve_input(fakes / "b.mp4"))
    assert [(r.name, f.name) for r, f in one] == [("c", "b")]


def test_pairing_errors(tmp_path: Path) -> None:
    a = moving_pattern(t=3, h=32, w=48)
    real = _dataset(tmp_path / "data", {"a": a, "b": a})
    fakes = tmp_path / "out"
    _write_folder(fakes / "zzz", a)
    _write_folder(fakes / "a", a)
    with pytest.raises(DatasetError, match="zzz"):
        pair_inputs(resolve_input(real), resolve_input(fakes))
    with pytest.raises(DatasetError, match="name the fake"):
        pair_inputs(resolve_input(real), resolve_input(fakes / "zzz"))
    with pytest.raises(VideoError, match="does not exist"):
        resolve_input(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="holds no frames"):
        resolve_input(tmp_path / "empty")
    with pytest.raises(VideoError, match="single image"):
        resolve_input(fakes / "a" / "000000.png")


def test_count_and_size_mismatch(tmp_path: Path) -> None:
    real = moving_pattern(t=5, h=32, w=48)
    real_dir = _write_folder(tmp_path / "real", real)
    short = _write_folder(tmp_path / "short", real[:3])
    res = compute_metric("psnr", real_dir, short, device="cpu")
    assert len(res.per_frame["short"]) == 3 and res.value == math.inf
    assert any("compared the first 3" in w for w in res.warnings)
    big = _write_folder(tmp_path / "big", np.repeat(np.repeat(real, 2, axis=1), 2, axis=2))
    with pytest.raises(VideoError, match="--resize-fake"):
        compute_metric("ssim", real_dir, big, device="cpu")
    res = compute_metric("ssim", real_dir, big, {"resize_fake": True}, device="cpu")
    assert res.value > 0.98  # 2x nearest upscaling, area-downscaled back: the original frames


def test_cli_psnr_ssim(cli: Any, tmp_path: Path) -> None:
    real = moving_pattern(t=4, h=32, w=48, seed=2)
    fake = _noisy(real, 10.0, seed=3)
    real_dir, fake_dir = _write_folder(tmp_path / "r", real), _write_folder(tmp_path / "f", fake)
    res = cli("eval", "psnr", "--real", real_dir, "--fake", fake_dir, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    ref = [skm.peak_signal_noise_ratio(r, f, data_range=255) for r, f in zip(real, fake)]
    assert data["metric"] == "psnr" and data["value"] == pytest.approx(np.mean(ref), rel=1e-12)
    assert data["per_frame"]["f"] == pytest.approx(ref, rel=1e-12)
    assert data["per_sequence"]["f"] == pytest.approx(np.mean(ref), rel=1e-12)
    assert data["versions"]["v2v"] and data["weights"] == {}
    res = cli("eval", "ssim", "--real", real_dir, "--fake", fake_dir)
    assert res.exit_code == 0, res.output
    assert "ssim (higher is better)" in res.stdout and "all" in res.stdout
    # identical inputs: PSNR is +inf, written as the string "inf" to keep the JSON strict
    res = cli("eval", "psnr", "--real", real_dir, "--fake", real_dir, "--json")
    assert json.loads(res.stdout)["value"] == "inf"


@pytest.mark.parametrize("metric", ["psnr", "ssim"])
def test_cli_bad_path(cli: Any, tmp_path: Path, metric: str) -> None:
    real_dir = _write_folder(tmp_path / "r", moving_pattern(t=2, h=32, w=48))
    res = cli("eval", metric, "--real", real_dir, "--fake", tmp_path / "nowhere.mp4")
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --fake") and "nowhere.mp4" in lines[0]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    res = cli("eval", metric, "--real", real_dir, "--fake", broken)
    assert res.exit_code == 1 and res.stderr.startswith("Error:") and len(res.stderr.strip().splitlines()) == 1
