"""Training clips (v2vcli.data.clips): shared augmentation, stride and flow composition, exact resume, short
sequences, on-the-fly flow, unknown label ids named by sequence and frame.

``make_toy_dataset`` (also used by the training tests) writes a dataset whose motion is known exactly: a texture
translating by ``bg`` pixels per frame and a square "car" moving by ``car`` pixels per frame, with exact backward
flow, seg (sky/road/car) and instance maps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from v2vcli.config import DataConfig
from v2vcli.data.clips import ClipBatchSampler, ClipDataset, ClipSchedule, collate_clips, make_loader
from v2vcli.errors import ConfigError, DatasetError
from v2vcli.hookspecs import hookimpl
from v2vcli.io.files import write_flow, write_image, write_instance, write_label
from v2vcli.warp import warp_numpy

TOY_CLASSES = [("sky", (70, 130, 180)), ("road", (128, 64, 128)), ("car", (0, 0, 142))]


def make_toy_dataset(root: Path, *, sequences: int | dict[str, int] = 2, frames: int = 8,
                     size: tuple[int, int] = (48, 32), fmt: str = "png", seed: int = 0, bg: tuple[int, int] = (1, 0),
                     car: tuple[int, int] = (2, 1), flow: bool = True, val: list[str] | None = None) -> Path:
    """A v2v dataset with exactly known motion (see the module docstring). ``sequences``: a count or {name: frames}."""
    import cv2

    w, h = size
    counts = {f"seq{i}": frames for i in range(sequences)} if isinstance(sequences, int) else dict(sequences)
    rng = np.random.default_rng(seed)
    meta: dict[str, Any] = {"format": fmt, "sequences": {}}
    for si, (seq, n) in enumerate(counts.items()):
        pad = max(abs(bg[0]), abs(bg[1])) * n + 4
        small = rng.integers(0, 256, size=((h + 2 * pad) // 3 + 2, (w + 2 * pad) // 3 + 2, 3)).astype(np.uint8)
        tex = cv2.resize(small, (w + 2 * pad, h + 2 * pad), interpolation=cv2.INTER_CUBIC)
        car_col = np.array([230, 40 + 30 * si, 40], np.uint8)
        for t in range(n):
            # content moves by +bg per frame: pixel p at t shows what was at p - bg at t-1
            x0, y0 = pad - bg[0] * t, pad - bg[1] * t
            img = tex[y0:y0 + h, x0:x0 + w].copy()
            seg = np.where(np.arange(h)[:, None] < h // 2, 0, 1).astype(np.uint8).repeat(w, 1)
            cx, cy = 4 + car[0] * t, h // 2 - 2 + car[1] * t
            cx0, cx1, cy0, cy1 = max(cx, 0), min(cx + 8, w), max(cy, 0), min(cy + 8, h)
            img[cy0:cy1, cx0:cx1] = car_col
            seg[cy0:cy1, cx0:cx1] = 2
            inst = seg.astype(np.uint16)
            inst[seg == 2] = 2001
            ext = ".png" if fmt == "png" else ".jpg"
            write_image(root / "frames" / seq / f"{t:06d}{ext}", img)
            write_label(root / "seg" / seq / f"{t:06d}.png", seg)
            write_instance(root / "inst" / seq / f"{t:06d}.png", inst)
            if flow:
                f = np.zeros((h, w, 2), np.float32)
                conf = np.zeros((h, w), np.uint8)
                if t > 0:
                    f[...] = (-bg[0], -bg[1])
                    f[seg == 2] = (-car[0], -car[1])
                    conf[...] = 255
                write_flow(root / "flow" / seq / f"{t:06d}.npz", f, conf)
        meta["sequences"][seq] = {"fps": 10.0, "size": [w, h], "count": n, "source": "toy", "options": {}}
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "frames.json").write_text(json.dumps(meta))
    label_set = {"name": "toy", "classes": [{"id": i, "name": nm, "color": list(c)}
                                            for i, (nm, c) in enumerate(TOY_CLASSES)]}
    (root / "meta" / "seg.json").write_text(json.dumps({"extractor": "toy", "backend": "toy", "version": "1",
                                                         "options": {}, "label_set": label_set}))
    if val is not None:
        (root / "splits.json").write_text(json.dumps({"train": [s for s in counts if s not in val], "val": val}))
    return root


def data_cfg(root: Path, **kw: Any) -> DataConfig:
    base: dict[str, Any] = dict(root=str(root), inputs=["seg", "inst"], size=(32, 32), n_frames_total=4,
                                max_t_step=1, num_workers=0, flip=True, scale_range=(1.0, 1.5))
    base.update(kw)
    return DataConfig(**base)


def _warp_err(item: dict[str, Any]) -> tuple[float, float]:
    """Mean |x_t - warp(x_{t-1}, flow_t)| with the item's flow and with zero flow, away from the car's edges."""
    frames = item["frames"].astype(np.float32)
    errs, zero = [], []
    for t in range(1, frames.shape[0]):
        cur, prev = frames[t].transpose(1, 2, 0), frames[t - 1].transpose(1, 2, 0)
        fl = item["flow"][t].transpose(1, 2, 0)
        car = (item["inputs"]["seg"][t] == 2) | (item["inputs"]["seg"][t - 1] == 2)
        import cv2

        keep = cv2.erode((~car).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        keep[:3], keep[-3:], keep[:, :3], keep[:, -3:] = False, False, False, False
        errs.append(np.abs(warp_numpy(prev, fl) - cur)[keep].mean())
        zero.append(np.abs(prev - cur)[keep].mean())
    return float(np.mean(errs)), float(np.mean(zero))


def test_every_frame_gets_the_same_zoom_crop_flip(tmp_path: Path) -> None:
    root = make_toy_dataset(tmp_path / "ds", sequences=2, frames=8)
    ds = ClipDataset(data_cfg(root), history=2, seed=3)
    assert len(ds) == 2
    flipped = 0
    for epoch in range(6):
        item = ds[(epoch % 2, epoch, 4)]
        assert item["frames"].shape == (6, 3, 32, 32) and item["frames"].dtype == np.uint8
        assert item["inputs"]["seg"].shape == (6, 32, 32) and item["inputs"]["inst"].shape == (6, 32, 32)
        assert item["flow"].shape == (6, 2, 32, 32) and not item["flow"][0].any()
        err, zero = _warp_err(item)
        # the flow, resized/cropped/flipped with the frames, still maps each frame onto the next
        assert err < 0.35 * zero, (epoch, err, zero)
        # background flow: bg (1, 0) px scaled by the zoom, sign flipped with the image
        dx = float(np.median(item["flow"][1:, 0][item["inputs"]["seg"][1:] != 2]))
        flipped += dx > 0
        assert 1.0 - 1e-3 <= abs(dx) <= 1.5 + 1e-3  # source 48x32 covers 32x32 at zoom 1
    assert 0 < flipped < 6  # both orientations occur


def test_random_stride_composes_the_flow(tmp_path: Path) -> None:
    root = make_toy_dataset(tmp_path / "ds", sequences=1, frames=14)
    ds = ClipDataset(data_cfg(root, max_t_step=3, flip=False, scale_range=(1.0, 1.0)), history=1, seed=0)
    steps = set()
    for epoch in range(12):
        item = ds[(0, epoch, 3)]
        steps.add(item["step"])
        dx = float(np.median(item["flow"][1:, 0][item["inputs"]["seg"][1:] != 2]))
        assert dx == pytest.approx(-item["step"], abs=0.05)  # bg 1 px/frame, no zoom
        err, zero = _warp_err(item)
        assert err < 0.35 * zero
    assert steps == {1, 2, 3}


def test_schedule_doubles_the_starting_length_up_to_the_official_cap() -> None:
    """data.n_frames_total is the starting length (issue 19.2): street_512 on 30-frame sequences, niter_step 5."""
    from v2vcli.config import DataConfig

    street_512 = ClipSchedule.from_config(DataConfig(n_frames_total=6), 5, longest=30, n_past=2)
    assert [street_512.frames(e) for e in range(20)] == [6] * 5 + [12] * 5 + [24] * 5 + [28] * 5
    street_2048 = ClipSchedule.from_config(DataConfig(n_frames_total=4), 1, longest=30, n_past=2)
    assert [street_2048.frames(e) for e in range(6)] == [4, 8, 16, 28, 28, 28]
    long = ClipSchedule.from_config(DataConfig(n_frames_total=12), 5, longest=1000, n_past=2)
    assert long.cap == 126 and long.max_frames(40) == 126  # never more than 128 - (n_frames_G - 1)
    fixed = ClipSchedule.from_config(DataConfig(n_frames_total=6), 0, longest=30, n_past=2)
    assert {fixed.frames(e) for e in range(20)} == {6}


def test_keys_are_deterministic_and_sampler_resumes_exactly() -> None:
    sched = ClipSchedule(start=2, niter_step=2, cap=8)
    assert [sched.frames(e) for e in range(7)] == [2, 2, 4, 4, 8, 8, 8]
    full = list(ClipBatchSampler(10, 2, seed=1, schedule=sched, epochs=3))
    assert len(full) == 15 and full[0][0][1:] == (0, 2) and full[-1][0][1:] == (2, 4)
    resumed = list(ClipBatchSampler(10, 2, seed=1, schedule=sched, epochs=3, start_epoch=1, start_batch=3))
    assert resumed == full[8:]
    # 2 ranks x batch 1 see exactly what 1 rank x batch 2 sees
    r0 = list(ClipBatchSampler(10, 1, seed=1, schedule=sched, epochs=3, rank=0, world_size=2))
    r1 = list(ClipBatchSampler(10, 1, seed=1, schedule=sched, epochs=3, rank=1, world_size=2))
    assert [a + b for a, b in zip(r0, r1)] == full
    assert sorted(k[0] for b in full[:5] for k in b) == list(range(10))  # an epoch is a permutation
    with pytest.raises(ConfigError, match="fewer than one batch"):
        ClipBatchSampler(3, 2, seed=0, schedule=sched, epochs=1, world_size=2)


def test_same_key_same_clip_other_epoch_other_clip(tmp_path: Path) -> None:
    root = make_toy_dataset(tmp_path / "ds", sequences=1, frames=20)
    ds = ClipDataset(data_cfg(root, max_t_step=2), history=2, seed=5)
    a, b = ds[(0, 4, 4)], ds[(0, 4, 4)]
    assert all(np.array_equal(a[k], b[k]) for k in ("frames", "flow")) and a["start"] == b["start"]
    others = [ds[(0, e, 4)] for e in range(5, 9)]
    assert any(o["start"] != a["start"] or not np.array_equal(o["frames"], a["frames"]) for o in others)
    ev = ds[(0, -1, 4)]  # evaluation clip: from frame 0, stride 1, no randomness
    assert ev["start"] == 0 and ev["step"] == 1


def test_short_sequences_shorten_the_clip_or_are_left_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_toy_dataset(tmp_path / "ds", sequences={"long": 10, "short": 4, "tiny": 2})
    with caplog.at_level("WARNING"):
        ds = ClipDataset(data_cfg(root), history=2, seed=0)
    assert ds.sequences == ["long", "short"]
    assert "'tiny' has 2 frame(s)" in caplog.text
    long, short = ds[(0, 0, 6)], ds[(1, 0, 6)]
    assert long["frames"].shape[0] == 8 and short["frames"].shape[0] == 4
    batch = collate_clips([long, short])
    assert batch.frames.shape == (2, 4, 3, 32, 32) and batch.flow.shape == (2, 4, 2, 32, 32)
    assert batch.inputs["seg"].shape == (2, 4, 32, 32) and batch.seqs == ["long", "short"]
    moved = batch.to("cpu")
    assert moved.frames.dtype.is_floating_point and float(moved.frames.min()) >= -1 and float(moved.frames.max()) <= 1


def test_unknown_label_id_names_sequence_and_frame(tmp_path: Path) -> None:
    root = make_toy_dataset(tmp_path / "ds", sequences=2, frames=6)
    seg = np.full((32, 48), 1, np.uint8)
    seg[5, 7] = 9  # not in the toy label set (0, 1, 2)
    write_label(root / "seg" / "seq1" / "000003.png", seg)
    cfg = data_cfg(root, num_workers=2, flip=False, scale_range=(1.0, 1.0))
    ds = ClipDataset(cfg, history=2, seed=0)
    err = ds[(1, -1, 4)]
    assert isinstance(err, DatasetError)
    assert "sequence 'seq1' frame 3" in str(err) and "label id 9" in str(err)
    # through DataLoader workers the user still gets the one-line error, not a worker traceback
    sampler = ClipBatchSampler(len(ds), 2, seed=0, schedule=ClipSchedule(start=4), epochs=1)
    batches = [b for b in make_loader(ds, sampler, num_workers=2)]
    failed = [b for b in batches if isinstance(b, DatasetError)]
    assert failed and "sequence 'seq1' frame" in str(failed[0]) and "\n" not in str(failed[0])


def test_missing_modalities_are_errors(tmp_path: Path) -> None:
    root = make_toy_dataset(tmp_path / "ds", sequences=1, frames=4, flow=False)
    with pytest.raises(DatasetError, match="no flow/ modality"):
        ClipDataset(data_cfg(root), history=2)
    ClipDataset(data_cfg(root), history=2, need_flow=False)  # a model without flow does not need it
    with pytest.raises(DatasetError, match="no 'edges' modality"):
        ClipDataset(data_cfg(root, inputs=["seg", "edges"]), history=2, need_flow=False)
    with pytest.raises(DatasetError, match="does not exist"):
        ClipDataset(data_cfg(tmp_path / "nope"), history=2)


class _ConstantFlow:
    """A flow estimator plugin that says everything moved one pixel left-to-right."""

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        self.calls = 0

    def backward(self, cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
        assert cur.shape == prev.shape == (32, 32, 3) and cur.dtype == np.uint8
        return np.full(cur.shape[:2] + (2,), (-1.0, 0.5), np.float32)


class _FlowPlugin:
    __name__ = "toyflow"

    @hookimpl
    def v2v_register_flow_estimators(self, register: Any) -> None:
        register("toyflow", _ConstantFlow)


def test_flow_on_the_fly_from_a_registered_estimator(tmp_path: Path, register_plugin: Any) -> None:
    register_plugin(_FlowPlugin())
    root = make_toy_dataset(tmp_path / "ds", sequences=1, frames=6, flow=False)
    ds = ClipDataset(data_cfg(root, flow="toyflow"), history=2, seed=0)
    item = ds[(0, 0, 3)]
    assert not item["flow"][0].any()
    assert np.all(item["flow"][1:, 0] == -1.0) and np.all(item["flow"][1:, 1] == 0.5)
    with pytest.raises(Exception, match="unknown flow estimator 'nope'"):
        ClipDataset(data_cfg(root, flow="nope"), history=2)


def _with_densepose(root: Path, counts: dict[str, int], size: tuple[int, int] = (48, 32)) -> Path:
    """Add densepose/ IUV PNGs (RGB read: channel 2 = part index I) to a toy dataset: part I = 1 + column // 2."""
    w, h = size
    for seq, n in counts.items():
        for t in range(n):
            iuv = np.zeros((h, w, 3), np.uint8)
            iuv[..., 2] = np.minimum(1 + np.arange(w) // 2, 24)[None, :]
            iuv[..., 1] = 100 + t  # U
            iuv[..., 0] = 50  # V
            iuv[: h // 4] = 0  # background rows
            write_image(root / "densepose" / seq / f"{t:06d}.png", iuv)
    return root


def test_densepose_part_index_is_stretched_and_parts_drop_per_frame(tmp_path: Path) -> None:
    """Official pose_dataset: Di[2] (the part index I) ×255/24, and with random_drop_prob each of the 24 parts of
    each frame is blanked (all three channels) with that probability; resume stays exact (same key, same drops)."""
    from v2vcli.data.clips import DENSEPOSE_I_LUT

    root = _with_densepose(make_toy_dataset(tmp_path / "ds", sequences=1, frames=6, flow=False), {"seq0": 6})
    cfg = data_cfg(root, inputs=["densepose"], size=(48, 32), flip=False, scale_range=(1.0, 1.0))
    clip = ClipDataset(cfg, need_flow=False).clip(0, 4)
    dp = np.asarray(clip.inputs["densepose"])[0]  # (T, 3, H, W) uint8
    assert dp.dtype == np.uint8 and dp.shape == (4, 3, 32, 48)
    parts = np.minimum(1 + np.arange(48) // 2, 24)
    assert (dp[:, 2, -1] == np.round(parts * 255 / 24)).all() and dp[:, 2, 0].max() == 0
    assert dp[:, 2].max() == 255 and (dp[:, 1, -1] == np.arange(100, 104)[:, None]).all()
    assert DENSEPOSE_I_LUT[24] == 255 and DENSEPOSE_I_LUT[1] == 11 and DENSEPOSE_I_LUT[30] == 255

    keep = ClipDataset(cfg, need_flow=False, seed=1)[(0, 0, 6)]
    drop_cfg = data_cfg(root, inputs=["densepose"], size=(48, 32), flip=False, scale_range=(1.0, 1.0),
                        random_drop_prob=0.3)
    ds = ClipDataset(drop_cfg, need_flow=False, seed=1)
    item = ds[(0, 0, 6)]
    assert item["start"] == keep["start"] and item["step"] == keep["step"]  # the drops leave the clip's plan alone
    np.testing.assert_array_equal(item["frames"], keep["frames"])
    np.testing.assert_array_equal(ds[(0, 0, 6)]["inputs"]["densepose"], item["inputs"]["densepose"])  # exact resume
    got, full = item["inputs"]["densepose"], keep["inputs"]["densepose"]
    dropped = [{int(p) for p in range(1, 25) if not (got[t, 2] == DENSEPOSE_I_LUT[p]).any()} for t in range(6)]
    assert len({frozenset(d) for d in dropped}) > 1  # drawn per frame
    for t, d in enumerate(dropped):  # a dropped part is zero in all channels; the rest is untouched
        gone = np.isin(full[t, 2], DENSEPOSE_I_LUT[sorted(d)])
        assert not got[t][:, gone].any()
        np.testing.assert_array_equal(got[t][:, ~gone], full[t][:, ~gone])
    total = sum(map(len, dropped)) / (6 * 24)
    assert 0.1 < total < 0.5
    all_gone = ClipDataset(data_cfg(root, inputs=["densepose"], size=(48, 32), random_drop_prob=1.0),
                           need_flow=False)[(0, 0, 6)]
    assert not all_gone["inputs"]["densepose"].any()
    # evaluation clips (and synthesis, which reads through the same loader) never drop parts
    np.testing.assert_array_equal(np.asarray(ClipDataset(drop_cfg, need_flow=False).clip(0, 4).inputs["densepose"]),
                                  dp[None])
    with pytest.raises(ConfigError, match="random_drop_prob"):
        data_cfg(root, random_drop_prob=1.5)


def test_epoch_of_frames_covers_every_frame(tmp_path: Path) -> None:
    """data.epoch_items=frames: an epoch has one item per frame of every sequence (the official pose epoch), each
    sequence holding a share of the items equal to its length; the sampler's contract is unchanged."""
    root = make_toy_dataset(tmp_path / "ds", sequences={"a": 5, "b": 9, "c": 6}, flow=False)
    assert len(ClipDataset(data_cfg(root), need_flow=False)) == 3
    ds = ClipDataset(data_cfg(root, epoch_items="frames"), need_flow=False, history=2)
    assert len(ds) == 20
    seqs = [ds.plan((i, 0, 2))[0] for i in range(20)]
    assert seqs == ["a"] * 5 + ["b"] * 9 + ["c"] * 6
    sampler = ClipBatchSampler(len(ds), 4, seed=0, schedule=ClipSchedule(2), epochs=1)
    keys = [k for batch in sampler for k in batch]
    assert sorted(k[0] for k in keys) == list(range(20))
    with pytest.raises(ConfigError, match="epoch_items"):
        data_cfg(root, epoch_items="frame")


def test_centred_crop_is_the_official_pose_crop(tmp_path: Path) -> None:
    """data.crop=centred: no zoom → exactly the central columns (y within the top eighth); with zoom the window's
    centre moves by at most the zoom's horizontal slack, and most often by less than a third of it."""
    root = make_toy_dataset(tmp_path / "ds", sequences=1, frames=2, size=(96, 64), flow=False)  # 2 frames: start 0
    ds = ClipDataset(data_cfg(root, size=(32, 64), flip=False, scale_range=(1.0, 1.0), crop="centred"),
                     need_flow=False)
    centre = ClipDataset(data_cfg(root, size=(32, 64)), need_flow=False).clip(0, 2).frames.numpy()[0]
    for epoch in range(4):
        np.testing.assert_array_equal(ds[(0, epoch, 2)]["frames"], centre)  # rh = 64 = h: y = 0
    from v2vcli.data.clips import _geometry

    offsets, ys = [], []
    for e in range(200):
        g = _geometry((96, 64), (32, 64), np.random.default_rng(e), (1.5, 1.5), False, "centred")
        assert (g.rw, g.rh) == (144, 96)
        offsets.append(g.x + 16 - 72)
        ys.append(g.y)
    slack = (144 - 96) / 2
    assert max(abs(o) for o in offsets) <= slack + 1 and np.std(offsets) == pytest.approx(slack / 3, rel=0.3)
    assert max(ys) <= 96 // 8 and min(ys) == 0
    with pytest.raises(ConfigError, match="crop"):
        data_cfg(root, crop="center")
