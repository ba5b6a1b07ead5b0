"""The discriminators as a D step calls them in a distributed run: each network through its own DDP wrapper
(:mod:`v2vcli.parallel`), so its gradients are averaged over the ranks during backward and only the networks the
step uses (e.g. the active temporal Ds) take part."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from .discriminators import Vid2VidDiscriminators

__all__ = ["ParallelDiscriminators", "parallel_discriminators"]


class ParallelDiscriminators:
    """``D``'s ``forward_image`` / ``forward_temporal`` / ``forward_face`` through ``wrap(name, module)`` (a model's
    ``data_parallel``; the module itself outside a distributed run) under the optimizer names ``D``, ``D_T<k>`` and
    ``D_face``; every other attribute is ``D``'s own. Use it for the D step only: the G step calls the frozen
    discriminators directly."""

    def __init__(self, D: Vid2VidDiscriminators, wrap: Any) -> None:
        self._D, self._wrap = D, wrap

    def __getattr__(self, name: str) -> Any:
        return getattr(self._D, name)

    def forward_image(self, labels: torch.Tensor, frame: torch.Tensor) -> Any:
        return self._wrap("D", self._D.image)(self._D.image_input(labels, frame))

    def forward_temporal(self, scale: int, windows: torch.Tensor) -> Any:
        return self._wrap(f"D_T{scale}", self._D.temporal[scale])(windows)

    def forward_face(self, labels: torch.Tensor, frame: torch.Tensor, boxes: torch.Tensor) -> Any:
        if self._D.face is None:
            return self._D.forward_face(labels, frame, boxes)  # its one-line error
        return self._wrap("D_face", self._D.face)(self._D.face_crops(labels, frame, boxes))


def parallel_discriminators(D: nn.Module, wrap: Any) -> Vid2VidDiscriminators:
    """:class:`ParallelDiscriminators` over ``D`` (a :class:`Vid2VidDiscriminators`, as a model's ``nets["D"]``),
    typed as what the loss functions take (it answers their calls)."""
    if not isinstance(D, Vid2VidDiscriminators):
        raise TypeError(f"expected Vid2VidDiscriminators, got {type(D).__name__}")
    return cast(Vid2VidDiscriminators, ParallelDiscriminators(D, wrap))
