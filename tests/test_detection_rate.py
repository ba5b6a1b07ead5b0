"""No silent empty extraction (issue 21): extractors that detect things report a detection rate per sequence (summary,
JSON report, meta), a sequence below 50% gets a warning line, one without any detection is a one-line error naming
the sequence and the fixes unless ``--allow-empty``; ``dataset check`` flags empty pose sequences.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from conftest import moving_pattern, write_video
from v2vcli.errors import DatasetError
from v2vcli.extractor import Extractor
from v2vcli.hookspecs import hookimpl


class SpotExtractor(Extractor):
    """Detects a 'spot' in frames whose index is in ``hits`` (by frame index, set per test)."""

    kind: ClassVar[str] = "spot"
    backend: ClassVar[str] = "every"
    default: ClassVar[bool] = True
    outputs: ClassVar[tuple[str, ...]] = ("spot",)
    detects: ClassVar[str] = "spot"
    hits: ClassVar[set[int]] = set()

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        mask = np.zeros(frame.shape[:2], np.uint8)
        if index in self.hits:
            mask[:2, :2] = 1
        return {"spot": mask}

    def detected(self, outputs: dict[str, Any]) -> bool:
        return bool(outputs["spot"].any())


class OtherSpot(SpotExtractor):
    backend: ClassVar[str] = "other"
    default: ClassVar[bool] = False


class Plugin:
    @hookimpl
    def v2v_register_extractors(self, register: Any) -> None:
        register("spot", "every", SpotExtractor)
        register("spot", "other", OtherSpot)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "walk.mp4", moving_pattern(t=6, h=32, w=48))


def test_rate_in_report_meta_and_summary_with_a_warning_below_half(register_plugin: Any, cli: Any, video: Path,
                                                                   tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from v2vcli.extract import run_extraction

    register_plugin(Plugin())
    SpotExtractor.hits = {0, 1, 2, 3, 4}
    report = run_extraction("spot", [video], tmp_path / "a", progress=False)
    (seq,) = report.sequences
    assert (seq.detected, seq.detection_rate) == (5, round(5 / 6, 4))
    assert report.to_dict()["sequences"][0]["detection_rate"] == round(5 / 6, 4)
    meta = json.loads((tmp_path / "a" / "meta" / "spot.json").read_text())
    assert meta["sequences"]["walk"] == {"count": 6, "detected_frames": 5, "detection_rate": round(5 / 6, 4)}
    assert not [r for r in caplog.records if r.levelname == "WARNING"]

    SpotExtractor.hits = {0, 3}
    result = cli("extract", "spot", video, "-o", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert "detected" in result.output and "2/6 (33%)" in result.output
    text = " ".join(result.output.split())  # the log handler wraps long lines
    assert text.count("WARNING") == 1 and "walk: spot/every found a spot in only 2 of 6 frames (33%)" in text
    assert "try another backend (--backend other)" in text
    again = run_extraction("spot", [video], tmp_path / "b", progress=False)  # skipped: the rate comes from meta
    assert again.sequences[0].status == "skipped" and again.sequences[0].detection_rate == round(2 / 6, 4)


def test_nothing_detected_is_an_error_unless_allow_empty(register_plugin: Any, cli: Any, video: Path,
                                                         tmp_path: Path) -> None:
    from v2vcli.extract import run_extraction

    register_plugin(Plugin())
    SpotExtractor.hits = set()
    with pytest.raises(DatasetError, match="no spot found in any of the 6 frames of 'walk' by spot/every"):
        run_extraction("spot", [video], tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds" / "spot" / "walk").exists() and not (tmp_path / "ds" / "frames" / "walk").exists()
    with pytest.raises(DatasetError, match="no spot"):  # through worker processes too
        run_extraction("spot", [video], tmp_path / "ds", progress=False, workers=2)
    report = run_extraction("spot", [video], tmp_path / "ds", progress=False, allow_empty=True)
    assert report.sequences[0].detection_rate == 0.0


def test_pose_on_a_clip_without_people(cli: Any, tiny_video: Path, tmp_path: Path) -> None:
    """The default (mediapipe) pose on a moving texture: one Error line; --allow-empty keeps it with a warning;
    `dataset check` then flags the empty pose sequence."""
    pytest.importorskip("mediapipe")
    ds = tmp_path / "ds"
    result = cli("extract", "pose", tiny_video, "-o", ds)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: no person found in any of the 8 frames of 'clip' by pose/mediapipe")
    assert "--backend detectron2" in lines[0] and "--resize" in lines[0] and "--allow-empty" in lines[0]

    result = cli("extract", "pose", tiny_video, "-o", ds, "--allow-empty")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "found a person in only 0 of 8 frames (0%)" in text and "0/8 (0%)" in text
    assert json.loads((ds / "meta" / "pose.json").read_text())["sequences"]["clip"]["detection_rate"] == 0.0

    check = cli("dataset", "check", ds)
    assert check.exit_code == 1 and "empty pose" in check.output, check.output
    from v2vcli.data.check import check_dataset

    fast = check_dataset(ds, decode=False)  # no JSON read: the recorded rate decides
    assert [p.problem for p in fast.problems] == ["empty pose"]
