"""A model's networks as one flat state dict (``<network>.<key>``), and loading it back with one-line errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from v2vcli.errors import CheckpointError

__all__ = ["network_weights", "load_network_weights", "load_network_state"]


def network_weights(nets: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Every network's state under ``<name>.``."""
    return {f"{name}.{key}": value for name, net in nets.items() for key, value in net.state_dict().items()}


def load_network_weights(nets: Mapping[str, nn.Module], parts: Mapping[str, dict[str, Any]],
                         networks: Sequence[str] | None, strict: bool, *, model: str = "") -> list[str]:
    """Load ``parts`` (per network name, as :func:`v2vcli.checkpoint.split_networks` gives) into ``nets``: the
    names in ``networks`` (default: every network the checkpoint has); returns the names loaded."""
    wanted = list(networks) if networks is not None else [n for n in nets if n in parts]
    loaded = []
    for name in wanted:
        if name not in nets:
            raise CheckpointError(f"model '{model}' has no network '{name}' (it has {', '.join(sorted(nets))})")
        if name not in parts:
            if strict:
                raise CheckpointError(f"the checkpoint has no weights for network '{name}' (it has "
                                      f"{', '.join(sorted(parts))})")
            continue
        load_network_state(nets[name], parts[name], name, strict)
        loaded.append(name)
    return loaded


def load_network_state(net: nn.Module, state: Mapping[str, Any], name: str, strict: bool) -> None:
    """Load one network; with ``strict`` every key and shape must match (a one-line :class:`CheckpointError` says
    how many do not), else what fits is loaded."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if strict and (missing or unexpected or shape):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. '{missing[0]}')")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. '{unexpected[0]}')")
        if shape:
            k = shape[0]
            parts.append(f"{len(shape)} of another shape (e.g. '{k}' {tuple(state[k].shape)} vs "
                         f"{tuple(own[k].shape)})")
        raise CheckpointError(f"network '{name}' does not fit the checkpoint: {'; '.join(parts)}; the checkpoint was "
                              f"trained with another model config")
    usable = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    net.load_state_dict(usable, strict=False)
