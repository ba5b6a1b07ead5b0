"""v2v built-in plugin 'model': the `v2v model` command group (`v2v model summary`).

The command parses options, resolves the config, asks the registered model class for its summary (built on the
meta device, no weights allocated) and renders it as a table or JSON.
"""

from __future__ import annotations

from typing import Any

import typer

from v2vcli.errors import ConfigError
from v2vcli.hookspecs import hookimpl

__all__ = ["v2v_register_commands", "parse_size", "assumed_label_set", "train_memory_gib", "preset_rows"]

#: bytes per trained parameter held through a step: fp32 weights, gradients and Adam's two moments
STATE_BYTES_PER_PARAM = 16


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


def assumed_label_set(cfg: Any) -> Any:
    """The label set a summary without ``--data`` assumes, or None when the config needs none.

    A config with ``model.label_nc: 0`` takes its class count from the dataset (``tiny``, ``tiny_perframe``: made for
    the synthetic world of ``v2v demo world``); without a dataset its label set is assumed to be that world's.
    """
    if "seg" not in cfg.data.inputs or getattr(cfg.model, "label_nc", None) != 0:
        return None
    from v2v_plugins.world import world_label_set

    return world_label_set()


def train_memory_gib(summary: Any, cfg: Any) -> float:
    """A training-memory estimate in GiB for one process: 16 bytes per parameter of G and the discriminators
    (weights, gradients, Adam moments) plus G's saved activations for ``train.frames_per_step`` frames of each of
    ``data.batch_size`` clips. Discriminator activations and the allocator's slack come on top."""
    params = summary.total_params + sum(int(r["params"]) for r in getattr(summary, "discriminators", None) or [])
    act_mib = sum(n.activation_mib for n in summary.networks.values())
    frames = max(1, int(getattr(cfg.train, "frames_per_step", 1))) * max(1, int(cfg.data.batch_size))
    return (params * STATE_BYTES_PER_PARAM + act_mib * 2**20 * frames) / 2**30


def preset_rows(names: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per shipped preset: model, size, parameters, GFLOP per frame, the memory estimate, the label set
    assumed (see :func:`assumed_label_set`)."""
    from v2vcli.config import load_config
    from v2vcli.presets import preset_names, preset_path
    from v2vcli.registry import get_registry

    rows: list[dict[str, Any]] = []
    for name in names or preset_names():
        path = preset_path(name)
        cfg = load_config([path])
        row: dict[str, Any] = {"name": path.stem, "file": str(path), "model": cfg.model.name,
                               "size": list(cfg.data.size), "inputs": list(cfg.data.inputs), "params": None,
                               "gflop_per_frame": None, "train_gib": None, "label_set": None}
        model_cls = get_registry().get_model(cfg.model.name)
        if hasattr(model_cls, "summary"):
            label_set = assumed_label_set(cfg)
            summary = model_cls.summary(cfg, label_set, None)
            row.update(params=summary.total_params,
                       gflop_per_frame=round(sum(n.gflop_per_frame for n in summary.networks.values()), 3),
                       train_gib=round(train_memory_gib(summary, cfg), 2),
                       label_set=label_set.name if label_set is not None else None)
        rows.append(row)
    return rows


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
                                         help="YAML config file(s) or preset names (`v2v presets`), merged in order."),
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
        if not data:
            label_set = assumed_label_set(cfg)
            if label_set is not None and not json_out:
                from v2vcli.cli.util import console

                console(stderr=True).print(f"model.label_nc is 0 (taken from the dataset) and no --data is given: "
                                           f"assuming the label set '{label_set.name}' of `v2v demo world` "
                                           f"({len(label_set.classes)} classes); pass --data DATASET for another")
        else:
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
            out = result.to_dict()
            out["label_set"] = label_set.name if label_set is not None else None
            out["train_gib"] = round(train_memory_gib(result, cfg), 2)
            print_json(out)
        else:
            _render(result)
            from v2vcli.cli.util import console

            console().print(f"training memory estimate: {train_memory_gib(result, cfg):,.1f} GiB per process "
                            f"(16 B per parameter of G and Ds + G activations x train.frames_per_step x "
                            f"data.batch_size; D activations not included)")

    @app.command("presets")
    def presets_cmd(
        names: list[str] = typer.Argument(None, help="Preset names (default: all)."),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """The presets that ship with v2v (use one as `--config NAME`): size, parameters, GFLOP per frame and a
        training-memory estimate."""
        from v2vcli.cli.util import console, print_json
        from v2vcli.presets import presets_dir

        rows = preset_rows(list(names) if names else None)
        if json_out:
            print_json(rows)
            return
        from rich.table import Table

        table = Table(title=f"v2v presets ({presets_dir()})")
        for col, justify in (("name", "left"), ("model", "left"), ("W x H", "right"), ("params", "right"),
                             ("GFLOP/frame", "right"), ("train GiB", "right")):
            table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]  # wrap, never cut
        for r in rows:
            table.add_row(r["name"], r["model"], "x".join(str(v) for v in r["size"]),
                          f"{r['params'] / 1e6:,.1f} M" if r["params"] is not None else "-",
                          f"{r['gflop_per_frame']:,.1f}" if r["gflop_per_frame"] is not None else "-",
                          f"~{r['train_gib']:,.1f}" if r["train_gib"] is not None else "-")
        console().print(table)
        assumed = sorted({r["label_set"] for r in rows if r["label_set"]})
        console().print("Use one with `--config NAME` (e.g. `v2v train --config street_512 ...`); "
                        "`v2v config show --config NAME` prints it. Parameters: G only; GFLOP: G per generated "
                        "frame; train GiB: 16 B per parameter of G and Ds + G activations x frames per step x batch "
                        "(D activations on top); '-': the model has no summary."
                        + (f" label_nc 0 presets assume the label set '{', '.join(assumed)}' (v2v demo world)."
                           if assumed else ""))
