"""v2v built-in plugin 'demo': ``v2v demo``, the whole pipeline offline with a report (see :mod:`.pipeline`).

``v2v demo [--out DIR] [--minutes M] [--quick] [--seed S] [--device D]`` attaches to the ``demo`` group that
the world plugin shares (``v2v demo world`` stays its subcommand). Heavy modules are imported inside the command.
"""

from __future__ import annotations

from pathlib import Path

import typer

from v2vcli.hookspecs import hookimpl

__all__ = ["v2v_register_commands"]


@hookimpl
def v2v_register_commands(app: typer.Typer) -> None:
    from v2v_plugins.world import demo_group

    group = demo_group(app)
    group.info.no_args_is_help = False
    group.info.invoke_without_command = True

    @group.callback(invoke_without_command=True, no_args_is_help=False)
    def demo(
        ctx: typer.Context,
        out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Folder for everything the demo writes."),
        minutes: float = typer.Option(None, "--minutes", help="Training budget per model in minutes (default 10; "
                                                              "--quick: 0.1)."),
        quick: bool = typer.Option(False, "--quick", help="A tiny world and a few seconds of training: the whole "
                                                          "pipeline in under a minute (for tests)."),
        seed: int = typer.Option(0, "--seed", help="World and training seed."),
        device: str = typer.Option("auto", "--device", help="auto (a GPU when present), cpu or cuda."),
        json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Run the whole pipeline offline: world, train vid2vid and the per-frame ablation, synthesize, evaluate,
        report.html. Subcommands: `v2v demo world`."""
        if ctx.invoked_subcommand is not None:
            return
        from v2vcli.cli.util import print_json

        from .pipeline import DemoOptions, run_demo

        result = run_demo(DemoOptions.make(out, minutes, quick, seed, device))
        if json_out:
            print_json({"report": str(result.report), "metrics": result.metrics, "verdict": result.verdict,
                        "target_met": result.target_met, "seconds": result.seconds})
        else:
            typer.echo(result.verdict)
            typer.echo(f"report: {result.report} ({result.seconds:.0f} s)")
