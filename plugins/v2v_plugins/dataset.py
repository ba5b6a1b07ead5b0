"""Built-in plugin 'dataset': ``v2v dataset check | split | import-vid2vid``."""

from __future__ import annotations

from pathlib import Path

import typer

from v2vcli.hookspecs import hookimpl

__all__ = ["v2v_register_commands"]


@hookimpl
def v2v_register_commands(app: typer.Typer) -> None:
    dataset_app = typer.Typer(help="Check, split and import datasets.", no_args_is_help=True)
    app.add_typer(dataset_app, name="dataset")

    @dataset_app.command("check")
    def check(
        dataset: Path = typer.Argument(..., help="Dataset folder."),
        quick: bool = typer.Option(False, "--quick", help="Check names and counts only; do not decode files."),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Check counts, sizes, label ids, missing and corrupt files; exit 1 on any problem."""
        from v2vcli.cli.util import console, print_json, print_table
        from v2vcli.data.check import check_dataset

        report = check_dataset(dataset, decode=not quick)
        if json_out:
            print_json(report.to_dict())
        else:
            modalities = sorted({m for counts in report.counts.values() for m in counts})
            rows = [[seq, "x".join(map(str, report.sizes.get(seq, []))) or "?",
                     *[report.counts[seq].get(m, 0) for m in modalities]] for seq in sorted(report.counts)]
            print_table(f"{dataset}: {len(report.counts)} sequence(s)", ["sequence", "size", *modalities], rows)
            for title, items in (("warnings", report.warnings), ("problems", report.problems)):
                if items:
                    print_table(f"{len(items)} {title}", ["sequence", "modality", title[:-1], "detail"],
                                [[p.seq or "-", p.modality or "-", p.problem, p.detail] for p in items])
            console().print(f"[green]ok[/green]: {report.files_checked} files checked" if report.ok else
                            f"[red]{len(report.problems)} problem(s)[/red] in {dataset}")
        if not report.ok:
            raise typer.Exit(1)

    @dataset_app.command("split")
    def split(
        dataset: Path = typer.Argument(..., help="Dataset folder."),
        val: float = typer.Option(0.1, "--val", help="Fraction (< 1) or number (>= 1) of sequences for val."),
        seed: int = typer.Option(0, "--seed", help="Shuffle seed."),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Write splits.json: a seeded random hold-out of whole sequences for validation."""
        from v2vcli.cli.util import print_json
        from v2vcli.data.splits import split_dataset

        splits = split_dataset(dataset, val, seed)
        if json_out:
            print_json(splits)
        else:
            typer.echo(f"train: {len(splits['train'])} sequence(s), val: {len(splits['val'])} "
                       f"({', '.join(splits['val']) or 'none'}) → {Path(dataset) / 'splits.json'}")

    @dataset_app.command("import-vid2vid")
    def import_vid2vid_cmd(
        src: Path = typer.Argument(..., help="Official vid2vid tree (train_A, train_B, train_inst, test_*)."),
        dataset: Path = typer.Argument(..., help="New v2v dataset folder."),
        fps: float = typer.Option(30.0, "--fps", help="Frame rate to record (vid2vid trees carry none)."),
        label_set: str = typer.Option("auto", "--label-set", help="auto (Cityscapes when ids fit), cityscapes or "
                                                                  "generic."),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Convert an official vid2vid dataset (label ids kept; test_* becomes the val split)."""
        from v2vcli.cli.util import print_json
        from v2vcli.data.importers import import_vid2vid

        report = import_vid2vid(src, dataset, fps=fps, label_set=label_set)  # type: ignore[arg-type]
        if json_out:
            print_json(report.to_dict())
        else:
            frames = sum(s["count"] for s in report.sequences.values())
            typer.echo(f"imported {len(report.sequences)} sequence(s), {frames} frames, label set "
                       f"'{report.label_set}' → {dataset} (train {len(report.splits['train'])}, val "
                       f"{len(report.splits['val'])})")
