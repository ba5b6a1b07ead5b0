"""Dataset validation (``v2v dataset check``): counts per modality and sequence, sizes, label ids against the label
set, missing, extra and corrupt files, meta and splits consistency.

Problems make the check fail (exit 1); warnings (a modality without its meta file, leftover temp files of an
interrupted write) are shown but do not.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from v2vcli.data.layout import Dataset, LabelSet
from v2vcli.errors import DatasetError
from v2vcli.runtime import ProgressBar

__all__ = ["Problem", "CheckReport", "check_dataset"]

log = logging.getLogger(__name__)

_INDEX = re.compile(r"^(\d{6})$")
_SHOWN = 5  # missing/extra indices listed per problem


@dataclass
class Problem:
    seq: str  # "" for the whole dataset
    modality: str  # "" when not about one modality
    problem: str  # short category, e.g. "missing frames", "size mismatch", "label id out of range"
    detail: str


@dataclass
class CheckReport:
    root: Path
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # seq -> modality -> files per frame kind
    sizes: dict[str, list[int]] = field(default_factory=dict)  # seq -> [W, H]
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, seq: str, modality: str, problem: str, detail: str) -> None:
        self.problems.append(Problem(seq, modality, problem, detail))

    def warn(self, seq: str, modality: str, problem: str, detail: str) -> None:
        self.warnings.append(Problem(seq, modality, problem, detail))

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": str(self.root), "ok": self.ok, "files_checked": self.files_checked,
                "counts": self.counts, "sizes": self.sizes, "problems": [asdict(p) for p in self.problems],
                "warnings": [asdict(p) for p in self.warnings]}


def _listing(indices: list[int]) -> str:
    shown = ", ".join(f"{i:06d}" for i in indices[:_SHOWN])
    return shown + (f" and {len(indices) - _SHOWN} more" if len(indices) > _SHOWN else "")


def _modality_meta(ds: Dataset) -> dict[str, dict[str, Any]]:
    """modality folder -> the meta/<kind>.json that describes it (its own, or a kind listing it in outputs)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(ds.meta_dir.glob("*.json")):
        if path.stem == "frames":
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue  # reported by the per-modality pass
        if not isinstance(data, dict):
            continue
        data.setdefault("_kind", path.stem)
        for name in [path.stem, *data.get("outputs", [])]:
            if name == path.stem or name not in found:
                found[name] = data
    return found


class _Checker:
    def __init__(self, ds: Dataset, report: CheckReport, decode: bool, tick: Callable[[int], None]) -> None:
        self.ds, self.report, self.decode, self.tick = ds, report, decode, tick
        self.people: dict[tuple[str, str], list[int]] = {}  # (seq, pose modality) -> [json files read, with people]

    def files(self, modality: str, seq: str, count: int, size: tuple[int, int], expect_ext: str | None,
              label_set: LabelSet | None, is_flow: bool) -> None:
        folder = self.ds.root / modality / seq
        groups: dict[str, list[int]] = {}
        for p in sorted(folder.iterdir()):
            if p.name.startswith("."):
                if ".tmp" in p.name:
                    self.report.warn(seq, modality, "leftover temp file", f"{p} (an interrupted write; delete it)")
                continue
            m = _INDEX.match(p.stem)
            if p.is_dir() or m is None:
                self.report.add(seq, modality, "unexpected file", f"{p} is not named like 000000{p.suffix}")
                continue
            groups.setdefault(p.suffix.lower(), []).append(int(m.group(1)))
        if expect_ext is not None and expect_ext not in groups:
            groups.setdefault(expect_ext, [])
        self.report.counts.setdefault(seq, {})[modality] = max((len(v) for v in groups.values()), default=0)
        for ext, indices in sorted(groups.items()):
            have = set(indices)
            missing = [i for i in range(count) if i not in have]
            extra = sorted(i for i in have if i >= count)
            if missing:
                self.report.add(seq, modality, "missing frames", f"{len(missing)} of {count} {ext} files missing "
                                                                 f"in {folder}: {_listing(missing)}")
            if extra:
                self.report.add(seq, modality, "extra frames", f"{folder} has {ext} files beyond the {count} "
                                                               f"frames: {_listing(extra)}")
            if self.decode:
                for i in sorted(have):
                    self.one(folder / f"{i:06d}{ext}", seq, modality, size, label_set, is_flow, i)
                    self.tick(1)

    def one(self, path: Path, seq: str, modality: str, size: tuple[int, int], label_set: LabelSet | None,
            is_flow: bool, index: int) -> None:
        self.report.files_checked += 1
        ext = path.suffix.lower()
        w, h = size
        if ext in (".png", ".jpg", ".jpeg"):
            data = np.fromfile(str(path), dtype=np.uint8)
            img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
            if img is None:
                self.report.add(seq, modality, "corrupt file", f"{path} cannot be decoded")
                return
            if img.shape[:2] != (h, w):
                self.report.add(seq, modality, "size mismatch", f"{path} is {img.shape[1]}x{img.shape[0]}, the "
                                                                f"frames are {w}x{h}")
            if label_set is not None:
                if img.ndim != 2 or img.dtype != np.uint8:
                    self.report.add(seq, modality, "not a label map", f"{path} is {img.dtype} {img.shape}, label "
                                                                      f"ids are single-channel 8-bit")
                    return
                valid = {c.id for c in label_set.classes} | ({label_set.ignore_id} if label_set.ignore_id
                                                             is not None else set())
                bad = sorted(int(v) for v in np.unique(img) if int(v) not in valid)
                if bad:
                    self.report.add(seq, modality, "label id out of range",
                                    f"{path} has id(s) {', '.join(map(str, bad[:8]))} not in label set "
                                    f"'{label_set.name}' (ids {min(valid)}..{max(valid)})")
        elif ext == ".npz":
            try:
                with np.load(str(path), allow_pickle=False) as npz:
                    arrays = {k: npz[k] for k in npz.files}
            except Exception as exc:  # noqa: BLE001 - any failure to read means a corrupt file
                self.report.add(seq, modality, "corrupt file", f"{path} cannot be read: {type(exc).__name__}")
                return
            if is_flow or "flow" in arrays:
                flow, conf = arrays.get("flow"), arrays.get("conf")
                if flow is None or conf is None or flow.shape != (h, w, 2) or conf.shape != (h, w):
                    shapes: dict[str, Any] | list[Any] = {k: v.shape for k, v in arrays.items()}  # a list below
                    self.report.add(seq, modality, "bad flow file", f"{path} holds {shapes}; expected flow "
                                                                    f"({h}, {w}, 2) and conf ({h}, {w})")
                elif not (np.isfinite(flow).all() and np.isfinite(conf).all()):
                    n_bad = int(np.count_nonzero(~np.isfinite(flow))) + int(np.count_nonzero(~np.isfinite(conf)))
                    self.report.add(seq, modality, "non-finite values", f"{path} holds {n_bad} NaN or Inf value(s); "
                                                                        f"re-extract the flow (`v2v extract flow "
                                                                        f"--overwrite`)")
                elif index == 0 and (np.any(conf) or np.any(flow)):
                    self.report.add(seq, modality, "bad flow file", f"{path}: frame 0 must hold zero flow with "
                                                                    f"zero confidence")
            else:
                shapes = [v.shape[:2] for v in arrays.values()]
                if any(s != (h, w) for s in shapes):
                    self.report.add(seq, modality, "size mismatch", f"{path} holds arrays of {shapes}, the frames "
                                                                    f"are {w}x{h}")
                elif any(np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all() for v in arrays.values()):
                    self.report.add(seq, modality, "non-finite values", f"{path} holds NaN or Inf values; "
                                                                        f"re-extract '{modality}' with --overwrite")
        elif ext == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                self.report.add(seq, modality, "corrupt file", f"{path} is not valid JSON ({exc})")
                return
            if modality == "pose":
                seen = self.people.setdefault((seq, modality), [0, 0])
                seen[0] += 1
                seen[1] += bool(isinstance(data, dict) and isinstance(data.get("people"), list) and data["people"])


def _check_pose_people(report: CheckReport, checker: _Checker, meta: dict[str, Any] | None, seq: str) -> None:
    """A pose sequence in which nobody was found trains a model on black frames: a problem. The pose JSONs decide
    when they were read (decode); otherwise the detection rate recorded at extraction does."""
    read, found = checker.people.get((seq, "pose"), [0, 0])
    recorded = meta.get("sequences", {}).get(seq) if meta is not None and isinstance(meta.get("sequences"), dict) \
        else None
    rate = recorded.get("detection_rate") if isinstance(recorded, dict) else None
    if read:
        empty = found == 0
        detail = f"no person in any of its {read} pose JSON files"
    elif isinstance(rate, (int, float)):
        empty = rate == 0
        detail = "no person in any frame (detection rate 0 in meta/pose.json)"
    else:
        return
    if empty:
        report.add(seq, "pose", "empty pose", f"{detail}; re-extract it with another backend (`v2v extract pose "
                                              f"--backend ...`) or a larger --resize, or drop the sequence")


def _iter_dirs(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith("."))


def check_dataset(root: str | Path, *, decode: bool = True, progress: bool | None = None) -> CheckReport:
    """Check the dataset at ``root``; ``decode=False`` checks names and counts only (fast)."""
    ds = Dataset(root)
    report = CheckReport(ds.root)
    fm = ds.frames_meta()  # not a dataset at all: a DatasetError, not a report
    fmt = str(fm.get("format", "jpg"))
    sequences: dict[str, dict[str, Any]] = fm["sequences"]
    metas = _modality_meta(ds)
    modalities = [p.name for p in _iter_dirs(ds.root) if p.name != "meta"]
    if "frames" not in modalities:
        report.add("", "frames", "missing modality", f"{ds.root / 'frames'} does not exist")
    for modality in modalities:
        if modality != "frames" and modality not in metas:
            report.warn("", modality, "no meta", f"no meta/{modality}.json and no meta file lists '{modality}' in "
                                                 f"its outputs")
    seg_meta = metas.get("seg")
    if "seg" in modalities and seg_meta is not None and seg_meta.get("_kind") == "seg" and "label_set" not in seg_meta:
        report.add("", "seg", "bad meta", "meta/seg.json has no label_set, which training needs to read the label "
                                          "ids; re-extract seg (`v2v extract seg ... --overwrite`) or re-import")
    total = sum(int(e.get("count", 0)) for e in sequences.values()) * max(1, len(modalities)) if decode else 0
    bar = ProgressBar(total, "checking", enabled=progress if total else False)
    checker = _Checker(ds, report, decode, bar.advance)
    try:
        for seq, entry in sorted(sequences.items()):
            try:
                count = int(entry["count"])
                size = (int(entry["size"][0]), int(entry["size"][1]))
            except (KeyError, TypeError, ValueError, IndexError):
                report.add(seq, "frames", "bad meta", f"meta/frames.json entry of '{seq}' needs count and size")
                continue
            report.sizes[seq] = [size[0], size[1]]
            for modality in modalities:
                folder = ds.root / modality / seq
                meta = metas.get(modality) if modality != "frames" else None
                if not folder.is_dir():
                    report.counts.setdefault(seq, {})[modality] = 0
                    report.add(seq, modality, "missing sequence", f"{folder} does not exist")
                    continue
                label_set = None
                if meta is not None and "label_set" in meta and modality == meta.get("_kind"):
                    try:
                        label_set = LabelSet.from_dict(meta["label_set"])
                    except DatasetError as exc:
                        report.add("", modality, "bad meta", f"meta/{meta['_kind']}.json: {exc}")
                if meta is not None and isinstance(meta.get("sequences"), dict) and modality == meta.get("_kind"):
                    recorded = meta["sequences"].get(seq, {}).get("count") if isinstance(
                        meta["sequences"].get(seq), dict) else None
                    if recorded is None:
                        report.add(seq, modality, "unfinished", f"meta/{modality}.json does not list '{seq}' as "
                                                                f"extracted (interrupted run?); re-run the extraction")
                    elif int(recorded) != count:
                        report.add(seq, modality, "count mismatch", f"meta/{modality}.json records {recorded} "
                                                                    f"frames, meta/frames.json {count}")
                expect = f".{fmt}" if modality == "frames" else None
                checker.files(modality, seq, count, size, expect, label_set, modality == "flow")
                if modality == "pose":
                    _check_pose_people(report, checker, meta, seq)
        for modality in modalities:
            for folder in _iter_dirs(ds.root / modality):
                if folder.name not in sequences:
                    report.add(folder.name, modality, "unknown sequence", f"{folder} is not in meta/frames.json")
    finally:
        bar.close()
    split_path = ds.root / "splits.json"
    if split_path.is_file():
        try:
            splits = ds.splits()
        except DatasetError as exc:
            report.add("", "", "bad splits", str(exc))
        else:
            seen: dict[str, str] = {}
            for name, seqs in splits.items():
                for seq in seqs:
                    if seq not in sequences:
                        report.add(seq, "", "bad splits", f"splits.json lists '{seq}' in '{name}' but it is not in "
                                                          f"meta/frames.json")
                    elif seq in seen:
                        report.add(seq, "", "bad splits", f"'{seq}' is in both '{seen[seq]}' and '{name}'")
                    seen[seq] = name
    return report
