"""``v2v dataset check | split | import-vid2vid``: validation catches broken datasets, splits, the vid2vid importer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from conftest import moving_pattern, write_video

from v2vcli.data.check import check_dataset
from v2vcli.data.importers import import_vid2vid
from v2vcli.data.layout import Dataset, LabelClass, LabelSet
from v2vcli.data.splits import make_splits
from v2vcli.errors import DatasetError
from v2vcli.extract import run_extraction
from v2vcli.extractor import Extractor, FlowField
from v2vcli.hookspecs import hookimpl
from v2vcli.io.files import read_instance, read_json, read_label, write_flow, write_image, write_label

THREE = LabelSet("three", [LabelClass(0, "low", (0, 0, 0)), LabelClass(1, "mid", (90, 90, 90)),
                           LabelClass(2, "high", (200, 200, 200))])


class ThreeLevelSeg(Extractor):
    kind: ClassVar[str] = "seg"
    backend: ClassVar[str] = "test-three"
    outputs: ClassVar[tuple[str, ...]] = ("seg", "inst")

    def label_set(self) -> LabelSet:
        return THREE

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        seg = np.digitize(frame.mean(axis=2), [85, 170]).astype(np.uint8)
        return {"seg": seg, "inst": (seg.astype(np.uint16) * 1000 + 1)}


class ZeroFirstFlow(Extractor):
    kind: ClassVar[str] = "flow"
    backend: ClassVar[str] = "test-shift"
    outputs: ClassVar[tuple[str, ...]] = ("flow",)

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        h, w = frame.shape[:2]
        flow = np.zeros((h, w, 2), np.float32) if index == 0 else np.full((h, w, 2), -2.0, np.float32)
        return {"flow": FlowField(flow, np.full((h, w), 0 if index == 0 else 255, np.uint8))}


class Plugin:
    @hookimpl
    def v2v_register_extractors(self, register: Any) -> None:
        register("seg", "test-three", ThreeLevelSeg)
        register("flow", "test-shift", ZeroFirstFlow)


@pytest.fixture
def dataset(register_plugin: Any, tmp_path: Path) -> Path:
    register_plugin(Plugin())
    videos = [write_video(tmp_path / "alpha.mp4", moving_pattern(t=5, seed=1)),
              write_video(tmp_path / "beta.mp4", moving_pattern(t=4, seed=2))]
    root = tmp_path / "ds"
    run_extraction("seg", videos, root, backend="test-three")
    run_extraction("flow", [root], root, backend="test-shift")
    return root


def test_check_passes_on_a_fresh_dataset(dataset: Path, cli: Any) -> None:
    report = check_dataset(dataset)
    assert report.ok, report.problems
    assert report.counts == {"alpha": {"flow": 5, "frames": 5, "inst": 5, "seg": 5},
                             "beta": {"flow": 4, "frames": 4, "inst": 4, "seg": 4}}
    assert report.sizes == {"alpha": [64, 48], "beta": [64, 48]} and report.files_checked == 36
    result = cli("dataset", "check", dataset)
    assert result.exit_code == 0 and "ok" in result.output


def test_check_catches_missing_out_of_range_mismatched_and_corrupt_files(dataset: Path, cli: Any) -> None:
    (dataset / "frames" / "alpha" / "000002.jpg").unlink()
    ids = read_label(dataset / "seg" / "alpha" / "000001.png")
    ids[0, 0] = 7  # the label set has ids 0..2
    write_label(dataset / "seg" / "alpha" / "000001.png", ids)
    write_image(dataset / "frames" / "beta" / "000003.jpg", np.zeros((40, 64, 3), np.uint8))
    inst_png = dataset / "inst" / "beta" / "000001.png"
    inst_png.write_bytes(inst_png.read_bytes()[: inst_png.stat().st_size // 2])  # truncated
    write_flow(dataset / "flow" / "beta" / "000000.npz", np.ones((48, 64, 2), np.float32),
               np.zeros((48, 64), np.uint8))
    (dataset / "seg" / "beta" / "000009.png").write_bytes((dataset / "seg" / "beta" / "000000.png").read_bytes())
    (dataset / "seg" / "gamma").mkdir()

    report = check_dataset(dataset, progress=False)
    found = {(p.seq, p.modality, p.problem) for p in report.problems}
    assert ("alpha", "frames", "missing frames") in found
    assert ("alpha", "seg", "label id out of range") in found
    assert ("beta", "frames", "size mismatch") in found
    assert ("beta", "inst", "corrupt file") in found
    assert ("beta", "flow", "bad flow file") in found
    assert ("beta", "seg", "extra frames") in found
    assert ("gamma", "seg", "unknown sequence") in found
    detail = next(p.detail for p in report.problems if p.problem == "label id out of range")
    assert "id(s) 7" in detail and "'three'" in detail

    result = cli("dataset", "check", dataset)
    assert result.exit_code == 1
    for text in ("missing frames", "label id out of range", "size mismatch", "corrupt file", "problem(s)"):
        assert text in result.output
    as_json = cli("dataset", "check", dataset, "--json")
    assert as_json.exit_code == 1 and len(json.loads(as_json.stdout)["problems"]) == len(report.problems)
    quick = check_dataset(dataset, decode=False)  # names and counts only
    assert {p.problem for p in quick.problems} == {"missing frames", "extra frames", "unknown sequence"}


def test_check_reports_unfinished_sequences_and_bad_splits(dataset: Path) -> None:
    meta = read_json(dataset / "meta" / "seg.json")
    del meta["sequences"]["beta"]
    (dataset / "meta" / "seg.json").write_text(json.dumps(meta))
    (dataset / "splits.json").write_text(json.dumps({"train": ["alpha", "beta"], "val": ["beta", "zeta"]}))
    found = {(p.seq, p.problem) for p in check_dataset(dataset).problems}
    assert found == {("beta", "unfinished"), ("beta", "bad splits"), ("zeta", "bad splits")}


def test_check_of_a_non_dataset_is_an_error(tmp_path: Path, cli: Any) -> None:
    result = cli("dataset", "check", tmp_path)
    assert result.exit_code == 1 and "not a v2v dataset" in result.stderr


def test_split(dataset: Path, cli: Any) -> None:
    result = cli("dataset", "split", dataset, "--val", "0.5", "--seed", "3", "--json")
    assert result.exit_code == 0
    splits = json.loads(result.stdout)
    assert sorted(splits["train"] + splits["val"]) == ["alpha", "beta"] and len(splits["val"]) == 1
    assert Dataset(dataset).splits() == splits
    assert check_dataset(dataset).ok
    many = [f"s{i:02d}" for i in range(20)]
    a, b = make_splits(many, 0.1, seed=1), make_splits(many, 0.1, seed=1)
    assert a == b and len(a["val"]) == 2 and make_splits(many, 0.1, seed=2) != a
    assert len(make_splits(many, 5)["val"]) == 5 and make_splits(many, 0)["val"] == []
    with pytest.raises(DatasetError, match="keep one for train"):
        make_splits(["only"], 0.1)
    assert cli("dataset", "split", dataset, "--val", "2").exit_code == 1


def _fake_vid2vid(root: Path, max_id: int = 33) -> Path:
    """train_A/B/inst with two sequences (jpg frames) and test_A/B with one (png frames)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for part, seqs in (("train", {"stuttgart_00": 3, "stuttgart_01": 2}), ("test", {"stuttgart_00": 2})):
        for seq, n in seqs.items():
            for i in range(n):
                name = f"{seq}_{i:06d}"
                ids = rng.integers(0, max_id + 1, (24, 32)).astype(np.uint8)
                (root / f"{part}_A" / seq).mkdir(parents=True, exist_ok=True)
                Image.fromarray(ids, mode="L").save(root / f"{part}_A" / seq / f"{name}_gtFine_labelIds.png")
                ext = "jpg" if part == "train" else "png"
                write_image(root / f"{part}_B" / seq / f"{name}_leftImg8bit.{ext}",
                            rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
                if part == "train":
                    inst = (ids.astype(np.uint16) * 1000 + 7)
                    (root / "train_inst" / seq).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(inst.astype(np.uint16)).save(root / "train_inst" / seq / f"{name}.png")
    return root


def test_import_vid2vid(tmp_path: Path, cli: Any) -> None:
    src = _fake_vid2vid(tmp_path / "vid2vid")
    ds = tmp_path / "ds"
    result = cli("dataset", "import-vid2vid", src, ds, "--fps", "17", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["label_set"] == "cityscapes"
    assert report["splits"] == {"train": ["stuttgart_00", "stuttgart_01"], "val": ["test_stuttgart_00"]}
    dataset = Dataset(ds)
    assert dataset.sequences() == ["stuttgart_00", "stuttgart_01", "test_stuttgart_00"]
    assert dataset.frames_meta()["format"] == "jpg"
    assert dataset.frames_meta()["sequences"]["stuttgart_00"]["fps"] == 17.0
    assert dataset.label_set().id_of("car") == 26 and dataset.label_set().num_classes == 35
    # label ids kept byte for byte; jpg frames copied; png frames re-encoded as jpg; 16-bit instances
    first = src / "train_A" / "stuttgart_00" / "stuttgart_00_000000_gtFine_labelIds.png"
    assert (ds / "seg" / "stuttgart_00" / "000000.png").read_bytes() == first.read_bytes()
    assert (ds / "frames" / "stuttgart_01" / "000001.jpg").read_bytes() == (
        src / "train_B" / "stuttgart_01" / "stuttgart_01_000001_leftImg8bit.jpg").read_bytes()
    assert (ds / "frames" / "test_stuttgart_00" / "000001.jpg").is_file()
    inst = read_instance(ds / "inst" / "stuttgart_00" / "000002.png")
    ids = read_label(ds / "seg" / "stuttgart_00" / "000002.png")
    np.testing.assert_array_equal(inst, ids.astype(np.uint16) * 1000 + 7)
    assert not (ds / "inst" / "test_stuttgart_00").exists()
    report_check = check_dataset(ds)
    assert {(p.seq, p.modality, p.problem) for p in report_check.problems} == {
        ("test_stuttgart_00", "inst", "missing sequence")}  # the test split has no instance maps
    again = cli("dataset", "import-vid2vid", src, ds)
    assert again.exit_code == 1 and "not empty" in again.stderr


def test_import_vid2vid_generic_label_set_and_errors(tmp_path: Path) -> None:
    src = _fake_vid2vid(tmp_path / "big", max_id=60)
    report = import_vid2vid(src, tmp_path / "ds", label_set="auto")
    assert report.label_set == "generic"
    assert Dataset(tmp_path / "ds").label_set().num_classes == 61
    with pytest.raises(DatasetError, match="does not fit the Cityscapes"):
        import_vid2vid(src, tmp_path / "ds2", label_set="cityscapes")
    assert not (tmp_path / "ds2").exists()

    bad = _fake_vid2vid(tmp_path / "bad")
    next((bad / "train_B" / "stuttgart_01").iterdir()).unlink()
    with pytest.raises(DatasetError, match="2 label maps in train_A but 1 frames"):
        import_vid2vid(bad, tmp_path / "ds3")
    rgb = _fake_vid2vid(tmp_path / "rgb")
    label = next((rgb / "train_A" / "stuttgart_01").iterdir())
    write_image(label, np.zeros((24, 32, 3), np.uint8))
    with pytest.raises(DatasetError, match="not a single-channel label-id map"):
        import_vid2vid(rgb, tmp_path / "ds4")
    assert not (tmp_path / "ds4").exists()
    with pytest.raises(DatasetError, match="does not look like a vid2vid dataset"):
        import_vid2vid(tmp_path / "ds", tmp_path / "ds5")
