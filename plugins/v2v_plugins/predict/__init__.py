"""v2v built-in plugin 'predict': future-frame prediction (paper §5), models and the ``v2v predict`` command.

Models (trained by ``v2v train`` like any other, see :mod:`.models`): ``label_predictor`` (future semantic maps
from past maps and flows) and ``frame_predictor`` (future RGB frames from past frames and flows). The command
observes the last K frames of a context sequence, predicts N future label maps with a label predictor and renders
them with a vid2vid run (or predicts RGB frames directly with a frame predictor), writes the video and a preview,
and with ``--eval`` scores the prediction and two baselines against the held-out last N frames (:mod:`.pipeline`).

Only light modules are imported here; torch is imported when a model is built or the command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from v2vcli.hookspecs import hookimpl

from .models import FramePredictor, LabelPredictor

__all__ = ["v2v_register_models", "v2v_register_commands", "LabelPredictor", "FramePredictor"]


@hookimpl
def v2v_register_models(register: Callable[[str, type], None]) -> None:
    register(LabelPredictor.name, LabelPredictor)
    register(FramePredictor.name, FramePredictor)


@hookimpl
def v2v_register_commands(app: typer.Typer) -> None:
    @app.command("predict")
    def predict_cmd(
        predictor: str = typer.Option(..., "--predictor", help="Run (or checkpoint) of label_predictor or "
                                                               "frame_predictor."),
        context: str = typer.Option(..., "--context", help="Observed frames: a dataset sequence folder "
                                                           "(DATASET/frames/SEQ), a video file or a frame folder."),
        horizon: int = typer.Option(..., "--horizon", help="Number of future frames to predict (at most 10000; "
                                                           "with --eval, at most the held-out frames)."),
        renderer: str = typer.Option(None, "--renderer", help="vid2vid run that renders predicted label maps "
                                                              "(needed by a label predictor)."),
        out: Path = typer.Option(None, "--out", "-o", help="Output .mp4 (default ./<context>_predicted.mp4); the "
                                                           "preview and reports are written next to it."),
        evaluate: bool = typer.Option(False, "--eval", help="Hold out the context's last N frames as ground truth "
                                                            "and score the model and both baselines per step."),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
        weights: list[str] = typer.Option([], "--weights", help="NAME=PATH for metric weights (e.g. LPIPS)."),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable summary."),
    ) -> None:
        """Predict future frames: observe the last K context frames, predict N label maps and render them."""
        from v2vcli.cli.util import print_json
        from v2vcli.runtime import resolve_device
        from v2vcli.weights import parse_weights_overrides

        from .pipeline import predict_video

        result = predict_video(predictor, context, horizon, renderer=renderer, out=out, evaluate=evaluate,
                               device=str(resolve_device(device)), weights=parse_weights_overrides(weights))
        summary = {"video": str(result.video), "preview": str(result.preview), "frames": result.frames,
                   "observed": result.observed, "report": str(result.report) if result.report else None}
        if result.scores is not None:
            summary["mean"] = result.scores.to_dict()["mean"]
            summary["notes"] = result.notes
        if json_out:
            print_json(summary)
            return
        typer.echo(f"wrote {result.frames} predicted frames to {result.video} (preview {result.preview})")
        if result.scores is not None:
            s = result.scores
            metrics = list(next(iter(s.per_step.values())).keys())
            for m in s.per_step:
                vals = ", ".join(f"{k} {s.mean(m, k):.4g}" for k in metrics)
                typer.echo(f"  {m}: {vals}")
            typer.echo(f"  per-step report: {result.report}")
