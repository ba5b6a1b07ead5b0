"""FVD and vfid_i3d: Fréchet distances between I3D features of real and fake video clips.

Both cut every paired sequence (see :mod:`v2vcli.io.inputs`) into clips and embed each clip with the
I3D of :mod:`v2v_plugins.evaluate.i3d` (registry weights ``i3d_kinetics400``, ``--weights i3d_kinetics400=PATH``):

* **fvd** (Unterthiner et al. 2018, the common protocol): clips of 16 consecutive frames, each frame resized to
  224×224 (``F.interpolate`` bilinear, ``align_corners=False``, as the PyTorch FVD ports do; ``--resize
  center-crop`` scales the short side to 224 and crops the centre, as VideoGPT/TATS do), RGB scaled to [−1, 1];
  the feature is the 400-d Kinetics logits; Fréchet distance of the two Gaussians in float64.
* **vfid_i3d** (the vid2vid paper's video FID): the same clips, the feature is the 1024-d Mixed_5c activation
  mean-pooled over time and space.

Clips: non-overlapping by default (``--clip-stride`` = ``--clip-length``), starting at frame 0 of each sequence;
the tail shorter than a clip is dropped; ``--max-clips`` caps clips per sequence (0: all). Sequences shorter than
one clip are skipped with a warning. Real and fake clip sets need not be the same size.

Verification: the tests give one injected random I3D state dict to v2v and to cd-fvd (PyPI; the PyTorch I3D port
and FVD code of VideoGPT/TATS, which load the same ``i3d_pretrained_400.pt``): on the protocol's 16×224×224 clips
the logits agree, the FVD equals VideoGPT's Fréchet step (unbiased covariances, as here and in pytorch-fid), and
cd-fvd's own once its statistics' ÷N covariance is accounted for (a factor N/(N − 1), 0.05% at the usual 2,048 clips).
Clip cutting and the ``pool`` tap are checked against an independent re-implementation in the tests
(docs/eval.md).

Feature cache: per input sequence under ``$V2V_HOME/cache/i3d/<key>.npz`` (both taps), keyed by the files read,
the clip protocol and the weights' sha256; ``--no-cache`` bypasses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from v2vcli.errors import ConfigError, VideoError
from v2vcli.io.files import atomic_path
from v2vcli.io.inputs import (InputSequence, estimated_frames, iter_frames, pair_inputs, resolve_input,
                             sequence_signature)
from v2vcli.metric import Metric, MetricResult
from v2vcli.runtime import progress
from v2vcli.weights import v2v_home

__all__ = ["FVDConfig", "FVD", "VFIDI3D", "I3DClipFeatures", "iter_clips", "preprocess_clips", "I3D_FEATURE_VERSION"]

log = logging.getLogger(__name__)

I3D_FEATURE_VERSION = 2  # 2: BatchNorm eps 1e-5 (the port the weights come from), was 1e-3
REFERENCE = ("cd-fvd 0.1.1 (VideoGPT/TATS I3D port): same logits on the same weights, FVD equal to VideoGPT's "
             "Frechet step; cd-fvd's own statistics divide covariances by N, v2v's by N - 1")
TAPS = {"logits": "400-d Kinetics logits (averaged over time)", "pool": "1024-d Mixed_5c mean over time and space"}


@dataclass(kw_only=True)
class FVDConfig:
    """Options of ``v2v eval fvd`` and ``v2v eval vfid-i3d``."""

    clip_length: int = field(default=16, metadata={"help": "Frames per clip (the common protocol: 16)."})
    clip_stride: int = field(default=0, metadata={
        "help": "Frames between clip starts; 0 = clip length (non-overlapping clips)."})
    max_clips: int = field(default=0, metadata={"help": "At most this many clips per sequence (0: all)."})
    size: int = field(default=224, metadata={
        "help": "Frame size fed to I3D (the protocol: 224; other sizes are for quick checks, not comparable)."})
    resize: Literal["stretch", "center-crop"] = field(default="stretch", metadata={
        "help": "stretch: resize each frame to size x size; center-crop: short side to size, then centre crop."})
    batch_size: int = field(default=4, metadata={"help": "Clips per network call."})
    sqrtm: Literal["auto", "scipy", "eigh"] = field(default="auto", metadata={
        "help": "Matrix square root: scipy (as the reference FID/FVD code), eigh (symmetric, robust) or auto "
                "(scipy for full-rank covariances, eigh for rank-deficient ones, where scipy is slow and unstable)."})
    cache: bool = field(default=True, metadata={"help": "Reuse clip features cached under $V2V_HOME/cache/i3d."})

    def __post_init__(self) -> None:
        if self.clip_length < 8:
            raise ConfigError(f"clip_length {self.clip_length} is too short for I3D's temporal strides; use >= 8")
        if self.clip_stride < 0 or self.max_clips < 0:
            raise ConfigError("clip_stride and max_clips must be >= 0")
        if self.size < 32:
            raise ConfigError(f"size {self.size} is too small for I3D (32x downsampling); use >= 32 (protocol 224)")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")


def iter_clips(frames: Iterable[Any], length: int, stride: int = 0, max_clips: int = 0) -> Iterator[list[Any]]:
    """Clips (lists of ``length`` frames) starting at 0, stride, 2·stride ... of a frame stream (stride 0 = length)."""
    stride = stride or length
    buf: list[Any] = []
    start, produced = 0, 0  # start: stream index of buf[0]
    for i, frame in enumerate(frames):
        if i < start:  # a gap between clips (stride > length)
            continue
        buf.append(frame)
        if len(buf) == length:
            yield buf
            produced += 1
            if max_clips and produced >= max_clips:
                return
            start += stride
            buf = buf[stride:] if stride < length else []


def preprocess_clips(clips: list[Any], size: int = 224, resize: str = "stretch") -> Any:
    """(B, 3, T, size, size) float32 in [−1, 1] from B clips of T RGB uint8 (H, W, 3) frames."""
    import torch
    import torch.nn.functional as F

    out = []
    for clip in clips:
        x = torch.from_numpy(np.stack(clip)).permute(0, 3, 1, 2).float() / 255  # (T, 3, H, W)
        h, w = x.shape[-2:]
        if resize == "stretch":
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        else:
            scale = size / min(h, w)
            th, tw = max(size, round(h * scale)), max(size, round(w * scale))
            x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
            top, left = (th - size) // 2, (tw - size) // 2
            x = x[..., top:top + size, left:left + size]
        out.append(x.permute(1, 0, 2, 3))  # (3, T, size, size)
    return torch.stack(out) * 2 - 1


class I3DClipFeatures:
    """Both I3D taps of every clip of a frame stream, batched on ``device``."""

    def __init__(self, weights_path: str | Path, config: FVDConfig, device: str = "cpu") -> None:
        import torch

        from v2v_plugins.evaluate.i3d import load_i3d

        self.config, self.device = config, torch.device(device)
        self.model = load_i3d(weights_path, self.device)

    def features(self, frames: Iterable[Any], advance: Callable[[int], None] | None = None) -> dict[str, Any]:
        """``{"logits": (N, 400), "pool": (N, 1024)}`` float32 for the N clips of ``frames``."""
        import torch

        cfg = self.config
        outs: dict[str, list[Any]] = {"logits": [], "pool": []}
        batch: list[list[Any]] = []

        def run() -> None:
            x = preprocess_clips(batch, cfg.size, cfg.resize).to(self.device)
            # Deep stacks of small activations hit float32 denormals, which are ~2x slower on CPU; flushing them
            # to zero changes nothing measurable (they are < 1e-38).
            flush = self.device.type == "cpu" and torch.set_flush_denormal(True)
            try:
                with torch.inference_mode():
                    res = self.model(x)
            finally:
                if flush:
                    torch.set_flush_denormal(False)
            for tap in outs:
                outs[tap].append(res[tap].float().cpu().numpy())
            if advance is not None:
                advance(len(batch) * cfg.clip_length)
            batch.clear()

        for clip in iter_clips(frames, cfg.clip_length, cfg.clip_stride, cfg.max_clips):
            if batch and clip[0].shape != batch[0][0].shape:
                run()
            batch.append(clip)
            if len(batch) == cfg.batch_size:
                run()
        if batch:
            run()
        dims = {"logits": self.model.num_classes, "pool": 1024}
        return {tap: (np.concatenate(v) if v else np.zeros((0, dims[tap]), np.float32)) for tap, v in outs.items()}


def i3d_cache_dir() -> Path:
    return v2v_home() / "cache" / "i3d"


class _I3DFrechet(Metric):
    """Shared body of fvd and vfid_i3d: clip features, cache, Fréchet distance of one tap."""

    tap: ClassVar[str] = "logits"
    higher_is_better = False
    weight_names = ("i3d_kinetics400",)
    Config = FVDConfig

    def __init__(self, config: FVDConfig | None = None, device: str = "cpu", weights: Any = None, *,
                 verify_weights: bool = True) -> None:
        super().__init__(config, device, weights, verify_weights=verify_weights)
        self._extractor: I3DClipFeatures | None = None
        self._path: Path | None = None

    def _weights(self) -> tuple[Path, str]:
        if self._path is None:
            self._path = self.weights_path("i3d_kinetics400")
        return self._path, self.weights_used["i3d_kinetics400"]["sha256"]

    def _cache_path(self, seq: InputSequence) -> Path:
        cfg: FVDConfig = self.config
        key = {"version": I3D_FEATURE_VERSION, "source": sequence_signature(seq), "weights": self._weights()[1],
               "clip_length": cfg.clip_length, "clip_stride": cfg.clip_stride, "max_clips": cfg.max_clips,
               "size": cfg.size, "resize": cfg.resize}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()
        return i3d_cache_dir() / f"{digest[:40]}.npz"

    def sequence_features(self, seqs: Iterable[InputSequence], what: str) -> dict[str, dict[str, Any]]:
        """name → {"logits", "pool"} clip features of each sequence (cached)."""
        cfg: FVDConfig = self.config
        out: dict[str, dict[str, Any]] = {}
        todo: list[tuple[InputSequence, Path | None]] = []
        for seq in seqs:
            cache = self._cache_path(seq) if cfg.cache else None
            if cache is not None and cache.is_file():
                try:
                    with np.load(cache) as data:
                        out[seq.name] = {"logits": data["logits"], "pool": data["pool"]}
                    continue
                except (OSError, ValueError, KeyError) as exc:
                    log.warning("ignoring unreadable I3D feature cache %s (%s)", cache, exc)
            todo.append((seq, cache))
        if not todo:
            return out
        if self._extractor is None:
            self._extractor = I3DClipFeatures(self._weights()[0], cfg, self.device)
        with progress(estimated_frames(s for s, _ in todo), f"I3D clip features ({what})") as advance:
            for seq, cache in todo:
                feats = self._extractor.features(iter_frames(seq), advance)
                out[seq.name] = feats
                if cache is not None:
                    with atomic_path(cache, suffix=".tmp.npz") as tmp:
                        np.savez(tmp, **feats)
        return out

    def compute(self, real: str | Path | None, fake: str | Path) -> MetricResult:
        from v2v_plugins.evaluate.frechet import feature_statistics, frechet_distance, rank_deficiency_warning

        if real is None:
            raise ConfigError(f"{self.name} needs --real PATH")
        cfg: FVDConfig = self.config
        pairs = pair_inputs(resolve_input(real, "--real"), resolve_input(fake, "--fake"))
        real_feats = self.sequence_features([r for r, _ in pairs], "real")
        fake_feats = self.sequence_features([f for _, f in pairs], "fake")
        warnings: list[str] = []
        for what, feats in (("real", real_feats), ("fake", fake_feats)):
            short = [name for name, f in feats.items() if len(f[self.tap]) == 0]
            if short:
                warnings.append(f"{what} sequences shorter than one {cfg.clip_length}-frame clip are left out: "
                                f"{', '.join(short[:8])}")
        x_real = np.concatenate([real_feats[r.name][self.tap] for r, _ in pairs])
        x_fake = np.concatenate([fake_feats[f.name][self.tap] for _, f in pairs])
        for what, x in (("real", x_real), ("fake", x_fake)):
            if len(x) < 2:
                raise VideoError(f"{self.name} needs at least 2 {what} clips of {cfg.clip_length} frames, got "
                                 f"{len(x)}; give longer or more sequences, or a smaller --clip-stride")
            w = rank_deficiency_warning(len(x), x.shape[1], what)
            if w:
                warnings.append(w)
        for w in warnings:
            log.warning("%s", w)
        mu1, s1 = feature_statistics(x_real)
        mu2, s2 = feature_statistics(x_fake)
        method = cfg.sqrtm
        if method == "auto":
            method = "scipy" if min(len(x_real), len(x_fake)) - 1 >= x_real.shape[1] else "eigh"
        value = frechet_distance(mu1, s1, mu2, s2, method=method)
        return self.result(
            value,
            protocol={"feature": TAPS[self.tap], "network": "I3D Inception-v1 RGB, Kinetics-400 (pytorch-i3d layout)",
                      "clip_length": cfg.clip_length, "clip_stride": cfg.clip_stride or cfg.clip_length,
                      "max_clips_per_sequence": cfg.max_clips or "all", "size": cfg.size,
                      "preprocessing": (f"per frame F.interpolate bilinear align_corners=False to "
                                        f"{cfg.size}x{cfg.size}" if cfg.resize == "stretch" else
                                        f"short side to {cfg.size} (bilinear), centre crop") + ", RGB 2x/255-1",
                      "sqrtm": method, "covariance": "unbiased (N - 1)",
                      "reference": REFERENCE},
            details={"real_clips": len(x_real), "fake_clips": len(x_fake),
                     "pairs": [[r.name, f.name] for r, f in pairs],
                     "real_clips_per_sequence": {r.name: len(real_feats[r.name][self.tap]) for r, _ in pairs},
                     "fake_clips_per_sequence": {f.name: len(fake_feats[f.name][self.tap]) for _, f in pairs}},
            warnings=warnings)


class FVD(_I3DFrechet):
    """Fréchet Video Distance: I3D logits of 16-frame clips at 224x224 (lower is better)."""

    name = "fvd"
    description = "Fréchet Video Distance (I3D Kinetics-400 logits of 16-frame 224x224 clips)."
    tap = "logits"


class VFIDI3D(_I3DFrechet):
    """Video FID as in the vid2vid paper: mean-pooled I3D clip features (lower is better)."""

    name = "vfid_i3d"
    description = "Video FID: Fréchet distance of mean-pooled I3D (Mixed_5c, 1024-d) clip features."
    tap = "pool"
