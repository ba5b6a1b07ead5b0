"""v2v built-in plugin 'world': a procedurally rendered street world with exact ground truth.

``v2v demo world --out DATASET [--seed S] [--size WxH] [--frames N] [--sequences K] [--val K]`` writes driving-like
videos (sky, road with lane marks, sidewalk, buildings, trees, moving cars, a moving and panning camera, sun
and shadows) with their segmentation (a named label set), car instances and the exact backward flow, in the v2v
dataset layout. Later stages train and evaluate on it offline. docs/world.md describes the world.

Library: :func:`render_sequence` (arrays in memory), :func:`iter_frames` (frame by frame), :func:`write_world`
(a dataset folder). They live in :mod:`.render` and :mod:`.dataset` and are imported lazily here, because plugin
modules are loaded for every ``v2v`` command and must not import numpy or cv2 up front.

The ``demo`` command group is shared: :func:`demo_group` finds it on the root app or creates it, so another
plugin (the full ``v2v demo`` pipeline) can attach its callback and commands whatever the plugin order.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from v2vcli.hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from .dataset import write_world
    from .render import WorldFrame, WorldSequence, iter_frames, render_sequence
    from .scene import world_label_set

__all__ = ["demo_group", "render_sequence", "iter_frames", "write_world", "write_world_report", "world_label_set",
           "WorldSequence", "WorldFrame"]

_LAZY = {"render_sequence": "render", "iter_frames": "render", "WorldSequence": "render", "WorldFrame": "render",
         "write_world": "dataset", "write_world_report": "dataset", "world_label_set": "scene"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


DEMO_HELP = "Offline demos: the synthetic world (`v2v demo world`) and, where installed, the full pipeline."


def demo_group(app: typer.Typer) -> typer.Typer:
    """The ``demo`` group of the root ``app``, created on first use (``no_args_is_help``; a plugin that adds a
    bare ``v2v demo`` callback sets ``invoke_without_command`` and clears ``no_args_is_help`` on it)."""
    for info in app.registered_groups:
        if info.name == "demo" and info.typer_instance is not None:
            return info.typer_instance
    group = typer.Typer(help=DEMO_HELP, no_args_is_help=True, invoke_without_command=False)
    app.add_typer(group, name="demo")
    return group


@hookimpl
def v2v_register_commands(app: typer.Typer) -> None:
    group = demo_group(app)

    @group.command("world")
    def world(
        out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to write (new, empty, or an older world "
                                                          "dataset, which is replaced)."),
        seed: int = typer.Option(0, "--seed", help="World seed: the same seed gives byte-identical files."),
        size: str = typer.Option("256x128", "--size", help="Frame size WxH (32..2048 each; e.g. 64x64, 512x256)."),
        frames: int = typer.Option(30, "--frames", help="Frames per sequence."),
        sequences: int = typer.Option(4, "--sequences", help="Number of sequences (world_000, world_001, ...)."),
        val: int = typer.Option(1, "--val", help="How many of the sequences (the last ones) form the val split."),
        fps: float = typer.Option(15.0, "--fps", help="Frame rate: sets the motion per frame (cars, camera)."),
        frames_format: str = typer.Option("jpg", "--frames-format", help="Frame files: jpg (quality 95) or png."),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable summary."),
    ) -> None:
        """Render the synthetic street world as a dataset: frames, seg, inst, exact flow, splits."""
        from v2vcli.cli.util import print_json

        from .dataset import parse_size, write_world_report

        report = write_world_report(out, seed=seed, size=parse_size(size), frames=frames, sequences=sequences,
                                    val=val, fps=fps, frames_format=frames_format)
        if json_out:
            print_json(report.to_dict())
        else:
            w, h = report.size
            typer.echo(f"wrote {len(report.sequences)} sequences x {report.frames} frames ({w}x{h}) to "
                       f"{report.root} in {report.seconds:.1f} s (train {len(report.splits['train'])}, "
                       f"val {len(report.splits['val'])})")
