"""Data parallelism on torch's own engine: a :class:`~torch.nn.parallel.DistributedDataParallel` wrapper per network
(or per piece of one, e.g. each temporal discriminator), made on demand by :class:`DataParallel`.

A model runs the forward whose loss it back-propagates through ``self.data_parallel(name, module)``; DDP then averages
that module's gradients over the ranks during backward, bucket by bucket, overlapping the rest of backward. Outside a
distributed run the call returns the module itself. The rules DDP imposes, made explicit per call:

- ``find_unused=False`` (the default): every trainable parameter of the module gets a gradient from the step's
  backward on every rank; the forward may run several times before that backward (a frame-by-frame generator).
- ``find_unused=True``: parameters the step does not reach keep no gradient (Adam leaves them alone); the forward must
  then run once per backward, and every tensor it returns must enter the loss.
- Only modules whose forward ran through a wrapper since their optimizer last stepped may carry gradients into a
  step: :meth:`DataParallel.check` refuses the others, which would silently leave the ranks apart.

A wrapper is remade when the module's set of trainable parameters changes (e.g. coarse scales frozen for the first
epochs), since DDP fixes its buckets when it is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from v2vcli.distributed import is_distributed
from v2vcli.errors import V2VError

__all__ = ["DataParallel"]


def _ddp_kwargs() -> dict[str, Any]:
    params = inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
    # buffers stay rank-local at every forward (norm statistics are not synchronised: the model's choice, see
    # train.sync_batch_norm); newer torch renames the switch
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


class DataParallel:
    """The DDP wrappers of one model, by name."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._wrappers: dict[str, tuple[nn.Module, tuple[bool, ...], bool, nn.Module]] = {}
        self._ran: set[str] = set()  # wrappers whose forward ran since their parameters' optimizer last stepped

    def __call__(self, name: str, module: nn.Module, *, find_unused: bool = False) -> nn.Module:
        if not is_distributed():
            return module
        flags = tuple(p.requires_grad for p in module.parameters())
        entry = self._wrappers.get(name)
        if entry is None or entry[0] is not module or entry[1] != flags or entry[2] != find_unused:
            if not any(flags):
                return module
            ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
                if self.device.type == "cuda" else None
            ddp = torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused,
                                                            **_ddp_kwargs())
            ddp.register_forward_pre_hook(lambda *_: self._ran.add(name))
            entry = (module, flags, find_unused, ddp)
            self._wrappers[name] = entry
        return entry[3]

    def check(self, params: Iterable[torch.Tensor], what: str) -> None:
        """Refuse gradients on ``params`` that no wrapper averaged: the model ran their forward around DDP."""
        if not is_distributed():
            return
        synced = {id(p) for n in self._ran for p in self._wrappers[n][0].parameters()}
        for p in params:
            if p.grad is not None and id(p) not in synced:
                raise V2VError(f"the optimizer '{what}' has gradients no DDP wrapper averaged: in a distributed run a "
                               f"model must run the forward of each trained network through "
                               f"self.data_parallel(name, module) (docs/training.md)")

    def stepped(self, params: Iterable[torch.Tensor]) -> None:
        """Forget the wrappers whose parameters were just stepped (their next step needs a new forward)."""
        ids = {id(p) for p in params}
        self._ran = {n for n in self._ran if not any(id(p) in ids for p in self._wrappers[n][0].parameters())}
