"""Small helpers shared by command implementations: JSON output, rich tables, the console."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_json", "print_table", "console"]


def console(stderr: bool = False) -> Any:
    return Console(stderr=stderr, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")  # long values (paths) wrap; nothing is cut off
    for row in rows:
        table.add_row(*[str(v) for v in row])
    console().print(table)
