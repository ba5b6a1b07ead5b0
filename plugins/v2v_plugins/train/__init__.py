"""v2v built-in plugin 'train': the ``v2v train`` command (single process; the loop lives in :mod:`.loop`).

Config precedence: (with ``--resume``, the checkpoint's own config) < ``--config`` files in order < ``--set`` <
explicit flags (``--data``, ``--run-dir``, ``--device``, ``--max-steps``, ``--precision``, ``--compile``). So
``v2v train --run-dir RUN --resume --max-steps N`` needs no other flag.

Only light modules are imported here; torch is imported when the command runs.
"""

from __future__ import annotations

from typing import Any

import typer

from v2vcli.hookspecs import hookimpl

__all__ = ["v2v_register_commands", "resolve_train_config"]

CONFIG_HELP = "YAML config file(s), merged in order (presets in examples/configs/)."


def resolve_train_config(config: list[str], sets: list[str], flags: dict[str, Any], resume: bool) -> Any:
    """The resolved :class:`~v2vcli.config.V2VConfig` of a ``v2v train`` call (see the module docstring)."""
    from v2vcli.checkpoint import latest_checkpoint, read_meta
    from v2vcli.config import build_config, load_yaml, merge, parse_set

    user: dict[str, Any] = {}
    for path in config:
        user = merge(user, load_yaml(path))
    for expr in sets:
        user = merge(user, parse_set(expr))
    user = merge(user, flags)
    base: dict[str, Any] = {}
    if resume:
        from v2vcli.config import V2VConfig

        run_dir = user.get("run_dir") or V2VConfig().run_dir
        latest = latest_checkpoint(run_dir)
        if latest is not None:
            base = dict(read_meta(latest).config)
    return build_config(merge(base, user))


@hookimpl
def v2v_register_commands(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        config: list[str] = typer.Option([], "--config", "-c", help=CONFIG_HELP),
        data: str = typer.Option(None, "--data", help="Dataset folder (`v2v demo world` or `v2v extract` makes one)."),
        run_dir: str = typer.Option(None, "--run-dir", help="Where checkpoints, logs and samples go."),
        gpus: int = typer.Option(1, "--gpus", help="Number of GPUs (this version trains on one)."),
        device: str = typer.Option(None, "--device", help="cpu, cuda or auto (default: train.device, auto)."),
        max_steps: int = typer.Option(None, "--max-steps",
                                      help="Absolute global step to stop at (a resumed run continues to it)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its last checkpoint."),
        init_from: str = typer.Option(None, "--init-from",
                                      help="Run (or checkpoint) with one spatial scale fewer: loads its G0..G(s-1)."),
        precision: str = typer.Option(None, "--precision", help="fp32, bf16 or fp16 (autocast; GradScaler for fp16)."),
        compile_: bool = typer.Option(False, "--compile", help="torch.compile the generator."),
        set_: list[str] = typer.Option([], "--set", help="Override: section.key=value (repeatable)."),
    ) -> None:
        """Train a video model (vid2vid by default) on a dataset, on one GPU or the CPU."""
        from v2vcli.errors import DeviceError

        if gpus < 1:
            raise DeviceError(f"--gpus must be at least 1, got {gpus}")
        if gpus > 1:
            raise DeviceError(f"--gpus {gpus}: multi-GPU training is not available in this version; train on one "
                              f"GPU with --gpus 1")
        flags: dict[str, Any] = {}
        if data is not None:
            flags.setdefault("data", {})["root"] = data
        if run_dir is not None:
            flags["run_dir"] = run_dir
        train_flags = {k: v for k, v in (("device", device), ("max_steps", max_steps), ("precision", precision))
                       if v is not None}
        if compile_:
            train_flags["compile"] = True
        if train_flags:
            flags["train"] = train_flags
        cfg = resolve_train_config(config, set_, flags, resume)

        from .loop import train

        result = train(cfg, resume=resume, init_from=init_from)
        where = f" checkpoint {result.checkpoint}" if result.checkpoint else ""
        typer.echo(f"stopped at step {result.step} ({result.stopped_by});{where}", err=True)
        if result.exit_code:
            raise typer.Exit(result.exit_code)
