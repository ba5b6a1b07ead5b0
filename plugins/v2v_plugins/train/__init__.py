"""v2v built-in plugin 'train': the ``v2v train`` command (the loop lives in :mod:`.loop`).

``--gpus N`` (N > 1) or ``--nnodes M`` (M > 1) re-runs the same command line in N worker processes through
torchrun's elastic launcher (:func:`v2vcli.distributed.launch_elastic`); a process that torchrun started (``RANK``
and ``WORLD_SIZE`` set) joins instead of launching. ``--device cpu`` gives gloo ranks (how CI tests DDP).

Config precedence: (with ``--resume``, the checkpoint's own config) < ``--config`` files in order < ``--set`` <
explicit flags (``--data``, ``--run-dir``, ``--device``, ``--max-steps``, ``--precision``, ``--compile``). So
``v2v train --run-dir RUN --resume --max-steps N`` needs no other flag.

Only light modules are imported here; torch is imported when the command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from v2vcli.hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from .loop import train

__all__ = ["train", "training_plan", "clip_schedule", "config_history_frames", "v2v_register_commands",
           "resolve_train_config", "check_launch_device", "launch_elastic_from_cli"]

#: the public face, imported on first use (the loop needs torch): ``train`` and the schedule planners
_LOOP = ("train", "training_plan", "clip_schedule", "config_history_frames")


def __getattr__(name: str) -> Any:
    """``from v2v_plugins.train import train`` (and the planners): loaded from the loop on first use."""
    if name in _LOOP:
        from . import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

CONFIG_HELP = "YAML config file(s) or preset names (`v2v presets`), merged in order."


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


def check_launch_device(device: str, gpus: int) -> int | None:
    """Refuse a launch the machine cannot run (one line, before any process starts); returns the CPU threads each
    worker should use (None on CUDA)."""
    import os

    import torch

    from v2vcli.errors import DeviceError
    from v2vcli.runtime import device_name

    if (device or "auto").strip().lower() == "auto" and not torch.cuda.is_available():
        raise DeviceError(f"--gpus {gpus}: CUDA is not available; pass --device cpu for {gpus} CPU (gloo) ranks")
    name = device_name(device, flag=f"--gpus {gpus} --device")
    if name.startswith("cuda"):
        if torch.cuda.device_count() < gpus:
            raise DeviceError(f"--gpus {gpus}: this machine has {torch.cuda.device_count()} GPU(s)")
        return None
    if name != "cpu":
        raise DeviceError(f"--gpus {gpus} --device {name}: ranks run on cpu or cuda")
    return max(1, (os.cpu_count() or 1) // gpus)


def launch_elastic_from_cli(argv: list[str], *, gpus: int, nnodes: int, node_rank: int | None,
                            rdzv_endpoint: str | None, max_restarts: int, threads: int | None) -> None:
    """Re-run ``v2v <argv>`` in ``gpus`` workers per node (see :func:`v2vcli.distributed.launch_elastic`)."""
    from v2vcli.distributed import launch_elastic

    launch_elastic(argv, nproc_per_node=gpus, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint,
                   max_restarts=max_restarts, threads_per_proc=threads)


@hookimpl
def v2v_register_commands(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        config: list[str] = typer.Option([], "--config", "-c", help=CONFIG_HELP),
        data: str = typer.Option(None, "--data", help="Dataset folder (`v2v demo world` or `v2v extract` makes one)."),
        run_dir: str = typer.Option(None, "--run-dir", help="Where checkpoints, logs and samples go."),
        gpus: int = typer.Option(1, "--gpus", help="Processes per machine: one per GPU (or gloo ranks with --device "
                                                  "cpu); >1 launches through torchrun's elastic agent."),
        device: str = typer.Option(None, "--device", help="cpu, cuda or auto (default: train.device, auto)."),
        max_steps: int = typer.Option(None, "--max-steps",
                                      help="Absolute global step to stop at (a resumed run continues to it)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its last checkpoint."),
        init_from: str = typer.Option(None, "--init-from",
                                      help="Run (or checkpoint) with one spatial scale fewer: loads its G0..G(s-1)."),
        precision: str = typer.Option(None, "--precision", help="fp32, bf16 or fp16 (autocast; GradScaler for fp16)."),
        compile_: bool = typer.Option(False, "--compile", help="torch.compile the generator."),
        set_: list[str] = typer.Option([], "--set", help="Override: section.key=value (repeatable)."),
        nnodes: int = typer.Option(1, "--nnodes", help="Machines taking part (each runs the same command)."),
        node_rank: int = typer.Option(None, "--node-rank",
                                      help="This machine's rank 0..nnodes-1 (static rendezvous); without it "
                                           "ranks are assigned as machines join."),
        rdzv_endpoint: str = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT where the machines meet "
                                                                        "(node 0; needed with --nnodes > 1)."),
        max_restarts: int = typer.Option(0, "--max-restarts",
                                         help="Restart all workers up to N times after a failure; they resume from "
                                              "the last checkpoint."),
        plan: bool = typer.Option(False, "--plan", help="Print the curriculum (clip length, frames per step, steps, "
                                                        "temporal scales, learning rates per epoch); do not train."),
        json_: bool = typer.Option(False, "--json", help="With --plan: print it as JSON."),
    ) -> None:
        """Train a video model (vid2vid by default) on a dataset: one GPU, the CPU, N GPUs or several machines."""
        from v2vcli.errors import DeviceError

        if gpus < 1:
            raise DeviceError(f"--gpus must be at least 1, got {gpus}")
        if nnodes < 1:
            raise DeviceError(f"--nnodes must be at least 1, got {nnodes}")
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
        from .loop import check_training_config

        check_training_config(cfg)  # before any worker starts
        if plan:
            _print_plan(cfg, init_from=bool(init_from), world_size=gpus * nnodes, as_json=json_)
            return

        from v2vcli.distributed import under_torchrun

        if (gpus > 1 or nnodes > 1) and not under_torchrun():
            threads = check_launch_device(cfg.train.device, gpus)
            if threads is not None:  # CPU ranks
                from .loop import check_sync_batch_norm

                check_sync_batch_norm(cfg, "cpu", gpus * nnodes)
            # the workers get this call's own options back (not sys.argv: the CLI may run inside another program)
            argv = ["train", *[x for c in config for x in ("--config", c)], *[x for e in set_ for x in ("--set", e)]]
            for flag, value in (("--data", data), ("--run-dir", run_dir), ("--device", device),
                                ("--max-steps", max_steps), ("--init-from", init_from), ("--precision", precision)):
                if value is not None:
                    argv += [flag, str(value)]
            argv += ["--gpus", str(gpus)] + (["--resume"] if resume else []) + (["--compile"] if compile_ else [])
            launch_elastic_from_cli(argv, gpus=gpus, nnodes=nnodes, node_rank=node_rank,
                                    rdzv_endpoint=rdzv_endpoint, max_restarts=max_restarts, threads=threads)
            typer.echo(f"all {gpus * nnodes} worker(s) finished", err=True)
            return

        from v2vcli.distributed import is_main

        from .loop import train

        result = train(cfg, resume=resume, init_from=init_from)
        if is_main():
            where = f" checkpoint {result.checkpoint}" if result.checkpoint else ""
            if result.stopped_by == "nothing_to_do":
                typer.echo(f"nothing to do: the run is already at step {result.step}, its target (raise --max-steps, "
                           f"or the schedule: optim.niter/niter_decay, data.clips_per_sequence);{where}", err=True)
            else:
                typer.echo(f"stopped at step {result.step} ({result.stopped_by});{where}", err=True)
        if result.exit_code:
            raise typer.Exit(result.exit_code)


def _print_plan(cfg: Any, *, init_from: bool, world_size: int, as_json: bool) -> None:
    """``v2v train --plan``: the curriculum, as a table or JSON on stdout."""
    import json

    from .loop import training_plan

    plan = training_plan(cfg, init_from=init_from, world_size=world_size)
    if as_json:
        typer.echo(json.dumps(plan, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{plan['model']} on {plan['dataset']}: {plan['sequences']} sequence(s), the longest "
                        f"{plan['longest_sequence']} frames, clips of at most {plan['max_frames_per_sequence']}")
    for col in ("epoch", "frames/seq", "frames/step", "G,D steps", "bp", "temporal D", "lr", "G scales",
                "batches"):
        table.add_column(col, justify="left" if col in ("temporal D", "lr", "G scales") else "right",
                         no_wrap=True)
    for row in plan["epochs"]:
        lrs = row["lr"]
        values = sorted(set(lrs.values()))
        lr_text = f"{values[0]:.3g}" if len(values) == 1 else ", ".join(f"{k} {v:.3g}" for k, v in lrs.items())
        table.add_row(str(row["epoch"]), str(row["frames_per_sequence"]), str(row["frames_per_step"]),
                      f"{row['g_steps_per_sequence']},{row['d_steps_per_sequence']}",
                      str(row.get("backpropagated_frames", 1)),
                      ",".join(f"T{k}" for k in row.get("temporal_scales", [])) or "-", lr_text,
                      ",".join(f"G{s}" for s in row.get("spatial_scales", [0])), str(row["batches"]))
    Console(width=max(100, Console().width)).print(table)
