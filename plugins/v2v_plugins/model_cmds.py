"""v2v built-in plugin 'model': the `v2v model` command group (`v2v model summary`).

The command parses options, resolves the config, asks the registered model class for its summary (built on the
meta device, no weights allocated) and renders it as a table or JSON.
"""

from __future__ import annotations

from typing import Any

import typer

from v2vcli.errors import ConfigError
from v2vcli.hookspecs import hookimpl

__all__ = ["v2v_register_commands", "parse_size"]


def parse_size(text: str) -> tuple[int, int]:
    """"512x256" → (512, 256) (W×H)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--size expects WxH like 512x256, got '{text}'") from None
    if w <= 0 or h <= 0:
        raise ConfigError(f"--size expects positive WxH like 512x256, got '{text}'")
    return w, h


def _render(summary: Any) -> None:
    from v2vcli.cli.util import console
    from rich.table import Table

    w, h = summary.size
    table = Table(title=f"{summary.model} at {w}x{h} (conditioning: {summary.conditioning} = "
                        f"{summary.input_nc} channels per frame)")
    for col, justify in (("network", "left"), ("scale", "left"), ("module", "left"), ("params", "right"),
                         ("GFLOP/frame", "right"), ("act. MiB", "right")):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for name, net in summary.networks.items():
        table.add_row(f"[bold]{name}[/bold]", "", "", f"{net.params:,}", f"{net.gflop_per_frame:,.1f}",
                      f"{net.activation_mib:,.0f}")
        for scale_name, scale in net.scales.items():
            table.add_row("", scale_name, "", f"{scale.params:,}", f"{scale.gflop:,.1f}", "")
            for mod_name, part in scale.modules.items():
                table.add_row("", "", mod_name, f"{part.params:,}", f"{part.gflop:,.1f}", "")
    table.add_row("[bold]total[/bold]", "", "", f"{summary.total_params:,}",
                  f"{sum(n.gflop_per_frame for n in summary.networks.values()):,.1f}", "")
    console().print(table)
    rows = getattr(summary, "discriminators", None) or []
    if rows:
        dtable = Table(title="discriminators (training only)")
        for col, justify in (("net", "left"), ("in", "right"), ("params", "right"), ("GFLOP/call", "right"),
                             ("applied to", "left")):
            dtable.add_column(col, justify=justify)  # type: ignore[arg-type]
        for r in rows:
            dtable.add_row(r["name"], str(r["in_channels"]), f"{r['params']:,}", f"{r['gflop']:,.1f}",
                           f"{r['applications']} at " + "x".join(str(v) for v in r["input_size"]))
        dtable.add_row("[bold]total[/bold]", "", f"{sum(r['params'] for r in rows):,}", "", "")
        console().print(dtable)
    console().print("GFLOP: convolutions and matmuls, 1 MAC = 2 FLOP, one generated frame, batch 1. Activations: "
                    "tensors kept for backward in fp32 (bf16 about halves them).")


@hookimpl
def v2v_register_commands(app: typer.Typer) -> None:
    model_app = typer.Typer(help="Inspect model configurations.", no_args_is_help=True)
    app.add_typer(model_app, name="model")

    @model_app.command("summary")
    def summary(
        config: list[str] = typer.Option([], "--config", "-c",
                                         help="YAML config file(s), merged in order (presets in examples/configs/)."),
        set_: list[str] = typer.Option([], "--set", help="Override: section.key=value (repeatable)."),
        size: str = typer.Option(None, "--size", help="Frame size WxH (default: data.size of the config)."),
        data: str = typer.Option(None, "--data", help="Dataset whose label set gives label_nc and the foreground ids."),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Parameters per network, scale and module; GFLOP per generated frame; activation memory (no weights)."""
        from v2vcli.cli.util import print_json
        from v2vcli.config import load_config
        from v2vcli.errors import PluginError
        from v2vcli.registry import get_registry

        cfg = load_config(config, set_)
        label_set = None
        if data:
            from v2vcli.data.layout import Dataset

            ds = Dataset(data)
            ds.frames_meta()  # a clear error when DATA is not a dataset
            if "seg" in cfg.data.inputs:
                label_set = ds.label_set("seg")
        model_cls = get_registry().get_model(cfg.model.name)
        if not hasattr(model_cls, "summary"):
            raise PluginError(f"model '{cfg.model.name}' does not provide a summary")
        result = model_cls.summary(cfg, label_set, parse_size(size) if size else None)
        if json_out:
            print_json(result.to_dict())
        else:
            _render(result)
