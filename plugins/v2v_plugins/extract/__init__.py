"""Built-in plugin 'extract': the ``v2v extract KIND INPUT...`` command group, generated from the extractor registry.

Each registered kind becomes a subcommand with the runner's options (``-o``, ``--backend``, ``--workers``,
``--resize``, ``--fps``, ``--start``, ``--end``, ...) plus the fields of its backends' ``Config`` dataclasses
(``--field-name``; booleans as ``--flag/--no-flag``). Backends of one kind may have different Configs: the command
offers the union and rejects an option the chosen backend does not have. Only option values given on the command
line are passed, so each backend keeps its own defaults.
"""

from __future__ import annotations

import inspect
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import typer

from v2vcli.hookspecs import hookimpl

__all__ = ["v2v_register_commands", "make_extract_command"]

_RUNNER_OPTIONS = {"inputs", "output", "backend", "workers", "resize", "fps", "start", "end", "device",
                   "frames_format", "overwrite", "json_out", "progress", "allow_empty"}


def _cli_type(tp: Any) -> tuple[Any, str]:
    """The Typer annotation for a Config field type and how to convert back: 'plain', 'list' or 'yaml'."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Union or origin is types.UnionType:
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _cli_type(non_none[0])
    if tp in (bool, int, float, str):
        return tp | None, "plain"
    if origin is Literal:
        return str | None, "plain"
    if origin in (list, tuple) and args and args[0] in (int, float, str):
        return list[args[0]] | None, "list"  # type: ignore[valid-type]
    return str | None, "yaml"


def _literal_choices(tp: Any) -> tuple[Any, ...]:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Union or origin is types.UnionType:
        return next((c for a in args if (c := _literal_choices(a))), ())
    return args if origin is Literal else ()


def _describe_default(defaults: dict[str, Any], all_backends: list[str]) -> str:
    values = {repr(v) for v in defaults.values()}
    if len(defaults) == len(all_backends) and len(values) == 1:
        return f"default {next(iter(defaults.values()))!r}"
    return "; ".join(f"{b}: default {v!r}" for b, v in defaults.items())


def make_extract_command(kind: str, classes: dict[str, type], default_backend: str) -> Any:
    """The function behind ``v2v extract KIND``, with a signature Typer turns into options."""
    from v2vcli.extract import config_fields

    backends = list(classes)
    fields_by_backend = {b: config_fields(getattr(cls, "Config", None) or type(None)) for b, cls in classes.items()}
    union: dict[str, dict[str, Any]] = {}
    for b, spec in fields_by_backend.items():
        for name, (tp, default, help_text) in spec.items():
            entry = union.setdefault(name, {"type": tp, "help": help_text, "defaults": {}})
            entry["defaults"][b] = default
            entry["help"] = entry["help"] or help_text

    params = [
        inspect.Parameter("inputs", inspect.Parameter.KEYWORD_ONLY, annotation=list[Path],
                          default=typer.Argument(..., help="Videos (mp4, avi, mov, mkv, webm), frame folders, "
                                                           "dataset sequence folders, or folders of them.")),
        inspect.Parameter("output", inspect.Parameter.KEYWORD_ONLY, annotation=Path,
                          default=typer.Option(Path("v2v_data"), "--output", "-o", help="Dataset folder.")),
        inspect.Parameter("backend", inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
                          default=typer.Option(None, "--backend", help=f"Implementation: {', '.join(backends)} "
                                                                      f"(default {default_backend}).")),
        inspect.Parameter("workers", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                          default=typer.Option(1, "--workers", min=1, help="Processes working on sequences.")),
        inspect.Parameter("resize", inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
                          default=typer.Option(None, "--resize", help="Resize frames to WxH (-1 keeps aspect).")),
        inspect.Parameter("fps", inspect.Parameter.KEYWORD_ONLY, annotation=float | None,
                          default=typer.Option(None, "--fps", help="Resample to this constant frame rate.")),
        inspect.Parameter("start", inspect.Parameter.KEYWORD_ONLY, annotation=float | None,
                          default=typer.Option(None, "--start", help="First second to keep.")),
        inspect.Parameter("end", inspect.Parameter.KEYWORD_ONLY, annotation=float | None,
                          default=typer.Option(None, "--end", help="Second to stop at.")),
        inspect.Parameter("device", inspect.Parameter.KEYWORD_ONLY, annotation=str,
                          default=typer.Option("cpu", "--device", help="cpu, cuda or cuda:N.")),
        inspect.Parameter("frames_format", inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
                          default=typer.Option(None, "--frames-format",
                                               help="jpg (q95) or png for frames written (default: the "
                                                    "dataset's, else jpg).")),
        inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--overwrite", help=f"Delete earlier '{kind}' results "
                                                                          f"first.")),
        inspect.Parameter("allow_empty", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--allow-empty",
                                               help="Keep a sequence in which nothing was detected (pose, face "
                                                    "edges, selfie, detectron2); otherwise an error.")),
        inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, annotation=bool | None,
                          default=typer.Option(None, "--progress/--no-progress",
                                               help="Progress bar (default: on a terminal).")),
        inspect.Parameter("json_out", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--json", help="Print the report as JSON.")),
    ]
    option_params: dict[str, tuple[str, str, str]] = {}  # python name -> (field, flag, conversion)
    for name, entry in sorted(union.items()):
        flag = name.replace("_", "-")
        if name in _RUNNER_OPTIONS:
            flag = f"{kind}-{flag}"  # a Config field shadowing a runner option gets the kind as prefix
        annotation, conversion = _cli_type(entry["type"])
        decl = f"--{flag}/--no-{flag}" if annotation == (bool | None) else f"--{flag}"
        help_text = f"{entry['help'] or name.replace('_', ' ')} ({_describe_default(entry['defaults'], backends)})"
        choices = _literal_choices(entry["type"])
        if choices:
            help_text += f" One of: {', '.join(map(str, choices))}."
        pname = f"cfg_{name}"
        params.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                        default=typer.Option(None, decl, help=help_text,
                                                             rich_help_panel=f"'{kind}' options")))
        option_params[pname] = (name, flag, conversion)

    def command(**kw: Any) -> None:
        import yaml

        from v2vcli.cli.util import print_json, print_table
        from v2vcli.extract import run_extraction
        from v2vcli.io.video import parse_size
        from v2vcli.registry import get_registry

        chosen = kw["backend"] or default_backend
        get_registry().get_extractor(kind, chosen)  # unknown backend: an error listing the valid ones
        options: dict[str, Any] = {}
        for pname, (name, flag, conversion) in option_params.items():
            value = kw.get(pname)
            if value is None or (conversion == "list" and not value):
                continue
            if name not in fields_by_backend.get(chosen, {}):
                own = ", ".join(f"--{n.replace('_', '-')}" for n in fields_by_backend.get(chosen, {})) or "none"
                raise typer.BadParameter(f"--{flag} is not an option of backend '{chosen}' of '{kind}' (its "
                                         f"options: {own})")
            options[name] = yaml.safe_load(value) if conversion == "yaml" else value
        report = run_extraction(kind, kw["inputs"], kw["output"], backend=chosen, options=options,
                                workers=kw["workers"], resize=parse_size(kw["resize"]), fps=kw["fps"],
                                start=kw["start"], end=kw["end"], device=kw["device"],
                                frames_format=kw["frames_format"], progress=kw["progress"],
                                overwrite=kw["overwrite"], allow_empty=kw["allow_empty"])
        if kw["json_out"]:
            print_json(report.to_dict())
            return
        rows = [[s.seq, s.status, s.frames, f"{s.frames / s.seconds:.1f}" if s.seconds else "-"]
                for s in report.sequences]
        columns = ["sequence", "status", "frames", "frames/s"]
        if any(s.detection_rate is not None for s in report.sequences):  # a detecting extractor: its hit rate
            columns.append("detected")
            for row, s in zip(rows, report.sequences):
                row.append(f"{s.detected}/{s.frames} ({s.detection_rate:.0%})" if s.detection_rate is not None
                           else "-")
        rank = f" rank {report.rank}/{report.world_size}" if report.world_size > 1 else ""
        print_table(f"{kind}/{report.backend} → {report.dataset}{rank} ({report.frames} frames, {report.fps:.1f} "
                    f"frames/s)", columns, rows)

    first = next(iter(classes.values()))
    descriptions = [getattr(c, "description", "") for c in classes.values() if getattr(c, "description", "")]
    command.__doc__ = (f"Extract '{kind}' ({descriptions[0] if descriptions else first.__name__}) from videos "
                       f"into a dataset.")
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = f"extract_{kind}"
    return command


@hookimpl
def v2v_register_commands(app: typer.Typer) -> None:
    from v2vcli.errors import PluginError, V2VError
    from v2vcli.registry import get_registry

    help_text = "Extract conditioning inputs (pose, edges, seg, flow, ...) from videos into a dataset."
    try:
        registry = get_registry()
        kinds = registry.extractor_kinds()
        problem: V2VError | None = None if kinds else PluginError(
            "no extractor is registered; install a plugin that provides one (the built-in extractors come with "
            "v2v; check `v2v plugins` and V2V_DISABLE_PLUGINS)")
    except V2VError as exc:  # a broken extractor plugin must not take the other commands down
        kinds, problem = {}, exc
    if problem is not None:
        error = problem

        @app.command("extract", help=help_text, context_settings={"allow_extra_args": True,
                                                                   "ignore_unknown_options": True})
        def extract_unavailable(ctx: typer.Context) -> None:
            raise error

        return
    extract_app = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(extract_app, name="extract")
    for kind in sorted(kinds):
        classes = {b: registry.extractors()[f"{kind}/{b}"].obj for b in kinds[kind]}
        extract_app.command(kind)(make_extract_command(kind, classes, registry.default_backend(kind)))
