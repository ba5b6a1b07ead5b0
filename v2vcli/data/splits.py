"""Train/val splits of a dataset's sequences (``splits.json``; absent means every sequence is train)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from v2vcli.data.layout import Dataset
from v2vcli.errors import ConfigError, DatasetError

__all__ = ["make_splits", "split_dataset"]


def make_splits(sequences: Sequence[str], val: float = 0.1, seed: int = 0) -> dict[str, list[str]]:
    """Shuffle ``sequences`` with ``seed`` and hold out ``val`` of them (a fraction < 1, or a count >= 1).

    A positive fraction holds out at least one sequence; at least one always stays in train. Lists are sorted.
    """
    seqs = sorted(set(sequences))
    if val < 0:
        raise ConfigError(f"--val must be >= 0, got {val}")
    if val >= 1 and not float(val).is_integer():
        raise ConfigError(f"--val is a fraction below 1 or a whole number of sequences, got {val}")
    n_val = int(val) if val >= 1 else (max(1, round(val * len(seqs))) if val > 0 else 0)
    if n_val and n_val >= len(seqs):
        raise DatasetError(f"cannot hold out {n_val} of {len(seqs)} sequence(s) for val and keep one for train; "
                           f"lower --val or add sequences")
    order = list(seqs)
    random.Random(seed).shuffle(order)
    held = set(order[:n_val])
    return {"train": [s for s in seqs if s not in held], "val": [s for s in seqs if s in held]}


def split_dataset(root: str | Path, val: float = 0.1, seed: int = 0) -> dict[str, list[str]]:
    """Write ``splits.json`` of the dataset at ``root`` and return it."""
    ds = Dataset(root)
    splits = make_splits(ds.sequences(), val, seed)
    ds.write_splits(splits)
    return splits
