"""Synthesis: a trained video model turns conditioning sequences into videos, streaming frame by frame.

The model's :class:`~v2vcli.model.FrameGenerator` keeps the sliding history itself (vid2vid: the L = n_frames_G - 1
previous label maps and generated frames per spatial scale), so memory does not grow with the video's length and
there is no frame cap: each output frame is written as soon as it is made, and the input reader holds one frame.
Every input frame gives one output frame, at the source's fps.

* First frames (:class:`FirstFrames`), as the official vid2vid test makes them. A vid2vid model trained with real
  history frames (``model.history: real``) saw every generated frame follow L = n_frames_G - 1 real frames, so
  frames 0..L-1 of a video come from a source: ``model`` (a single-image generator, a trained ``perframe`` run,
  makes them from their own conditioning), ``real`` (the input sequence's real frames) or ``empty`` (hallucinated
  from an empty history, which such a model never saw in training: a warning). They are output frames 0..L-1 and
  are pushed into the generator's history (``step(inputs, real=frame)``); the model generates from frame L on.
  ``auto`` (the default) is ``empty`` for a model trained from an empty history (pose) and for models without a
  history mode (perframe, predictors), and an error naming the three sources for a real-history model. A first
  frame image (``first_frame``) is a fourth source: it *is* frame 0 (resized and centre-cropped like the inputs).
  ``real`` and ``model`` give L frames (1 for a model trained from an empty history).
* The EMA generator is used when the checkpoint has one (``use_ema=False``: the trained G).
* ``batch_sequences`` K > 1 generates K sequences in lock step as one batch (useful on a GPU); a shorter sequence
  repeats its last input until the longest one ends, and its extra outputs are dropped (generation is causal, so
  its frames are those of a run on its own).

Library use::

    from v2v_plugins.synthesize import SynthesisOptions, synthesize
    report = synthesize(SynthesisOptions(checkpoint="runs/tiny", labels="world", output="out/",
                                         first_frame_model="runs/tiny_perframe"))
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from v2vcli.checkpoint import resolve_weights_file
from v2vcli.data import clips
from v2vcli.errors import ConfigError, DatasetError, V2VError
from v2vcli.io.files import read_image
from v2vcli.io.preview import colorize_inputs, tile
from v2vcli.model import load_model_for_inference
from v2vcli.runtime import ProgressBar, resolve_device, to_uint8_tensor

from .outputs import FORMATS, Format, FrameSink, non_finite_error, open_sink, output_paths, preview_path
from .sources import LabelSequence, SequenceReader, check_label_sets, parse_remap, resolve_labels

if TYPE_CHECKING:
    from v2vcli.checkpoint import CheckpointMeta
    from v2vcli.model import FrameGenerator, VideoModel

__all__ = ["SynthesisOptions", "SequenceResult", "SynthesisReport", "Synthesizer", "FirstFrames", "FIRST_FRAMES",
           "load_synthesizer", "synthesize"]

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
#: values of ``--first-frames``
FIRST_FRAMES = ("auto", "model", "real", "empty")


@dataclass
class SynthesisOptions:
    """Everything ``v2v synthesize`` takes (see the command's help for each)."""

    checkpoint: str | Path
    labels: str | Path
    output: str | Path | None = None
    split: str | None = None
    first_frame: str | Path | None = None  # an image as frame 0
    first_frames: str = "auto"  # auto, model, real or empty (see the module docstring)
    first_frame_model: str | Path | None = None  # a trained perframe run making the first frames (implies model)
    use_ema: bool = True
    format: Format = "mp4"
    preview: bool = False
    remap: Sequence[str] = ()
    seed: int = 0
    precision: str | None = None  # None: fp32 (the training precision is not inherited)
    compile: bool = False
    device: str = "auto"
    batch_sequences: int = 1
    size: tuple[int, int] | None = None  # (W, H); None: the size the model was trained at
    quality: int = 8  # mp4 quality 1..10
    cfg_overrides: Sequence[str] = ()  # section.key=value applied to the checkpoint's config
    progress: bool | None = None  # None: a progress bar only on a terminal
    overwrite: bool = False  # replace an existing PNG folder that v2v did not write


@dataclass
class SequenceResult:
    name: str
    output: Path
    frames: int
    fps: float
    seconds: float
    preview: Path | None = None
    audio: bool = False


@dataclass
class SynthesisReport:
    checkpoint: str
    step: int
    device: str
    size: tuple[int, int]
    ema: bool
    sequences: list[SequenceResult] = field(default_factory=list)
    seconds: float = 0.0
    first_frames: str = "empty"  # the source of the first frames: empty, real, model or image
    first_frame_count: int = 0  # frames taken from it
    first_frame_model: str | None = None  # mode model: the single-image generator's weights file

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.sequences)

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "step": self.step, "device": self.device, "size": list(self.size),
                "ema": self.ema, "first_frames": {"source": self.first_frames, "frames": self.first_frame_count,
                                                  "model": self.first_frame_model},
                "frames": self.frames, "seconds": round(self.seconds, 3),
                "frames_per_second": round(self.frames / self.seconds, 3) if self.seconds > 0 else None,
                "sequences": [{"name": s.name, "output": str(s.output), "frames": s.frames, "fps": s.fps,
                               "seconds": round(s.seconds, 3), "preview": str(s.preview) if s.preview else None,
                               "audio": s.audio} for s in self.sequences]}


@dataclass
class FirstFrames:
    """Where each sequence's first ``count`` frames come from (:meth:`Synthesizer.first_frames` makes one).

    ``mode``: ``empty`` (none: the generator starts from an empty history), ``real`` (the input sequence's real
    frames), ``model`` (generated by ``model``, a single-image generator) or ``image`` (``image`` is frame 0).
    """

    mode: str
    count: int = 0
    image: torch.Tensor | None = None  # mode image: (1, 3, H, W) in [-1, 1]
    model: Synthesizer | None = None  # mode model

    def describe(self) -> str:
        if self.mode == "empty":
            return "generated from an empty history"
        what = {"real": "the input's real frames", "image": "the --first-frame image",
                "model": f"generated by {self.model.checkpoint if self.model else '?'}"}[self.mode]
        return f"{'frame 0' if self.count == 1 else f'frames 0..{self.count - 1}'}: {what}"


#: Frames the generator runs ahead of the host: frame t is read (finite check, bytes to the host) only after frame
#: t + READ_BEHIND has been queued, so on an accelerator the frame loop never waits for the device.
READ_BEHIND = 2


class _PendingFrame:
    """One time step's frames (and input pictures) converted to uint8 and copied to the host without waiting: into
    pinned memory with ``non_blocking`` on CUDA, with an event to wait for when they are read."""

    def __init__(self, t: int, frame: torch.Tensor, pictures: torch.Tensor | None) -> None:
        self.t = t
        self.finite = torch.isfinite(frame).all()
        cuda = frame.device.type == "cuda"
        self.images = self._to_host(to_uint8_tensor(frame), cuda)
        self.pictures = self._to_host(to_uint8_tensor(pictures), cuda) if pictures is not None else None
        self.event = None
        if cuda:
            self.event = torch.cuda.Event()
            self.event.record()

    @staticmethod
    def _to_host(x: torch.Tensor, cuda: bool) -> torch.Tensor:
        if x.device.type == "cpu":
            return x
        if not cuda:  # other accelerators: a blocking copy
            return x.cpu()
        host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
        host.copy_(x, non_blocking=True)
        return host

    def read(self, lengths: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray | None] | None]:
        """Wait for the copies, refuse non-finite frames (:func:`non_finite_error`), hand out per sequence."""
        if self.event is not None:
            self.event.synchronize()
        if not bool(self.finite):
            raise non_finite_error(f"frame {self.t}")
        images = self.images.numpy()
        pictures = self.pictures.numpy() if self.pictures is not None else None
        return [(images[k], pictures[k] if pictures is not None else None) if self.t < lengths[k] else None
                for k in range(len(lengths))]


def _classes(label_set: Any) -> list[tuple[int, str]]:
    return [] if label_set is None else [(c.id, c.name) for c in label_set.classes]


class Synthesizer:
    """A loaded model ready to generate: its frame generator, input modalities, output size and label set."""

    def __init__(self, model: VideoModel, meta: CheckpointMeta, *, use_ema: bool = True,
                 size: tuple[int, int] | None = None, compile: bool = False, checkpoint: str = "") -> None:
        self.model = model
        self.meta = meta
        self.checkpoint = checkpoint
        self.device = model.device
        self.label_set = model.label_set
        self.inputs = list(dict.fromkeys(model.cfg.data.inputs))
        want = size or (int(model.cfg.data.size[0]), int(model.cfg.data.size[1]))
        check = getattr(type(model), "check_size", None)
        self.size: tuple[int, int] = tuple(check(model.cfg, want)) if callable(check) else want  # type: ignore[assignment]
        self.use_ema = bool(use_ema)
        self.precision = str(getattr(model.cfg.train, "precision", "fp32") or "fp32")
        self.ema = bool(use_ema and model.ema is not None)
        if use_ema and model.ema is None:
            log.warning("the checkpoint has no EMA generator (optim.ema_beta was 0): using the trained G")
        self.generator: FrameGenerator = model.frame_generator(use_ema=use_ema)
        if compile:
            inner = getattr(self.generator, "G", None)
            if inner is None:
                log.warning("--compile: model '%s' has no generator module to compile; running eagerly", model.name)
            else:
                self.generator.G = torch.compile(inner)  # type: ignore[attr-defined]

    # -- inputs ----------------------------------------------------------------------------------------------------
    def reader(self, seq: LabelSequence, remap: np.ndarray | None = None) -> SequenceReader:
        check_label_sets(self.label_set if "seg" in self.inputs else None, seq.root)
        return SequenceReader(seq, self.model.cfg.data, self.size, label_set=self.label_set, remap=remap)

    def first_frame(self, path: str | Path) -> torch.Tensor:
        """An image as a (1, 3, H, W) frame in [-1, 1] at the output size (cover, centre crop)."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"--first-frame '{p}' does not exist; pass an image file (png, jpg)")
        try:
            img = read_image(p)
        except DatasetError as exc:
            raise ConfigError(f"--first-frame: {exc}") from exc
        geom = clips._geometry((img.shape[1], img.shape[0]), self.size, None, (1.0, 1.0), False)
        img = clips._apply(img, geom, nearest=False)
        return torch.from_numpy(img).permute(2, 0, 1)[None].float().div(127.5).sub(1.0).to(self.device)

    # -- first frames ----------------------------------------------------------------------------------------------
    @property
    def history_mode(self) -> str | None:
        """``model.history`` of a vid2vid-like model ("real" or "empty"); None for models without one."""
        mode = getattr(self.model.cfg.model, "history", None)
        return str(mode) if mode is not None else None

    @property
    def history_frames(self) -> int:
        """L: the real frames a training clip of the model started from (0: an empty history)."""
        return int(self.model.history_frames)

    def first_frames(self, mode: str = "auto", *, model: str | Path | Synthesizer | None = None,
                     image: str | Path | None = None) -> FirstFrames:
        """Resolve ``--first-frames MODE`` / ``--first-frame-model RUN`` / ``--first-frame IMAGE`` for this model
        (see the module docstring); a mistake is a one-line :class:`ConfigError`. ``model`` is a run folder,
        checkpoint or weights file (loaded on this device, precision and EMA choice) or a loaded Synthesizer."""
        check_first_frame_options(mode, model, image)
        L = self.history_frames
        if image is not None:
            if L > 1:
                log.info("--first-frame: the image is frame 0; the model's history holds %d frames, so frames 1..%d "
                         "are generated from a shorter history than in training", L, L - 1)
            return FirstFrames("image", 1, image=self.first_frame(image))
        if model is not None:
            mode = "model"
        if mode == "auto":
            if self.history_mode == "real" and L > 0:
                raise ConfigError(
                    f"this model was trained with {L} real history frame{'s' if L > 1 else ''} before each generated "
                    f"one (model.history: real), so its first frames need a source: --first-frame-model RUN (a "
                    f"trained perframe run generates them), --first-frames real (the input's real frames) or "
                    f"--first-frames empty (hallucinated from an empty history, unlike training)")
            return FirstFrames("empty")
        if mode == "empty":
            if self.history_mode == "real" and L > 0:
                log.warning("--first-frames empty: this model was trained with %d real history frame(s) (model.history:"
                            " real); its first frames start from an empty history it never saw in training", L)
            return FirstFrames("empty")
        count = max(L, 1)
        if mode == "real":
            return FirstFrames("real", count)
        assert model is not None  # noqa: S101 - check_first_frame_options: mode model needs a model
        ff = model if isinstance(model, Synthesizer) else self._load_first_frame_model(model)
        self._check_first_frame_model(ff, str(model if not isinstance(model, Synthesizer) else model.checkpoint))
        return FirstFrames("model", count, model=ff)

    def _load_first_frame_model(self, run: str | Path) -> Synthesizer:
        try:
            return load_synthesizer(run, device=str(self.device), precision=self.precision, use_ema=self.use_ema,
                                    size=self.size)
        except V2VError as exc:
            raise type(exc)(f"--first-frame-model: {exc}") from exc

    def _check_first_frame_model(self, ff: Synthesizer, name: str) -> None:
        """The single-image generator must start from nothing and read the same conditioning as this model."""
        what = f"--first-frame-model '{name}'"
        if ff.history_frames > 0:
            raise ConfigError(f"{what} is a '{ff.meta.model}' run that itself starts from {ff.history_frames} real "
                              f"frame(s); pass a run of the single-image model (`v2v train --config "
                              f"tiny_perframe`, model.name=perframe)")
        if set(ff.inputs) != set(self.inputs):
            raise ConfigError(f"{what} is conditioned on {', '.join(ff.inputs)} but the model on "
                              f"{', '.join(self.inputs)}; train the perframe run on the model's data.inputs")
        if "seg" in self.inputs and _classes(ff.label_set) != _classes(self.label_set):
            theirs, ours = _classes(ff.label_set), _classes(self.label_set)
            diff = sorted(set(ours) ^ set(theirs))[:3]
            raise ConfigError(f"{what} was trained on label set '{getattr(ff.label_set, 'name', '?')}' "
                              f"({len(theirs)} classes) but the model on '{getattr(self.label_set, 'name', '?')}' "
                              f"({len(ours)} classes; they differ at {', '.join(f'{i}:{n}' for i, n in diff)}); "
                              f"train it on the model's data")
        mine = (int(self.model.cfg.data.size[0]), int(self.model.cfg.data.size[1]))
        theirs_size = (int(ff.model.cfg.data.size[0]), int(ff.model.cfg.data.size[1]))
        if mine != theirs_size:
            raise ConfigError(f"{what} was trained at {theirs_size[0]}x{theirs_size[1]} but the model at "
                              f"{mine[0]}x{mine[1]}; train it at the model's data.size")
        n_down = getattr(ff.model.cfg.model, "n_downsample", None)
        if isinstance(n_down, int) and (self.size[0] % 2 ** n_down or self.size[1] % 2 ** n_down):
            raise ConfigError(f"{what} cannot generate {self.size[0]}x{self.size[1]} frames: its sides must be "
                              f"multiples of {2 ** n_down} (model.n_downsample={n_down}); pick another --size")

    def batch(self, frames: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        """Per-sequence frames → one batch of raw modalities on the model's device."""
        return {m: torch.from_numpy(np.stack([f[m] for f in frames])).to(self.device, non_blocking=True)
                for m in frames[0]}

    # -- generation ------------------------------------------------------------------------------------------------
    def generate(self, readers: Sequence[Iterable[dict[str, np.ndarray]]], lengths: Sequence[int], *,
                 first_frame: torch.Tensor | None = None, first: FirstFrames | None = None,
                 reals: Sequence[Sequence[np.ndarray]] | None = None,
                 with_inputs: bool = False) -> Iterator[list[tuple[np.ndarray, np.ndarray | None] | None]]:
        """Generate K sequences in lock step; yields per time step, per sequence, (frame uint8 (H, W, 3), preview
        picture of its inputs or None) or None once that sequence has ended.

        ``first`` says where frames 0..first.count-1 come from (default: an empty history; ``first_frame``, a
        (1, 3, H, W) tensor in [-1, 1], is short for an image source); a ``real`` source needs ``reals``: per
        sequence its real frames 0.. as (H, W, 3) uint8 (:meth:`SequenceReader.real_frames`)."""
        if first is None:
            first = FirstFrames("image", 1, image=first_frame) if first_frame is not None else FirstFrames("empty")
        if first.mode == "real" and (reals is None or len(reals) != len(readers) or not all(len(r) for r in reals)):
            raise ValueError("a real first-frame source needs the real frames of every sequence (reals)")
        iters = [iter(r) for r in readers]
        queue: deque[_PendingFrame] = deque()  # frames on their way to the host, READ_BEHIND steps behind
        last: list[dict[str, np.ndarray] | None] = [None] * len(iters)
        self.generator.reset()
        if first.model is not None:
            first.model.generator.reset()
        for t in range(max(lengths)):
            for k, it in enumerate(iters):
                if t < lengths[k]:
                    try:
                        last[k] = next(it)
                    except StopIteration:
                        raise DatasetError(f"sequence {k} ended after {t} of its {lengths[k]} frames; its files "
                                           f"are incomplete (run `v2v dataset check`)") from None
            inputs = self.batch([f for f in last if f is not None])
            real = None
            if t < first.count:
                if first.mode == "image" and first.image is not None:
                    real = first.image.expand(len(iters), -1, -1, -1)
                elif first.mode == "real" and reals is not None:
                    pick = np.stack([r[min(t, len(r) - 1)] for r in reals])  # a shorter sequence repeats its last
                    real = torch.from_numpy(pick).to(self.device).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
                elif first.mode == "model" and first.model is not None:
                    real = first.model.generator.step(inputs).frame
            out = self.generator.step(inputs, real=real)
            pictures = None
            if with_inputs:
                with torch.no_grad():
                    pictures = colorize_inputs(inputs, self.label_set)
            queue.append(_PendingFrame(t, out.frame, pictures))
            if len(queue) > READ_BEHIND:
                yield queue.popleft().read(lengths)
        while queue:
            yield queue.popleft().read(lengths)

    def run(self, sequences: Sequence[LabelSequence], outputs: dict[str, Path], *, fmt: Format = "mp4",
            preview: bool = False, first_frame: str | Path | None = None, remap: np.ndarray | None = None,
            batch_sequences: int = 1, quality: int = 8, progress: bool | None = None,
            overwrite: bool = False, first_frames: FirstFrames | str = "auto",
            first_frame_model: str | Path | Synthesizer | None = None) -> list[SequenceResult]:
        """Synthesize ``sequences`` into ``outputs`` (name → path); each output appears only when complete.

        The first frames come from ``first_frames`` (a :class:`FirstFrames`, or a ``--first-frames`` mode resolved
        with ``first_frame_model`` and the image ``first_frame`` by :meth:`first_frames`)."""
        first = first_frames if isinstance(first_frames, FirstFrames) else \
            self.first_frames(first_frames, model=first_frame_model, image=first_frame)
        readers = {s.name: self.reader(s, remap) for s in sequences}
        if first.mode == "real":  # every sequence's real frames must be there before any output is written
            for s in sequences:
                missing = readers[s.name].missing_real_frame(first.count)
                if missing is not None:
                    raise DatasetError(f"--first-frames real: the input has no real frames to start from (sequence "
                                       f"'{s.name}' has no {missing}); give --first-frame-model RUN (a trained "
                                       f"perframe run) or --first-frames empty")
        log.info("first frames: %s", first.describe())
        order = sorted(sequences, key=lambda s: -readers[s.name].count)  # similar lengths share a batch
        k = max(1, int(batch_sequences))
        groups = [order[i:i + k] for i in range(0, len(order), k)]
        total = sum(len(r) for r in readers.values())
        results: list[SequenceResult] = []
        with ProgressBar(total, "synthesize", enabled=progress, unit="frames", transient=False) as bar:
            for group in groups:
                t0 = time.perf_counter()
                sinks: list[FrameSink] = []
                previews: list[FrameSink | None] = []
                try:
                    for s in group:
                        sinks.append(open_sink(outputs[s.name], fmt, s.fps, s.audio, quality, overwrite))
                        previews.append(open_sink(preview_path(outputs[s.name], fmt), fmt, s.fps, s.audio, quality,
                                                  overwrite)
                                        if preview else None)
                    lengths = [readers[s.name].count for s in group]
                    reals = [readers[s.name].real_frames(first.count) for s in group] if first.mode == "real" \
                        else None
                    for step in self.generate([readers[s.name] for s in group], lengths, first=first, reals=reals,
                                              with_inputs=preview):
                        done = 0
                        for sink, pv, item in zip(sinks, previews, step):
                            if item is None:
                                continue
                            frame, picture = item
                            sink.write(frame)
                            if pv is not None and picture is not None:
                                pv.write(tile([picture, frame]))
                            done += 1
                        bar.advance(done)
                    for sink in sinks:
                        sink.close()
                    for pv in previews:
                        if pv is not None:
                            pv.close()
                except BaseException:
                    for sink in sinks:
                        sink.abort()
                    for pv in previews:
                        if pv is not None:
                            pv.abort()
                    raise
                seconds = time.perf_counter() - t0
                for s, sink, pv in zip(group, sinks, previews):
                    results.append(SequenceResult(s.name, sink.path, sink.frames, s.fps, seconds,
                                                  pv.path if pv is not None else None, s.audio is not None))
                    log.info("%s: %d frames → %s (%.1f frames/s)", s.name, sink.frames, sink.path,
                             sum(len(readers[g.name]) for g in group) / seconds if seconds else 0.0)
        by_name = {r.name: r for r in results}
        return [by_name[s.name] for s in sequences]


def load_synthesizer(checkpoint: str | Path, *, device: str = "auto", precision: str | None = None,
                     compile: bool = False, use_ema: bool = True, size: tuple[int, int] | None = None,
                     cfg_overrides: Sequence[str] = ()) -> Synthesizer:
    """Load a run folder (its last checkpoint), a checkpoint folder or a weights file for synthesis."""
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    dev = resolve_device(device)
    weights = resolve_weights_file(checkpoint)
    overrides = [f"train.precision={precision or 'fp32'}", *cfg_overrides]
    model, meta = load_model_for_inference(weights, dev, overrides)
    return Synthesizer(model, meta, use_ema=use_ema, size=size, compile=compile, checkpoint=str(weights))


def synthesize(options: SynthesisOptions) -> SynthesisReport:
    """``v2v synthesize``: load the checkpoint, resolve ``--labels``, write one output per sequence."""
    t0 = time.perf_counter()
    if options.format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got '{options.format}'")
    if options.batch_sequences < 1:
        raise ConfigError(f"--batch-sequences must be at least 1, got {options.batch_sequences}")
    if not 1 <= options.quality <= 10:
        raise ConfigError(f"--quality must be 1..10, got {options.quality}")
    check_first_frame_options(options.first_frames, options.first_frame_model, options.first_frame)
    random.seed(options.seed)
    np.random.seed(options.seed % 2**32)
    torch.manual_seed(options.seed)
    synth = load_synthesizer(options.checkpoint, device=options.device, precision=options.precision,
                             compile=options.compile, use_ema=options.use_ema, size=options.size,
                             cfg_overrides=options.cfg_overrides)
    remap = parse_remap(list(options.remap), synth.label_set if "seg" in synth.inputs else None)
    first: list[FirstFrames] = []

    def resolve_first() -> None:  # after --labels' own errors; before a raw video's extraction
        if not first:
            first.append(synth.first_frames(options.first_frames, model=options.first_frame_model,
                                            image=options.first_frame))

    source = resolve_labels(options.labels, split=options.split, meta=synth.meta, inputs=synth.inputs,
                            before_extract=resolve_first)
    try:
        resolve_first()
        outputs = output_paths([s.name for s in source.sequences], options.output, options.format, options.overwrite)
        results = synth.run(source.sequences, outputs, fmt=options.format, preview=options.preview,
                            first_frames=first[0], remap=remap, batch_sequences=options.batch_sequences,
                            quality=options.quality, progress=options.progress, overwrite=options.overwrite)
    finally:
        source.cleanup()
    ff = first[0]
    return SynthesisReport(synth.checkpoint, int(synth.meta.step), str(synth.device), synth.size, synth.ema, results,
                           time.perf_counter() - t0, ff.mode, ff.count, ff.model.checkpoint if ff.model else None)


def check_first_frame_options(mode: str, model: str | Path | Synthesizer | None,
                              image: str | Path | None) -> None:
    """``--first-frames``, ``--first-frame-model`` and ``--first-frame`` together name at most one source."""
    if mode not in FIRST_FRAMES:
        raise ConfigError(f"--first-frames must be one of {', '.join(FIRST_FRAMES)}, got '{mode}'")
    if image is not None and model is not None:
        raise ConfigError("--first-frame IMAGE and --first-frame-model RUN are two sources of the first frames; "
                          "give one")
    if image is not None and mode != "auto":
        raise ConfigError(f"--first-frame IMAGE is itself the source of frame 0; leave out --first-frames {mode}")
    if model is not None and mode not in ("auto", "model"):
        raise ConfigError(f"--first-frame-model RUN generates the first frames; it contradicts --first-frames {mode}")
    if mode == "model" and model is None:
        raise ConfigError("--first-frames model needs --first-frame-model RUN (a trained perframe run)")
