"""Synthesis: a trained video model turns conditioning sequences into videos, streaming frame by frame.

The model's :class:`~v2vcli.model.FrameGenerator` keeps the sliding history itself (vid2vid: the L = n_frames_G - 1
previous label maps and generated frames per spatial scale), so memory does not grow with the video's length and
there is no frame cap: each output frame is written as soon as it is made, and the input reader holds one frame.
Every input frame gives one output frame, at the source's fps.

* The first frame comes from an empty history (the generator's raw hallucination) unless a first frame image is
  given, which then *is* frame 0 (resized and centre-cropped like the inputs) and the history the rest grows from.
* The EMA generator is used when the checkpoint has one (``use_ema=False``: the trained G).
* ``batch_sequences`` K > 1 generates K sequences in lock step as one batch (useful on a GPU); a shorter sequence
  repeats its last input until the longest one ends, and its extra outputs are dropped (generation is causal, so
  its frames are those of a run on its own).

Library use::

    from v2v_plugins.synthesize import SynthesisOptions, synthesize
    report = synthesize(SynthesisOptions(checkpoint="runs/tiny", labels="world", output="out/"))
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from v2vcli.errors import ConfigError, DatasetError

from .outputs import FORMATS, Format, FrameSink, open_sink, output_paths, preview_path
from .sources import LabelSequence, SequenceReader, check_label_sets, parse_remap, resolve_labels

if TYPE_CHECKING:
    import numpy as np
    import torch

    from v2vcli.checkpoint import CheckpointMeta
    from v2vcli.model import FrameGenerator, VideoModel

__all__ = ["SynthesisOptions", "SequenceResult", "SynthesisReport", "Synthesizer", "load_synthesizer", "synthesize",
           "to_uint8"]

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class SynthesisOptions:
    """Everything ``v2v synthesize`` takes (see the command's help for each)."""

    checkpoint: str | Path
    labels: str | Path
    output: str | Path | None = None
    split: str | None = None
    first_frame: str | Path | None = None
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

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.sequences)

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "step": self.step, "device": self.device, "size": list(self.size),
                "ema": self.ema, "frames": self.frames, "seconds": round(self.seconds, 3),
                "frames_per_second": round(self.frames / self.seconds, 3) if self.seconds > 0 else None,
                "sequences": [{"name": s.name, "output": str(s.output), "frames": s.frames, "fps": s.fps,
                               "seconds": round(s.seconds, 3), "preview": str(s.preview) if s.preview else None,
                               "audio": s.audio} for s in self.sequences]}


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] → (B, H, W, 3) RGB uint8 on the CPU."""
    x = frames.detach().float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round()
    return x.to("cpu").byte().permute(0, 2, 3, 1).contiguous().numpy()


class Synthesizer:
    """A loaded model ready to generate: its frame generator, input modalities, output size and label set."""

    def __init__(self, model: VideoModel, meta: CheckpointMeta, *, use_ema: bool = True,
                 size: tuple[int, int] | None = None, compile: bool = False, checkpoint: str = "") -> None:
        import torch

        self.model = model
        self.meta = meta
        self.checkpoint = checkpoint
        self.device = model.device
        self.label_set = model.label_set
        self.inputs = list(dict.fromkeys(model.cfg.data.inputs))
        want = size or (int(model.cfg.data.size[0]), int(model.cfg.data.size[1]))
        check = getattr(type(model), "check_size", None)
        self.size: tuple[int, int] = tuple(check(model.cfg, want)) if callable(check) else want  # type: ignore[assignment]
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
        import torch

        from v2vcli.data import clips
        from v2vcli.io.files import read_image

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

    def batch(self, frames: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        """Per-sequence frames → one batch of raw modalities on the model's device."""
        import numpy as np
        import torch

        return {m: torch.from_numpy(np.stack([f[m] for f in frames])).to(self.device, non_blocking=True)
                for m in frames[0]}

    # -- generation ------------------------------------------------------------------------------------------------
    def generate(self, readers: Sequence[Iterable[dict[str, np.ndarray]]], lengths: Sequence[int], *,
                 first_frame: torch.Tensor | None = None,
                 with_inputs: bool = False) -> Iterator[list[tuple[np.ndarray, np.ndarray | None] | None]]:
        """Generate K sequences in lock step; yields per time step, per sequence, (frame uint8 (H, W, 3), preview
        picture of its inputs or None) or None once that sequence has ended."""
        import torch

        from v2vcli.model import colorize_inputs

        iters = [iter(r) for r in readers]
        last: list[dict[str, np.ndarray] | None] = [None] * len(iters)
        self.generator.reset()
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
            if t == 0 and first_frame is not None:
                real = first_frame.expand(len(iters), -1, -1, -1)
            out = self.generator.step(inputs, real=real)
            images = to_uint8(out.frame)
            pictures = None
            if with_inputs:
                with torch.no_grad():
                    pictures = to_uint8(colorize_inputs(inputs, self.label_set))
            yield [(images[k], pictures[k] if pictures is not None else None) if t < lengths[k] else None
                   for k in range(len(iters))]

    def run(self, sequences: Sequence[LabelSequence], outputs: dict[str, Path], *, fmt: Format = "mp4",
            preview: bool = False, first_frame: str | Path | None = None, remap: np.ndarray | None = None,
            batch_sequences: int = 1, quality: int = 8, progress: bool | None = None) -> list[SequenceResult]:
        """Synthesize ``sequences`` into ``outputs`` (name → path); each output appears only when complete."""
        from v2vcli.io.preview import tile

        first = self.first_frame(first_frame) if first_frame is not None else None
        readers = {s.name: self.reader(s, remap) for s in sequences}
        order = sorted(sequences, key=lambda s: -readers[s.name].count)  # similar lengths share a batch
        k = max(1, int(batch_sequences))
        groups = [order[i:i + k] for i in range(0, len(order), k)]
        total = sum(len(r) for r in readers.values())
        results: list[SequenceResult] = []
        show = progress if progress is not None else sys.stderr.isatty()
        with _progress(bool(show), total) as advance:
            for group in groups:
                t0 = time.perf_counter()
                sinks: list[FrameSink] = []
                previews: list[FrameSink | None] = []
                try:
                    for s in group:
                        sinks.append(open_sink(outputs[s.name], fmt, s.fps, s.audio, quality))
                        previews.append(open_sink(preview_path(outputs[s.name], fmt), fmt, s.fps, s.audio, quality)
                                        if preview else None)
                    lengths = [readers[s.name].count for s in group]
                    for step in self.generate([readers[s.name] for s in group], lengths, first_frame=first,
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
                        advance(done)
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


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Any]:
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, \
        TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class FramesPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f} frames/s" if task.speed else "- frames/s")

    with Progress(TextColumn("synthesize"), BarColumn(), MofNCompleteColumn(), FramesPerSecond(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task("synthesize", total=total)
        yield lambda n: bar.advance(task, n)


def load_synthesizer(checkpoint: str | Path, *, device: str = "auto", precision: str | None = None,
                     compile: bool = False, use_ema: bool = True, size: tuple[int, int] | None = None,
                     cfg_overrides: Sequence[str] = ()) -> Synthesizer:
    """Load a run folder (its last checkpoint), a checkpoint folder or a weights file for synthesis."""
    from v2vcli.checkpoint import resolve_weights_file
    from v2vcli.model import load_model_for_inference
    from v2v_plugins.train.loop import resolve_device

    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    dev = resolve_device(device)
    weights = resolve_weights_file(checkpoint)
    overrides = [f"train.precision={precision or 'fp32'}", *cfg_overrides]
    model, meta = load_model_for_inference(weights, dev, overrides)
    return Synthesizer(model, meta, use_ema=use_ema, size=size, compile=compile, checkpoint=str(weights))


def synthesize(options: SynthesisOptions) -> SynthesisReport:
    """``v2v synthesize``: load the checkpoint, resolve ``--labels``, write one output per sequence."""
    import numpy as np
    import torch

    t0 = time.perf_counter()
    if options.format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got '{options.format}'")
    if options.batch_sequences < 1:
        raise ConfigError(f"--batch-sequences must be at least 1, got {options.batch_sequences}")
    if not 1 <= options.quality <= 10:
        raise ConfigError(f"--quality must be 1..10, got {options.quality}")
    random.seed(options.seed)
    np.random.seed(options.seed % 2**32)
    torch.manual_seed(options.seed)
    synth = load_synthesizer(options.checkpoint, device=options.device, precision=options.precision,
                             compile=options.compile, use_ema=options.use_ema, size=options.size,
                             cfg_overrides=options.cfg_overrides)
    remap = parse_remap(list(options.remap), synth.label_set if "seg" in synth.inputs else None)
    source = resolve_labels(options.labels, split=options.split, meta=synth.meta, inputs=synth.inputs)
    try:
        outputs = output_paths([s.name for s in source.sequences], options.output, options.format)
        results = synth.run(source.sequences, outputs, fmt=options.format, preview=options.preview,
                            first_frame=options.first_frame, remap=remap, batch_sequences=options.batch_sequences,
                            quality=options.quality, progress=options.progress)
    finally:
        source.cleanup()
    return SynthesisReport(synth.checkpoint, int(synth.meta.step), str(synth.device), synth.size, synth.ema, results,
                           time.perf_counter() - t0)
