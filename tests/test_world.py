"""The synthetic world (plugin 'world'): determinism, exact flow, labels, the dataset layout, `v2v demo world`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from v2v_plugins.world import render_sequence, world_label_set, write_world
from v2v_plugins.world.scene import CLASS_ID, INSTANCE_FACTOR
from v2vcli.data.layout import Dataset
from v2vcli.io.files import read_flow, read_image, read_instance, read_label, read_json
from v2vcli.warp import warp_numpy


def _psnr_warped(prev: np.ndarray, cur: np.ndarray, flow: np.ndarray, mask: np.ndarray) -> float:
    """PSNR of warp(prev, flow) against cur on ``mask`` (docs/architecture.md's warp: bilinear, border)."""
    warped = warp_numpy(prev.astype(np.float32), flow)
    mse = float(np.mean((warped - cur.astype(np.float32))[mask] ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- library -------------------------------------------------------------------------------------------------------
def test_render_sequence_arrays_and_labels() -> None:
    seq = render_sequence(seed=1, size=(96, 48), frames=5)
    t, h, w = 5, 48, 96
    assert seq.frames.shape == (t, h, w, 3) and seq.frames.dtype == np.uint8
    assert seq.seg.shape == (t, h, w) and seq.seg.dtype == np.uint8
    assert seq.inst.shape == (t, h, w) and seq.inst.dtype == np.uint16
    assert seq.flow.shape == (t, h, w, 2) and seq.flow.dtype == np.float32
    assert seq.conf.shape == (t, h, w) and seq.conf.dtype == np.uint8
    ids = {c.id for c in world_label_set().classes}
    assert set(np.unique(seq.seg).tolist()) <= ids
    # a street: sky, road, buildings and cars are all there
    for name in ("sky", "road", "building", "car"):
        assert (seq.seg == CLASS_ID[name]).any(), name
    # instances: stuff holds its class id, each car 1000 * car + k, and car pixels are exactly the car class
    car = seq.seg == CLASS_ID["car"]
    np.testing.assert_array_equal(seq.inst[~car], seq.seg[~car])
    assert np.all(seq.inst[car] // INSTANCE_FACTOR == CLASS_ID["car"]) and np.all(seq.inst[car] % INSTANCE_FACTOR > 0)
    assert len(np.unique(seq.inst[car])) >= 2  # several cars, told apart
    # frame 0: zero flow, zero confidence; later frames: mostly confident, some occlusions
    assert not seq.flow[0].any() and not seq.conf[0].any()
    assert set(np.unique(seq.conf[1:]).tolist()) == {0, 255}
    assert 0.5 < float(np.mean(seq.conf[1:] == 255)) < 1.0
    assert np.abs(seq.flow[1:]).max() > 1.0  # the camera moves


def test_same_seed_same_world_other_seed_differs() -> None:
    a = render_sequence(seed=3, size=(64, 64), frames=3, index=1)
    b = render_sequence(seed=3, size=(64, 64), frames=3, index=1)
    for name in ("frames", "seg", "inst", "flow", "conf"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    c = render_sequence(seed=4, size=(64, 64), frames=3, index=1)
    d = render_sequence(seed=3, size=(64, 64), frames=3, index=2)
    assert not np.array_equal(a.frames, c.frames) and not np.array_equal(a.seg, c.seg)
    assert not np.array_equal(a.frames, d.frames)


@pytest.mark.parametrize(("size", "seed", "frames"), [((64, 64), 0, 8), ((128, 64), 5, 8), ((96, 48), 8, 6),
                                                       ((512, 256), 2, 3)])
def test_exact_flow_warps_previous_frame(size: tuple[int, int], seed: int, frames: int) -> None:
    seq = render_sequence(seed=seed, size=size, frames=frames)
    for t in range(1, frames):
        ok = seq.conf[t] == 255
        assert ok.mean() > 0.5
        exact = _psnr_warped(seq.frames[t - 1], seq.frames[t], seq.flow[t], ok)
        still = _psnr_warped(seq.frames[t - 1], seq.frames[t], np.zeros_like(seq.flow[t]), ok)
        assert exact >= 30.0, (t, exact)
        assert exact > still + 3.0, (t, exact, still)  # the motion is real and the flow explains it


def test_flow_is_exact_for_labels_too() -> None:
    """Nearest-neighbour warping of seg t-1 by the flow gives seg t on confident pixels (up to texture edges)."""
    seq = render_sequence(seed=6, size=(128, 64), frames=4)
    h, w = seq.seg.shape[1:]
    gy, gx = np.mgrid[0:h, 0:w]
    for t in range(1, 4):
        x = np.clip(np.rint(gx + seq.flow[t, ..., 0]).astype(int), 0, w - 1)
        y = np.clip(np.rint(gy + seq.flow[t, ..., 1]).astype(int), 0, h - 1)
        ok = seq.conf[t] == 255
        same = seq.seg[t - 1][y, x] == seq.seg[t]
        assert same[ok].mean() > 0.97
        assert (seq.inst[t - 1][y, x] == seq.inst[t])[ok & (seq.seg[t] == CLASS_ID["car"])].mean() > 0.97


def test_write_world_layout(tmp_path: Path) -> None:
    from v2vcli.data.check import check_dataset

    root = write_world(tmp_path / "ds", seed=0, size=(64, 64), frames=4, sequences=3, val=1)
    assert root == (tmp_path / "ds").absolute()
    ds = Dataset(root)
    fm = ds.frames_meta()
    assert fm["format"] == "jpg"
    assert list(fm["sequences"]) == ["world_000", "world_001", "world_002"]
    for k, (name, entry) in enumerate(fm["sequences"].items()):
        assert entry["size"] == [64, 64] and entry["count"] == 4 and entry["source"] == "world"
        assert entry["fps"] == 15.0 and entry["options"]["seed"] == 0 and entry["options"]["index"] == k
        for kind, ext in (("frames", ".jpg"), ("seg", ".png"), ("inst", ".png"), ("flow", ".npz")):
            names = sorted(p.name for p in ds.modality_dir(kind, name).iterdir())
            assert names == [f"{i:06d}{ext}" for i in range(4)], (kind, names)
    labels = ds.label_set("seg")
    assert [c.name for c in labels.classes] == [name for name, _ in
                                                sorted(CLASS_ID.items(), key=lambda kv: kv[1])]
    seg_meta = ds.kind_meta("seg")
    assert seg_meta is not None and seg_meta["foreground"] == ["car"]
    assert ds.kind_meta("flow")["extractor"] == "world/exact"  # type: ignore[index]
    assert ds.kind_meta("inst")["instance_factor"] == INSTANCE_FACTOR  # type: ignore[index]
    splits = read_json(root / "splits.json")
    assert splits == {"train": ["world_000", "world_001"], "val": ["world_002"]}
    assert sorted(splits["train"] + splits["val"]) == ds.sequences()

    valid = {c.id for c in labels.classes}
    for name in ds.sequences():
        for i in range(4):
            assert set(np.unique(read_label(ds.frame_path("seg", name, i))).tolist()) <= valid
            assert read_image(ds.frame_path("frames", name, i)).shape == (64, 64, 3)
            assert read_instance(ds.frame_path("inst", name, i)).shape == (64, 64)
        flow0, conf0 = read_flow(ds.frame_path("flow", name, 0))
        assert not flow0.any() and not conf0.any()
    report = check_dataset(root)
    assert report.ok, report.problems
    assert not list(tmp_path.glob(".*partial*"))  # the temporary folder is gone


def test_write_world_is_byte_identical(tmp_path: Path) -> None:
    a = write_world(tmp_path / "a", seed=7, size=(64, 48), frames=3, sequences=2, val=1)
    b = write_world(tmp_path / "b", seed=7, size=(64, 48), frames=3, sequences=2, val=1)
    c = write_world(tmp_path / "c", seed=8, size=(64, 48), frames=3, sequences=2, val=1)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert fa == fb
    assert fa.keys() == fc.keys()
    assert fa["frames/world_000/000001.jpg"] != fc["frames/world_000/000001.jpg"]


def test_write_world_replaces_only_world_datasets(tmp_path: Path) -> None:
    from v2vcli.errors import ConfigError, DatasetError

    root = write_world(tmp_path / "ds", seed=0, size=(64, 64), frames=2, sequences=3, val=1)
    write_world(root, seed=1, size=(64, 64), frames=3, sequences=2, val=0)
    ds = Dataset(root)
    assert ds.sequences() == ["world_000", "world_001"]
    assert not ds.modality_dir("frames", "world_002").exists()
    assert read_json(root / "splits.json") == {"train": ["world_000", "world_001"], "val": []}

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not empty"):
        write_world(other, seed=0, size=(64, 64), frames=2, sequences=1, val=0)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    with pytest.raises(ConfigError, match="size"):
        write_world(tmp_path / "x", size=(16, 16), frames=2, sequences=1, val=0)
    with pytest.raises(ConfigError, match="--val"):
        write_world(tmp_path / "x", size=(64, 64), frames=2, sequences=2, val=2)
    assert not (tmp_path / "x").exists()


def test_plugin_module_is_light() -> None:
    code = ("import sys, v2v_plugins.world; "
            "print(sorted(m for m in ('torch', 'cv2', 'mediapipe') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- CLI -----------------------------------------------------------------------------------------------------------
def test_cli_demo_world(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = ["demo", "world", "--seed", "4", "--size", "96x48", "--frames", "4", "--sequences", "2", "--val", "1"]
    res = cli(*args, "--out", str(tmp_path / "a"), "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["sequences"] == ["world_000", "world_001"] and summary["size"] == [96, 48]
    assert summary["splits"] == {"train": ["world_000"], "val": ["world_001"]}
    res = cli(*args, "--out", str(tmp_path / "b"))
    assert res.exit_code == 0 and "wrote 2 sequences" in res.stdout
    assert _files(tmp_path / "a") == _files(tmp_path / "b")  # same seed: byte-identical dataset

    # the stored (JPEG) frames and float16 flow still warp at >= 30 dB, and equal the library's arrays
    ds = Dataset(tmp_path / "a")
    ref = render_sequence(seed=4, size=(96, 48), frames=4, index=1)
    for i in range(1, 4):
        flow, conf = read_flow(ds.frame_path("flow", "world_001", i))
        np.testing.assert_array_equal(conf, ref.conf[i])
        np.testing.assert_allclose(flow, ref.flow[i], atol=0.05)
        np.testing.assert_array_equal(read_label(ds.frame_path("seg", "world_001", i)), ref.seg[i])
        prev = read_image(ds.frame_path("frames", "world_001", i - 1))
        cur = read_image(ds.frame_path("frames", "world_001", i))
        assert _psnr_warped(prev, cur, flow, conf == 255) >= 30.0

    res = cli("demo", "world", "--out", str(tmp_path / "png"), "--size", "64x64", "--frames", "2", "--sequences",
              "1", "--val", "0", "--frames-format", "png")
    assert res.exit_code == 0, res.output
    png = Dataset(tmp_path / "png")
    assert png.frames_meta()["format"] == "png"
    np.testing.assert_array_equal(read_image(png.frame_path("frames", "world_000", 1, ".png")),
                                  render_sequence(seed=0, size=(64, 64), frames=2).frames[1])


@pytest.mark.parametrize(("extra", "message"), [
    (["--size", "64by64"], "is not WxH"),
    (["--size", "4096x64"], "out of range"),
    (["--sequences", "2", "--val", "2"], "--val 2"),
    (["--frames", "0"], "--frames 0"),
    (["--frames-format", "gif"], "not supported"),
])
def test_cli_demo_world_errors(cli, tmp_path: Path, extra: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    res = cli("demo", "world", "--out", str(tmp_path / "ds"), "--frames", "2", *extra)
    assert res.exit_code == 1
    assert res.stderr.startswith("Error: ") and message in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "ds").exists()
