"""FID: v2v's Inception features and FID against pytorch-fid on one random state dict, the Fréchet distance
against scipy, the feature cache, the clean protocol and `v2v eval fid`.

The state dict is random (torchvision init) with BatchNorm running statistics recalibrated on images like the test
images, so features are neither degenerate nor huge; it is saved once and loaded by both v2v
(``--weights inception_fid=PATH --no-verify-weights``) and pytorch-fid (its download patched to load the file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytorch_fid = pytest.importorskip("pytorch_fid", reason="pytorch-fid is the reference (a test dependency)")

from pytorch_fid import fid_score  # noqa: E402
from pytorch_fid import inception as pfid_inception  # noqa: E402

from v2v_plugins.evaluate.fid import FID, FIDConfig, FIDFeatureExtractor, clean_resize  # noqa: E402
from v2v_plugins.evaluate.frechet import (feature_statistics, frechet_distance,  # noqa: E402
                                          rank_deficiency_warning)
from v2vcli.errors import V2VError, WeightsError  # noqa: E402
from v2vcli.metric import compute_metric  # noqa: E402


def _images(n: int, seed: int, coarse: int = 8, size: int = 32, gamma: float = 1.0) -> np.ndarray:
    """(n, size, size, 3) uint8 smooth random images: coarse noise upsampled bicubically."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.integers(0, 256, size=(coarse, coarse, 3)).astype(np.uint8)
        img = cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float64) / 255
        out.append(np.clip(255 * img**gamma + 0.5, 0, 255).astype(np.uint8))
    return np.stack(out)


def _write_pngs(folder: Path, images: np.ndarray) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:06d}.png")
    return folder


@pytest.fixture(scope="module")
def inception_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random FID Inception state dict with BN statistics recalibrated on test-like images."""
    import torch.nn.functional as F

    from v2v_plugins.evaluate.inception import build_fid_inception_v3

    torch.manual_seed(0)
    net = build_fid_inception_v3()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    net.train()
    with torch.no_grad():
        for seed in (100, 101):
            x = torch.from_numpy(_images(4, seed)).permute(0, 3, 1, 2).float() / 255
            net(2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1)
    path = tmp_path_factory.mktemp("weights") / "random_inception.pth"
    torch.save(net.eval().state_dict(), path)
    return path


def _patch_pytorch_fid(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setattr(pfid_inception, "load_state_dict_from_url",
                        lambda *args, **kwargs: torch.load(path, map_location="cpu", weights_only=True))
    monkeypatch.setattr(fid_score, "tqdm", lambda x: x)  # keep the test log readable


@pytest.fixture
def pytorch_fid_weights(inception_pth: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pytorch-fid loads the same random file instead of downloading its weights."""
    _patch_pytorch_fid(monkeypatch, inception_pth)
    return inception_pth


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """80 real and 80 fake 32×32 PNGs from two different distributions (more images than 64 dims)."""
    root = tmp_path_factory.mktemp("fid_sets")
    real = _write_pngs(root / "real", _images(80, 1))
    fake = _write_pngs(root / "fake", _images(80, 2, coarse=12, gamma=1.4))
    return real, fake


@pytest.fixture(scope="module")
def reference_fid_64(inception_pth: Path, image_sets: tuple[Path, Path]) -> float:
    """pytorch-fid's FID of the image sets at 64 dims (computed once)."""
    with pytest.MonkeyPatch.context() as mp:
        _patch_pytorch_fid(mp, inception_pth)
        real, fake = image_sets
        return float(fid_score.calculate_fid_given_paths([str(real), str(fake)], batch_size=50, device="cpu",
                                                         dims=64, num_workers=0))


def _fid_metric(path: Path, **options: Any) -> FID:
    return FID(FIDConfig(**options), "cpu", {"inception_fid": str(path)}, verify_weights=False)


def test_features_match_pytorch_fid(pytorch_fid_weights: Path, tmp_path: Path) -> None:
    folder = _write_pngs(tmp_path / "few", _images(3, 7))
    ours = _fid_metric(pytorch_fid_weights, dims=2048, cache=False).features(folder)
    model = pfid_inception.InceptionV3([3])
    files = sorted(folder.glob("*.png"))
    ref = fid_score.get_activations(files, model, batch_size=3, dims=2048, device="cpu", num_workers=0)
    assert ours.shape == ref.shape == (3, 2048)
    assert float(ref.std(axis=0).mean()) > 1e-3, "features are degenerate: the test would prove nothing"
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


def test_fid_matches_pytorch_fid_at_64_dims(inception_pth: Path, image_sets: tuple[Path, Path],
                                            reference_fid_64: float) -> None:
    real, fake = image_sets
    ref = reference_fid_64
    result = compute_metric("fid", real, fake, {"dims": 64}, device="cpu",
                            weights={"inception_fid": str(inception_pth)}, verify_weights=False)
    assert ref > 1e-3
    assert result.value == pytest.approx(ref, rel=1e-6)
    assert result.details["real_frames"] == result.details["fake_frames"] == 80
    assert result.warnings == []  # 80 images > 64 dims: full-rank covariances
    assert result.weights["inception_fid"]["verified"] is False
    assert len(result.weights["inception_fid"]["sha256"]) == 64
    # real vs real (features from the cache this time) is 0 up to rounding
    same = compute_metric("fid", real, real, {"dims": 64}, device="cpu",
                          weights={"inception_fid": str(inception_pth)}, verify_weights=False)
    assert abs(same.value) < 1e-6 * ref


def test_frechet_distance_matches_scipy_reference() -> None:
    from scipy import linalg

    rng = np.random.default_rng(3)
    d = 16
    a = rng.normal(size=(200, d)) @ rng.normal(size=(d, d))
    b = rng.normal(size=(300, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    mu1, s1 = feature_statistics(a)
    mu2, s2 = feature_statistics(b)
    np.testing.assert_allclose(s1, np.cov(a, rowvar=False))
    ref = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
                - 2 * np.trace(linalg.sqrtm(s1 @ s2).real))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)
    assert frechet_distance(mu1, s1, mu2, s2, method="eigh") == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        fid_score.calculate_frechet_distance(mu1, s1, mu2, s2), rel=1e-12)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8 * ref)


def test_frechet_rank_deficient_covariances() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(10, 32)), rng.normal(size=(10, 32)) + 0.5
    mu1, s1 = feature_statistics(a)
    mu2, s2 = feature_statistics(b)
    assert np.linalg.matrix_rank(s1) == 9
    eig = frechet_distance(mu1, s1, mu2, s2, method="eigh")
    sci = frechet_distance(mu1, s1, mu2, s2, method="scipy")
    assert np.isfinite(eig) and eig > 0
    assert sci == pytest.approx(eig, rel=1e-4)
    warning = rank_deficiency_warning(10, 32, "fake")
    assert warning is not None and "rank-deficient" in warning and "10" in warning
    assert rank_deficiency_warning(65, 64) is None
    with pytest.raises(V2VError, match="same dimension"):
        frechet_distance(mu1, s1, mu2[:3], s2[:3, :3])


def test_clean_protocol_preprocessing(inception_pth: Path) -> None:
    from PIL import Image

    frames = list(_images(2, 9, size=40))
    ext = FIDFeatureExtractor(inception_pth, dims=64, protocol="clean")
    x = ext.preprocess(frames).contiguous().numpy()
    assert x.shape == (2, 3, 299, 299)
    for i, frame in enumerate(frames):
        for c in range(3):
            ref = np.asarray(Image.fromarray(frame[..., c].astype(np.float32)).resize((299, 299), Image.BICUBIC))
            np.testing.assert_allclose(x[i, c], (np.clip(ref, 0, 255) - 128) / 128, atol=1e-6)
    assert clean_resize(frames[0]).dtype == np.float32
    torch_fid = FIDFeatureExtractor(inception_pth, dims=64).preprocess(frames)
    assert not np.allclose(torch_fid.contiguous().numpy(), x, atol=1e-3)  # the two protocols differ


def test_fid_clean_protocol_runs(inception_pth: Path, image_sets: tuple[Path, Path]) -> None:
    real, fake = image_sets
    metric = _fid_metric(inception_pth, dims=64, protocol="clean", cache=False)
    result = metric.compute(real, fake)
    assert result.value > 0 and result.protocol["protocol"] == "clean"


def test_feature_cache(inception_pth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    folder = _write_pngs(tmp_path / "seq", _images(4, 11))
    first = _fid_metric(inception_pth, dims=64).features(folder)
    cache_dir = Path(os.environ["V2V_HOME"]) / "cache" / "fid"
    cache_files = list(cache_dir.glob("*.npy"))
    assert len(cache_files) == 1

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("features were recomputed although cached")

    with monkeypatch.context() as mp:
        mp.setattr(FIDFeatureExtractor, "features", boom)
        np.testing.assert_array_equal(_fid_metric(inception_pth, dims=64).features(folder), first)
    # A changed frame changes the key (file size/mtime), so the features are recomputed.
    _write_pngs(folder, _images(1, 12))
    os.utime(folder / "000000.png", ns=(1, 1))
    changed = _fid_metric(inception_pth, dims=64).features(folder)
    assert not np.allclose(changed[0], first[0])
    np.testing.assert_allclose(changed[1:], first[1:], atol=1e-6)
    assert len(list(cache_dir.glob("*.npy"))) == 2


def test_weights_hash_is_verified_by_default(inception_pth: Path, image_sets: tuple[Path, Path]) -> None:
    real, fake = image_sets
    with pytest.raises(WeightsError, match="sha256"):
        compute_metric("fid", real, fake, {"dims": 64}, device="cpu", weights={"inception_fid": str(inception_pth)})


def test_bad_weights_file_is_a_weights_error(tmp_path: Path, image_sets: tuple[Path, Path]) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    real, fake = image_sets
    with pytest.raises(WeightsError, match="Inception"):
        _fid_metric(bad, dims=64, cache=False).compute(real, fake)


def test_cli_fid_json(cli: Any, inception_pth: Path, tmp_path: Path) -> None:
    real = _write_pngs(tmp_path / "real", _images(6, 21))
    fake = _write_pngs(tmp_path / "fake", _images(6, 22, gamma=1.5))
    args = ["eval", "fid", "--real", real, "--fake", fake, "--weights", f"inception_fid={inception_pth}",
            "--no-verify-weights", "--dims", "64", "--device", "cpu"]
    res = cli(*args, "--json", "--no-cache")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    lib = compute_metric("fid", real, fake, {"dims": 64, "cache": False}, device="cpu",
                         weights={"inception_fid": str(inception_pth)}, verify_weights=False)
    assert data["metric"] == "fid" and data["value"] == pytest.approx(lib.value, rel=1e-9) and lib.value > 0
    assert data["protocol"]["protocol"] == "pytorch-fid" and data["protocol"]["dims"] == 64
    assert data["weights"]["inception_fid"]["sha256"] and data["versions"]["torch"]
    assert any("rank-deficient" in w for w in data["warnings"])  # 6 images < 64 dims
    table = cli(*args)
    assert table.exit_code == 0, table.output
    assert "fid" in table.stdout and "6 real / 6 fake" in table.stdout


def test_cli_fid_bad_path(cli: Any, image_sets: tuple[Path, Path], tmp_path: Path) -> None:
    res = cli("eval", "fid", "--real", tmp_path / "missing", "--fake", image_sets[1])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "missing" in lines[0]
