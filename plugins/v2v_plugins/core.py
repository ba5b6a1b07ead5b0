"""Core commands (version, plugins, config, weights) and the built-in weights names."""

from __future__ import annotations

import platform
from typing import Any

import typer

from v2vcli.hookspecs import hookimpl

DEFAULT_CONFIG_HELP = "YAML config file(s), merged in order (presets in examples/configs/)."


@hookimpl
def v2v_register_weights(register: Any) -> None:
    from v2vcli.weights import BUILTIN_WEIGHTS

    for entry in BUILTIN_WEIGHTS:
        register(entry)


@hookimpl
def v2v_register_commands(app: typer.Typer) -> None:
    @app.command()
    def version(json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
        """Show the versions of v2v, Python and torch."""
        import v2vcli
        from v2vcli.cli.util import print_json

        info: dict[str, Any] = {"v2v": v2vcli.__version__, "python": platform.python_version()}
        try:
            import torch

            info["torch"] = torch.__version__
            info["cuda"] = torch.cuda.is_available()
        except ImportError:  # pragma: no cover - torch is a dependency
            info["torch"] = None
        if json_out:
            print_json(info)
        else:
            typer.echo(f"v2v {info['v2v']} (python {info['python']}, torch {info['torch']})")

    @app.command()
    def plugins(json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
        """List installed plugins, their versions, hooks and what they registered."""
        from v2vcli.cli.util import print_json, print_table
        from v2vcli.registry import get_registry

        info = get_registry().plugin_info()
        if json_out:
            print_json(info)
            return
        rows = []
        for p in info:
            reg = "; ".join(f"{k}: {', '.join(v)}" for k, v in p["registered"].items())
            rows.append([p["name"], p["version"] or "-", ", ".join(h.removeprefix("v2v_") for h in p["hooks"]), reg])
        print_table("v2v plugins", ["plugin", "version", "hooks", "registered"], rows)

    config_app = typer.Typer(help="Show and check configurations.", no_args_is_help=True)
    app.add_typer(config_app, name="config")

    @config_app.command("show")
    def config_show(
        config: list[str] = typer.Option([], "--config", "-c", help=DEFAULT_CONFIG_HELP),
        set_: list[str] = typer.Option([], "--set", help="Override: section.key=value (repeatable)."),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Print the resolved configuration (defaults < files < --set); changed keys are marked."""
        from v2vcli.cli.util import print_json
        from v2vcli.config import dump_config, load_config, to_dict

        cfg = load_config(config, set_)
        if json_out:
            print_json(to_dict(cfg))
        else:
            typer.echo(dump_config(cfg, mark_non_defaults=True), nl=False)

    weights_app = typer.Typer(help="Weight files v2v can use: list, locate, verify.", no_args_is_help=True)
    app.add_typer(weights_app, name="weights")

    @weights_app.command("list")
    def weights_list(json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
        """List known weights, where each is expected and whether it is present."""
        from v2vcli.cli.util import print_json, print_table
        from v2vcli.weights import cache_dir, torch_hub_dir, weights_entries

        rows = []
        for name, entry in sorted(weights_entries().items()):
            found = next((str(p) for p in (cache_dir() / entry.filename, torch_hub_dir() / entry.filename)
                          if p.is_file()), None)
            rows.append({"name": name, "file": entry.filename, "used_by": entry.used_by, "present": found,
                         "sha256": entry.sha256 or entry.sha256_prefix, "url": entry.url, "source": entry.source})
        if json_out:
            print_json(rows)
        else:
            print_table(f"weights (cache: {cache_dir()})", ["name", "file", "used by", "present"],
                        [[r["name"], r["file"], r["used_by"], r["present"] or "missing"] for r in rows])

    @weights_app.command("path")
    def weights_path(name: str = typer.Argument(..., help="Weights name (see `v2v weights list`).")) -> None:
        """Print the verified local path of weights NAME (error with download hint when missing)."""
        from v2vcli.weights import resolve_weights

        typer.echo(str(resolve_weights(name, allow_download=False)))

    @weights_app.command("verify")
    def weights_verify(
        name: str = typer.Argument(..., help="Weights name."),
        path: str = typer.Option(None, "--path", help="Check this file instead of the cached one."),
    ) -> None:
        """Check the sha256 of weights NAME."""
        from v2vcli.weights import resolve_weights, sha256_file

        p = resolve_weights(name, path, allow_download=False)
        typer.echo(f"ok {name} {p} sha256={sha256_file(p)}")
