"""v2v built-in plugin 'convert': `v2v convert-official`, official NVIDIA/vid2vid checkpoints → v2v runs.

The command parses options, calls :mod:`v2v_plugins.convert_official` and renders what it found. docs/pretrained.md
shows the whole path from the official archives to synthesized video.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from v2vcli.hookspecs import hookimpl

__all__ = ["v2v_register_commands", "check_report"]


def check_report(conv: Any) -> dict[str, Any]:
    """What ``--check`` prints: detected options, official and v2v parameters per network."""
    plan = conv.plan
    return {"options": plan.options, "notes": list(plan.notes),
            "parameters": dict(conv.params), "v2v_parameters": dict(conv.v2v_params),
            "model": plan.cfg.model.name if plan.cfg is not None else "perframe",
            "data_inputs": list((plan.cfg or plan.single_cfg).data.inputs),
            "label_set": plan.label_set.name if plan.label_set is not None else None}


def _render(report: dict[str, Any]) -> None:
    from rich.table import Table

    from v2vcli.cli.util import console

    opts = report["options"]
    table = Table(title=f"official options (from {opts.get('from')})")
    table.add_column("option")
    table.add_column("value")
    for key, value in opts.items():
        if key not in ("from", "single_G"):
            table.add_row(key, str(value))
    for key, value in (opts.get("single_G") or {}).items():
        table.add_row(f"single_G.{key}", str(value))
    table.add_row("v2v data.inputs", ", ".join(report["data_inputs"]))
    table.add_row("label set", str(report["label_set"]))
    console().print(table)
    for note in report["notes"]:
        console().print(f"note: {note}")
    params = Table(title="parameters per network")
    for col, justify in (("network", "left"), ("official", "right"), ("v2v", "right")):
        params.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, n in report["parameters"].items():
        v2v = report["v2v_parameters"].get(name)
        params.add_row(name, f"{n:,}", f"{v2v:,}" if v2v is not None else "not converted")
    gens = [n for k, n in report["parameters"].items() if k.startswith("G") and k[1:].isdigit()]
    if gens:
        params.add_row("G total", f"{sum(gens):,}", "")
    console().print(params)


@hookimpl
def v2v_register_commands(app: typer.Typer) -> None:
    @app.command("convert-official")
    def convert_official(
        src: Path = typer.Argument(..., help="Official checkpoint folder (latest_net_G0.pth, ...; opt.txt if "
                                             "present) or one .pth file."),
        output: Path = typer.Option(None, "-o", "--output", help="Run folder to write (must not exist)."),
        preset: str = typer.Option(None, "--preset", help="Preset name in examples/configs/ (street_2048, "
                                                          "face_512, ...) or YAML file for what shapes cannot say."),
        set_: list[str] = typer.Option([], "--set", help="Override: section.key=value (repeatable)."),
        single_g: Path = typer.Option(None, "--single-G", help="Also convert this single-image generator "
                                                               "(pix2pixHD global .pth) into RUN/single_G, a "
                                                               "perframe run for --first-frame-model."),
        check: bool = typer.Option(False, "--check", help="Only print the detected options and parameters."),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable output (with --check)."),
    ) -> None:
        """Convert an official vid2vid checkpoint into a v2v run (synthesize, train --init-from, model summary)."""
        from v2vcli.cli.util import console, print_json
        from v2vcli.errors import ConfigError

        from .convert_official import SINGLE_DIR, convert, load_official, plan_conversion, write_run

        if not check and output is None:
            raise ConfigError("pass -o RUN (the run folder to write) or --check")
        ck = load_official(src, single_g)
        plan = plan_conversion(ck, preset=preset, sets=set_)
        conv = convert(ck, plan, materialise=not check)
        if check:
            report = check_report(conv)
            print_json(report) if json_out else _render(report)
            return
        run = write_run(output, conv, source=str(src))
        what = "vid2vid" if conv.vid2vid is not None else "perframe"
        console().print(f"wrote {what} run {run} (from {plan.options_from})")
        if conv.vid2vid is not None and conv.single is not None:
            console().print(f"wrote perframe run {run / SINGLE_DIR}: use --first-frame-model {run / SINGLE_DIR}")
