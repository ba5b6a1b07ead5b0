"""Pose extraction (issue 4): BODY_25 mapping, OpenPose rendering colours, the fixed JSON schema, One-Euro
smoothing, the mediapipe extractor against a bare mediapipe loop, and the ``v2v extract pose`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from v2v_plugins.extract.openpose import (BODY_25_COLORS, BODY_25_PAIRS, HAND_COLORS, body25_from_mediapipe,
                                          face70_from_mesh, hand21_from_mediapipe, person_json, pose_json,
                                          pose_json_errors, render_openpose, validate_pose_json)
from v2v_plugins.extract.smoothing import OneEuroFilter
from v2vcli.errors import DatasetError, PluginError

W, H = 320, 240


def _frames(path: Path, start: int = 0, stop: int | None = None) -> list[np.ndarray]:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = gen.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen]
    return frames[start:stop]


def _standing_person() -> np.ndarray:
    """A (33, 4) mediapipe pose of a person facing the camera (their right on the image left), all visible."""
    p = np.zeros((33, 4))
    p[:, 3] = 0.99
    spots = {0: (160, 40), 2: (170, 32), 5: (150, 32), 7: (180, 38), 8: (140, 38), 11: (190, 70), 12: (130, 70),
             13: (205, 110), 14: (115, 110), 15: (215, 150), 16: (105, 150), 23: (180, 140), 24: (140, 140),
             25: (185, 180), 26: (135, 180), 27: (188, 220), 28: (132, 220), 29: (182, 228), 30: (138, 228),
             31: (198, 230), 32: (122, 230)}
    for i, (x, y) in spots.items():
        p[i, :2] = (x, y)
    for i in (1, 3, 4, 6, 9, 10, 17, 18, 19, 20, 21, 22):  # face/hand details near their neighbours
        p[i, :2] = p[{1: 2, 3: 2, 4: 5, 6: 5, 9: 0, 10: 0}.get(i, 15 if i % 2 else 16), :2]
    return p


# -- mapping -------------------------------------------------------------------------------------------------------

def test_body25_mapping_derives_neck_and_midhip_and_follows_openpose_sides() -> None:
    pose33 = _standing_person()
    pose33[11, 3], pose33[12, 3] = 0.9, 0.6
    body = body25_from_mediapipe(pose33, (W, H))
    assert body.shape == (25, 3)
    np.testing.assert_allclose(body[1], [160, 70, 0.6])  # neck: mid-shoulders, the lower visibility
    np.testing.assert_allclose(body[8, :2], [160, 140])  # mid-hip
    np.testing.assert_allclose(body[2, :2], pose33[12, :2])  # RShoulder = mediapipe RIGHT_SHOULDER (12)
    np.testing.assert_allclose(body[7, :2], pose33[15, :2])  # LWrist = LEFT_WRIST (15)
    np.testing.assert_allclose(body[22, :2], pose33[32, :2])  # RBigToe = RIGHT_FOOT_INDEX
    assert body[20].tolist() == [0, 0, 0] and body[23].tolist() == [0, 0, 0]  # no small toes in mediapipe


def test_body25_points_outside_the_frame_are_not_detected() -> None:
    pose33 = _standing_person()
    pose33[28, :2] = (132, 260)  # right ankle below the frame
    body = body25_from_mediapipe(pose33, (W, H))
    assert body[11].tolist() == [0, 0, 0]
    assert body[10, 2] > 0.9


def test_face70_and_hands_keep_openpose_order() -> None:
    rng = np.random.default_rng(0)
    mesh = rng.uniform(10, 100, (468, 3))
    face = face70_from_mesh(mesh, (W, H))
    assert face.shape == (70, 3)
    np.testing.assert_allclose(face[8, :2], mesh[152, :2])  # chin
    np.testing.assert_allclose(face[68, :2], face[36:42, :2].mean(axis=0))  # pupil = eye centre
    hand = hand21_from_mediapipe(rng.uniform(0, 50, (21, 2)), (W, H))
    assert hand.shape == (21, 3) and (hand[:, 2] == 1).all()


# -- rendering -----------------------------------------------------------------------------------------------------

def _mid(body: np.ndarray, a: int, b: int) -> tuple[int, int]:
    x, y = np.rint((body[a, :2] + body[b, :2]) / 2).astype(int)
    return int(y), int(x)


def test_rendering_uses_openpose_limb_colours() -> None:
    body = body25_from_mediapipe(_standing_person(), (W, H))
    img = render_openpose((W, H), body)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    # A limb has the colour of its second keypoint (OpenPose's rule), checked mid-limb.
    expected = {(2, 3): (255, 170, 0), (3, 4): (255, 255, 0), (5, 6): (85, 255, 0), (6, 7): (0, 255, 0),
                (9, 10): (0, 255, 170), (12, 13): (0, 85, 255), (1, 8): (255, 0, 0)}
    for (a, b), rgb in expected.items():
        assert (a, b) in BODY_25_PAIRS
        assert BODY_25_COLORS[b] == rgb
        assert tuple(img[_mid(body, a, b)]) == rgb, (a, b)
    # Keypoints are drawn over the limbs in their own colour: the right wrist (4) is (255, 255, 0), the left
    # knee (13) (0, 85, 255), the nose (0) (255, 0, 85).
    for k in (4, 13, 0):
        x, y = np.rint(body[k, :2]).astype(int)
        assert tuple(img[y, x]) == BODY_25_COLORS[k]
    assert img[5, 5].tolist() == [0, 0, 0]  # background stays black


def test_rendering_skips_low_confidence_points_and_is_black_without_a_person() -> None:
    pose33 = _standing_person()
    pose33[14, 3] = 0.1  # right elbow barely visible: the upper and lower right arm disappear
    body = body25_from_mediapipe(pose33, (W, H))
    img = render_openpose((W, H), body, threshold=0.5)
    assert img[_mid(body, 2, 3)].tolist() == [0, 0, 0]
    assert img[_mid(body, 3, 4)].tolist() == [0, 0, 0]
    assert not render_openpose((W, H), None).any()


def test_hands_are_rendered_in_openpose_finger_colours() -> None:
    hand = np.zeros((21, 3))
    hand[:, 2] = 1
    for f in range(5):  # five straight fingers pointing up, right of the body
        for k in range(1, 5):
            hand[4 * f + k, :2] = (230 + 15 * f, 200 - 25 * k)
    hand[0, :2] = (260, 210)
    img = render_openpose((W, H), None, hand_right=hand)
    assert not img.any()  # hands belong to a person: nothing is drawn without a body
    body = body25_from_mediapipe(_standing_person(), (W, H))
    img = render_openpose((W, H), body, hand_right=hand)
    # Index finger (points 5-8) mid-segment 6-7 takes point 7's colour.
    y, x = 200 - 25 * 2 - 12, 245
    assert tuple(img[y, x]) == HAND_COLORS[7]


# -- JSON ------------------------------------------------------------------------------------------------------------

def test_pose_json_validates_and_reports_problems() -> None:
    body = body25_from_mediapipe(_standing_person(), (W, H))
    data = json.loads(json.dumps(pose_json([person_json(body, pose33=_standing_person())])))
    assert pose_json_errors(data) == []
    validate_pose_json(data)
    person = data["people"][0]
    assert len(person["pose_keypoints_2d"]) == 75 and len(person["face_keypoints_2d"]) == 210
    assert len(person["hand_left_keypoints_2d"]) == 63 and len(person["mediapipe_pose_33"]) == 132
    assert pose_json_errors({"version": 1.3, "people": []}) == []

    bad = json.loads(json.dumps(data))
    bad["people"][0]["pose_keypoints_2d"] = bad["people"][0]["pose_keypoints_2d"][:-3]
    bad["people"][0]["hand_left_keypoints_2d"][2] = 1.5
    del bad["people"][0]["face_keypoints_2d"]
    errors = pose_json_errors(bad)
    assert any("pose_keypoints_2d has 72 numbers" in e for e in errors)
    assert any("hand_left_keypoints_2d has a confidence outside" in e for e in errors)
    assert any("face_keypoints_2d is missing" in e for e in errors)
    with pytest.raises(DatasetError, match="does not follow"):
        validate_pose_json(bad)
    assert pose_json_errors({"version": 1.0, "people": {}})  # wrong version and people type


# -- smoothing -------------------------------------------------------------------------------------------------------

def _jitter(track: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute second difference of the error: frame-to-frame shake, insensitive to a smooth lag."""
    return float(np.abs(np.diff(track - truth, n=2, axis=0)).mean())


def _jittered_track(t: int = 150, fps: float = 25.0, noise: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    time = np.arange(t) / fps
    truth = np.stack([160 + 40 * np.sin(2 * np.pi * 0.3 * time), 120 + 30 * np.cos(2 * np.pi * 0.3 * time)], 1)
    truth = np.repeat(truth[:, None, :], 33, axis=1) + rng.uniform(-20, 20, (1, 33, 2))
    return truth, truth + rng.normal(0, noise, truth.shape)


def test_one_euro_filter_reduces_jitter_on_a_synthetic_track() -> None:
    truth, noisy = _jittered_track()
    filt = OneEuroFilter(min_cutoff=1.0, beta=0.02)
    smooth = np.stack([filt(x, i / 25.0) for i, x in enumerate(noisy)])
    assert _jitter(smooth, truth) < 0.5 * _jitter(noisy, truth)
    assert np.abs(smooth - truth).mean() < 3.0  # without dragging far behind the motion
    np.testing.assert_array_equal(smooth[0], noisy[0])  # the first sample passes through


def test_one_euro_filter_restarts_coordinates_that_disappear() -> None:
    filt = OneEuroFilter(min_cutoff=0.5)
    filt(np.array([0.0, 0.0]), 0.0)
    filt(np.array([0.0, 0.0]), 0.1)
    out = filt(np.array([100.0, 100.0]), 0.2, valid=np.array([True, False]))
    assert out[0] < 50 and out[1] == 100  # valid: smoothed; invalid: passes through
    out = filt(np.array([100.0, 100.0]), 0.3)
    assert out[1] == 100  # it came back: starts from its new value, no trail from 0
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0)


class _FakeModel:
    """Stands in for mediapipe's Pose: returns a jittered track of normalized landmarks, nobody on frame 5."""

    def __init__(self, track: np.ndarray, size: tuple[int, int]) -> None:
        self.track, self.size, self.i = track, size, 0

    def process(self, frame: np.ndarray) -> Any:
        w, h = self.size
        pts = self.track[self.i]
        self.i += 1
        if self.i == 6:
            return SimpleNamespace(pose_landmarks=None)
        marks = [SimpleNamespace(x=x / w, y=y / h, z=0.0, visibility=0.95) for x, y in pts]
        return SimpleNamespace(pose_landmarks=SimpleNamespace(landmark=marks))

    def close(self) -> None:
        pass


def _fake_run(monkeypatch: pytest.MonkeyPatch, smooth: bool, track: np.ndarray) -> list[dict[str, Any]]:
    from v2v_plugins.extract.pose import MediapipePose, PoseOptions

    monkeypatch.setattr(MediapipePose, "_new_model", lambda self: _FakeModel(track, (W, H)))
    ex = MediapipePose(PoseOptions(smooth=smooth))
    ex.start_sequence("fake", 25.0, (W, H))
    frame = np.zeros((H, W, 3), np.uint8)
    return [ex.process(frame, i)["pose.json"] for i in range(len(track))]


def test_pose_smoothing_option_reduces_keypoint_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    truth, noisy = _jittered_track(t=60)
    raw = _fake_run(monkeypatch, False, noisy)
    smooth = _fake_run(monkeypatch, True, noisy)
    assert raw[5]["people"] == [] and smooth[5]["people"] == []  # nobody: frame kept, people empty

    def body(records: list[dict[str, Any]]) -> np.ndarray:
        return np.stack([np.array(r["people"][0]["mediapipe_pose_33"]).reshape(33, 4)[:, :2]
                         for r in records[6:]])

    assert _jitter(body(smooth), truth[6:]) < 0.6 * _jitter(body(raw), truth[6:])


# -- extractor ---------------------------------------------------------------------------------------------------------

def test_missing_mediapipe_is_a_plugin_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from v2v_plugins.extract.pose import MediapipePose

    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` raise ImportError
    with pytest.raises(PluginError, match=r"pip install 'v2vcli\[mediapipe\]'"):
        MediapipePose()


def test_bad_pose_options_are_config_errors() -> None:
    from v2v_plugins.extract.pose import MediapipePose, PoseOptions
    from v2vcli.errors import ConfigError

    with pytest.raises(ConfigError, match="render-threshold"):
        MediapipePose(PoseOptions(render_threshold=2.0))


def test_plugin_modules_import_no_heavy_libraries() -> None:
    code = ("import sys, v2v_plugins.extract.pose, v2v_plugins.extract.edges; "
            "print(sorted(m for m in ('cv2', 'mediapipe', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registered_as_default_pose_backend() -> None:
    from v2v_plugins.extract.pose import MediapipePose
    from v2vcli.registry import get_registry

    assert get_registry().get_extractor("pose") is MediapipePose


def test_face_and_hands_through_holistic_on_carphone(carphone_mp4: Path) -> None:
    from v2v_plugins.extract.pose import MediapipePose, PoseOptions

    frames = _frames(carphone_mp4, 0, 20)
    h, w = frames[0].shape[:2]
    ex = MediapipePose(PoseOptions(face=True, hands=True))
    ex.start_sequence("carphone", 30.0, (w, h))
    records = [ex.process(f, i) for i, f in enumerate(frames)]
    ex.close()
    with_face = 0
    for rec in records:
        validate_pose_json(rec["pose.json"])
        for person in rec["pose.json"]["people"]:
            face = np.array(person["face_keypoints_2d"]).reshape(70, 3)
            if face[:, 2].min() > 0:
                with_face += 1
                # the face lies around the body's nose
                nose = np.array(person["pose_keypoints_2d"]).reshape(25, 3)[0, :2]
                assert np.linalg.norm(face[30, :2] - nose) < 15
                assert tuple(rec["pose"][int(round(face[8, 1])), int(round(face[8, 0]))]) == (255, 255, 255)
    assert with_face >= 18


@pytest.mark.slow
def test_pose_on_bikes_finds_as_many_people_as_a_bare_mediapipe_loop(cli: Any, bikes_mp4: Path,
                                                                      tmp_path: Path) -> None:
    import mediapipe as mp

    from v2vcli.io.files import read_image

    # Both loops run at half size (same pixels for both): it halves the test's time on a busy 2-core machine,
    # and the comparison of v2v against the bare model is what is tested, not mediapipe's accuracy.
    result = cli("extract", "pose", bikes_mp4, "-o", tmp_path / "ds", "--resize", "320x136")
    assert result.exit_code == 0, result.output
    seq = tmp_path / "ds" / "pose" / "bikes"
    pngs, jsons = sorted(seq.glob("*.png")), sorted(seq.glob("*.json"))
    assert len(pngs) == 250 and len(jsons) == 250
    found = 0
    for path in jsons:
        data = json.loads(path.read_text())
        validate_pose_json(data, str(path))
        found += bool(data["people"])
        if not data["people"]:
            assert not read_image(path.with_suffix(".png")).any()  # nobody: an all-black rendering
    assert read_image(pngs[0]).shape == (136, 320, 3)
    meta = json.loads((tmp_path / "ds" / "meta" / "pose.json").read_text())
    assert meta["backend"] == "mediapipe"

    # The bare loop sees the pixels the extractor saw: the dataset's stored frames.
    frames = sorted((tmp_path / "ds" / "frames" / "bikes").glob("*.jpg"))
    assert len(frames) == 250
    with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1) as pose:
        bare = sum(pose.process(read_image(f)).pose_landmarks is not None for f in frames)
    assert bare > 50  # the clip shows a cyclist for about half of its 250 frames
    assert found >= 0.98 * bare, (found, bare)


def test_two_workers_write_the_same_files_as_one(cli: Any, bikes_mp4: Path, tmp_path: Path) -> None:
    from conftest import write_video

    frames = _frames(bikes_mp4, 100, 120)
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.mp4", np.stack(frames[:10]), fps=25)
    write_video(videos / "b.mp4", np.stack(frames[10:]), fps=25)
    for workers in (1, 2):
        result = cli("extract", "pose", videos, "-o", tmp_path / f"ds{workers}", "--workers", workers, "--smooth")
        assert result.exit_code == 0, result.output
    one, two = tmp_path / "ds1", tmp_path / "ds2"
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert len([f for f in files if f.parts[0] == "pose"]) == 2 * 2 * 10
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file() and not p.name.startswith("."))
    people = 0
    for rel in files:
        if rel.parts[0] == "pose" or rel.parts[0] == "frames":
            assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel
        if rel.suffix == ".json" and rel.parts[0] == "pose":
            people += bool(json.loads((one / rel).read_text())["people"])
    assert people >= 15  # the cyclist is in view: the comparison covers real keypoints
    assert json.loads((one / "meta" / "pose.json").read_text())["options"]["smooth"] is True


def test_cli_without_mediapipe_says_what_to_install(cli: Any, tiny_video: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    result = cli("extract", "pose", tiny_video, "-o", tmp_path / "ds")
    assert result.exit_code == 1
    assert "pip install 'v2vcli[mediapipe]'" in result.output
