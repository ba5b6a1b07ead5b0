"""Per-frame files: write→read round trips for every file type, atomic writes, label sets and preview colours."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from v2vcli.data.layout import LabelSet, cityscapes_label_set, generic_label_set
from v2vcli.errors import DatasetError
from v2vcli.io import files, preview


def _rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    return np.clip(base + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)


def test_png_image_round_trip_is_exact(tmp_path: Path) -> None:
    img = np.random.default_rng(1).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    files.write_image(tmp_path / "a.png", img)
    np.testing.assert_array_equal(files.read_image(tmp_path / "a.png"), img)


def test_jpeg_round_trip_is_close_and_channel_order_kept(tmp_path: Path) -> None:
    img = _rgb()
    img[..., 0] = 250  # strong red: a BGR/RGB swap would show
    files.write_image(tmp_path / "a.jpg", img, quality=95)
    back = files.read_image(tmp_path / "a.jpg")
    assert back.shape == img.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - img.astype(int)).mean() < 3
    assert back[..., 0].mean() > 240


def test_encode_decode_equal_to_file_read(tmp_path: Path) -> None:
    img = _rgb()
    data = files.encode_image(img, ".jpg", 95)
    files.write_bytes_atomic(tmp_path / "x.jpg", data)
    np.testing.assert_array_equal(files.decode_image(data), files.read_image(tmp_path / "x.jpg"))
    with pytest.raises(DatasetError):
        files.decode_image(b"not an image")


def test_label_and_instance_round_trip(tmp_path: Path) -> None:
    labels = np.random.default_rng(2).integers(0, 35, (20, 30), dtype=np.uint8)
    files.write_label(tmp_path / "l.png", labels)
    np.testing.assert_array_equal(files.read_label(tmp_path / "l.png"), labels)
    inst = np.random.default_rng(3).integers(0, 65536, (20, 30)).astype(np.uint16)
    inst[0, 0] = 65535
    files.write_instance(tmp_path / "i.png", inst)
    back = files.read_instance(tmp_path / "i.png")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, inst)
    with pytest.raises(ValueError):
        files.write_label(tmp_path / "bad.png", labels.astype(np.int32))
    with pytest.raises(DatasetError, match="single-channel"):
        files.read_label(_write_rgb_png(tmp_path / "rgb.png"))


def _write_rgb_png(path: Path) -> Path:
    files.write_image(path, _rgb())
    return path


def test_flow_round_trip_and_deterministic_bytes(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    flow = rng.normal(0, 5, (12, 16, 2)).astype(np.float32)
    conf = rng.integers(0, 256, (12, 16), dtype=np.uint8)
    files.write_flow(tmp_path / "f.npz", flow, conf)
    f2, c2 = files.read_flow(tmp_path / "f.npz")
    np.testing.assert_allclose(f2, flow, atol=0.01)  # stored float16
    np.testing.assert_array_equal(c2, conf)
    first = (tmp_path / "f.npz").read_bytes()
    files.write_flow(tmp_path / "f.npz", flow, conf)
    assert (tmp_path / "f.npz").read_bytes() == first  # resume compares bytes
    with np.load(tmp_path / "f.npz") as npz:
        assert npz["flow"].dtype == np.float16 and npz["conf"].dtype == np.uint8
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="not a v2v flow file"):
        files.read_flow(tmp_path / "bad.npz")


def test_float_maps_and_json_round_trip(tmp_path: Path) -> None:
    maps = np.random.default_rng(5).random((8, 10, 14)).astype(np.float32)
    files.write_float_maps(tmp_path / "d.npz", maps)
    np.testing.assert_allclose(files.read_float_maps(tmp_path / "d.npz"), maps, atol=1e-3)
    data = {"version": 1.3, "people": [{"pose_keypoints_2d": [1.5, 2.0, 0.9]}]}
    files.write_json(tmp_path / "p.json", data)
    assert files.read_json(tmp_path / "p.json") == data
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DatasetError, match="not valid JSON"):
        files.read_json(tmp_path / "bad.json")


def test_atomic_write_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out" / "x.bin"
    with pytest.raises(RuntimeError), files.atomic_open(target) as f:
        f.write(b"half")
        raise RuntimeError("interrupted")
    assert not target.exists() and os.listdir(target.parent) == []
    files.write_bytes_atomic(target, b"whole")
    assert target.read_bytes() == b"whole" and os.listdir(target.parent) == ["x.bin"]


def test_corrupt_and_missing_images_are_dataset_errors(tmp_path: Path) -> None:
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        files.read_image(tmp_path / "c.png")
    with pytest.raises(DatasetError, match="missing file"):
        files.read_image(tmp_path / "none.png")


def test_label_sets() -> None:
    cs = cityscapes_label_set()
    assert cs.num_classes == 35 and cs.id_of("car") == 26 and cs.palette()[26].tolist() == [0, 0, 142]
    assert LabelSet.from_dict(cs.to_dict()) == cs
    gen = generic_label_set(40)
    assert gen.num_classes == 40 and gen.id_of("class_39") == 39
    assert len({c.color for c in gen.classes}) == 40  # distinct preview colours


def test_preview_colours() -> None:
    pal = preview.label_palette()
    assert pal.shape == (256, 3) and pal[0].tolist() == [0, 0, 0]
    assert len({tuple(c) for c in pal}) == 256
    labels = np.array([[0, 26], [23, 26]], dtype=np.uint8)
    rgb = preview.colorize_labels(labels, cityscapes_label_set())
    assert rgb[0, 1].tolist() == [0, 0, 142] and rgb[1, 0].tolist() == [70, 130, 180]
    np.testing.assert_array_equal(preview.colorize_labels(labels)[0, 1], pal[26])
    inst = np.array([[0, 5], [7, 5]], dtype=np.uint16)
    ic = preview.colorize_instances(inst)
    assert ic[0, 0].tolist() == [0, 0, 0] and ic[0, 1].tolist() == ic[1, 1].tolist()
    assert ic[0, 1].tolist() != ic[1, 0].tolist()
    flow = np.zeros((4, 4, 2), np.float32)
    flow[:, :2, 0] = 3.0  # right
    flow[:, 2:, 0] = -3.0  # left
    fc = preview.colorize_flow(flow)
    assert fc[0, 0].tolist() != fc[0, 3].tolist() and fc[0, 0].max() == 255
    assert preview.colorize_flow(np.zeros((2, 2, 2), np.float32)).max() == 0
    assert preview.blend(np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 200, np.uint8), 0.5).max() == 100
    grid = preview.tile([rgb, ic, preview.colorize_gray(np.full((2, 2), 9, np.uint8))], columns=2)
    assert grid.shape == (4, 4, 3) and grid[2, 0].tolist() == [9, 9, 9]


def test_labelled_grid_places_tiles_after_the_header_and_names() -> None:
    tiles = [np.full((8, 10, 3), v, np.uint8) for v in (10, 20, 30, 40)]
    bare = preview.labelled_grid(tiles, 2)
    np.testing.assert_array_equal(bare, preview.tile(tiles, 2))
    grid = preview.labelled_grid(tiles, 2, ["first row", "second"], ["a", "b"], scale=2)
    top, left = grid.shape[0] - 32, grid.shape[1] - 40
    assert top == 18 and left > 40  # a header band, and a left band wide enough for "first row"
    assert grid[top + 1, left + 1].tolist() == [10] * 3 and grid[top + 17, left + 21].tolist() == [40] * 3
    assert (grid[:top] < 255).any() and (grid[top:, :left] < 255).any()  # the names are drawn
