"""Training clips from the dataset layout: a torch Dataset, an epoch-aware batch sampler and the batch type.

A clip is ``history + n_frames`` consecutive frames (every ``step``-th frame, ``step`` random in 1..max_t_step) of
one sequence with its conditioning modalities and the reference backward flow t→t-1 between clip frames. Every
frame of a clip gets the same random zoom, crop and horizontal flip. A sequence shorter than the clip gives a
shorter clip (the batch is cut to its shortest clip); a sequence with fewer than ``history + 1`` frames is left
out with a warning.

Resume is exact because nothing depends on hidden state: the sampler's order is a function of (seed, epoch) and
each clip's randomness of (seed, epoch, index). The sampler hands the dataset keys ``(index, epoch, n_frames)``,
so DataLoader workers need no message when the clip length changes, and a resumed run restarts mid-epoch at the
same batch. Under torchrun each rank takes its slice of every global batch, so N ranks × batch b see what one
rank × batch N·b would.

Raw modalities are returned (seg ids, instance ids, uint8 maps): the model turns them into input channels on its
device (one-hot there is cheaper than shipping it from workers).
"""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from v2vcli.data.layout import MODALITY_EXT, Dataset, LabelSet
from v2vcli.data.pose import mirror_body25, read_body25
from v2vcli.errors import ConfigError, DatasetError, V2VError
from v2vcli.io.files import read_float_maps, read_flow, read_image, read_instance, read_label, swap_rb
from v2vcli.registry import get_registry
from v2vcli.warp import warp_numpy

if TYPE_CHECKING:
    from v2vcli.config import DataConfig

__all__ = [
    "ClipKey",
    "ClipSchedule",
    "MAX_CLIP_FRAMES",
    "ClipBatch",
    "ClipDataset",
    "ClipBatchSampler",
    "collate_clips",
    "make_loader",
    "DENSEPOSE_I_LUT",
]

log = logging.getLogger(__name__)

ClipKey = tuple[int, int, int]  # (item index, epoch, generated frames); epoch < 0: evaluation clip (no randomness)

# Nearest-neighbour for ids and part indices; area/linear for images and soft maps.
_NEAREST = {"seg", "inst", "densepose"}
# DensePose IUV PNGs hold the part index I (0 background, 1..24 parts) in their third (blue) channel, read as RGB:
# it is stretched ×255/24 as the official pose_dataset does (rounded to uint8; values above 24 saturate at 255).
DENSEPOSE_PARTS = 24
DENSEPOSE_I_LUT: np.ndarray = np.minimum(255, np.round(np.arange(256) * 255.0 / DENSEPOSE_PARTS)).astype(np.uint8)


#: The official clip-length cap: sequences are never read past 128 frames (data/base_dataset.py).
MAX_CLIP_FRAMES = 128


@dataclass(frozen=True)
class ClipSchedule:
    """Generated frames per clip by epoch (0-based), the official temporally progressive training.

    ``start`` frames (``data.n_frames_total``) in epochs 0..niter_step-1, doubled after every ``niter_step``
    epochs, never more than ``cap`` = min(128, longest training sequence) - (n_frames_G - 1). ``niter_step`` 0
    keeps ``start`` for the whole run. For street_512 on 30-frame sequences: 6, 12, 24, then 28 frames.
    """

    start: int
    niter_step: int = 5
    cap: int = MAX_CLIP_FRAMES

    @classmethod
    def from_config(cls, data: DataConfig, niter_step: int, *, longest: int | None = None,
                    n_past: int = 0) -> ClipSchedule:
        """``longest``: frames of the longest training sequence (None: the 128-frame cap alone); ``n_past``: the
        generator's past frames (n_frames_G - 1), subtracted from the cap as the official code does."""
        if data.n_frames_total < 1:
            raise ConfigError(f"data.n_frames_total must be at least 1, got {data.n_frames_total}")
        cap = min(MAX_CLIP_FRAMES, longest if longest is not None else MAX_CLIP_FRAMES) - max(0, int(n_past))
        return cls(int(data.n_frames_total), int(niter_step), max(1, cap))

    def frames(self, epoch: int) -> int:
        grow = max(epoch, 0) // self.niter_step if self.niter_step > 0 else 0
        return max(1, min(self.cap, self.start * 2 ** min(grow, 30)))

    def max_frames(self, epochs: int) -> int:
        """The longest clip reached within ``epochs`` epochs."""
        return self.frames(max(0, epochs - 1))


# -- the batch --------------------------------------------------------------------------------------------------------
@dataclass
class ClipBatch:
    """A batch of clips. On the loader's side frames are uint8; :meth:`to` gives float frames in [-1, 1].

    ``frames`` (B, T, 3, H, W); ``inputs`` raw modalities: seg/inst/edges (B, T, H, W) (uint8 / int32 / uint8),
    pose/densepose (B, T, 3, H, W) uint8, edge_dist (B, T, 14, H, W) float; ``flow`` (B, T, 2, H, W) float32
    backward flow t→t-1 in pixels (``flow[:, 0]`` is zero) or None when the model needs none; ``keypoints``
    (B, T, 25, 3) BODY_25 (x, y, confidence) in the clip's pixels, or None.
    """

    frames: Any
    inputs: dict[str, Any]
    flow: Any = None
    keypoints: Any = None
    seqs: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    epoch: int = 0

    @property
    def batch_size(self) -> int:
        return int(self.frames.shape[0])

    @property
    def length(self) -> int:
        return int(self.frames.shape[1])

    def to(self, device: Any, non_blocking: bool = False) -> ClipBatch:
        """Tensors moved to ``device``; uint8 frames become float32 in [-1, 1]."""
        frames = self.frames.to(device, non_blocking=non_blocking)
        if frames.dtype == torch.uint8:
            frames = frames.float().div_(127.5).sub_(1.0)

        def mv(t: Any) -> Any:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return ClipBatch(frames, {k: mv(v) for k, v in self.inputs.items()}, mv(self.flow), mv(self.keypoints),
                         list(self.seqs), list(self.starts), list(self.steps), list(self.indices), self.epoch)

    def pin_memory(self) -> ClipBatch:
        """Called by DataLoader(pin_memory=True) on CUDA."""

        def pin(t: Any) -> Any:
            return None if t is None else t.pin_memory()

        return ClipBatch(pin(self.frames), {k: pin(v) for k, v in self.inputs.items()}, pin(self.flow),
                         pin(self.keypoints), self.seqs, self.starts, self.steps, self.indices, self.epoch)

    def slice_time(self, start: int, stop: int) -> ClipBatch:
        """Frames ``start..stop-1`` of every clip (flow of the first kept frame is zeroed: it points outside)."""
        flow = None
        if self.flow is not None:
            flow = self.flow[:, start:stop].clone()
            flow[:, 0] = 0
        kp = None if self.keypoints is None else self.keypoints[:, start:stop]
        return ClipBatch(self.frames[:, start:stop], {k: v[:, start:stop] for k, v in self.inputs.items()}, flow, kp,
                         self.seqs, [s + start * st for s, st in zip(self.starts, self.steps)], self.steps,
                         self.indices, self.epoch)


def collate_clips(items: Sequence[Any]) -> Any:
    """Stack clip dicts into a :class:`ClipBatch`, cut to the shortest clip; a failed item's error is returned
    (not raised) so the main process re-raises the user's one-line message instead of a worker traceback."""
    for item in items:
        if isinstance(item, BaseException):
            return item
    t = min(int(item["frames"].shape[0]) for item in items)

    def stack(key: str) -> Any:
        if items[0].get(key) is None:
            return None
        return torch.stack([torch.as_tensor(item[key][:t]) for item in items])

    inputs = {m: torch.stack([torch.as_tensor(item["inputs"][m][:t]) for item in items]) for m in items[0]["inputs"]}
    return ClipBatch(frames=stack("frames"), inputs=inputs, flow=stack("flow"), keypoints=stack("keypoints"),
                     seqs=[item["seq"] for item in items], starts=[int(item["start"]) for item in items],
                     steps=[int(item["step"]) for item in items], indices=[int(item["index"]) for item in items],
                     epoch=int(items[0]["epoch"]))


# -- geometry ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Geometry:
    """One clip's resize (to rw×rh), crop (x, y, W, H) and flip, shared by all its frames."""

    rw: int
    rh: int
    x: int
    y: int
    w: int
    h: int
    flip: bool
    sx: float  # resize factors (resized / source)
    sy: float


def _geometry(src: tuple[int, int], dst: tuple[int, int], rng: np.random.Generator | None,
              scale_range: tuple[float, float], flip: bool, crop: str = "random") -> _Geometry:
    """Cover ``dst`` keeping the aspect ratio, zoom by a random factor, crop at a random place, maybe flip.

    ``crop="centred"`` (the official pose crop, ``get_img_params`` with ``scaledCrop``): x at the centre plus
    N(0, slack/3) clipped to ±slack, where slack = half the width the zoom added; y uniform in the top eighth.
    Without ``rng`` (evaluation): no zoom, centre crop, no flip.
    """
    w0, h0 = src
    w, h = dst
    cover = max(w / w0, h / h0)
    zoom = 1.0
    if rng is not None:
        lo, hi = sorted(scale_range)
        zoom = max(1.0, float(rng.uniform(lo, hi)) if hi > lo else lo)
    rw, rh = max(w, math.ceil(w0 * cover * zoom - 1e-6)), max(h, math.ceil(h0 * cover * zoom - 1e-6))
    if rng is not None and crop == "centred":
        slack = (rw - rw / zoom) / 2.0
        off = float(np.clip(rng.normal() * slack / 3.0, -slack, slack))
        x = int(min(max(round((rw - w) / 2.0 + off), 0), rw - w))
        y = int(rng.integers(0, min(rh - h, rh // 8) + 1))
        do_flip = bool(flip and rng.random() < 0.5)
    elif rng is not None:
        x, y = int(rng.integers(0, rw - w + 1)), int(rng.integers(0, rh - h + 1))
        do_flip = bool(flip and rng.random() < 0.5)
    else:
        x, y, do_flip = (rw - w) // 2, (rh - h) // 2, False
    return _Geometry(rw, rh, x, y, w, h, do_flip, rw / w0, rh / h0)


def _apply(img: np.ndarray, g: _Geometry, nearest: bool) -> np.ndarray:
    if (img.shape[1], img.shape[0]) != (g.rw, g.rh):
        if nearest:
            interp = cv2.INTER_NEAREST
        else:
            interp = cv2.INTER_AREA if g.rw < img.shape[1] else cv2.INTER_LINEAR
        squeeze = img.ndim == 3 and img.shape[2] == 1
        if img.ndim == 3 and img.shape[2] > 4:  # OpenCV's area/cubic resize takes at most 4 channels (edge_dist: 14)
            img = np.concatenate([cv2.resize(np.ascontiguousarray(img[..., c:c + 4]), (g.rw, g.rh),
                                             interpolation=interp).reshape(g.rh, g.rw, -1)
                                  for c in range(0, img.shape[2], 4)], axis=2)
        else:
            img = cv2.resize(img, (g.rw, g.rh), interpolation=interp)
        if squeeze:
            img = img[..., None]
    img = img[g.y:g.y + g.h, g.x:g.x + g.w]
    if g.flip:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def _apply_flow(flow: np.ndarray, g: _Geometry) -> np.ndarray:
    """Resize/crop/flip a backward flow field (H, W, 2) in source pixels → clip pixels."""
    out = _apply(flow.astype(np.float32), g, nearest=False).copy()
    out[..., 0] *= g.sx
    out[..., 1] *= g.sy
    if g.flip:
        out[..., 0] *= -1.0
    return out


def _apply_keypoints(kp: np.ndarray, g: _Geometry) -> np.ndarray:
    out = kp.astype(np.float32).copy()
    seen = out[:, 2] > 0
    out[:, 0] = np.where(seen, out[:, 0] * g.sx - g.x, 0.0)
    out[:, 1] = np.where(seen, out[:, 1] * g.sy - g.y, 0.0)
    return mirror_body25(out, g.w) if g.flip else out


def _read_any_png(path: Path) -> np.ndarray:
    """A plugin's modality: single-channel maps as they are, 3-channel images as RGB."""
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise DatasetError(f"missing file '{path}'")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise DatasetError(f"'{path}' is not a readable image (corrupt or truncated); re-extract it")

    return swap_rb(img) if img.ndim == 3 and img.shape[2] == 3 else img


# -- the dataset ------------------------------------------------------------------------------------------------------
class ClipDataset:
    """Clips of one split of a v2v dataset (a map-style torch Dataset keyed by :data:`ClipKey`).

    ``history``: real frames before the generated ones (the model's L; 0 for an empty history). ``need_flow``:
    read (or estimate) the reference flow. ``keypoints``: read BODY_25 keypoints from pose/*.json.
    ``clips_per_sequence``: items per sequence and epoch. ``augment``: random zoom/crop/flip/stride (off for
    validation clips, which start at frame 0 with stride 1).
    """

    def __init__(self, data: DataConfig, *, split: str | None = None, history: int = 0, seed: int = 0,
                 need_flow: bool = True, keypoints: bool = False, augment: bool = True,
                 label_set: LabelSet | None = None) -> None:
        if not data.root:
            raise ConfigError("no dataset given: pass --data DATASET (or set data.root)")
        self.cfg = data
        self.ds = Dataset(data.root)
        if not self.ds.root.is_dir():
            raise DatasetError(f"dataset '{self.ds.root}' does not exist; create one with `v2v extract KIND VIDEO -o "
                               f"{self.ds.root}` or `v2v demo world --out {self.ds.root}`")
        meta = self.ds.frames_meta()
        self.split = split or data.split
        self.history = int(history)
        self.seed = int(seed)
        self.need_flow = need_flow
        self.keypoints = keypoints
        self.augment = augment
        self.size = (int(data.size[0]), int(data.size[1]))
        self.inputs = list(dict.fromkeys(data.inputs))
        self.frame_ext = "." + str(meta.get("format", "jpg")).lstrip(".")
        self.label_set = label_set
        if label_set is None and "seg" in self.inputs:
            self.label_set = self.ds.label_set("seg")
        self._valid_ids: np.ndarray | None = None
        if self.label_set is not None and "seg" in self.inputs:
            valid = np.zeros(256, dtype=bool)
            for c in self.label_set.classes:
                if 0 <= c.id < 256:
                    valid[c.id] = True
            if self.label_set.ignore_id is not None and 0 <= self.label_set.ignore_id < 256:
                valid[self.label_set.ignore_id] = True
            self._valid_ids = valid
        for m in self.inputs:
            if not self.ds.modality_dir(m).is_dir():
                raise DatasetError(f"dataset '{self.ds.root}' has no '{m}' modality (data.inputs asks for it); "
                                   f"extract it with `v2v extract {m} ...` or remove it from data.inputs")
        self.flow_source = data.flow
        if need_flow and data.flow == "dataset" and not self.ds.modality_dir("flow").is_dir():
            raise DatasetError(f"dataset '{self.ds.root}' has no flow/ modality; extract it (`v2v extract flow "
                               f"...`) or compute flow on the fly with --set data.flow=<estimator>")
        if need_flow and data.flow != "dataset":
            get_registry().get_flow_estimator(data.flow)  # unknown name: error now, not in a worker
        self._estimator: Any = None
        wanted = self.ds.split(self.split)
        known = meta["sequences"]
        missing = [s for s in wanted if s not in known]
        if missing:
            raise DatasetError(f"split '{self.split}' names sequence(s) not in meta/frames.json: "
                               f"{', '.join(missing[:5])}; fix splits.json")
        self.sequences: list[str] = []
        self.counts: dict[str, int] = {}
        for seq in wanted:
            count = int(known[seq].get("count", 0))
            if count < self.history + 1:
                log.warning("sequence '%s' has %d frame(s), fewer than the %d a clip needs: left out", seq, count,
                            self.history + 1)
                continue
            self.sequences.append(seq)
            self.counts[seq] = count
        self.clips_per_sequence = max(1, int(getattr(data, "clips_per_sequence", 1)))
        # data.epoch_items "frames": item i of an epoch belongs to the sequence whose frame range holds i (the
        # official pose epoch: Σ frame counts, sequences drawn in proportion to their length)
        self.epoch_items = str(getattr(data, "epoch_items", "sequences"))
        self._item_ends = np.cumsum([self.counts[s] for s in self.sequences], dtype=np.int64)

    def __len__(self) -> int:
        if self.epoch_items == "frames":
            return int(self._item_ends[-1]) if len(self._item_ends) else 0
        return len(self.sequences) * self.clips_per_sequence

    def _sequence_of(self, index: int) -> str:
        if self.epoch_items == "frames" and len(self._item_ends):
            i = int(np.searchsorted(self._item_ends, index % int(self._item_ends[-1]), side="right"))
            return self.sequences[i]
        return self.sequences[index % len(self.sequences)]

    # -- reading ---------------------------------------------------------------------------------------------------
    def _read_modality(self, m: str, seq: str, index: int) -> np.ndarray:
        if m == "seg":
            ids = read_label(self.ds.frame_path(m, seq, index))
            if self._valid_ids is not None:
                bad = ~self._valid_ids[ids]
                if bad.any():
                    values = sorted(int(v) for v in np.unique(ids[bad]))
                    shown = ", ".join(map(str, values[:5])) + (", ..." if len(values) > 5 else "")
                    name = self.label_set.name if self.label_set is not None else "?"
                    raise DatasetError(f"sequence '{seq}' frame {index}: label id {shown} is not in the label set "
                                       f"'{name}' of meta/seg.json; fix seg/{seq}/{index:06d}.png or the label set")
            return ids
        if m == "inst":
            return read_instance(self.ds.frame_path(m, seq, index)).astype(np.int32)
        if m == "edges":
            return read_label(self.ds.frame_path(m, seq, index))
        npz = self.ds.frame_path(m, seq, index, ".npz")
        if m == "edge_dist":  # pixels to each face curve, clipped at 255 by the extractor → [0, 1] (docs/model.md)
            return np.clip(read_float_maps(npz) / 255.0, 0.0, 1.0, dtype=np.float32)
        if m not in MODALITY_EXT and npz.is_file():
            return read_float_maps(npz)
        path = self.ds.frame_path(m, seq, index)
        if m == "densepose":
            iuv = read_image(path)
            iuv[..., 2] = DENSEPOSE_I_LUT[iuv[..., 2]]
            return iuv
        if m == "pose":
            return read_image(path)
        return _read_any_png(path)

    def _read_keypoints(self, seq: str, index: int) -> np.ndarray:
        return read_body25(self.ds.frame_path("pose", seq, index, ".json"))

    def _dataset_flow(self, seq: str, index: int, step: int) -> np.ndarray:
        """Backward flow frame ``index`` → ``index - step`` composed from the dataset's consecutive flows."""
        acc, _ = read_flow(self.ds.frame_path("flow", seq, index))
        for j in range(1, step):
            nxt, _ = read_flow(self.ds.frame_path("flow", seq, index - j))
            # p lands at p + acc(p) in frame index-j; continue with that frame's flow sampled there
            acc = acc + warp_numpy(nxt, acc)
        return acc

    def _estimated_flow(self, cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
        if self._estimator is None:
            cls = get_registry().get_flow_estimator(self.flow_source)
            self._estimator = cls(device="cpu")
        return np.asarray(self._estimator.backward(cur, prev), dtype=np.float32)

    # -- items -----------------------------------------------------------------------------------------------------
    def plan(self, key: ClipKey) -> tuple[str, int, int, int, np.random.Generator | None]:
        """(sequence, first frame, stride, frames) of item ``key`` and its RNG (None for evaluation clips)."""
        index, epoch, n_frames = key
        seq = self._sequence_of(index)
        count = self.counts[seq]
        n = max(1, min(self.history + int(n_frames), count))
        if epoch < 0 or not self.augment:
            return seq, 0, 1, n, None
        rng = np.random.default_rng([self.seed, epoch, index])
        max_step = max(1, min(self.cfg.max_t_step, (count - 1) // (n - 1) if n > 1 else 1))
        step = int(rng.integers(1, max_step + 1))
        start = int(rng.integers(0, count - (n - 1) * step))
        return seq, start, step, n, rng

    def __getitem__(self, key: ClipKey) -> Any:
        try:
            return self._item(key)
        except V2VError as exc:  # returned, not raised: see collate_clips
            return exc

    def _item(self, key: ClipKey) -> dict[str, Any]:
        seq, start, step, n, rng = self.plan(key)
        ids = [start + i * step for i in range(n)]
        raw_frames = []
        for i in ids:
            try:
                raw_frames.append(self._read_frame(seq, i))
            except DatasetError as exc:
                raise DatasetError(f"sequence '{seq}' frame {i}: {exc}") from exc
        src = (raw_frames[0].shape[1], raw_frames[0].shape[0])
        geom = _geometry(src, self.size, rng, tuple(self.cfg.scale_range), self.cfg.flip,  # type: ignore[arg-type]
                         str(getattr(self.cfg, "crop", "random")))
        frames = np.stack([_apply(f, geom, nearest=False) for f in raw_frames]).transpose(0, 3, 1, 2)
        # official random_drop_prob: each DensePose part of each frame blanked with probability p (drawn after the
        # geometry, so p = 0 leaves every other random choice of the clip as it was)
        drop_p = float(getattr(self.cfg, "random_drop_prob", 0.0))
        drops = None
        if rng is not None and drop_p > 0 and "densepose" in self.inputs:
            drops = rng.random((n, DENSEPOSE_PARTS)) < drop_p
        inputs: dict[str, np.ndarray] = {}
        for m in self.inputs:
            maps = []
            for j, i in enumerate(ids):
                try:
                    value = self._read_modality(m, seq, i)
                except DatasetError as exc:
                    if str(exc).startswith(f"sequence '{seq}'"):
                        raise
                    raise DatasetError(f"sequence '{seq}' frame {i}: {exc}") from exc
                if (value.shape[1], value.shape[0]) != src:
                    raise DatasetError(f"sequence '{seq}' frame {i}: {m} is {value.shape[1]}x{value.shape[0]} but "
                                       f"the frame is {src[0]}x{src[1]}; re-extract {m}")
                out = _apply(value, geom, nearest=m in _NEAREST)
                if m == "densepose" and drops is not None and drops[j].any():
                    gone = np.isin(out[..., 2], DENSEPOSE_I_LUT[np.flatnonzero(drops[j]) + 1])
                    out = out.copy()
                    out[gone] = 0
                maps.append(out.transpose(2, 0, 1) if out.ndim == 3 else out)
            inputs[m] = np.stack(maps)
        item: dict[str, Any] = {"frames": frames, "inputs": inputs, "seq": seq, "start": start, "step": step,
                                "index": key[0], "epoch": key[1], "flow": None, "keypoints": None}
        if self.need_flow:
            flows = [np.zeros((self.size[1], self.size[0], 2), dtype=np.float32)]
            for a, b in zip(ids[1:], ids[:-1]):
                try:
                    if self.flow_source == "dataset":
                        flows.append(_apply_flow(self._dataset_flow(seq, a, a - b), geom))
                    else:
                        cur, prev = frames[len(flows)].transpose(1, 2, 0), frames[len(flows) - 1].transpose(1, 2, 0)
                        flows.append(self._estimated_flow(np.ascontiguousarray(cur), np.ascontiguousarray(prev)))
                except DatasetError as exc:
                    raise DatasetError(f"sequence '{seq}' frame {a} (flow): {exc}") from exc
            item["flow"] = np.stack(flows).transpose(0, 3, 1, 2).astype(np.float32)
        if self.keypoints:
            item["keypoints"] = np.stack([_apply_keypoints(self._read_keypoints(seq, i), geom) for i in ids])
        return item

    def _read_frame(self, seq: str, index: int) -> np.ndarray:
        path = self.ds.frame_path("frames", seq, index, self.frame_ext)
        if not path.is_file():
            other = path.with_suffix(".png" if self.frame_ext != ".png" else ".jpg")
            if other.is_file():
                path = other
        return read_image(path)

    def clip(self, seq_index: int, n_frames: int) -> ClipBatch:
        """An evaluation clip (batch of 1): frames 0.. of sequence ``seq_index``, centre crop, stride 1."""
        item = self[(seq_index, -1, n_frames)]
        batch = collate_clips([item])
        if isinstance(batch, BaseException):
            raise batch
        return batch  # type: ignore[no-any-return]


# -- sampling ---------------------------------------------------------------------------------------------------------
class ClipBatchSampler:
    """Batches of :data:`ClipKey` for epochs ``start_epoch``..``epochs - 1``, resuming at ``start_batch``.

    Each epoch is a permutation of the items drawn from (seed, epoch); global batches of ``batch_size ×
    world_size`` items are cut in order (a last incomplete batch is dropped) and rank ``r`` takes slice ``r``.
    """

    def __init__(self, n_items: int, batch_size: int, *, seed: int, schedule: ClipSchedule, epochs: int,
                 start_epoch: int = 0, start_batch: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be at least 1, got {batch_size}")
        global_batch = batch_size * world_size
        if n_items < global_batch:
            raise ConfigError(f"an epoch has {n_items} clip(s), fewer than one batch of {global_batch} "
                              f"(data.batch_size {batch_size} × {world_size} process(es)); lower data.batch_size or "
                              f"raise data.clips_per_sequence")
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.schedule, self.epochs = schedule, epochs
        self.start_epoch, self.start_batch = start_epoch, start_batch
        self.rank, self.world_size = rank, world_size

    @property
    def batches_per_epoch(self) -> int:
        return self.n_items // (self.batch_size * self.world_size)

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(self.n_items)

    def __len__(self) -> int:
        total = (self.epochs - self.start_epoch) * self.batches_per_epoch - self.start_batch
        return max(0, total)

    def __iter__(self) -> Iterator[list[ClipKey]]:
        g = self.batch_size * self.world_size
        for epoch in range(self.start_epoch, self.epochs):
            order = self.order(epoch)
            n_frames = self.schedule.frames(epoch)
            first = self.start_batch if epoch == self.start_epoch else 0
            for b in range(first, self.batches_per_epoch):
                chunk = order[b * g:(b + 1) * g][self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
                yield [(int(i), epoch, n_frames) for i in chunk]


def _worker_init(_: int) -> None:
    # Ctrl-C reaches the whole process group: the main process saves a checkpoint and stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(dataset: ClipDataset, sampler: ClipBatchSampler, *, num_workers: int,
                pin_memory: bool = False) -> torch.utils.data.DataLoader[Any]:
    """A DataLoader over ``dataset`` driven by ``sampler`` (workers ignore SIGINT; errors come back as values)."""
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(prefetch_factor=2, worker_init_fn=_worker_init, persistent_workers=False)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,  # type: ignore[arg-type]
                      collate_fn=collate_clips, pin_memory=pin_memory, **kwargs)
