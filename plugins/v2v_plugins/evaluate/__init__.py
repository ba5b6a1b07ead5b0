"""v2v built-in plugin 'evaluate': the metrics fid, psnr, ssim, warp_error, fvd, vfid_i3d, lpips,
pose_consistency, seg_consistency, their weights names (i3d_kinetics400, lpips_vgg) and the ``v2v eval`` group.

``v2v eval METRIC --real PATH --fake PATH [--json] [--weights NAME=PATH]``: one subcommand per registered metric
(this plugin's and any third party's), named with dashes (``warp_error`` → ``warp-error``). Each metric's
``Config`` dataclass fields become options of its subcommand (``--field-name``; booleans ``--flag/--no-flag``;
``Literal`` fields a choice), help taken from the field's ``metadata["help"]``. The name ``all`` is reserved for
the report over every metric: ``v2v eval all --real DS --fake DIR -o OUT`` (:mod:`.report`).

Only light modules are imported here; metric modules import torch inside their methods.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import logging
import typing
from typing import TYPE_CHECKING, Any

import typer

from v2vcli.hookspecs import hookimpl

if TYPE_CHECKING:
    from v2vcli.metric import Metric, compute_metric

__all__ = ["compute_metric", "v2v_register_metrics", "v2v_register_weights", "v2v_register_commands",
           "add_metric_command", "render_result", "RESERVED_SUBCOMMANDS"]

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    """The public face: ``from v2v_plugins.evaluate import compute_metric`` (:mod:`v2vcli.metric`, on first use)."""
    if name == "compute_metric":
        from v2vcli.metric import compute_metric

        return compute_metric
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# Subcommands of `v2v eval` that are not metrics.
RESERVED_SUBCOMMANDS = frozenset({"all"})


def _builtin_metrics() -> list[type[Metric]]:
    from v2v_plugins.evaluate.fid import FID
    from v2v_plugins.evaluate.image_metrics import PSNR, SSIM
    from v2v_plugins.evaluate.warp_error import WarpError

    return [FID, PSNR, SSIM, WarpError, *_evaluation_ii_metrics()]


def _evaluation_ii_metrics() -> list[type[Metric]]:
    from v2v_plugins.evaluate.consistency import PoseConsistency, SegConsistency
    from v2v_plugins.evaluate.fvd import FVD, VFIDI3D
    from v2v_plugins.evaluate.lpips import LPIPS

    return [FVD, VFIDI3D, LPIPS, PoseConsistency, SegConsistency]


@hookimpl
def v2v_register_metrics(register: Any) -> None:
    for cls in _builtin_metrics():
        register(cls.name, cls)


@hookimpl
def v2v_register_weights(register: Any) -> None:
    from v2v_plugins.evaluate.weights import EVAL_WEIGHTS

    for entry in EVAL_WEIGHTS:
        register(entry)


# -- command generation ------------------------------------------------------------------------------------------
def _config_options(metric_name: str, config_cls: type) -> tuple[list[inspect.Parameter], dict[str, Any]]:
    """Typer parameters for the fields of ``config_cls`` and, per parameter, a converter back to the field type."""
    params: list[inspect.Parameter] = []
    converters: dict[str, Any] = {}
    if not dataclasses.is_dataclass(config_cls):
        return params, converters
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        if not f.init:
            continue
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        pname = f"cfg_{f.name}"
        if typing.get_origin(tp) is typing.Literal:
            # A str Enum works with every typer release; map the choice back to the Literal's own value.
            values = typing.get_args(tp)
            choices = enum.Enum(f"{metric_name}_{f.name}", {str(v): str(v) for v in values}, type=str)  # type: ignore[misc]
            by_text = {str(v): v for v in values}
            params.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, annotation=choices,
                                            default=typer.Option(choices(str(default)), flag, help=help_text)))
            converters[pname] = (f.name, lambda v, m=by_text: m[v.value if isinstance(v, enum.Enum) else str(v)])
        elif tp is bool:
            params.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                                            default=typer.Option(default, f"{flag}/--no-{flag[2:]}", help=help_text)))
            converters[pname] = (f.name, lambda v: v)
        elif tp in (int, float, str):
            params.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, annotation=tp,
                                            default=typer.Option(default, flag, help=help_text)))
            converters[pname] = (f.name, lambda v: v)
        # Fields of other types stay at their defaults on the CLI (the library takes them).
    return params, converters


def add_metric_command(group: typer.Typer, name: str, cls: type) -> None:
    """Add ``v2v eval <name-with-dashes>`` running metric ``name`` to ``group``."""
    cli_name = name.replace("_", "-")
    needs_real = bool(getattr(cls, "needs_real", True))
    config_params, converters = _config_options(name, getattr(cls, "Config", object))
    real_help = ("Real frames: video, frame folder, dataset sequence folder or dataset root." if needs_real else
                 "Reference video for the motion (default: the fake itself).")
    params = [
        inspect.Parameter("real", inspect.Parameter.KEYWORD_ONLY, annotation=typing.Optional[str],  # noqa: UP007
                          default=typer.Option(... if needs_real else None, "--real", help=real_help)),
        inspect.Parameter("fake", inspect.Parameter.KEYWORD_ONLY, annotation=str,
                          default=typer.Option(..., "--fake", help="Synthesized frames (same kinds of PATH).")),
        *config_params,
        inspect.Parameter("weights", inspect.Parameter.KEYWORD_ONLY, annotation=list[str],
                          default=typer.Option([], "--weights", help="NAME=PATH of a weights file (repeatable).")),
        inspect.Parameter("verify_weights", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(True, "--verify-weights/--no-verify-weights",
                                               help="Check sha256 of --weights files (turn off only for tests or "
                                                    "your own weights: numbers are then not comparable).")),
        inspect.Parameter("device", inspect.Parameter.KEYWORD_ONLY, annotation=str,
                          default=typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")),
        inspect.Parameter("json_out", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--json", help="Machine-readable output.")),
    ]

    def command(**kwargs: Any) -> None:
        from v2vcli.cli.util import print_json
        from v2vcli.errors import WeightsError, did_you_mean
        from v2vcli.metric import compute_metric
        from v2vcli.weights import parse_weights_overrides, weights_entries

        weights = parse_weights_overrides(kwargs["weights"])
        known = weights_entries()
        for wname in weights:
            if wname not in known:
                raise WeightsError(f"--weights {wname}=...: unknown weights name{did_you_mean(wname, known)}")
        options = {field: conv(kwargs[p]) for p, (field, conv) in converters.items()}
        result = compute_metric(name, kwargs["real"], kwargs["fake"], options, device=kwargs["device"],
                                weights=weights, verify_weights=kwargs["verify_weights"])
        if kwargs["json_out"]:
            print_json(result.to_dict())
        else:
            render_result(result)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = f"eval_{name}"
    summary = (getattr(cls, "description", "") or (cls.__doc__ or "").strip().splitlines()[0:1] or [name])
    command.__doc__ = summary if isinstance(summary, str) else summary[0]
    group.command(cli_name)(command)


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def render_result(result: Any) -> None:
    """Print a metric result as a rich table (per sequence, then the overall value) with its protocol."""
    from rich.table import Table

    from v2vcli.cli.util import console

    better = "higher" if result.higher_is_better else "lower"
    table = Table(title=f"{result.name.replace('_', '-')} ({better} is better)")
    table.add_column("sequence")
    table.add_column("frames", justify="right")
    table.add_column(result.name, justify="right")
    for seq, value in result.per_sequence.items():
        table.add_row(seq, str(len(result.per_frame.get(seq, []))), _fmt(value))
    if "real_frames" in result.details:
        frames = f"{result.details['real_frames']} real / {result.details['fake_frames']} fake"
    else:
        frames = str(sum(len(v) for v in result.per_frame.values()))
    table.add_row("[bold]all[/bold]", frames, f"[bold]{_fmt(result.value)}[/bold]")
    shown = {k: v for k, v in result.protocol.items() if k != "options" and isinstance(v, (str, int, float))}
    table.caption = "; ".join(f"{k}: {v}" for k, v in shown.items())
    console().print(table)


def _add_all_command(group: typer.Typer) -> None:
    @group.command("all")
    def eval_all(
        real: str = typer.Option(..., "--real", help="Real frames / conditioning dataset (a dataset root gives "
                                                    "every metric its inputs)."),
        fake: str = typer.Option(..., "--fake", help="Synthesized frames: video, frame folder or folder of sequences."),
        out: str = typer.Option("eval_report", "--out", "-o", help="Folder for report.json, report.md and plots."),
        metric: list[str] = typer.Option([], "--metric", "-m", help="Only these metrics (repeatable; default all)."),
        skip: list[str] = typer.Option([], "--skip", help="Leave these metrics out (repeatable)."),
        set_: list[str] = typer.Option([], "--set", help="Metric option METRIC.FIELD=VALUE, e.g. "
                                                         "seg_consistency.backend=dataset:GT (repeatable)."),
        horizons: bool = typer.Option(False, "--horizons/--no-horizons", help="Also plot per-frame metrics against "
                                                                            "the frame index (prediction horizon)."),
        weights: list[str] = typer.Option([], "--weights", help="NAME=PATH of a weights file (repeatable)."),
        verify_weights: bool = typer.Option(True, "--verify-weights/--no-verify-weights",
                                            help="Check sha256 of --weights files."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
        resize_fake: bool = typer.Option(False, "--resize-fake", help="Resize fake frames to the real size in the "
                                                                      "metrics that can (psnr, ssim, lpips, "
                                                                      "warp_error); a warning when the aspect ratios "
                                                                      "differ."),
        json_out: bool = typer.Option(False, "--json", help="Print the report summary as JSON."),
    ) -> None:
        """Every metric whose inputs and weights are available: report.json, report.md and PNG plots in OUT.

        Exits 1 when no metric could be computed (all skipped or failed); the report says why."""
        from v2v_plugins.evaluate.report import evaluate_all
        from v2vcli.cli.util import console, print_json
        from v2vcli.config import merge, parse_set
        from v2vcli.errors import ConfigError
        from v2vcli.weights import parse_weights_overrides

        options: dict[str, Any] = {}
        for expr in set_:
            parsed = parse_set(expr)
            name = next(iter(parsed))
            if not isinstance(parsed[name], dict):
                raise ConfigError(f"--set expects METRIC.FIELD=VALUE, got '{expr}'")
            options = merge(options, parsed)
        report = evaluate_all(real, fake, out, metrics=metric or None, skip=skip, options=options,
                              weights=parse_weights_overrides(weights), verify_weights=verify_weights,
                              device=device, horizons=horizons, resize_fake=resize_fake)
        if json_out:
            print_json({"out": out, "summary": report["summary"], "skipped": report["skipped"],
                        "failed": report["failed"], "plots": report["plots"]})
        else:
            from rich.table import Table

            table = Table(title=f"v2v eval all → {out}")
            table.add_column("metric", no_wrap=True)
            table.add_column("value", justify="right", no_wrap=True)
            table.add_column("note", overflow="fold")  # a long reason wraps; nothing is cut off
            for name, item in report["summary"].items():
                table.add_row(name, _fmt(item["value"]), "higher is better" if item["higher_is_better"] else
                              "lower is better")
            for name, why in {**report["skipped"], **report["failed"]}.items():
                table.add_row(name, "-", ("FAILED: " if name in report["failed"] else "skipped: ") + why)
            console().print(table)
        if not report["summary"]:
            from pathlib import Path

            from v2vcli.errors import V2VError

            raise V2VError(f"no metric could be computed ({len(report['skipped'])} skipped, {len(report['failed'])} "
                           f"failed); the reasons are in {Path(out) / 'report.md'}")


@hookimpl
def v2v_register_commands(app: typer.Typer) -> None:
    from v2vcli.errors import PluginError
    from v2vcli.registry import get_registry

    eval_app = typer.Typer(help="Measure synthesized video against real video: "
                                "v2v eval METRIC --real PATH --fake PATH.", no_args_is_help=True)
    app.add_typer(eval_app, name="eval")
    _add_all_command(eval_app)
    try:
        metrics = {name: reg.obj for name, reg in get_registry().metrics().items()}
    except PluginError as exc:  # a broken third-party metric must not take the built-in ones down
        log.warning("metric plugins failed to register (%s); only built-in metrics are available", exc)
        metrics = {cls.name: cls for cls in _builtin_metrics()}
    for name in sorted(metrics):
        if name.replace("_", "-") in RESERVED_SUBCOMMANDS:
            log.warning("metric '%s' is not offered as `v2v eval %s`: the name is reserved", name, name)
            continue
        try:
            add_metric_command(eval_app, name, metrics[name])
        except Exception as exc:  # one odd third-party metric class must not break the whole CLI
            log.warning("metric '%s' cannot be offered on the command line: %s: %s", name, type(exc).__name__, exc)
