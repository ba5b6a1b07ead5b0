"""What ``v2v synthesize --labels`` reads: sequences of conditioning maps, streamed one frame at a time.

``--labels`` may be

- a sequence folder of the dataset layout (``DATASET/seg/<seq>``, ``DATASET/frames/<seq>`` ...): the sibling
  modalities the model needs (``inst/<seq>`` ...) are found through the dataset root;
- a dataset root: every sequence of the ``val`` split (or ``--split``);
- a raw video (or a plain folder of frames): it is first run through the extractors recorded in the checkpoint's
  provenance (``meta/<kind>.json`` of the training data: kind, backend, version, options) into a temporary
  dataset, with the training data's ``--resize`` when it had exactly one.

Each sequence is read with the training loader's per-frame reader (:class:`v2vcli.data.clips.ClipDataset`: label
ids checked against the model's label set, instance ids, uint8 maps) and mapped to the model's frame size with the
loader's evaluation geometry (cover the size keeping the aspect ratio, centre crop, no flip): synthesis sees its
inputs exactly as validation during training did. Only one frame of each sequence is in memory at a time.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from v2vcli.data import clips
from v2vcli.data.clips import ClipDataset
from v2vcli.data.layout import Dataset
from v2vcli.errors import ConfigError, DatasetError, PluginError, VideoError
from v2vcli.extract import run_extraction
from v2vcli.io.files import read_image
from v2vcli.io.inputs import dataset_of_sequence_folder
from v2vcli.io.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, probe_video
from v2vcli.registry import get_registry

if TYPE_CHECKING:
    from v2vcli.checkpoint import CheckpointMeta
    from v2vcli.config import DataConfig
    from v2vcli.data.layout import LabelSet

__all__ = [
    "LabelSequence",
    "LabelSource",
    "resolve_labels",
    "extract_video",
    "parse_remap",
    "SequenceReader",
    "check_label_sets",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelSequence:
    """One sequence to synthesize: ``name`` of the dataset at ``root`` (listed in its split ``split``); its first
    ``count`` frames are synthesized (resolve_labels sets it to all of them)."""

    name: str
    root: Path
    split: str
    count: int
    fps: float
    audio: Path | None = None  # a raw video whose audio the output carries


@dataclass
class LabelSource:
    """The resolved ``--labels``: its sequences, and the temporary dataset to delete afterwards (raw video)."""

    sequences: list[LabelSequence]
    kind: str  # "sequence", "dataset" or "video"
    temp_dir: Path | None = None

    def cleanup(self) -> None:
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None


def _split_of(root: Path, seq: str) -> str:
    splits = Dataset(root).splits()
    for name in ("val", "test", "train", *sorted(splits)):
        if seq in splits.get(name, []):
            return name
    raise DatasetError(f"sequence '{seq}' of '{root}' is in no split of splits.json ({', '.join(sorted(splits))}); "
                       f"add it to one (`v2v dataset split`) or remove splits.json")


def _sequence(root: Path, seq: str, split: str, audio: Path | None = None) -> LabelSequence:
    entry = Dataset(root).frames_meta()["sequences"].get(seq)
    if entry is None:
        raise DatasetError(f"sequence '{seq}' is not in '{root}/meta/frames.json'")
    fps = float(entry.get("fps") or 0.0)
    if fps <= 0:
        raise DatasetError(f"sequence '{seq}' of '{root}' has no fps in meta/frames.json; re-extract it")
    return LabelSequence(seq, root, split, int(entry.get("count", 0)), fps, audio)


def resolve_labels(labels: str | Path, *, split: str | None = None, meta: CheckpointMeta | None = None,
                   inputs: Sequence[str] = (), workdir: str | Path | None = None,
                   before_extract: Callable[[], None] | None = None) -> LabelSource:
    """Turn ``--labels`` into sequences (see the module docstring).

    ``meta`` (the checkpoint's metadata) and ``inputs`` (the model's modalities) are needed for a raw video, which
    is extracted into a temporary dataset under ``workdir`` (the system's temp folder by default).
    ``before_extract`` is called once a raw video has been probed and its extractors found, before it is
    extracted (synthesize checks its other options there, so a mistake costs no extraction).
    """
    path = Path(labels)
    if not path.exists():
        raise VideoError(f"--labels '{path}' does not exist; pass a dataset, a sequence folder of one "
                         f"(DATASET/seg/<seq>) or a video")
    if path.is_dir() and (path / "meta" / "frames.json").is_file():
        ds = Dataset(path)
        name = split or "val"
        seqs = ds.split(name)
        if not seqs:
            others = [k for k, v in ds.splits().items() if v and k != name]
            hint = f"; pass --split {others[0]}" if others else ""
            raise DatasetError(f"dataset '{path}' has no sequences in split '{name}'{hint}")
        return LabelSource([_sequence(path, s, name) for s in seqs], "dataset")
    if path.is_dir():
        root = dataset_of_sequence_folder(path)
        if root is not None:
            if split is not None:
                log.info("--split is ignored for a sequence folder")
            return LabelSource([_sequence(root, path.name, _split_of(root, path.name))], "sequence")
    is_video = path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES
    is_frames = path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir() if p.is_file())
    if not (is_video or is_frames):
        raise VideoError(f"--labels '{path}' is neither a dataset, a sequence folder of one (DATASET/seg/<seq>), a "
                         f"video nor a folder of frames")
    if meta is None:
        raise ConfigError("a raw video needs the checkpoint's provenance to extract its inputs")
    audio = None
    if is_video:  # a corrupt or truncated video is reported before anything about extractors

        audio = path if probe_video(path).has_audio else None
    tmp = Path(tempfile.mkdtemp(prefix="v2v-synth-", dir=workdir))
    try:
        root = extract_video(path, meta, inputs, tmp / "dataset", before_extract=before_extract)
        seq = Dataset(root).sequences()[0]
        return LabelSource([_sequence(root, seq, "train", audio)], "video", tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _provenance_kind(provenance: Mapping[str, Any], modality: str) -> str | None:
    """The provenance entry (a ``meta/<kind>.json``) that wrote ``modality``."""
    for kind, entry in provenance.items():
        if kind == "frames" or not isinstance(entry, Mapping):
            continue
        if modality == kind or modality in (entry.get("outputs") or []):
            return kind
    return None


def extract_video(video: str | Path, meta: CheckpointMeta, inputs: Sequence[str], root: str | Path, *,
                  before_extract: Callable[[], None] | None = None) -> Path:
    """Run ``video`` through the extractors that made the checkpoint's training data; returns the dataset root.

    Every modality in ``inputs`` must come from an extractor recorded in ``meta.provenance`` and installed now; a
    version different from the recorded one is a warning (the maps may differ from what the model saw).
    ``before_extract`` is called once every extractor is found, before the first one runs.
    """
    prov = meta.provenance or {}
    registry = get_registry()
    kinds: list[str] = []
    for m in inputs:
        kind = _provenance_kind(prov, m)
        if kind is None:
            recorded = ", ".join(k for k in prov if k != "frames") or "nothing"
            raise DatasetError(f"the checkpoint does not record which extractor made its '{m}' inputs (its "
                               f"provenance lists {recorded}); extract them with `v2v extract {m} VIDEO -o DATASET` "
                               f"and pass --labels DATASET")
        if kind not in kinds:
            kinds.append(kind)
    frames = prov.get("frames") or {}
    recorded_opts = [o for o in (frames.get("options") or []) if isinstance(o, Mapping)]
    resize = None
    sizes = {json.dumps(o.get("resize")) for o in recorded_opts}
    if len(sizes) == 1 and recorded_opts[0].get("resize"):
        resize = tuple(int(v) for v in recorded_opts[0]["resize"])
    jobs = []
    for kind in kinds:
        entry = prov[kind]
        backend = str(entry.get("backend") or "")
        if f"{kind}/{backend}" not in registry.extractors():
            what = entry.get("extractor") or f"{kind}/{backend}"
            raise PluginError(f"the checkpoint's '{kind}' inputs came from '{what}' (backend '{backend}'), which is "
                              f"not an installed extractor, so a raw video cannot be turned into its inputs; pass "
                              f"--labels as a dataset or a sequence folder holding {kind}")
        cls = registry.get_extractor(kind, backend)
        if str(entry.get("version")) != str(cls.version):
            log.warning("the checkpoint's '%s' came from %s version %s; the installed one is version %s: the inputs "
                        "may differ from those the model was trained on", kind, backend, entry.get("version"),
                        cls.version)
        jobs.append((kind, backend, entry))
    if before_extract is not None:
        before_extract()
    for kind, backend, entry in jobs:
        log.info("extracting %s/%s from '%s'", kind, backend, video)
        run_extraction(kind, [video], root, backend=backend, options=entry.get("options") or {},
                       resize=resize, progress=False)  # type: ignore[arg-type]
    return Path(root)


def parse_remap(pairs: Sequence[str], label_set: LabelSet | None) -> np.ndarray | None:
    """``["tree:building", "5:3"]`` → a (256,) uint8 lookup table of label ids (None when empty).

    Classes are names or ids of ``label_set``; every pair maps from the original ids (pairs do not chain).
    """
    if not pairs:
        return None
    if label_set is None:
        raise ConfigError("--remap changes segmentation classes, but this model has no seg input")
    table = np.arange(256, dtype=np.uint8)
    seen: dict[int, str] = {}
    for pair in pairs:
        parts = str(pair).split(":")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ConfigError(f"--remap '{pair}' is not SRC:DST (class names or ids, e.g. tree:building or 5:3)")
        src, dst = (label_set.id_of(p.strip()) for p in parts)
        if src in seen and seen[src] != pair:
            raise ConfigError(f"--remap maps class {src} twice ('{seen[src]}' and '{pair}'); give one target")
        seen[src] = pair
        table[src] = dst
    return table


def check_label_sets(model_set: LabelSet | None, root: Path) -> None:
    """The dataset's seg label set must name the classes the model was trained with (ids and names)."""
    if model_set is None:
        return
    ds = Dataset(root)
    meta = ds.kind_meta("seg") if ds.meta_path("seg").is_file() else None
    if not meta or "label_set" not in meta:
        return
    data_set = ds.label_set("seg")
    ours = [(c.id, c.name) for c in model_set.classes]
    theirs = [(c.id, c.name) for c in data_set.classes]
    if ours != theirs:
        diff = sorted(set(ours) ^ set(theirs))[:3]
        raise DatasetError(f"the labels in '{root}' use label set '{data_set.name}' ({len(theirs)} classes) but the "
                           f"model was trained on '{model_set.name}' ({len(ours)} classes; they differ at "
                           f"{', '.join(f'{i}:{n}' for i, n in diff)}); extract the labels with the model's label "
                           f"set or --remap them")


class SequenceReader:
    """Per-frame model inputs of one sequence at the model's size ``size`` (W, H), as the loader reads them.

    ``inputs`` are the model's modalities; ``remap`` a label-id lookup table applied to ``seg``. Iterating yields
    ``{"seg": (H, W) uint8, "inst": (H, W) int32, "pose": (3, H, W) uint8, ...}`` one frame at a time.
    """

    def __init__(self, seq: LabelSequence, data: DataConfig, size: tuple[int, int], *,
                 label_set: LabelSet | None = None, remap: np.ndarray | None = None) -> None:
        self.seq = seq
        self.size = (int(size[0]), int(size[1]))
        cfg = replace(data, root=str(seq.root), size=[self.size[0], self.size[1]])  # type: ignore[arg-type]
        self._loader = ClipDataset(cfg, split=seq.split, history=0, need_flow=False, keypoints=False,
                                   augment=False, label_set=label_set)
        self.inputs = list(self._loader.inputs)
        self.remap = remap
        if seq.name not in self._loader.counts:
            raise DatasetError(f"sequence '{seq.name}' of '{seq.root}' has no frames")
        # a LabelSequence may ask for fewer frames than the sequence has (its first ``count`` frames)
        stored = self._loader.counts[seq.name]
        self.count = min(stored, seq.count) if seq.count > 0 else stored

    def __len__(self) -> int:
        return self.count

    # -- the sequence's real frames (``--first-frames real``) ----------------------------------------------------
    def _real_frame_path(self, index: int) -> Path | None:
        """``frames/<seq>/<index>`` in the dataset's frame format (or the other of jpg/png); None when missing."""
        path = self._loader.ds.frame_path("frames", self.seq.name, index, self._loader.frame_ext)
        if path.is_file():
            return path
        other = path.with_suffix(".png" if path.suffix != ".png" else ".jpg")
        return other if other.is_file() else None

    def missing_real_frame(self, n: int) -> Path | None:
        """The expected path of the first of the real frames 0..min(n, count)-1 that does not exist, else None."""
        for i in range(min(int(n), self.count)):
            if self._real_frame_path(i) is None:
                return self._loader.ds.frame_path("frames", self.seq.name, i, self._loader.frame_ext)
        return None

    def real_frames(self, n: int) -> list[np.ndarray]:
        """The sequence's real frames 0..min(n, count)-1 as (H, W, 3) uint8 at the reader's size, mapped like the
        inputs (cover the size keeping the aspect ratio, centre crop)."""
        out = []
        for i in range(min(int(n), self.count)):
            path = self._real_frame_path(i)
            if path is None:
                raise DatasetError(f"sequence '{self.seq.name}' of '{self.seq.root}' has no real frame {i} "
                                   f"(frames/{self.seq.name}/)")
            img = read_image(path)
            geom = clips._geometry((int(img.shape[1]), int(img.shape[0])), self.size, None, (1.0, 1.0), False)
            out.append(clips._apply(img, geom, nearest=False))
        return out

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        geom = None
        src: tuple[int, int] | None = None
        name = self.seq.name
        for i in range(self.count):
            frame: dict[str, np.ndarray] = {}
            for m in self.inputs:
                try:
                    value = self._loader._read_modality(m, name, i)
                except DatasetError as exc:
                    if str(exc).startswith(f"sequence '{name}'"):
                        raise
                    raise DatasetError(f"sequence '{name}' frame {i}: {exc}") from exc
                shape = (int(value.shape[1]), int(value.shape[0]))
                if src is None:
                    src = shape
                    geom = clips._geometry(src, self.size, None, (1.0, 1.0), False)
                elif shape != src:
                    raise DatasetError(f"sequence '{name}' frame {i}: {m} is {shape[0]}x{shape[1]} but the "
                                       f"sequence's maps are {src[0]}x{src[1]}; re-extract {m}")
                out = clips._apply(value, geom, nearest=m in clips._NEAREST)  # type: ignore[arg-type]
                frame[m] = out.transpose(2, 0, 1) if out.ndim == 3 else out
            if self.remap is not None and "seg" in frame:
                frame["seg"] = self.remap[frame["seg"]]
            yield frame
