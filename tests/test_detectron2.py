"""detectron2 backends for real (issue 21): multi-person pose (Keypoint R-CNN → BODY_25), DensePose IUV and the seg
path, on short synthetic clips with random weights made through detectron2's own API (a ``DetectionCheckpointer``
``.pth`` and a model-zoo-format ``.pkl``); safe weight loading (a malicious ``.pkl`` runs no code), weights that do
not fit, a corrupt file, setuptools >= 81.

The random models are made to detect: the RPN's box deltas and the box head's regression and class weights are
zeroed and the person logit biased, so every proposal (an anchor) becomes a person with score ~0.998 (``people``)
or background (``nobody``); keypoints and DensePose charts stay random (the keypoint logits scaled to std ~1, as
detectron2's heatmap decoding overflows on random logits of std ~400). Small configs (a ``_BASE_`` on the real
config with 10 proposals and 3 detections per image) and ``--min-size 64`` keep each frame well under a second.

Tests that need detectron2 skip when it is not installed, except in CI (``CI`` set), where they fail: CI builds it
from the vendored source (``make detectron2``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from v2vcli.errors import PluginError, WeightsError

HAS_DETECTRON2 = (importlib.util.find_spec("detectron2") is not None
                  and importlib.util.find_spec("densepose") is not None)
KEYPOINT_ZOO = "COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml"


@pytest.fixture
def d2() -> None:
    """detectron2 must be there in CI; elsewhere its tests skip without it."""
    if HAS_DETECTRON2:
        return
    if os.environ.get("CI"):
        pytest.fail("detectron2 (with DensePose) is not installed in CI; `make detectron2` builds it")
    pytest.skip("detectron2 is not installed (not on PyPI): `make detectron2` builds it from source")


# -- random weights through detectron2's API ----------------------------------------------------------------------

def _small_config(path: Path, base: str) -> Path:
    path.write_text(f'_BASE_: "{base}"\nMODEL:\n  RPN:\n    PRE_NMS_TOPK_TEST: 50\n    POST_NMS_TOPK_TEST: 10\n'
                    f'TEST:\n  DETECTIONS_PER_IMAGE: 3\n')
    return path


def _random_weights(folder: Path, config: Path, *, people: bool, densepose: bool = False) -> tuple[Path, Path]:
    """(.pth written by DetectionCheckpointer, model-zoo-format .pkl) of a random model of ``config``."""
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    if densepose:
        from densepose import add_densepose_config

        add_densepose_config(cfg)
    cfg.merge_from_file(str(config))
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        deltas = model.proposal_generator.rpn_head.anchor_deltas
        predictor = model.roi_heads.box_predictor
        for p in (deltas.weight, deltas.bias, predictor.bbox_pred.weight, predictor.bbox_pred.bias,
                  predictor.cls_score.weight, predictor.cls_score.bias):
            p.zero_()
        predictor.cls_score.bias[0 if people else -1] = 6.0  # class 0 is person, the last one background
        if hasattr(model.roi_heads, "keypoint_head"):  # random heatmap logits of std ~400 overflow exp(); std ~1
            model.roi_heads.keypoint_head.score_lowres.weight.mul_(2.5e-3)
    name = ("dp_" if densepose else "kp_") + ("people" if people else "nobody")
    folder.mkdir(parents=True, exist_ok=True)
    DetectionCheckpointer(model, save_dir=str(folder)).save(name)
    pkl = folder / f"{name}.pkl"
    with open(pkl, "wb") as handle:  # the model zoo's format (tools/convert-torchvision-to-d2.py writes the same)
        pickle.dump({"model": {k: v.numpy() for k, v in model.state_dict().items()}, "__author__": "v2v test",
                     "matching_heuristics": True}, handle)
    return folder / f"{name}.pth", pkl


@pytest.fixture(scope="module")
def keypoint_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not HAS_DETECTRON2:
        return {}
    from detectron2 import model_zoo

    root = tmp_path_factory.mktemp("kp")
    config = _small_config(root / "kp_small.yaml", model_zoo.get_config_file(KEYPOINT_ZOO))
    pth, pkl = _random_weights(root / "w", config, people=True)
    empty_pth, _ = _random_weights(root / "w", config, people=False)
    return {"config": config, "pth": pth, "pkl": pkl, "nobody": empty_pth}


@pytest.fixture(scope="module")
def densepose_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not HAS_DETECTRON2:
        return {}
    from v2v_plugins.extract.densepose import DEFAULT_DENSEPOSE_CONFIG

    root = tmp_path_factory.mktemp("dp")
    config = _small_config(root / "dp_small.yaml", DEFAULT_DENSEPOSE_CONFIG)
    pth, pkl = _random_weights(root / "w", config, people=True, densepose=True)
    return {"config": config, "pth": pth, "pkl": pkl}


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    from conftest import moving_pattern, write_video

    return write_video(tmp_path / "clip.mp4", moving_pattern(t=4, h=48, w=64))


def _one_line_error(result: Any) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return str(lines[0])


# -- safe weight loading (no detectron2 needed) ---------------------------------------------------------------------

class _Payload:
    """Unpickling this calls os.system: what `--weights evil.pkl` ran before v2v read pickles itself."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _evil_pkl(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"model": {"w": np.zeros(2, np.float32)}, "__author__": _Payload(marker)},
                                  protocol=2))
    return evil, marker


def test_a_malicious_pkl_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    from v2v_plugins.extract.detectron2_backend import load_pkl_weights

    evil, marker = _evil_pkl(tmp_path)
    with pytest.raises(WeightsError, match=r"evil\.pkl' was refused: it asks to load posix\.system") as info:
        load_pkl_weights(evil)
    assert not marker.exists() and "\n" not in str(info.value)
    assert pickle.loads(evil.read_bytes()) is not None and marker.exists()  # the payload is real: plain pickle runs it


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_model_zoo_pkls_of_numpy_arrays_load(tmp_path: Path, protocol: int) -> None:
    from collections import OrderedDict

    from v2v_plugins.extract.detectron2_backend import load_pkl_weights

    arrays = OrderedDict(conv=np.arange(6, dtype=np.float32).reshape(2, 3), n=np.int64(3), idx=np.arange(3))
    zoo = tmp_path / "zoo.pkl"
    zoo.write_bytes(pickle.dumps({"model": arrays, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True},
                                 protocol=protocol))
    data = load_pkl_weights(zoo)
    assert data["__author__"] == "Detectron2 Model Zoo"
    np.testing.assert_array_equal(data["model"]["conv"], arrays["conv"])
    caffe2 = tmp_path / "c2.pkl"  # Detectron1: {"blobs": {...}}, momentum blobs dropped
    caffe2.write_bytes(pickle.dumps({"blobs": {"w": np.ones(2), "w_momentum": np.ones(2)}}, protocol=protocol))
    assert list(load_pkl_weights(caffe2)["model"]) == ["w"]


def test_a_corrupt_weights_file_is_an_error_naming_it(tmp_path: Path) -> None:
    from v2v_plugins.extract.detectron2_backend import load_pkl_weights

    good = pickle.dumps({"model": {"w": np.zeros(64, np.float32)}, "__author__": "x"}, protocol=2)
    bad = tmp_path / "truncated.pkl"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(WeightsError, match=r"truncated\.pkl' is corrupt"):
        load_pkl_weights(bad)


def test_setuptools_81_is_named_not_a_missing_detectron2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A detectron2 whose model zoo imports pkg_resources, with pkg_resources gone (setuptools >= 81)."""
    from v2v_plugins.extract.detectron2_backend import import_detectron2

    fake = tmp_path / "site" / "detectron2"
    (fake / "model_zoo").mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "0.6"\n')
    (fake / "model_zoo" / "__init__.py").write_text("import pkg_resources\n")
    def ours(name: str) -> bool:
        return name == "detectron2" or name.startswith("detectron2.")

    real = {name: module for name, module in sys.modules.items() if ours(name)}
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(sys.modules, "pkg_resources", None)
    try:
        for name in real:
            del sys.modules[name]
        with pytest.raises(PluginError) as info:
            import_detectron2("pose backend 'detectron2'")
    finally:  # the fake package must not stay imported
        for name in [n for n in sys.modules if ours(n)]:
            del sys.modules[name]
        sys.modules.update(real)
    message = str(info.value)
    assert "installed but cannot be imported" in message and "setuptools 81 removed" in message
    assert "pip install 'setuptools<81'" in message and "not on PyPI" not in message


def test_missing_detectron2_is_one_line_naming_the_install(cli: Any, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import moving_pattern, write_video

    video = write_video(tmp_path / "clip.mp4", moving_pattern(t=2, h=32, w=32))
    monkeypatch.setitem(sys.modules, "detectron2", None)
    for args in (["densepose"], ["pose", "--backend", "detectron2"]):
        line = _one_line_error(cli("extract", *args, video, "-o", tmp_path / "ds"))
        assert "needs detectron2, which is not on PyPI" in line and "make detectron2" in line
        assert "g++" in line and "ninja" in line


# -- COCO-17 → BODY_25 ---------------------------------------------------------------------------------------------

def test_coco17_to_body25_midpoints_sides_and_absent_feet() -> None:
    from v2v_plugins.extract.openpose import BODY_25_NAMES, BODY25_FROM_COCO17, COCO17_NAMES, body25_from_coco17

    kp = np.zeros((17, 3))
    kp[:, 0] = 10 + np.arange(17) * 3
    kp[:, 1] = 20 + np.arange(17) * 2
    kp[:, 2] = np.linspace(0.3, 0.9, 17)
    body = body25_from_coco17(kp, (100, 100))
    for i, j in enumerate(BODY25_FROM_COCO17):  # same side, same part
        if j is not None:
            assert body[i].tolist() == pytest.approx(kp[j].tolist())
            name, coco = BODY_25_NAMES[i].lower(), COCO17_NAMES[j]
            side = {"r": "right_", "l": "left_"}.get(name[0], "") if name != "nose" else ""
            assert coco.startswith(side) and name.lstrip("rl").rstrip("s") in coco.replace("_", "")
    assert body[1, :2].tolist() == pytest.approx(((kp[5, :2] + kp[6, :2]) / 2).tolist())  # neck
    assert body[1, 2] == pytest.approx(min(kp[5, 2], kp[6, 2]))
    assert body[8, :2].tolist() == pytest.approx(((kp[11, :2] + kp[12, :2]) / 2).tolist())  # mid-hip
    assert not body[19:].any()  # feet: absent, confidence 0
    kp[6] = (500, 20, 0.9)  # right shoulder outside the frame: it and the neck are not detected
    body = body25_from_coco17(kp, (100, 100))
    assert not body[2].any() and not body[1].any() and body[5, 2] > 0


# -- the real detectron2 paths ----------------------------------------------------------------------------------------

def test_pose_detectron2_writes_every_person_as_openpose(d2: None, cli: Any, clip: Path, tmp_path: Path,
                                                         keypoint_model: dict[str, Path]) -> None:
    from v2v_plugins.extract.openpose import validate_pose_json
    from v2vcli.io.files import read_image

    ds = tmp_path / "ds"
    # random heatmaps give keypoint probabilities far below detectron2's drawing threshold 0.05: draw them all
    result = cli("extract", "pose", clip, "-o", ds, "--backend", "detectron2", "--model", keypoint_model["config"],
                 "--weights", keypoint_model["pth"], "--min-size", "64", "--render-threshold", "0")
    assert result.exit_code == 0, result.output
    assert "detected" in result.output and "4/4 (100%)" in result.output
    jsons = sorted((ds / "pose" / "clip").glob("*.json"))
    assert len(jsons) == 4
    for path in jsons:
        data = json.loads(path.read_text())
        validate_pose_json(data, str(path))
        assert len(data["people"]) == 3  # every person the model returns (3 detections per image)
        for person in data["people"]:
            body = np.asarray(person["pose_keypoints_2d"]).reshape(25, 3)
            assert not body[19:].any() and body[:19, 2].max() > 0
            if body[2, 2] > 0 and body[5, 2] > 0 and body[1, 2] > 0:
                assert body[1, :2] == pytest.approx((body[2, :2] + body[5, :2]) / 2, abs=2e-3)
            assert not any(person["face_keypoints_2d"]) and not any(person["mediapipe_pose_33"])
        assert read_image(path.with_suffix(".png")).any()  # drawn
    meta = json.loads((ds / "meta" / "pose.json").read_text())
    assert meta["backend"] == "detectron2" and meta["detectron2"] and meta["min_size_test"] == 64
    assert meta["sequences"]["clip"] == {"count": 4, "detected_frames": 4, "detection_rate": 1.0}

    # the same weights as a model-zoo .pkl (read by the restricted unpickler) give the same people
    pkl_ds = tmp_path / "pkl"
    result = cli("extract", "pose", clip, "-o", pkl_ds, "--backend", "detectron2", "--model",
                 keypoint_model["config"], "--weights", keypoint_model["pkl"], "--min-size", "64", "--render-threshold",
                 "0")
    assert result.exit_code == 0, result.output
    for path in jsons:
        assert json.loads(path.read_text()) == json.loads((pkl_ds / "pose" / "clip" / path.name).read_text())


def test_pose_detectron2_refuses_a_malicious_pkl_without_running_it(d2: None, cli: Any, clip: Path, tmp_path: Path,
                                                                    keypoint_model: dict[str, Path]) -> None:
    evil, marker = _evil_pkl(tmp_path)
    result = cli("extract", "pose", clip, "-o", tmp_path / "ds", "--backend", "detectron2", "--model",
                 keypoint_model["config"], "--weights", evil, "--min-size", "64")
    line = _one_line_error(result)
    assert "evil.pkl' was refused" in line and not marker.exists()
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(keypoint_model["pth"].read_bytes()[:5000])
    line = _one_line_error(cli("extract", "pose", clip, "-o", tmp_path / "ds", "--backend", "detectron2", "--model",
                               keypoint_model["config"], "--weights", corrupt))
    assert "corrupt.pth' is corrupt" in line


def test_weights_that_do_not_fit_the_config_are_an_error(d2: None, cli: Any, clip: Path, tmp_path: Path,
                                                         keypoint_model: dict[str, Path]) -> None:
    # Keypoint R-CNN weights into Panoptic FPN: its semantic and mask heads would stay random
    line = _one_line_error(cli("extract", "seg", clip, "-o", tmp_path / "ds", "--weights", keypoint_model["pth"],
                               "--min-size", "64"))
    assert "do not fit --model 'COCO-PanopticSegmentation/panoptic_fpn_R_50_3x.yaml'" in line
    assert "model parameters are not in it" in line and "have other shapes" in line and "stay random" in line


def test_no_person_is_an_error_unless_allow_empty(d2: None, cli: Any, clip: Path, tmp_path: Path,
                                                  keypoint_model: dict[str, Path]) -> None:
    args = ["extract", "pose", clip, "-o", tmp_path / "ds", "--backend", "detectron2", "--model",
            keypoint_model["config"], "--weights", keypoint_model["nobody"], "--min-size", "64"]
    line = _one_line_error(cli(*args))
    assert "no person found in any of the 4 frames of 'clip'" in line
    assert "--backend mediapipe" in line and "--resize" in line and "--allow-empty" in line
    assert not (tmp_path / "ds" / "pose" / "clip").exists()  # nothing half-written is left
    result = cli(*args, "--allow-empty")
    assert result.exit_code == 0, result.output
    assert "found a person in only 0 of 4 frames" in " ".join(result.output.split())
    meta = json.loads((tmp_path / "ds" / "meta" / "pose.json").read_text())
    assert meta["sequences"]["clip"]["detection_rate"] == 0.0


def test_densepose_writes_iuv_in_the_dataset_layout(d2: None, cli: Any, clip: Path, tmp_path: Path,
                                                    densepose_model: dict[str, Path]) -> None:
    from v2vcli.data.clips import DENSEPOSE_I_LUT
    from v2vcli.io.files import read_image

    ds = tmp_path / "ds"
    result = cli("extract", "densepose", clip, "-o", ds, "--model", densepose_model["config"], "--weights",
                 densepose_model["pkl"], "--min-size", "64")
    assert result.exit_code == 0, result.output
    pngs = sorted((ds / "densepose" / "clip").glob("*.png"))
    assert len(pngs) == 4
    for path in pngs:
        iuv = read_image(path)  # RGB: [V, U, I]
        assert iuv.shape == (48, 64, 3)
        parts = iuv[..., 2]
        assert parts.any() and int(parts.max()) <= 24
        assert not iuv[..., :2][parts == 0].any()  # U, V only on the body
        assert int(DENSEPOSE_I_LUT[parts].max()) == round(int(parts.max()) * 255 / 24)  # what the loader makes of I
    meta = json.loads((ds / "meta" / "densepose.json").read_text())
    assert meta["backend"] == "detectron2" and meta["detectron2"] and meta["sequences"]["clip"]["detection_rate"] == 1


def test_real_seg_path_with_random_weights(d2: None, cli: Any, clip: Path, tmp_path: Path) -> None:
    import torch
    from detectron2 import model_zoo
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from v2v_plugins.extract.seg import DEFAULT_DETECTRON2_MODEL

    config = _small_config(tmp_path / "pan.yaml", model_zoo.get_config_file(DEFAULT_DETECTRON2_MODEL))
    # a 64x48 frame is smaller than the panoptic merge's smallest stuff region (4096 px): keep every region
    config.write_text(config.read_text().replace("MODEL:\n", "MODEL:\n  PANOPTIC_FPN:\n    COMBINE:\n"
                                                               "      STUFF_AREA_LIMIT: 0\n", 1))
    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(cfg), save_dir=str(tmp_path)).save("pan")
    ds = tmp_path / "ds"
    result = cli("extract", "seg", clip, "-o", ds, "--model", config, "--weights", tmp_path / "pan.pth",
                 "--min-size", "64", "--score-threshold", "0")
    assert result.exit_code == 0, result.output
    meta = json.loads((ds / "meta" / "seg.json").read_text())
    assert meta["label_set"]["name"] == "coco_panoptic" and meta["detectron2"] and meta["min_size_test"] == 64
    assert meta["sequences"]["clip"]["detection_rate"] == 1.0  # every pixel gets a label
    assert len(list((ds / "seg" / "clip").glob("*.png"))) == 4
