"""Edge extraction (issue 4): Canny with median-rule thresholds, face part curves (mirrored upper face, distance
maps, crop) and the ``v2v extract edges`` command on a real face video."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from v2v_plugins.extract.face_curves import (PART_NAMES, distance_maps, draw_curves, face_crop_box,
                                             face_region_mask, upper_face_contour)
from v2vcli.errors import ConfigError, PluginError


def _frames(path: Path, stop: int | None = None) -> list[np.ndarray]:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = gen.__next__()
    w, h = meta["size"]
    return [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen][:stop]


def _textured(h: int = 96, w: int = 128, seed: int = 0, gain: float = 1.0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * gain, 0, 255).astype(np.uint8)


# -- canny -------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gain", [0.3, 1.0])
def test_auto_canny_uses_the_median_rule_on_the_blurred_grey_frame(gain: float) -> None:
    import cv2

    from v2v_plugins.extract.edges import auto_canny

    frame = _textured(gain=gain)
    grey = cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    med = float(np.median(grey))
    expected = cv2.Canny(grey, max(0.0, 0.67 * med), min(255.0, 1.33 * med))
    edges = auto_canny(frame)
    np.testing.assert_array_equal(edges, expected)
    assert set(np.unique(edges)) <= {0, 255} and edges.any()


def test_canny_extractor_output_and_registration() -> None:
    from v2v_plugins.extract.edges import CannyEdges, CannyOptions
    from v2vcli.registry import get_registry

    assert get_registry().get_extractor("edges") is CannyEdges  # the default backend
    out = CannyEdges().process(_textured(), 0)
    assert list(out) == ["edges"] and out["edges"].shape == (96, 128) and out["edges"].dtype == np.uint8
    blank = CannyEdges().process(np.zeros((32, 32, 3), np.uint8), 0)["edges"]
    assert not blank.any()
    with pytest.raises(ConfigError, match="blur"):
        CannyEdges(CannyOptions(blur=4))


# -- face curves ---------------------------------------------------------------------------------------------------------

def _jaw(tilt_deg: float = 0.0) -> np.ndarray:
    """A U-shaped jaw: ear level at y=50 from x=40 to x=120, chin at y=110; optionally rotated about (80, 50)."""
    angles = np.linspace(np.pi, 0, 17)
    pts = np.stack([80 + 40 * np.cos(angles), 50 + 60 * np.sin(angles)], 1)
    r = np.deg2rad(tilt_deg)
    rot = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    return (pts - (80, 50)) @ rot.T + (80, 50)  # type: ignore[no-any-return]


def test_upper_face_is_the_jaw_mirrored_across_its_end_points_at_two_thirds() -> None:
    upper = upper_face_contour(_jaw())
    np.testing.assert_allclose(upper[[0, -1]], _jaw()[[0, -1]], atol=1e-9)  # shares the ear-level end points
    np.testing.assert_allclose(upper[8], [80, 50 - 40], atol=1e-9)  # chin 60 below ⇒ forehead 40 above
    # It follows a tilted head: mirroring commutes with the rotation.
    tilted = upper_face_contour(_jaw(20))
    r = np.deg2rad(20)
    rot = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    np.testing.assert_allclose(tilted, (upper - (80, 50)) @ rot.T + (80, 50), atol=1e-9)


def test_distance_maps_measure_pixels_to_each_curve() -> None:
    line = np.array([[10.0, 20.0], [50.0, 20.0]])
    point_curve = np.array([[30.0, 60.0], [30.0, 60.0]])
    maps = distance_maps([line, point_curve], (64, 80))
    assert maps.shape == (80, 64, 2) and maps.dtype == np.float32
    assert maps[20, 30, 0] == 0 and maps[30, 30, 0] == pytest.approx(10, abs=0.05)
    assert maps[60, 34, 1] == pytest.approx(4, abs=0.05) and maps[63, 34, 1] == pytest.approx(5, abs=0.05)
    assert distance_maps([line], (600, 600), clip=255)[599, 599, 0] == 255  # saturates


def test_face_region_crop_and_curve_drawing() -> None:
    jaw = _jaw()
    curves = [jaw, upper_face_contour(jaw)]
    mask = face_region_mask(curves, (200, 160), margin=0)
    assert mask[60, 80] == 255 and mask[5, 5] == 0 and mask[40, 80] == 255  # forehead is inside
    drawn = draw_curves(curves, (200, 160))
    assert drawn[110, 80] == 255 and drawn[10, 80] == 255  # chin and mirrored forehead
    x0, y0, x1, y1 = face_crop_box(curves, (200, 160), scale=1.5)
    assert x1 - x0 == y1 - y0 == 120 and 0 <= x0 and x1 <= 200 and 0 <= y0 and y1 <= 160
    assert face_crop_box(curves, (200, 160), scale=2.5) == (0, 0, 160, 160)  # 200 px: cut to the frame


def test_missing_mediapipe_for_face_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    from v2v_plugins.extract.edges import FaceEdges

    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(PluginError, match=r"edges backend 'face' needs mediapipe.*pip install 'v2vcli\[mediapipe\]'"):
        FaceEdges()


def test_face_edges_with_dist_maps_and_crop_on_carphone(carphone_mp4: Path) -> None:
    from v2v_plugins.extract.edges import FaceEdges, FaceEdgesOptions
    from v2vcli.extractor import FloatMaps

    frames = _frames(carphone_mp4, 12)
    h, w = frames[0].shape[:2]
    ex = FaceEdges(FaceEdgesOptions(dist_maps=True, crop="face"))
    assert ex.outputs == ("edges", "edge_dist")
    ex.start_sequence("carphone", 30.0, (w, h))
    x0, y0, x1, y1 = ex.sequence_crop(frames[0])  # type: ignore[misc]
    assert ex.crop_box() == (x0, y0, x1, y1)
    outs = [ex.process(np.ascontiguousarray(f[y0:y1, x0:x1]), i) for i, f in enumerate(frames)]
    side = x1 - x0
    assert side == y1 - y0 and 60 < side <= min(w, h)
    for out in outs:
        assert out["edges"].shape == (side, side)
        dist = out["edge_dist"]
        assert isinstance(dist, FloatMaps) and dist.data.shape == (side, side, len(PART_NAMES))
        assert out["edges.json"]["crop"] == [x0, y0, x1, y1]
        assert (dist.data.min(axis=(0, 1)) == 0).all()  # each channel's curve is drawn somewhere
        if out["edges.json"]["people"]:  # the jaw points lie on the jaw channel's curve
            jaw = np.rint(np.array(out["edges.json"]["people"][0]["face_keypoints_2d"]).reshape(70, 3)[:17, :2])
            assert dist.data[jaw[:, 1].astype(int), jaw[:, 0].astype(int), 0].max() <= 1.5
    face = np.array(outs[0]["edges.json"]["people"][0]["face_keypoints_2d"]).reshape(70, 3)
    assert face[:, 0].max() - face[:, 0].min() == pytest.approx(side / 2.5, rel=0.25)
    ex.close()


def test_crop_hook_outputs_equal_extraction_on_the_cropped_video(carphone_mp4: Path) -> None:
    from v2v_plugins.extract.edges import FaceEdges, FaceEdgesOptions

    frames = _frames(carphone_mp4, 4)
    h, w = frames[0].shape[:2]
    hooked = FaceEdges(FaceEdgesOptions(crop="face"))
    hooked.start_sequence("c", 30.0, (w, h))
    x0, y0, x1, y1 = hooked.sequence_crop(frames[0])  # type: ignore[misc]
    crops = [np.ascontiguousarray(f[y0:y1, x0:x1]) for f in frames]
    plain = FaceEdges()
    plain.start_sequence("c", 30.0, (x1 - x0, y1 - y0))
    for i, crop in enumerate(crops):
        np.testing.assert_array_equal(hooked.process(crop, i)["edges"], plain.process(crop, i)["edges"])
    assert FaceEdges().sequence_crop(frames[0]) is None  # no --crop: frames stay whole
    unhooked = FaceEdges(FaceEdgesOptions(crop="face"))
    unhooked.start_sequence("c", 30.0, (w, h))
    with pytest.raises(ConfigError, match="crop the videos first"):  # a caller that ignores the crop hook
        unhooked.process(frames[0], 0)


def test_face_edges_crop_needs_a_face_in_the_first_frame() -> None:
    from v2v_plugins.extract.edges import FaceEdges, FaceEdgesOptions
    from v2vcli.errors import VideoError

    ex = FaceEdges(FaceEdgesOptions(crop="face"))
    ex.start_sequence("blank", 30.0, (64, 48))
    with pytest.raises(VideoError, match="no face found in the first frame"):
        ex.sequence_crop(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ConfigError, match="crop"):
        FaceEdges(FaceEdgesOptions(crop="head"))


def _curve_hits(edges: np.ndarray, face70: np.ndarray) -> float:
    """Share of the 68 face points (pupils excluded) that lie within 1 px of a drawn edge pixel."""
    import cv2

    near = cv2.dilate(edges, np.ones((3, 3), np.uint8)) > 0
    xy = np.rint(face70[:68, :2]).astype(int)
    return float(near[xy[:, 1], xy[:, 0]].mean())


def test_face_curves_are_drawn_on_carphone(cli: Any, carphone_mp4: Path, tmp_path: Path) -> None:
    from v2vcli.io.files import read_label

    result = cli("extract", "edges", carphone_mp4, "-o", tmp_path / "ds", "--backend", "face")
    assert result.exit_code == 0, result.output
    seq = tmp_path / "ds" / "edges" / carphone_mp4.stem
    pngs, jsons = sorted(seq.glob("*.png")), sorted(seq.glob("*.json"))
    assert len(pngs) == len(jsons) == 120
    drawn = 0
    for png, js in zip(pngs, jsons):
        people = json.loads(js.read_text())["people"]
        edges = read_label(png)
        assert edges.shape == (144, 176) and set(np.unique(edges)) <= {0, 255}
        if people and _curve_hits(edges, np.array(people[0]["face_keypoints_2d"]).reshape(70, 3)) >= 0.9:
            drawn += 1
    assert drawn >= 0.95 * 120, drawn
    meta = json.loads((tmp_path / "ds" / "meta" / "edges.json").read_text())
    assert meta["backend"] == "face"


def test_cli_crop_face_crops_frames_and_edges_alike(cli: Any, carphone_mp4: Path, tmp_path: Path) -> None:
    from v2vcli.io.files import read_image, read_label

    ds = tmp_path / "ds"
    result = cli("extract", "edges", carphone_mp4, "-o", ds, "--backend", "face", "--crop", "face", "--end", "0.3")
    assert result.exit_code == 0, result.output
    seq = carphone_mp4.stem
    frames = sorted((ds / "frames" / seq).glob("*.jpg"))
    edges = sorted((ds / "edges" / seq).glob("*.png"))
    assert len(frames) == len(edges) == 9
    side = read_label(edges[0]).shape[0]
    assert read_label(edges[0]).shape == (side, side) and read_image(frames[0]).shape == (side, side, 3)
    assert 60 < side < 144
    meta = json.loads((ds / "meta" / "frames.json").read_text())["sequences"][seq]
    x0, y0, x1, y1 = meta["options"]["crop"]
    assert meta["size"] == [side, side] == [x1 - x0, y1 - y0]
    assert json.loads(sorted((ds / "edges" / seq).glob("*.json"))[0].read_text())["crop"] == [x0, y0, x1, y1]
    # frames already stored in a dataset are not cropped in place: that would change every other modality
    again = cli("extract", "edges", ds / "frames" / seq, "-o", ds, "--backend", "face", "--crop", "face",
                "--overwrite")
    assert again.exit_code == 1 and "already has frames" in again.output, again.output
    assert read_image(frames[0]).shape == (side, side, 3)
