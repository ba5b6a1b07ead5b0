"""v2v built-in plugin 'synthesize': ``v2v synthesize``, trained model + conditioning → video, any length.

``v2v synthesize --checkpoint RUN_OR_CKPT --labels SEQ_DIR|DATASET|VIDEO [-o OUT]`` streams each sequence through
the model's frame generator (sliding history, constant memory) and writes one H.264 mp4 (or PNG folder) per
sequence, atomically. A model trained with real history frames needs a source for its first L frames:
``--first-frame-model RUN`` (a trained perframe run), ``--first-frames real`` or ``--first-frames empty``. The
library lives in :mod:`.engine` (generation, batching, first frames), :mod:`.sources` (what ``--labels`` means,
raw-video extraction, ``--remap``) and :mod:`.outputs` (paths and atomic writers); they are imported lazily
because plugin modules load for every ``v2v`` command and must not import torch or numpy. docs/synthesize.md is
the user's guide.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from v2vcli.hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from .engine import SynthesisOptions, SynthesisReport, Synthesizer, load_synthesizer, synthesize

__all__ = ["SynthesisOptions", "SynthesisReport", "Synthesizer", "load_synthesizer", "synthesize",
           "v2v_register_commands"]

_LAZY = {"SynthesisOptions", "SynthesisReport", "Synthesizer", "load_synthesizer", "synthesize"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def v2v_register_commands(app: typer.Typer) -> None:
    @app.command("synthesize")
    def synthesize_cmd(
        checkpoint: str = typer.Option(..., "--checkpoint", help="Run folder (its last checkpoint), checkpoint "
                                                                  "folder or weights.safetensors."),
        labels: str = typer.Option(..., "--labels", help="Sequence folder of a dataset (DATASET/seg/<seq>), a "
                                                          "dataset (its val split, or --split) or a raw video "
                                                          "(extracted with the checkpoint's extractors)."),
        out: str = typer.Option(None, "--out", "-o", help="Output: a file (or PNG folder) for one sequence, a "
                                                         "folder for several (default: synthesized/)."),
        split: str = typer.Option(None, "--split", help="Split of a dataset --labels (default: val)."),
        first_frames: str = typer.Option("auto", "--first-frames", help="Where frames 0..L-1 come from: model (a "
                                                                        "--first-frame-model run makes them), real "
                                                                        "(the input's real frames), empty (an empty "
                                                                        "history) or auto (empty for models trained "
                                                                        "from one; else an error)."),
        first_frame_model: str = typer.Option(None, "--first-frame-model", help="A trained perframe run (single-"
                                                                               "image generator) that makes the "
                                                                               "first frames; implies --first-frames "
                                                                               "model."),
        first_frame: Path = typer.Option(None, "--first-frame", help="An image used as frame 0 (instead of "
                                                                     "--first-frames)."),
        no_ema: bool = typer.Option(False, "--no-ema", help="Use the trained G instead of its EMA."),
        fmt: str = typer.Option("mp4", "--format", help="mp4 (H.264) or png (a folder of frames)."),
        preview: bool = typer.Option(False, "--preview", help="Also write <out>_preview: inputs | output side by "
                                                              "side."),
        remap: list[str] = typer.Option([], "--remap", help="SRC:DST class names or ids, e.g. vegetation:building "
                                                            "(repeatable)."),
        seed: int = typer.Option(0, "--seed", help="Seeds the RNGs (outputs are deterministic anyway)."),
        precision: str = typer.Option(None, "--precision", help="fp32 (default), bf16 or fp16 (autocast)."),
        compile_: bool = typer.Option(False, "--compile", help="torch.compile the generator."),
        device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
        batch_sequences: int = typer.Option(1, "--batch-sequences", help="Generate K sequences at once as one "
                                                                         "batch (GPU)."),
        size: str = typer.Option(None, "--size", help="Output WxH (default: the training size; multiples of the "
                                                      "model's stride)."),
        quality: int = typer.Option(8, "--quality", help="mp4 quality 1..10 (10 best)."),
        set_: list[str] = typer.Option([], "--set", help="Override the checkpoint's config: section.key=value."),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable summary."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing -o folder (--format png) "
                                                                 "even if v2v did not write it."),
    ) -> None:
        """Synthesize videos from conditioning sequences with a trained model (streaming, any length)."""
        from v2vcli.cli.util import print_json
        from v2vcli.io.video import parse_size

        from .engine import SynthesisOptions, synthesize

        wh = parse_size(size) if size else None
        if wh is not None and min(wh) < 1:
            from v2vcli.errors import ConfigError

            raise ConfigError(f"--size '{size}' needs both sides (e.g. 512x256)")
        report = synthesize(SynthesisOptions(
            checkpoint=checkpoint, labels=labels, output=out, split=split, first_frame=first_frame,
            first_frames=first_frames, first_frame_model=first_frame_model,
            use_ema=not no_ema, format=fmt, preview=preview, remap=list(remap), seed=seed,  # type: ignore[arg-type]
            precision=precision, compile=compile_, device=device, batch_sequences=batch_sequences, size=wh,
            quality=quality, cfg_overrides=list(set_), overwrite=overwrite))
        if json_out:
            print_json(report.to_dict())
            return
        for s in report.sequences:
            typer.echo(f"{s.output}: {s.frames} frames at {s.fps:g} fps" + (" with audio" if s.audio else ""))
        typer.echo(f"synthesized {report.frames} frames in {report.seconds:.1f} s on {report.device} "
                   f"({'EMA' if report.ema else 'G'}, step {report.step}; first frames: {report.first_frames})",
                   err=True)
