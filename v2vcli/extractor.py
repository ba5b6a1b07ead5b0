"""The contract every extractor plugin implements; :mod:`v2vcli.extract` runs it over videos.

An extractor is registered with ``register(kind, backend, cls)`` from ``v2v_register_extractors``. The runner
creates one instance per worker process, calls :meth:`Extractor.start_sequence` before each sequence (per-sequence
state such as tracking or smoothing is reset there), :meth:`Extractor.process` for every frame in order, and
writes what it returns. Options come from the class's ``Config`` dataclass; the CLI exposes each field as an
option of ``v2v extract KIND`` (``--field-name``; booleans as ``--flag/--no-flag``).

An extractor that works on a region of the video (a face crop) overrides :meth:`Extractor.sequence_crop`: the
runner then crops every frame of the sequence to the box it returns, before storing and processing it.

``process`` returns a mapping from output name to value, written under ``DATASET/<name>/<seq>/<index:06d>``:

* ``np.ndarray`` uint8 (H, W) → 8-bit PNG (labels, edges); uint16 (H, W) → 16-bit PNG (instances);
  uint8 (H, W, 3) RGB → PNG (renderings)
* :class:`FlowField` → ``.npz`` (flow float16 + confidence uint8)
* ``dict``/``list`` under a name ending in ``.json`` (e.g. ``"pose.json"``) → JSON next to the PNG of ``pose``
* :class:`FloatMaps` → ``.npz`` with a float16 array (distance maps and other multi-channel data)

Heavy libraries (torch, cv2, mediapipe) are imported in ``__init__`` or ``process``, never at module import time.

Threads: ``process`` is always called from one thread, in frame order, but the runner decodes the next frames and
writes the previous results in two other threads meanwhile (so frame I/O overlaps the model). An extractor must
therefore return arrays it does not modify afterwards (fresh arrays, not views of a buffer it reuses), and may
keep the ``frame`` it is given (it is never reused by the runner).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, ClassVar, cast

import numpy as np

from v2vcli.data.layout import LabelSet

__all__ = ["Extractor", "FlowField", "FloatMaps", "NoOptions"]


@dataclass(kw_only=True)
class NoOptions:
    """Config of an extractor without options."""


@dataclass
class FlowField:
    flow: np.ndarray  # (H, W, 2) float, backward t→t-1 in pixels
    conf: np.ndarray  # (H, W) uint8, 255 = confident


@dataclass
class FloatMaps:
    data: np.ndarray  # (H, W, C) float


class Extractor(ABC):
    """Base class of extractors. Subclasses set ``kind``, ``backend``, ``outputs`` and usually ``Config``."""

    kind: ClassVar[str] = ""
    backend: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    default: ClassVar[bool] = False  # the backend used when --backend is not given
    outputs: ClassVar[tuple[str, ...]] = ()  # output folders written (e.g. ("seg", "inst"))
    description: ClassVar[str] = ""
    # What a detecting extractor finds per frame ("person", "face"); "" for one that detects nothing. The runner
    # reports each sequence's detection rate (frames where :meth:`detected` is true), warns below 50% and refuses a
    # sequence without any detection unless --allow-empty is given.
    detects: ClassVar[str] = ""
    Config: ClassVar[type] = NoOptions

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        self.config = config if config is not None else self.Config()
        self.device = device

    def label_set(self) -> LabelSet | None:
        """The label set written to meta/<kind>.json, for label-producing extractors."""
        return None

    def meta(self) -> dict[str, Any]:
        """What meta/<kind>.json records besides extractor, backend, version and options."""
        return {}

    def options(self) -> dict[str, Any]:
        # cast: the config is an instance by construction; is_dataclass alone would also admit a dataclass class
        return asdict(cast(Any, self.config)) if is_dataclass(self.config) else {}

    def start_sequence(self, seq: str, fps: float, size: tuple[int, int]) -> None:
        """Reset per-sequence state. ``size`` is (W, H)."""

    def sequence_crop(self, frame: np.ndarray) -> tuple[int, int, int, int] | None:
        """The box (x0, y0, x1, y1) to crop the whole sequence to, found in its full first ``frame``; None (the
        default) keeps the frames whole.

        Called once per sequence, after :meth:`start_sequence` and before the first :meth:`process`. A crop changes
        the frame size, so the runner crops every frame to the box before it stores the frame in ``frames/`` and
        passes it to :meth:`process`, and records the box in meta/frames.json (``options.crop``). Frames already
        stored in the dataset are not cropped: a box for them is an error.
        """
        return None

    @abstractmethod
    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        """Return the outputs of RGB uint8 ``frame`` (H, W, 3), the ``index``-th frame of the sequence."""
        ...  # abstract: see the class docstring

    def detected(self, outputs: dict[str, Any]) -> bool | None:
        """Whether the frame whose :meth:`process` result is ``outputs`` had a detection (None: not a detector)."""
        return None

    def close(self) -> None:
        """Release models and resources."""
