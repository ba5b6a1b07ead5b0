"""Core commands (version, plugins, config, weights) and the built-in weights names."""

from __future__ import annotations

import platform
from typing import Any

import typer

from v2vcli.hookspecs import hookimpl

DEFAULT_CONFIG_HELP = "YAML config file(s) or preset names (`v2v presets`), merged in order."


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

        info: dict[str, Any] = {"v2v": v2vcli.__version__, "distribution": v2vcli.DISTRIBUTION,
                                "python": platform.python_version()}
        try:
            import torch

            info["torch"] = torch.__version__
            info["cuda"] = torch.cuda.is_available()
        except ImportError:  # pragma: no cover - torch is a dependency
            info["torch"] = None
        if json_out:
            print_json(info)
        else:
            typer.echo(f"v2v {info['v2v']} (pip: {info['distribution']}; python {info['python']}, torch "
                       f"{info['torch']})")

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

    weights_app = typer.Typer(help="Weight files v2v can use: list, download, locate, verify.", no_args_is_help=True)
    app.add_typer(weights_app, name="weights")

    @weights_app.command("list")
    def weights_list(json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
        """List known weights, where each was found and whether its sha256 is verified."""
        from v2vcli.cli.util import print_json, print_table
        from v2vcli.weights import cache_dir, weights_entries, weights_status

        rows = []
        for name, entry in sorted(weights_entries().items()):
            status, found = weights_status(entry)
            rows.append({"name": name, "file": entry.filename, "used_by": entry.used_by,
                         "present": str(found) if found else None, "status": status,
                         "sha256": entry.sha256 or entry.sha256_prefix, "url": entry.url, "source": entry.source})
        if json_out:
            print_json(rows)
        else:
            print_table(f"weights (cache: {cache_dir()}; get them with `v2v weights download NAME`)",
                        ["name", "used by", "status", "file"],
                        [[r["name"], r["used_by"], r["status"], r["present"] or r["file"]] for r in rows])

    @weights_app.command("download")
    def weights_download(
        names: list[str] = typer.Argument(None, help="Weights names (see `v2v weights list`)."),
        all_: bool = typer.Option(False, "--all", help="Every known weights file that has a download address."),
        force: bool = typer.Option(False, "--force", help="Download again even when a verified copy is there."),
    ) -> None:
        """Download weights into the v2v cache, with a progress bar and sha256 verification (nothing else in v2v
        downloads unless V2V_ALLOW_DOWNLOAD=1)."""
        from v2vcli.errors import WeightsError
        from v2vcli.weights import download_weights, weights_entries

        entries = weights_entries()
        if all_ and names:
            raise WeightsError("pass weights names or --all, not both")
        if not all_ and not names:
            raise WeightsError("name the weights to download (see `v2v weights list`), or pass --all")
        wanted = [n for n, e in sorted(entries.items()) if e.url] if all_ else list(names)
        for name in wanted:
            path, fresh = download_weights(name, force=force)
            typer.echo(f"{'downloaded' if fresh else 'already there'} {name}: {path}")

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
