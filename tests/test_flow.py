"""Flow estimators (dis, farneback, raft) and ``v2v extract flow``: direction convention, confidence, storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from v2vcli.errors import ConfigError, WeightsError
from v2vcli.extractor import FlowField
from v2vcli.warp import warp_numpy


def _texture(h: int, w: int, cell: int, seed: int) -> np.ndarray:
    """Smooth random RGB texture: random cells upsampled with bicubic interpolation."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // cell + 4, w // cell + 4, 3)).astype(np.uint8)
    return cv2.resize(small, (w + 4 * cell, h + 4 * cell), interpolation=cv2.INTER_CUBIC)[:h, :w]


def _translated(dx: int, dy: int, h: int = 96, w: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(prev, cur) with cur(p) = prev(p - (dx, dy)): the content moves by (dx, dy)."""
    m = 16
    tex = _texture(h + 2 * m, w + 2 * m, 6, seed)
    prev = tex[m:m + h, m:m + w]
    cur = tex[m - dy:m - dy + h, m - dx:m - dx + w]
    return np.ascontiguousarray(prev), np.ascontiguousarray(cur)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def _occluding_square(dx: int, dy: int, h: int = 96, w: int = 128, size: int = 48
                      ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A textured square moving by (dx, dy) over a static textured background, and masks of frame t's regions."""
    bg = _texture(h, w, 6, 1)
    square = _texture(size, size, 6, 2)
    x0, y0 = 36, 22
    prev = bg.copy()
    prev[y0:y0 + size, x0:x0 + size] = square
    cur = bg.copy()
    cur[y0 + dy:y0 + dy + size, x0 + dx:x0 + dx + size] = square
    # Disoccluded: background at t that the square covered at t-1; it has no match in frame t-1.
    occluded = np.zeros((h, w), bool)
    occluded[y0:y0 + size, x0:x0 + size] = True
    occluded[y0 + dy:y0 + dy + size, x0 + dx:x0 + dx + size] = False
    inside = np.zeros((h, w), bool)
    inside[y0 + dy + 6:y0 + dy + size - 6, x0 + dx + 6:x0 + dx + size - 6] = True
    far = np.ones((h, w), bool)
    far[y0 - 14:y0 + size + 14 + abs(dy), x0 - 14:x0 + size + 14 + abs(dx)] = False
    far[:4] = far[-4:] = False
    far[:, :4] = far[:, -4:] = False
    return prev, cur, {"occluded": occluded, "inside": inside, "far": far}


def _estimator(name: str, **options: Any) -> Any:
    from v2vcli.registry import get_registry

    cls: Any = get_registry().get_flow_estimator(name)
    return cls(cls.Config(**options))


# -- registration -------------------------------------------------------------------------------------------------------

def test_flow_estimators_and_extractors_are_registered() -> None:
    from v2vcli.registry import get_registry

    reg = get_registry()
    assert {"dis", "farneback", "raft_large", "raft_small"} <= set(reg.flow_estimators())
    assert {"flow/dis", "flow/farneback", "flow/raft"} <= set(reg.extractors())
    assert reg.default_backend("flow") == "dis"
    assert reg.flow_estimators()["dis"].plugin == "flow"


# -- direction convention -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,options", [
    ("dis", {"preset": "medium"}), ("dis", {"preset": "fast"}), ("dis", {"preset": "ultrafast"}),
    ("dis", {"preset": "medium", "scale": 0.5}), ("farneback", {}),
])
@pytest.mark.parametrize("shift", [(3, -2), (-4, 1)])
def test_backward_flow_warps_prev_onto_cur(name: str, options: dict[str, Any], shift: tuple[int, int]) -> None:
    dx, dy = shift
    prev, cur = _translated(dx, dy)
    est = _estimator(name, **options)
    flow = est.backward(cur, prev)
    assert flow.shape == (*cur.shape[:2], 2) and flow.dtype == np.float32
    b = max(abs(dx), abs(dy)) + 2  # the border is occluded: content entering the frame
    inner = (slice(b, -b), slice(b, -b))
    # Backward flow t→t-1 points from each pixel of frame t to where it was: minus the motion.
    np.testing.assert_allclose(np.median(flow[inner].reshape(-1, 2), axis=0), [-dx, -dy], atol=0.25)
    assert _psnr(warp_numpy(prev, flow)[inner], cur[inner]) >= 30.0
    # The other order is the forward flow: it warps cur onto prev.
    fwd = est.backward(prev, cur)
    assert _psnr(warp_numpy(cur, fwd)[inner], prev[inner]) >= 30.0


@pytest.mark.parametrize("name", ["dis", "farneback"])
def test_confidence_is_low_where_the_square_disoccludes_background(name: str) -> None:
    prev, cur, region = _occluding_square(6, 4)
    est = _estimator(name)
    flow, conf = est.with_confidence(cur, prev)
    assert conf.dtype == np.uint8 and conf.shape == cur.shape[:2]
    c = conf / 255.0
    assert c[region["occluded"]].mean() < 0.6
    assert c[region["far"]].mean() > 0.97
    assert c[region["inside"]].mean() > 0.9
    np.testing.assert_allclose(np.median(flow[region["inside"]], axis=0), [-6, -4], atol=0.5)
    np.testing.assert_allclose(np.median(flow[region["far"]], axis=0), [0, 0], atol=0.25)


def test_confidence_is_high_for_a_global_translation() -> None:
    prev, cur = _translated(3, -2)
    _, conf = _estimator("dis").with_confidence(cur, prev)
    assert (conf[6:-6, 6:-6] == 255).mean() > 0.97


def test_scaled_flow_keeps_full_resolution_outputs() -> None:
    prev, cur = _translated(4, 2, h=90, w=122)
    flow, conf = _estimator("dis", scale=0.5).with_confidence(cur, prev)
    assert flow.shape == (90, 122, 2) and conf.shape == (90, 122)
    np.testing.assert_allclose(np.median(flow[8:-8, 8:-8].reshape(-1, 2), axis=0), [-4, -2], atol=0.3)


@pytest.mark.parametrize("name,options,match", [
    ("dis", {"preset": "slow"}, "ultrafast, fast, medium"),
    ("dis", {"scale": 1.5}, "scale"),
    ("farneback", {"poly_n": 6}, "poly-n"),
    ("raft_small", {"iters": 0}, "iters"),
])
def test_bad_options_are_config_errors(name: str, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _estimator(name, **options)


# -- RAFT -----------------------------------------------------------------------------------------------------------------

class _DifferenceRAFT:
    """A RAFT double: 'flow' = first two channels of image1 - image2, so order, scaling and cropping are visible."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], int]] = []

    def eval(self) -> _DifferenceRAFT:
        return self

    def to(self, device: Any) -> _DifferenceRAFT:
        return self

    def __call__(self, image1: Any, image2: Any, num_flow_updates: int = 12) -> list[Any]:
        self.calls.append((tuple(image1.shape), num_flow_updates))
        return [image1[:, :2] * 0, image1[:, :2] - image2[:, :2]]


def test_raft_pads_to_multiples_of_8_and_passes_cur_then_prev() -> None:
    from v2v_plugins.extract.flow import RAFTOptions, RAFTSmallFlow

    rng = np.random.default_rng(0)
    cur = rng.integers(0, 256, (45, 150, 3), dtype=np.uint8)
    prev = rng.integers(0, 256, (45, 150, 3), dtype=np.uint8)
    double = _DifferenceRAFT()
    est = RAFTSmallFlow(RAFTOptions(iters=3), model=double)
    flow = est.backward(cur, prev)
    # padded to 128 (RAFT's smallest input for 4 pyramid levels) × 152 (next multiple of 8), then cropped back
    assert double.calls == [((1, 3, 128, 152), 3)]
    assert flow.shape == (45, 150, 2) and flow.dtype == np.float32
    expected = (cur[..., :2].astype(np.float32) - prev[..., :2]) / 127.5
    np.testing.assert_allclose(flow, expected, atol=1e-5)
    bw, conf = est.with_confidence(cur, prev)
    assert double.calls[-1] == ((2, 3, 128, 152), 3)  # both directions in one batch
    np.testing.assert_allclose(bw, expected, atol=1e-5)
    assert conf.shape == (45, 150) and conf.dtype == np.uint8


def test_raft_small_with_random_weights_runs_end_to_end() -> None:
    import torch
    from torchvision.models.optical_flow import raft_small
    from v2v_plugins.extract.flow import RAFTOptions, RAFTSmallFlow

    torch.manual_seed(0)
    prev, cur = _translated(3, -2, h=60, w=84)
    est = RAFTSmallFlow(RAFTOptions(iters=1), model=raft_small(weights=None))
    flow, conf = est.with_confidence(cur, prev)
    assert flow.shape == (60, 84, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()
    assert conf.shape == (60, 84) and conf.dtype == np.uint8


def _save_random_raft_small(path: Path) -> dict[str, Any]:
    import torch
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(1)
    state = raft_small(weights=None).state_dict()
    torch.save(state, path)
    return state


def test_raft_loads_weights_from_the_cache_by_registry_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from v2v_plugins.extract.flow import RAFTOptions, RAFTSmallFlow

    from v2vcli.weights import WeightsEntry, cache_dir

    path = cache_dir() / "raft_small_C_T_V2-01064c6d.pth"
    path.parent.mkdir(parents=True)
    state = _save_random_raft_small(path)
    # Random weights cannot match the published hash: skip the check in this test only.
    monkeypatch.setattr(WeightsEntry, "check", lambda self, digest: True)
    est = RAFTSmallFlow(RAFTOptions(iters=1))
    loaded = est.model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_raft_verifies_the_hash_of_an_explicit_weights_file(tmp_path: Path) -> None:
    from v2v_plugins.extract.flow import RAFTOptions, RAFTSmallFlow

    path = tmp_path / "raft_small.pth"
    _save_random_raft_small(path)
    with pytest.raises(WeightsError, match="sha256"):
        RAFTSmallFlow(RAFTOptions(weights=str(path)))


def test_raft_missing_weights_say_where_to_get_them() -> None:
    from v2v_plugins.extract.flow import RAFTLargeFlow

    with pytest.raises(WeightsError, match=r"raft_large_C_T_SKHT_V2-ff5fadd5\.pth.*download\.pytorch\.org"):
        RAFTLargeFlow()


@pytest.mark.parametrize("content", ["other_state_dict", "pickled_object", "garbage"])
def test_raft_rejects_a_file_that_is_not_a_raft_state_dict(content: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from v2v_plugins.extract.flow import RAFTOptions, RAFTSmallFlow

    from v2vcli.weights import WeightsEntry

    path = tmp_path / "other.pth"
    if content == "other_state_dict":
        torch.save({"conv.weight": torch.zeros(3)}, path)
    elif content == "pickled_object":  # refused by torch.load(weights_only=True)
        torch.save({"model": _DifferenceRAFT()}, path)
    else:
        path.write_bytes(b"not a checkpoint at all")
    monkeypatch.setattr(WeightsEntry, "check", lambda self, digest: True)
    with pytest.raises(WeightsError, match="not a torchvision raft_small state dict"):
        RAFTSmallFlow(RAFTOptions(weights=str(path)))


# -- the extractor --------------------------------------------------------------------------------------------------------

def test_flow_extractor_frame_zero_is_zero_flow_zero_confidence() -> None:
    from v2v_plugins.extract.flow import DISFlowExtractor, DISOptions

    prev, cur = _translated(3, -2)
    ex = DISFlowExtractor(DISOptions(preset="fast"))
    ex.start_sequence("clip", 10.0, (128, 96))
    first = ex.process(prev, 0)["flow"]
    assert isinstance(first, FlowField)
    assert first.flow.shape == (96, 128, 2) and not first.flow.any()
    assert first.conf.shape == (96, 128) and first.conf.dtype == np.uint8 and not first.conf.any()
    second = ex.process(cur, 1)["flow"]
    np.testing.assert_allclose(np.median(second.flow[8:-8, 8:-8].reshape(-1, 2), axis=0), [-3, 2], atol=0.3)
    assert (second.conf[8:-8, 8:-8] == 255).mean() > 0.9
    # A new sequence starts again from zero flow, whatever came before.
    ex.start_sequence("other", 10.0, (128, 96))
    assert not ex.process(cur, 0)["flow"].flow.any()


def test_flow_extractor_keeps_its_own_copy_of_the_previous_frame() -> None:
    from v2v_plugins.extract.flow import DISFlowExtractor

    prev, cur = _translated(3, -2)
    buffer = prev.copy()
    ex = DISFlowExtractor()
    ex.start_sequence("clip", 10.0, (128, 96))
    ex.process(buffer, 0)
    buffer[:] = cur  # a reader reusing its buffer must not change the stored previous frame
    out = ex.process(cur, 1)["flow"]
    np.testing.assert_allclose(np.median(out.flow[8:-8, 8:-8].reshape(-1, 2), axis=0), [-3, 2], atol=0.3)


def test_raft_extractor_picks_the_variant() -> None:
    from v2v_plugins.extract.flow import RAFTExtractOptions, RAFTFlowExtractor

    with pytest.raises(ConfigError, match="large, small"):
        RAFTFlowExtractor(RAFTExtractOptions(variant="medium"))
    with pytest.raises(WeightsError, match="raft_small_C_T_V2"):
        RAFTFlowExtractor(RAFTExtractOptions(variant="small"))


def test_flow_extractor_meta_names_the_estimator() -> None:
    from v2v_plugins.extract.flow import FarnebackFlowExtractor

    ex = FarnebackFlowExtractor()
    meta = ex.meta()
    assert meta["estimator"] == "farneback" and "backward" in meta["direction"]
    assert ex.options()["winsize"] == 9


# -- CLI ------------------------------------------------------------------------------------------------------------------

def test_cli_extract_flow_writes_npz_that_round_trip(cli: Any, tiny_video: Path, tmp_path: Path) -> None:
    from v2vcli.data.layout import Dataset
    from v2vcli.io.files import read_flow

    out = tmp_path / "ds"
    result = cli("extract", "flow", tiny_video, "-o", out, "--preset", "fast")
    assert result.exit_code == 0, result.output
    ds = Dataset(out)
    count = ds.count("clip")
    files = sorted((out / "flow" / "clip").glob("*.npz"))
    assert count == 8 and len(files) == count == len(list((out / "frames" / "clip").iterdir()))
    flow0, conf0 = read_flow(files[0])
    assert flow0.shape == (48, 64, 2) and flow0.dtype == np.float32 and conf0.dtype == np.uint8
    assert not flow0.any() and not conf0.any()
    for path in files[1:]:
        flow, conf = read_flow(path)
        # moving_pattern moves 2 px right per frame: backward flow is (-2, 0) away from the borders
        np.testing.assert_allclose(np.median(flow[6:-6, 6:-6].reshape(-1, 2), axis=0), [-2, 0], atol=0.3)
        assert (conf[6:-6, 6:-6] == 255).mean() > 0.8
        with np.load(path) as raw:  # the stored form: float16 flow, uint8 confidence, uncompressed
            assert raw["flow"].dtype == np.float16 and raw["conf"].dtype == np.uint8
            np.testing.assert_array_equal(raw["flow"].astype(np.float32), flow)
    meta = ds.kind_meta("flow")
    assert meta is not None and meta["backend"] == "dis" and meta["estimator"] == "dis"
    assert meta["options"] == {"preset": "fast", "scale": 1.0}


def test_cli_extract_flow_raft_without_weights_is_a_one_line_error(cli: Any, tiny_video: Path,
                                                                   tmp_path: Path) -> None:
    result = cli("extract", "flow", tiny_video, "-o", tmp_path / "ds", "--backend", "raft", "--variant", "small")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("INFO")]
    assert len(lines) == 1 and lines[0].startswith("Error: weights 'raft_small'"), result.output
    assert "download.pytorch.org" in lines[0]


@pytest.mark.parametrize("name", ["dis", "farneback"])
def test_concurrent_directions_equal_two_sequential_flows(name: str) -> None:
    """with_confidence computes the forward flow in a helper thread: the result is exactly the backward flow and
    the check of two flows computed one after the other."""
    from v2vcli.flow import forward_backward_confidence

    prev, cur, _ = _occluding_square(5, -3)
    est, ref = _estimator(name), _estimator(name)
    for _ in range(3):  # repeated calls reuse the helper thread and the second DIS instance
        flow, conf = est.with_confidence(cur, prev)
        bw, fw = ref.backward(cur, prev), ref.backward(prev, cur)
        np.testing.assert_array_equal(flow, bw)
        np.testing.assert_array_equal(conf, forward_backward_confidence(bw, fw))
