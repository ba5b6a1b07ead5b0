"""FID: Fréchet distance between Inception features of real and fake frames (Heusel et al. 2017).

Every frame of every paired sequence (see :mod:`v2vcli.io.inputs`) is one sample; the two sets need not
have the same size. Network: the FID Inception v3 of :mod:`v2v_plugins.evaluate.inception` with the registry's
``inception_fid`` weights (``--weights inception_fid=PATH`` to point at a file). Protocols:

* ``pytorch-fid`` (default): exactly pytorch-fid 0.3.0's preprocessing: uint8 RGB → float32 / 255,
  ``F.interpolate(size=(299, 299), mode="bilinear", align_corners=False)``, then ``2x − 1``. Numbers are comparable
  with ``python -m pytorch_fid`` on the same images (PNG frames; JPEG decoders may differ by a grey level).
* ``clean``: clean-fid's resize: PIL bicubic on each channel in float mode (no re-quantisation), clipped to
  [0, 255], then ``(x − 128) / 128``.

``dims`` picks pytorch-fid's feature tap: 64 (first max pool), 192 (second max pool), 768 (pre-aux), 2048 (pool3).

Feature cache: features of each input sequence are stored as float32 ``.npy`` under
``$V2V_HOME/cache/fid/<key>.npy``; the key is a sha256 of the sequence's resolved path, the name, size and mtime of
every file read, the protocol, the dims, ``fast`` and the weights' sha256, so editing a frame, re-encoding a video or
changing weights recomputes. Delete the folder to clear it; ``--no-cache`` bypasses it.

Speed (see benchmarks/bench_eval.py): frames are decoded, batched and converted in a background thread while the
network runs under ``torch.inference_mode``. By default the network runs pytorch-fid's exact kernels (NCHW,
separate BatchNorm) so features agree with pytorch-fid bit for bit on the same device; ``--fast`` switches to
channels-last with BatchNorm folded into the convolutions (faster on CPU; float32 rounding differs by ~1e-4 on
pool3 features, far below the sampling noise of any FID).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from v2vcli.errors import ConfigError, VideoError
from v2vcli.io.files import atomic_path
from v2vcli.io.inputs import (EvalInput, InputSequence, estimated_frames, open_sequence, pair_inputs,
                             resolve_input, sequence_signature)
from v2vcli.metric import Metric, MetricResult
from v2vcli.runtime import progress
from v2vcli.weights import v2v_home

__all__ = ["FIDConfig", "FID", "FIDFeatureExtractor", "clean_resize", "feature_cache_dir", "FEATURE_VERSION"]

log = logging.getLogger(__name__)

# Bumped when the feature computation changes in a way the cache key does not capture.
FEATURE_VERSION = 1
PROTOCOLS = ("pytorch-fid", "clean")


@dataclass(kw_only=True)
class FIDConfig:
    """Options of ``v2v eval fid``."""

    dims: Literal[64, 192, 768, 2048] = field(
        default=2048, metadata={"help": "Inception feature tap: 2048 = pool3 (pytorch-fid's --dims)."})
    protocol: Literal["pytorch-fid", "clean"] = field(
        default="pytorch-fid", metadata={"help": "Preprocessing: pytorch-fid's (bilinear) or clean-fid's (bicubic)."})
    batch_size: int = field(default=64, metadata={"help": "Frames per network call."})
    sqrtm: Literal["scipy", "eigh"] = field(
        default="scipy", metadata={"help": "Matrix square root: scipy (as pytorch-fid) or eigh (symmetric, robust)."})
    cache: bool = field(default=True, metadata={"help": "Reuse features cached under $V2V_HOME/cache/fid."})
    fast: bool = field(default=False, metadata={
        "help": "Channels-last layout and BatchNorm folded into the convolutions: faster on CPU, features differ "
                "from pytorch-fid's by float32 rounding (~1e-4)."})

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"fid batch_size must be at least 1, got {self.batch_size}")


def feature_cache_dir() -> Path:
    return v2v_home() / "cache" / "fid"


def clean_resize(frame: Any, size: int = 299) -> Any:
    """clean-fid's resize of one RGB uint8 (H, W, 3) frame: PIL bicubic per channel in float32, clipped."""
    from PIL import Image

    channels = []
    for c in range(3):
        img = Image.fromarray(np.ascontiguousarray(frame[..., c], dtype=np.float32))
        channels.append(np.asarray(img.resize((size, size), resample=Image.Resampling.BICUBIC)).clip(0, 255))
    return np.stack(channels, axis=0).astype(np.float32)  # (3, size, size)


_DONE = object()


class FIDFeatureExtractor:
    """Inception features of frames: batches decoded and preprocessed in a thread, the network on ``device``."""

    def __init__(self, weights_path: str | Path, dims: int = 2048, protocol: str = "pytorch-fid",
                 device: str = "cpu", batch_size: int = 64, fast: bool = False) -> None:
        import torch

        from v2v_plugins.evaluate.inception import load_fid_inception

        if protocol not in PROTOCOLS:
            raise ConfigError(f"unknown FID protocol '{protocol}'; use one of {', '.join(PROTOCOLS)}")
        self.dims, self.protocol, self.device, self.batch_size = dims, protocol, torch.device(device), batch_size
        # The default keeps pytorch-fid's exact sequence of kernels (NCHW, separate BatchNorm), so features agree
        # bit for bit on the same device; other layouts change float32 rounding by ~1e-4 on pool3 features.
        self.memory_format = torch.channels_last if fast else torch.contiguous_format
        self.model = load_fid_inception(weights_path, dims, self.device, fuse=fast).to(
            memory_format=self.memory_format)

    # -- preprocessing -------------------------------------------------------------------------------------------
    def _host_batch(self, frames: list[Any]) -> Any:
        """CPU part of preprocessing (runs in the decode thread)."""
        import torch

        if self.protocol == "clean":
            return torch.from_numpy(np.stack([clean_resize(f) for f in frames]))  # (B, 3, 299, 299) in [0, 255]
        return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W) uint8

    def _device_batch(self, batch: Any) -> Any:
        """Device part: pytorch-fid resizes on the model's device, as pytorch-fid itself does."""
        import torch.nn.functional as F

        x = batch.to(self.device, non_blocking=True)
        if self.protocol == "clean":
            x = (x - 128) / 128
        else:
            x = x.float().div(255)  # torchvision's ToTensor
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            x = 2 * x - 1
        return x.contiguous(memory_format=self.memory_format)

    def preprocess(self, frames: list[Any]) -> Any:
        """(B, 3, 299, 299) float32 network input of RGB uint8 frames (all of one size)."""
        return self._device_batch(self._host_batch(frames))

    # -- extraction ----------------------------------------------------------------------------------------------
    def _batches(self, frames: Iterable[Any]) -> Iterator[list[Any]]:
        batch: list[Any] = []
        for frame in frames:
            if batch and frame.shape != batch[0].shape:
                yield batch
                batch = []
            batch.append(frame)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _prefetch(self, frames: Iterable[Any]) -> Iterator[Any]:
        """Host batches produced by a background thread, two ahead of the network."""
        q: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for batch in self._batches(frames):
                    if not put(self._host_batch(batch)):
                        return
                put(_DONE)
            except BaseException as exc:  # handed to the consumer, which re-raises it in the caller's thread
                put(exc)

        thread = threading.Thread(target=produce, name="v2v-fid-decode", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join(timeout=5)

    def features(self, frames: Iterable[Any], advance: Callable[[int], None] | None = None) -> Any:
        """(N, dims) float32 features of RGB uint8 (H, W, 3) frames."""
        import torch

        out = []
        with torch.inference_mode():
            for host in self._prefetch(frames):
                feats = self.model(self._device_batch(host))
                out.append(feats.float().cpu().numpy())
                if advance is not None:
                    advance(len(host))
        if not out:
            return np.zeros((0, self.dims), dtype=np.float32)
        return np.concatenate(out, axis=0)


class FID(Metric):
    """Fréchet Inception Distance between the frames of --real and --fake (lower is better)."""

    name = "fid"
    description = "Fréchet Inception Distance over all frames (pytorch-fid or clean-fid protocol)."
    higher_is_better = False
    weight_names = ("inception_fid",)
    Config = FIDConfig

    def __init__(self, config: FIDConfig | None = None, device: str = "cpu", weights: Any = None, *,
                 verify_weights: bool = True) -> None:
        super().__init__(config, device, weights, verify_weights=verify_weights)
        self._extractor: FIDFeatureExtractor | None = None
        self._weights_path: Path | None = None

    def _weights(self) -> tuple[Path, str]:
        if self._weights_path is None:
            self._weights_path = self.weights_path("inception_fid")
        return self._weights_path, self.weights_used["inception_fid"]["sha256"]

    def extractor(self) -> FIDFeatureExtractor:
        if self._extractor is None:
            path, _ = self._weights()
            cfg: FIDConfig = self.config
            self._extractor = FIDFeatureExtractor(path, cfg.dims, cfg.protocol, self.device, cfg.batch_size,
                                                  fast=cfg.fast)
        return self._extractor

    def _cache_path(self, seq: InputSequence) -> Path:
        _, sha = self._weights()
        cfg: FIDConfig = self.config
        key = {"version": FEATURE_VERSION, "source": sequence_signature(seq), "protocol": cfg.protocol,
               "dims": cfg.dims, "weights_sha256": sha, "fast": cfg.fast}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()
        return feature_cache_dir() / f"{digest[:40]}.npy"

    def sequence_features(self, seqs: Iterable[InputSequence], what: str = "frames") -> dict[str, Any]:
        """Features of each sequence (name → (N, dims) float32), from the cache where possible."""
        cfg: FIDConfig = self.config
        out: dict[str, Any] = {}
        todo: list[tuple[InputSequence, Path | None]] = []
        for seq in seqs:
            cache = self._cache_path(seq) if cfg.cache else None
            if cache is not None and cache.is_file():
                try:
                    feats = np.load(cache)
                    if feats.ndim == 2 and feats.shape[1] == cfg.dims:
                        out[seq.name] = feats
                        log.debug("FID features of %s from cache %s", seq.path, cache)
                        continue
                except (OSError, ValueError) as exc:
                    log.warning("ignoring unreadable FID feature cache %s (%s)", cache, exc)
            todo.append((seq, cache))
        if not todo:
            return out
        extractor = self.extractor()
        with progress(estimated_frames(s for s, _ in todo), f"FID features ({what})") as advance:
            for seq, cache in todo:
                with open_sequence(seq) as reader:
                    feats = extractor.features(reader, advance)
                if len(feats) == 0:
                    raise VideoError(f"'{seq.path}' has no frames")
                out[seq.name] = feats
                if cache is not None:
                    with atomic_path(cache, suffix=".tmp.npy") as tmp:
                        np.save(tmp, feats)
        return out

    def features(self, path: str | Path | EvalInput) -> Any:
        """(N, dims) float32 features of every frame of ``path`` (all its sequences, in name order)."""
        inp = path if isinstance(path, EvalInput) else resolve_input(path)
        feats = self.sequence_features(inp.sequences)
        return np.concatenate([feats[s.name] for s in inp.sequences], axis=0)

    def compute(self, real: str | Path | None, fake: str | Path) -> MetricResult:
        from v2v_plugins.evaluate.frechet import feature_statistics, frechet_distance, rank_deficiency_warning

        if real is None:
            raise ConfigError("fid needs --real PATH")
        cfg: FIDConfig = self.config
        pairs = pair_inputs(resolve_input(real, "--real"), resolve_input(fake, "--fake"))
        real_feats = self.sequence_features([r for r, _ in pairs], "real")
        fake_feats = self.sequence_features([f for _, f in pairs], "fake")
        x_real = np.concatenate([real_feats[r.name] for r, _ in pairs], axis=0)
        x_fake = np.concatenate([fake_feats[f.name] for _, f in pairs], axis=0)
        warnings = [w for w in (rank_deficiency_warning(len(x_real), cfg.dims, "real"),
                                rank_deficiency_warning(len(x_fake), cfg.dims, "fake")) if w]
        for w in warnings:
            log.warning("%s", w)
        mu1, s1 = feature_statistics(x_real)
        mu2, s2 = feature_statistics(x_fake)
        value = frechet_distance(mu1, s1, mu2, s2, method=cfg.sqrtm)
        resize = ("F.interpolate bilinear align_corners=False to 299x299 on float32 RGB in [0, 1], then 2x-1"
                  if cfg.protocol == "pytorch-fid" else
                  "PIL bicubic per channel in float32 to 299x299, clip [0, 255], then (x-128)/128")
        return self.result(
            value,
            protocol={"protocol": cfg.protocol, "dims": cfg.dims, "preprocessing": resize,
                      "network": "FID Inception v3 (TF inception-2015-12-05, pytorch-fid port)",
                      "samples": "every frame of every paired sequence", "sqrtm": cfg.sqrtm},
            details={"real_frames": len(x_real), "fake_frames": len(x_fake),
                     "pairs": [[r.name, f.name] for r, f in pairs],
                     "real_frames_per_sequence": {r.name: len(real_feats[r.name]) for r, _ in pairs},
                     "fake_frames_per_sequence": {f.name: len(fake_feats[f.name]) for _, f in pairs}},
            warnings=warnings)
