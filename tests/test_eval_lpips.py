"""LPIPS (VGG): v2v against an independent computation in this test on one random VGG16 + random linear heads
(the registry's file formats: a torchvision vgg16 state dict and the lpips package's v0.1 vgg.pth keys), against the
``lpips`` package itself when it is installed, and `v2v eval lpips`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import moving_pattern

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torchvision.models.vgg import cfgs, make_layers  # noqa: E402

from v2v_plugins.evaluate.lpips import LPIPS_CHANNELS, LPIPSNet  # noqa: E402
from v2vcli.errors import WeightsError  # noqa: E402
from v2vcli.metric import compute_metric  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lpips_weights")
    torch.manual_seed(0)
    # The convolutional part of a torchvision vgg16 state dict (the classifier, 400 MB, is never used by LPIPS).
    features = make_layers(cfgs["D"])
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, root / "vgg16.pth")
    # Trained LPIPS heads are non-negative; random non-negative ones keep the distance a sum of squares.
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) * 0.1 for k, c in enumerate(LPIPS_CHANNELS)}
    torch.save(heads, root / "heads.pth")
    return root / "vgg16.pth", root / "heads.pth"


def _features_state(path: Path) -> dict:
    return {k.removeprefix("features."): v for k, v in torch.load(path, weights_only=True).items()}


def _frames(seed: int, t: int = 3) -> np.ndarray:
    return moving_pattern(t=t, h=48, w=64, seed=seed)


def _independent(a: np.ndarray, b: np.ndarray, vgg_path: Path, heads_path: Path) -> float:
    """LPIPS from the paper's recipe: the ReLU before every max pool plus the last one, float64 normalisation."""
    features = make_layers(cfgs["D"])
    features.load_state_dict(_features_state(vgg_path))
    heads = torch.load(heads_path, weights_only=True)
    shift = np.array([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1)
    scale = np.array([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1)

    def feats(img: np.ndarray) -> list[np.ndarray]:
        x = (img.transpose(2, 0, 1)[None].astype(np.float64) / 255 * 2 - 1 - shift) / scale
        h = torch.from_numpy(x).float()
        layers = list(features)
        out = []
        with torch.no_grad():
            for i, layer in enumerate(layers[:30]):
                h = layer(h)
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                if isinstance(layer, torch.nn.ReLU) and isinstance(nxt, torch.nn.MaxPool2d):
                    out.append(h.double().numpy()[0])
        return out

    total = 0.0
    for k, (fa, fb) in enumerate(zip(feats(a), feats(b))):
        na = fa / (np.sqrt((fa**2).sum(axis=0, keepdims=True)) + 1e-10)
        nb = fb / (np.sqrt((fb**2).sum(axis=0, keepdims=True)) + 1e-10)
        w = heads[f"lin{k}.model.1.weight"].double().numpy().reshape(-1)
        total += float(np.einsum("c,chw->hw", w, (na - nb) ** 2).mean())
    return total


def test_lpips_matches_independent_computation(weights: tuple[Path, Path]) -> None:
    vgg_path, heads_path = weights
    net = LPIPSNet(vgg_path, heads_path)
    a, b = _frames(1)[0], _frames(2)[0]
    x = torch.from_numpy(np.stack([a, a])).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    y = torch.from_numpy(np.stack([b, a])).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    with torch.no_grad():
        values = net(x, y)
    expected = _independent(a, b, vgg_path, heads_path)
    assert expected > 0
    assert float(values[0]) == pytest.approx(expected, rel=1e-4)
    assert float(values[1]) == 0.0


def test_lpips_matches_lpips_package(weights: tuple[Path, Path]) -> None:
    lpips = pytest.importorskip("lpips", reason="the lpips package is an optional reference (not a dependency)")
    vgg_path, heads_path = weights
    ref = lpips.LPIPS(net="vgg", pretrained=True, model_path=str(heads_path), pnet_rand=True, verbose=False)
    features = make_layers(cfgs["D"])
    features.load_state_dict(_features_state(vgg_path))
    # The package splits vgg16().features into five slices whose modules keep their indices.
    for k, slice_ in enumerate([ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5]):
        for name, module in slice_.named_children():
            if isinstance(module, torch.nn.Conv2d):
                module.load_state_dict(features[int(name)].state_dict())
    ours = LPIPSNet(vgg_path, heads_path)
    a, b = _frames(3)[0], _frames(4)[0]
    x = torch.from_numpy(a[None]).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    y = torch.from_numpy(b[None]).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    with torch.no_grad():
        assert float(ours(x, y)[0]) == pytest.approx(float(ref(x, y).flatten()[0]), rel=1e-5)


def _write(folder: Path, frames: np.ndarray) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:06d}.png")
    return folder


def test_metric_and_cli(cli, tmp_path: Path, weights: tuple[Path, Path]) -> None:  # type: ignore[no-untyped-def]
    vgg_path, heads_path = weights
    real = _write(tmp_path / "real", _frames(5, 2))
    fake = _write(tmp_path / "fake", _frames(6, 2))
    w = {"vgg16": str(vgg_path), "lpips_vgg": str(heads_path)}
    result = compute_metric("lpips", real, fake, device="cpu", weights=w, verify_weights=False)
    assert len(result.per_frame["fake"]) == 2 and result.value > 0 and not result.higher_is_better
    net = LPIPSNet(vgg_path, heads_path)
    x = torch.from_numpy(_frames(5, 2)).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    y = torch.from_numpy(_frames(6, 2)).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    with torch.no_grad():
        expected = net(x, y).double().numpy()
    np.testing.assert_allclose(result.per_frame["fake"], expected, rtol=1e-5)
    assert result.value == pytest.approx(float(expected.mean()), rel=1e-5)
    res = cli("eval", "lpips", "--real", real, "--fake", real, "--json", "--weights", f"vgg16={vgg_path}",
              "--weights", f"lpips_vgg={heads_path}", "--no-verify-weights")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["metric"] == "lpips" and data["value"] == 0.0
    assert set(data["weights"]) == {"vgg16", "lpips_vgg"}
    # The registry pins the hashes: random files are refused without --no-verify-weights.
    with pytest.raises(WeightsError, match="sha256"):
        compute_metric("lpips", real, fake, device="cpu", weights=w)
