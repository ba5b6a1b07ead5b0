"""FVD and vfid_i3d on injected random I3D state dicts (BatchNorm statistics recalibrated so features are not
degenerate): against cd-fvd, the PyPI package of the PyTorch FVD code (VideoGPT/TATS's I3D port), at the protocol's
16×224×224 clips; and against an independent re-implementation in this test (clip cutting, the two taps, the Fréchet
step) at ``size=64`` (a protocol option; the code path is the same), where the network itself is shared.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import moving_pattern

torch = pytest.importorskip("torch")

from v2v_plugins.evaluate.fvd import iter_clips, preprocess_clips  # noqa: E402
from v2v_plugins.evaluate.i3d import build_i3d, load_i3d  # noqa: E402
from v2vcli.errors import WeightsError  # noqa: E402
from v2vcli.metric import compute_metric  # noqa: E402

SIZE = 64


def _write_pngs(folder: Path, frames: np.ndarray) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:06d}.png")
    return folder


def _random_i3d(path: Path, seed: int, size: int, clip_seeds: tuple[int, int]) -> Path:
    """A random I3D state dict saved at ``path``; BN running statistics recalibrated on two small clips fed at
    ``size`` (so features at that size are not degenerate)."""
    torch.manual_seed(seed)
    net = build_i3d()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    torch.set_flush_denormal(True)
    try:
        with torch.no_grad():
            net(preprocess_clips([list(moving_pattern(t=16, h=48, w=64, seed=s)) for s in clip_seeds], size))
    finally:
        torch.set_flush_denormal(False)
    torch.save(net.eval().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def i3d_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _random_i3d(tmp_path_factory.mktemp("i3d") / "random_i3d.pt", 0, SIZE, (20, 21))


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("videos")
    real = np.concatenate([moving_pattern(t=12, h=48, w=64, seed=1), moving_pattern(t=12, h=48, w=64, seed=2)])
    fake = np.concatenate([moving_pattern(t=12, h=40, w=56, seed=3)[:, :, ::-1],
                           moving_pattern(t=12, h=40, w=56, seed=4)])
    return _write_pngs(root / "real" / "seq", real), _write_pngs(root / "fake" / "seq", fake)


def _reference(folder: Path, weights: Path, stride: int) -> dict[str, np.ndarray]:
    """Independent FVD features: PIL reading, index arithmetic for clips, trilinear 5-D resize, explicit taps."""
    from PIL import Image

    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])
    starts = range(0, len(frames) - 16 + 1, stride)
    video = torch.from_numpy(frames).double()  # (N, H, W, 3)
    net = build_i3d()
    net.load_state_dict(torch.load(weights, weights_only=True))
    clips = torch.stack([video[s:s + 16].permute(3, 0, 1, 2) / 255.0 for s in starts])  # (N, 3, 16, H, W)
    # Trilinear with the time size unchanged is bilinear per frame (source t index = t exactly).
    x = torch.nn.functional.interpolate(clips, size=(16, SIZE, SIZE), mode="trilinear", align_corners=False)
    torch.set_flush_denormal(True)  # speed only: denormals are slow on CPU
    with torch.no_grad():
        feat = net.features((x * 2 - 1).float())  # (N, 1024, 2, 2, 2) at 64x64: one clamped pool window
    torch.set_flush_denormal(False)
    pooled = feat.double().mean(dim=(2, 3, 4))
    w = net.logits.conv3d.weight.detach().double().flatten(1)
    bias = net.logits.conv3d.bias.detach().double()
    return {"pool": pooled.numpy(), "logits": (pooled @ w.T + bias).numpy()}


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance by another route than v2v's: with N samples the covariances are A1ᵀA1/(N−1) and
    A2ᵀA2/(N−1) (A centred), and the non-zero eigenvalues of Σ1Σ2 are those of MMᵀ with M = A2A1ᵀ/(N−1), so
    tr((Σ1Σ2)^½) is the sum of the singular values of M (exact, and cheap for few samples)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    a1, a2 = a - a.mean(0), b - b.mean(0)
    tr1 = (a1**2).sum() / (len(a) - 1)
    tr2 = (a2**2).sum() / (len(b) - 1)
    m = a2 @ a1.T / np.sqrt((len(a) - 1) * (len(b) - 1))
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + tr1 + tr2 - 2 * np.linalg.svd(m, compute_uv=False).sum())


@pytest.fixture(scope="module")
def reference(videos: tuple[Path, Path], i3d_pth: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return _reference(videos[0], i3d_pth, 4), _reference(videos[1], i3d_pth, 4)


def test_pipeline_matches_independent_reimplementation(videos: tuple[Path, Path], i3d_pth: Path,
                                                       reference: tuple[dict, dict]) -> None:
    real, fake = videos
    ref_real, ref_fake = reference
    opts = {"size": SIZE, "clip_stride": 4, "sqrtm": "eigh"}
    weights = {"i3d_kinetics400": str(i3d_pth)}
    for metric, tap in (("fvd", "logits"), ("vfid_i3d", "pool")):  # vfid_i3d reuses the cached clip features
        result = compute_metric(metric, real, fake, opts, device="cpu", weights=weights, verify_weights=False)
        assert result.details["real_clips"] == len(ref_real[tap]) == 3
        assert result.details["fake_clips"] == len(ref_fake[tap]) == 3
        # The cached clip features are v2v's features: compare them with the reference taps directly.
        import v2v_plugins.evaluate.fvd as fvd_mod
        from v2vcli.io.inputs import resolve_input

        m = fvd_mod.FVD(fvd_mod.FVDConfig(**opts), "cpu", weights, verify_weights=False)
        feats = m.sequence_features(resolve_input(real).sequences, "real")["seq"][tap]
        np.testing.assert_allclose(feats, ref_real[tap], rtol=1e-4, atol=1e-5 * np.abs(ref_real[tap]).max())
        expected = _frechet(ref_real[tap], ref_fake[tap])
        assert expected > 1e-3  # features are not degenerate
        assert result.value == pytest.approx(expected, rel=1e-4)
        assert result.weights["i3d_kinetics400"]["verified"] is False
        assert result.protocol["reference"].startswith("cd-fvd")
        # The same clips against themselves: zero (up to rounding).
        same = compute_metric(metric, real, real, opts, device="cpu", weights=weights, verify_weights=False)
        assert abs(same.value) < 1e-6 * max(expected, 1.0)


def test_preprocess_224_is_bilinear_to_protocol_size() -> None:
    frames = list(moving_pattern(t=16, h=48, w=80, seed=5))
    x = preprocess_clips([frames], 224)
    assert x.shape == (1, 3, 16, 224, 224)
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    clip = torch.from_numpy(np.stack(frames)).double().permute(3, 0, 1, 2)[None] / 255
    ref = torch.nn.functional.interpolate(clip, size=(16, 224, 224), mode="trilinear", align_corners=False) * 2 - 1
    torch.testing.assert_close(x.double(), ref, atol=1e-5, rtol=0)  # float32 vs float64
    crop = preprocess_clips([frames], 224, "center-crop")
    assert crop.shape == (1, 3, 16, 224, 224)


def test_iter_clips() -> None:
    starts = [c[0] for c in iter_clips(range(40), 16)]
    assert starts == [0, 16]
    assert [c[0] for c in iter_clips(range(40), 16, 8)] == [0, 8, 16, 24]
    assert [c[0] for c in iter_clips(range(70), 16, 20)] == [0, 20, 40]
    assert [list(c) for c in iter_clips(range(20), 16, 4, max_clips=1)] == [list(range(16))]
    assert list(iter_clips(range(10), 16)) == []


def test_state_dict_layout_is_pytorch_i3d() -> None:
    net = build_i3d()
    keys = set(net.state_dict())
    for key in ("Conv3d_1a_7x7.conv3d.weight", "Conv3d_2c_3x3.bn.running_var", "Mixed_3b.b1b.conv3d.weight",
                "Mixed_5c.b3b.bn.bias", "logits.conv3d.weight", "logits.conv3d.bias"):
        assert key in keys
    assert sum(p.numel() for p in net.parameters()) == 12_697_264
    assert tuple(net.state_dict()["Conv3d_1a_7x7.conv3d.weight"].shape) == (64, 3, 7, 7, 7)


def test_bad_weights_file_and_missing_weights(tmp_path: Path, videos: tuple[Path, Path]) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="does not fit the I3D network"):
        load_i3d(bad)
    real, fake = videos
    with pytest.raises(WeightsError, match="i3d_kinetics400"):
        compute_metric("fvd", real, fake, {"size": SIZE}, device="cpu")


def test_cli_json_and_cache(cli, videos: tuple[Path, Path], i3d_pth: Path,  # type: ignore[no-untyped-def]
                            monkeypatch: pytest.MonkeyPatch) -> None:
    real, fake = videos
    args = ["eval", "fvd", "--real", real, "--fake", fake, "--size", str(SIZE), "--clip-length", "8",
            "--clip-stride", "16", "--json",
            "--weights", f"i3d_kinetics400={i3d_pth}", "--no-verify-weights"]
    res = cli(*args)
    assert res.exit_code == 0, res.output
    first = json.loads(res.stdout)
    assert first["metric"] == "fvd" and first["details"]["real_clips"] == 2

    from v2v_plugins.evaluate import fvd

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("features recomputed despite the cache")

    monkeypatch.setattr(fvd.I3DClipFeatures, "features", boom)
    again = cli(*args)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["value"] == pytest.approx(first["value"], rel=1e-12)


def test_fvd_at_224_matches_cd_fvd_on_the_same_random_i3d(tmp_path: Path) -> None:
    """The reference check: cd-fvd (PyPI; the PyTorch I3D port and FVD code of VideoGPT/TATS, which load
    i3d_pretrained_400.pt) given the same injected random state dict and the same clips at the protocol's 16 frames
    x 224x224. The clip logits agree; the FVD equals VideoGPT's Fréchet step (unbiased covariances, as v2v and
    pytorch-fid) and cd-fvd's own once its convention is accounted for: its statistics class divides by N, a factor
    N/(N - 1) that is 0.05% at the usual 2,048 clips but 1.5 with this test's 3."""
    cdfvd = pytest.importorskip("cdfvd.fvd")
    from cdfvd.utils.metric_utils import FeatureStats

    from v2v_plugins.evaluate.frechet import frechet_distance

    weights_file = _random_i3d(tmp_path / "random_i3d_224.pt", 1, 224, (40, 41))  # BN statistics fit 224x224
    torch.set_flush_denormal(True)  # speed only, for both implementations
    try:
        clips = {"real": np.stack([moving_pattern(t=16, h=48, w=64, seed=s) for s in (30, 31, 32)]),
                 "fake": np.stack([moving_pattern(t=16, h=48, w=64, seed=s)[:, ::-1] for s in (33, 34, 35)])}
        folders = {k: _write_pngs(tmp_path / k / "seq", v.reshape(-1, 48, 64, 3)) for k, v in clips.items()}
        weights = {"i3d_kinetics400": str(weights_file)}
        ours = compute_metric("fvd", folders["real"], folders["fake"], {"cache": False}, device="cpu",
                              weights=weights, verify_weights=False)
        import v2v_plugins.evaluate.fvd as fvd_mod
        from v2vcli.io.inputs import resolve_input

        m = fvd_mod.FVD(fvd_mod.FVDConfig(cache=False), "cpu", weights, verify_weights=False)
        ref = cdfvd.cdfvd("i3d", ckpt_path=str(weights_file), device="cpu", n_fake="full", compute_feats=True)
        stats = {}
        for k in ("real", "fake"):
            feats = m.sequence_features(resolve_input(folders[k]).sequences, k)["seq"]["logits"]
            st = cdfvd.get_i3d_logits(FeatureStats(capture_all=True, capture_mean_cov=True), ref.model, clips[k],
                                      device="cpu")
            np.testing.assert_allclose(feats, st.get_all(), rtol=1e-4, atol=1e-4 * np.abs(st.get_all()).max())
            stats[k] = st
        value = float(ref.compute_fvd_from_stats(stats["fake"], stats["real"]))
    finally:
        torch.set_flush_denormal(False)
    assert ours.details["real_clips"] == ours.details["fake_clips"] == 3
    assert value > 1e-2  # the features are not degenerate
    (mu_r, cov_r), (mu_f, cov_f) = stats["real"].get_mean_cov(), stats["fake"].get_mean_cov()
    # cd-fvd's own number from its statistics, by v2v's Fréchet step
    assert frechet_distance(mu_r, cov_r, mu_f, cov_f, method="eigh") == pytest.approx(value, rel=1e-4)
    n = 3
    assert ours.value == pytest.approx(frechet_distance(mu_r, cov_r * n / (n - 1), mu_f, cov_f * n / (n - 1),
                                                        method="eigh"), rel=1e-4)
    # VideoGPT's own Fréchet step (TF-GAN's matrix square roots, unbiased covariances), shipped in cd-fvd too,
    # on cd-fvd's features: v2v's FVD as is
    from cdfvd.third_party.i3d.utils import frechet_distance as videogpt_frechet

    videogpt = float(videogpt_frechet(torch.from_numpy(stats["real"].get_all()).double(),
                                      torch.from_numpy(stats["fake"].get_all()).double()))
    assert ours.value == pytest.approx(videogpt, rel=1e-4)
    assert ours.protocol["reference"].startswith("cd-fvd")
