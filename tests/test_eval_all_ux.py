"""Issue 23: `v2v eval all` leaves synthesize's previews out, pairs names case-insensitively when unambiguous, exits
non-zero when no metric ran, wraps long reasons instead of cutting them, and offers --resize-fake."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from v2vcli.errors import DatasetError, V2VError
from v2vcli.hookspecs import hookimpl
from v2vcli.metric import Metric, MetricResult


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from v2v_plugins.world import write_world

    return write_world(tmp_path_factory.mktemp("world") / "ds", seed=5, size=(64, 48), frames=3, sequences=2, val=0,
                       frames_format="png", progress=False)


def _copy_frames(world: Path, out: Path, rename: dict[str, str] | None = None,
                 size: tuple[int, int] | None = None, only: str | None = None) -> Path:
    import cv2

    from v2vcli.io.files import read_image, write_image

    for seq_dir in sorted((world / "frames").iterdir()):
        if only is not None and seq_dir.name != only:
            continue
        name = (rename or {}).get(seq_dir.name, seq_dir.name)
        for f in sorted(seq_dir.glob("*.png")):
            img = read_image(f)
            if size is not None:
                img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            write_image(out / name / f.name, img)
    return out


def test_previews_are_not_sequences(world: Path, tmp_path: Path) -> None:
    from v2vcli.io.inputs import resolve_input

    fake = _copy_frames(world, tmp_path / "fake")
    _copy_frames(world, tmp_path / "fake", rename={"world_000": "world_000_preview", "world_001": "world_001_preview"})
    assert resolve_input(fake).names() == ["world_000", "world_001"]
    # a sequence whose name merely ends in _preview (no sibling without it) is still a sequence
    lone = _copy_frames(world, tmp_path / "lone", rename={"world_000": "street_preview"}, only="world_000")
    assert resolve_input(lone).names() == ["street_preview"]


def test_previews_left_out_of_eval_all(cli: Any, world: Path, tmp_path: Path) -> None:
    fake = _copy_frames(world, tmp_path / "fake")
    _copy_frames(world, tmp_path / "fake", rename={"world_000": "world_000_preview"}, size=(128, 48), only="world_000")
    res = cli("eval", "all", "--real", world, "--fake", fake, "-o", tmp_path / "r", "--metric", "psnr", "--device",
              "cpu", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert sorted(report["metrics"]["psnr"]["per_sequence"]) == ["world_000", "world_001"]


def test_pairing_is_case_insensitive_when_unambiguous(world: Path, tmp_path: Path) -> None:
    from v2vcli.io.inputs import InputSequence, pair_inputs, resolve_input

    fake = _copy_frames(world, tmp_path / "fake", rename={"world_000": "World_000", "world_001": "WORLD_001"})
    pairs = pair_inputs(resolve_input(world), resolve_input(fake))
    assert sorted((r.name, f.name) for r, f in pairs) == [("world_000", "World_000"), ("world_001", "WORLD_001")]

    from v2vcli.io.inputs import EvalInput

    def coll(*names: str) -> EvalInput:
        return EvalInput(tmp_path, "collection", tuple(InputSequence(n, tmp_path / n, "frames") for n in names))

    # exact names win; an ambiguous case-insensitive match is no match
    assert [(r.name, f.name) for r, f in pair_inputs(coll("ab", "AB"), coll("AB"))] == [("AB", "AB")]
    with pytest.raises(DatasetError, match="case-insensitively"):
        pair_inputs(coll("ab", "AB"), coll("Ab"))
    with pytest.raises(DatasetError, match="both match"):
        pair_inputs(coll("ab"), coll("AB", "aB"))


def test_exit_code_when_every_metric_is_skipped(cli: Any, world: Path, tmp_path: Path) -> None:
    fake = _copy_frames(world, tmp_path / "fake")
    res = cli("eval", "all", "--real", world, "--fake", fake, "-o", tmp_path / "r", "--metric", "fid", "--metric",
              "lpips", "--device", "cpu")
    assert res.exit_code == 1
    assert "Error: no metric could be computed (2 skipped, 0 failed)" in res.output
    assert "fid (skipped)" in (tmp_path / "r" / "report.md").read_text()  # the report is still written
    ok = cli("eval", "all", "--real", world, "--fake", fake, "-o", tmp_path / "r2", "--metric", "fid", "--metric",
             "psnr", "--device", "cpu")
    assert ok.exit_code == 0, ok.output


LONG_REASON = ("this metric needs conditioning that the inputs do not have, and the explanation of what to pass "
               "instead is deliberately long so that a table would have cut it off mid-word: pass --set "
               "wordy.source=somewhere-specific and try again with the endmarker")


class Wordy(Metric):
    name = "wordy"

    def compute(self, real: Any, fake: Any) -> MetricResult:
        raise V2VError(LONG_REASON)


class _WordyPlugin:
    @hookimpl
    def v2v_register_metrics(self, register: Any) -> None:
        register("wordy", Wordy)


def test_table_wraps_long_reasons(cli: Any, world: Path, tmp_path: Path, register_plugin: Any) -> None:
    register_plugin(_WordyPlugin())
    fake = _copy_frames(world, tmp_path / "fake")
    res = cli("eval", "all", "--real", world, "--fake", fake, "-o", tmp_path / "r", "--metric", "psnr", "--metric",
              "wordy", "--device", "cpu")
    assert res.exit_code == 0, res.output
    flat = re.sub(r"[\s│┃|]+", "", res.stdout)
    assert re.sub(r"\s+", "", LONG_REASON) in flat  # every word is there, wrapped over lines


def test_resize_fake_in_eval_all(cli: Any, world: Path, tmp_path: Path) -> None:
    same_aspect = _copy_frames(world, tmp_path / "half", size=(32, 24))
    res = cli("eval", "all", "--real", world, "--fake", same_aspect, "-o", tmp_path / "r0", "--metric", "psnr",
              "--device", "cpu")
    assert res.exit_code == 1 and "--resize-fake" in (tmp_path / "r0" / "report.md").read_text()
    res = cli("eval", "all", "--real", world, "--fake", same_aspect, "-o", tmp_path / "r1", "--metric", "psnr",
              "--resize-fake", "--device", "cpu")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert report["options"]["psnr"]["resize_fake"] is True
    assert not any("aspect" in w for w in report["metrics"]["psnr"]["warnings"])
    wide = _copy_frames(world, tmp_path / "wide", size=(96, 24))
    res = cli("eval", "all", "--real", world, "--fake", wide, "-o", tmp_path / "r2", "--metric", "psnr",
              "--resize-fake", "--device", "cpu")
    assert res.exit_code == 0, res.output
    warnings = json.loads((tmp_path / "r2" / "report.json").read_text())["metrics"]["psnr"]["warnings"]
    assert sum("aspect ratios differ" in w for w in warnings) == 2  # once per sequence
    assert np.isfinite(json.loads((tmp_path / "r2" / "report.json").read_text())["summary"]["psnr"]["value"])
