"""Import datasets in other layouts into the v2v layout (``v2v dataset import-vid2vid SRC DATASET``).

The official vid2vid street layout::

    SRC/train_A/<seq>/*.png     label ids (8-bit, single channel)     → seg/<seq>/000000.png
    SRC/train_B/<seq>/*.jpg|png frames                                → frames/<seq>/000000.<fmt>
    SRC/train_inst/<seq>/*.png  instance ids (optional)               → inst/<seq>/000000.png (16-bit)
    SRC/test_A, test_B, test_inst                                     → the same, listed as "val" in splits.json

Files are taken in natural order and renamed 000000, 000001, ...; label ids are kept. The label set is Cityscapes'
35 ids with names and colours when every id fits (0..34), else a generic one (``class_<id>``). Files already in
the target format are copied byte for byte. A failed import removes the dataset folder it created.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from v2vcli.data.layout import Dataset, LabelSet, cityscapes_label_set, generic_label_set
from v2vcli.errors import ConfigError, DatasetError
from v2vcli.io.files import decode_image, encode_image, write_bytes_atomic, write_instance, write_json, write_label

__all__ = ["ImportReport", "import_vid2vid"]

log = logging.getLogger(__name__)

_SPLITS = {"train": "train", "test": "val"}


@dataclass
class ImportReport:
    dataset: Path
    label_set: str
    sequences: dict[str, dict[str, Any]] = field(default_factory=dict)  # seq -> {split, count, size, source}
    splits: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": str(self.dataset), "label_set": self.label_set, "sequences": self.sequences,
                "splits": self.splits}


def _natural(p: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _images(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts
                   and not p.name.startswith(".")), key=_natural)


def _unique_name(seq: str, part: str, taken: set[str]) -> str:
    """``seq``, else ``<part>_<seq>``, else ``<part>_<seq>_2``, ...: never a name already taken (a train sequence
    called ``test_s`` must not be overwritten by test/s)."""
    name = seq if seq not in taken else f"{part}_{seq}"
    n = 2
    while name in taken:
        name, n = f"{part}_{seq}_{n}", n + 1
    return name


def _read_labels(path: Path) -> tuple[np.ndarray, bool]:
    """(uint8 ids, whether the file is already an 8-bit gray PNG that can be copied as is)."""
    try:
        with Image.open(path) as img:
            mode = img.mode
            arr = np.array(img)
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"label map '{path}' cannot be read ({exc})") from exc
    if arr.ndim != 2:
        raise DatasetError(f"'{path}' is a {mode} image, not a single-channel label-id map; v2v imports the "
                           f"label-id layout (street) of vid2vid")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise DatasetError(f"'{path}' has label ids up to {int(arr.max())}; label ids must fit in 0..255")
    return arr.astype(np.uint8), mode == "L" and path.suffix.lower() == ".png"


def _read_instances(path: Path) -> tuple[np.ndarray, bool]:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        try:
            with Image.open(path) as pil:
                img = np.array(pil)
        except OSError as exc:
            raise DatasetError(f"instance map '{path}' cannot be read ({exc})") from exc
    if img.ndim != 2:
        raise DatasetError(f"instance map '{path}' has {img.shape[2]} channels; expected one")
    if img.size and (img.min() < 0 or img.max() > 65535):
        raise DatasetError(f"instance map '{path}' has ids above 65535")
    return img.astype(np.uint16), img.dtype == np.uint16 and path.suffix.lower() == ".png"


def import_vid2vid(src: str | Path, dataset: str | Path, *, fps: float = 30.0,
                   label_set: Literal["auto", "cityscapes", "generic"] = "auto") -> ImportReport:
    """Convert an official vid2vid tree ``src`` into a new v2v dataset at ``dataset`` (see the module docstring)."""
    src, root = Path(src), Path(dataset)
    if label_set not in ("auto", "cityscapes", "generic"):
        raise ConfigError(f"--label-set must be auto, cityscapes or generic, got '{label_set}'")
    if not fps > 0:
        raise ConfigError(f"--fps must be positive, got {fps}")
    if not src.is_dir():
        raise DatasetError(f"vid2vid dataset '{src}' does not exist")
    parts = [p for p in _SPLITS if (src / f"{p}_A").is_dir()]
    if not parts:
        raise DatasetError(f"'{src}' does not look like a vid2vid dataset: expected train_A/ (label ids) and "
                           f"train_B/ (frames) folders, or test_A/ and test_B/")
    if Dataset(root).exists() or (root.exists() and any(root.iterdir())):
        raise DatasetError(f"'{root}' is not empty; import into a new folder")

    # plan: every sequence with its files, validated before anything is written
    plan: list[tuple[str, str, list[Path], list[Path], list[Path] | None]] = []
    names: set[str] = set()
    for part in parts:
        a_dir, b_dir, i_dir = src / f"{part}_A", src / f"{part}_B", src / f"{part}_inst"
        if not b_dir.is_dir():
            log.warning("skipping %s: %s has no frames folder %s", part, a_dir, b_dir.name)
            continue
        for seq_dir in sorted((p for p in a_dir.iterdir() if p.is_dir()), key=_natural):
            labels = _images(seq_dir, (".png",))
            frames_dir = b_dir / seq_dir.name
            if not frames_dir.is_dir():
                raise DatasetError(f"'{seq_dir}' has labels but '{frames_dir}' (its frames) does not exist")
            frames = _images(frames_dir, (".jpg", ".jpeg", ".png"))
            if not labels:
                raise DatasetError(f"'{seq_dir}' holds no PNG label maps")
            if len(frames) != len(labels):
                raise DatasetError(f"sequence '{seq_dir.name}' has {len(labels)} label maps in {a_dir.name} but "
                                   f"{len(frames)} frames in {b_dir.name}")
            inst = None
            if i_dir.is_dir() and (i_dir / seq_dir.name).is_dir():
                inst = _images(i_dir / seq_dir.name, (".png",))
                if len(inst) != len(labels):
                    raise DatasetError(f"sequence '{seq_dir.name}' has {len(labels)} label maps but {len(inst)} "
                                       f"instance maps in {i_dir.name}")
            name = _unique_name(seq_dir.name, part, names)
            names.add(name)
            plan.append((name, _SPLITS[part], labels, frames, inst))
    if not plan:
        raise DatasetError(f"'{src}' holds no sequence with both labels (*_A) and frames (*_B)")
    fmt = "png" if plan[0][3][0].suffix.lower() == ".png" else "jpg"
    has_inst = any(p[4] is not None for p in plan)

    created = not root.exists()
    report = ImportReport(root, "")
    ds = Dataset(root)
    max_id = 0
    try:
        for name, split, labels, frames, inst in plan:
            size: tuple[int, int] | None = None
            for i, frame_path in enumerate(frames):
                data = frame_path.read_bytes()
                try:
                    rgb = decode_image(data, str(frame_path))
                except DatasetError as exc:
                    raise DatasetError(f"{exc}; fix or remove it and re-run the import") from exc
                h, w = rgb.shape[:2]
                size = size or (w, h)
                if (w, h) != size:
                    raise DatasetError(f"'{frame_path}' is {w}x{h}, the first frame of '{name}' is "
                                       f"{size[0]}x{size[1]}")
                same = frame_path.suffix.lower().replace("jpeg", "jpg") == f".{fmt}"
                write_bytes_atomic(ds.frame_path("frames", name, i, f".{fmt}"),
                                   data if same else encode_image(rgb, f".{fmt}", 95))
                ids, copy = _read_labels(labels[i])
                if ids.shape != (h, w):
                    raise DatasetError(f"label map '{labels[i]}' is {ids.shape[1]}x{ids.shape[0]}, its frame "
                                       f"'{frame_path}' is {w}x{h}")
                max_id = max(max_id, int(ids.max()) if ids.size else 0)
                target = ds.frame_path("seg", name, i, ".png")
                if copy:
                    write_bytes_atomic(target, labels[i].read_bytes())
                else:
                    write_label(target, ids)
                if inst is not None:
                    inst_ids, copy_inst = _read_instances(inst[i])
                    if inst_ids.shape != (h, w):
                        raise DatasetError(f"instance map '{inst[i]}' is {inst_ids.shape[1]}x{inst_ids.shape[0]}, "
                                           f"its frame is {w}x{h}")
                    target = ds.frame_path("inst", name, i, ".png")
                    if copy_inst:
                        write_bytes_atomic(target, inst[i].read_bytes())
                    else:
                        write_instance(target, inst_ids)
            assert size is not None  # noqa: S101 - every planned sequence has frames
            report.sequences[name] = {"split": split, "count": len(frames), "size": list(size),
                                      "source": str(frames[0].parent.resolve())}
            log.info("imported %s (%s): %d frames %dx%d", name, split, len(frames), *size)

        if label_set == "cityscapes" and max_id > 34:
            raise DatasetError(f"label id {max_id} does not fit the Cityscapes label set (ids 0..34); use "
                               f"--label-set generic")
        labels_set: LabelSet = (cityscapes_label_set() if label_set == "cityscapes" or
                                (label_set == "auto" and max_id <= 34) else generic_label_set(max_id + 1))
        report.label_set = labels_set.name
        no_options = {"resize": None, "fps": None, "start": None, "end": None}
        ds.write_frames_meta({"format": fmt, "sequences": {
            name: {"fps": float(fps), "size": info["size"], "count": info["count"], "source": info["source"],
                   "options": no_options} for name, info in sorted(report.sequences.items())}})
        write_json(ds.meta_path("seg"), {
            "kind": "seg", "extractor": f"{__name__}.import_vid2vid", "plugin": "dataset", "backend": "vid2vid",
            "version": "1", "outputs": ["seg", "inst"] if has_inst else ["seg"],
            "options": {"source": str(src.resolve())}, "label_set": labels_set.to_dict(),
            "sequences": {name: {"count": info["count"]} for name, info in sorted(report.sequences.items())}})
        report.splits = {split: sorted(n for n, info in report.sequences.items() if info["split"] == split)
                         for split in ("train", "val")}
        ds.write_splits(report.splits)
    except BaseException:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        else:
            for sub in ("frames", "seg", "inst", "meta"):
                shutil.rmtree(root / sub, ignore_errors=True)
            (root / "splits.json").unlink(missing_ok=True)
        raise
    return report

