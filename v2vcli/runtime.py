"""What every stage repeats at run time: the device rule, progress bars, JSON-safe reports, library versions, frames.

- :func:`device_name` / :func:`resolve_device`: the one rule for ``--device`` (``auto``, ``cpu``, ``cuda``,
  ``cuda:N``, ``mps``, ``xpu``); a device this machine lacks or a name that is no device is a :class:`DeviceError`.
- :class:`ProgressBar` / :func:`progress`: one rich progress bar on stderr, shown when stderr is a terminal (or as
  asked); nothing is drawn otherwise, so logs stay plain.
- :func:`json_safe`: plain JSON data (strict JSON has no Infinity or NaN).
- :func:`library_versions`: installed versions for reports.
- :func:`to_uint8` / :func:`to_uint8_tensor`: generated frames in [-1, 1] to RGB uint8 (host array / device tensor).

This module stays free of torch and numpy at import time (the plugins import it while building ``v2v --help``).
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import v2vcli
from v2vcli.distributed import get_local_rank
from v2vcli.errors import DeviceError

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "DEVICE_TYPES",
    "device_name",
    "resolve_device",
    "ProgressBar",
    "progress",
    "json_safe",
    "library_versions",
    "to_uint8",
    "to_uint8_tensor",
]

#: the device types ``--device`` accepts (with an optional ``:N`` index), besides ``auto``
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def device_name(device: str | None, *, flag: str = "--device") -> str:
    """The one device rule: ``auto`` (or empty) → ``cuda`` when available else ``cpu``; else the given name
    (lower-cased), which must be a device type of :data:`DEVICE_TYPES` this machine has. ``flag`` starts the
    error messages (e.g. ``--gpus 2 --device``)."""
    import torch

    name = (device or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if kind not in DEVICE_TYPES or (index and not index.isdigit()):
        raise DeviceError(f"{flag} '{device}' is not a device; use auto, cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{flag} {name}: CUDA is not available (torch {torch.__version__} sees no GPU); use "
                          f"--device cpu")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"{flag} {name}: MPS is not available on this machine; use --device cpu")
    if kind == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise DeviceError(f"{flag} {name}: XPU is not available on this machine; use --device cpu")
    return name


def resolve_device(device: str | None) -> torch.device:
    """:func:`device_name` as a ``torch.device``; plain ``cuda`` is this process's GPU (``LOCAL_RANK`` under
    torchrun, modulo the GPUs visible)."""
    import torch

    name = device_name(device)
    if name == "cuda":
        return torch.device("cuda", get_local_rank() % max(1, torch.cuda.device_count()))
    return torch.device(name)


class ProgressBar:
    """A rich progress bar on stderr: ``description``, bar, done/total, then with ``unit`` the rate ("12.3 frames/s")
    and the elapsed time, with ``status`` a free text (:meth:`update`), and the time left.

    ``enabled`` None shows it when stderr is a terminal; when not shown every method does nothing. ``transient``
    removes the bar when it closes.
    """

    def __init__(self, total: int | None, description: str, *, enabled: bool | None = None, unit: str = "",
                 status: bool = False, transient: bool = True, completed: int = 0) -> None:
        self.shown = sys.stderr.isatty() if enabled is None else bool(enabled)
        self._bar: Any = None
        self._task: Any = None
        if not self.shown:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        from rich.text import Text

        class Rate(ProgressColumn):
            def render(self, task: Any) -> Text:
                return Text(f"{task.speed:.1f} {unit}/s" if task.speed else f"- {unit}/s")

        columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
        if unit:
            columns += [Rate(), TimeElapsedColumn()]
        if status:
            columns.append(TextColumn("{task.fields[status]}"))
        columns.append(TimeRemainingColumn())
        self._bar = Progress(*columns, console=Console(stderr=True), transient=transient)
        self._bar.start()
        self._task = self._bar.add_task(description, total=total, completed=completed, status="")

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def update(self, completed: int, status: str = "") -> None:
        """Set the count done and the status text."""
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, status=status)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@contextlib.contextmanager
def progress(total: int | None, description: str, *, enabled: bool | None = None, unit: str = "",
             transient: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)`` of a :class:`ProgressBar` (a no-op when it is not shown)."""
    with ProgressBar(total, description, enabled=enabled, unit=unit, transient=transient) as bar:
        yield bar.advance


def json_safe(value: Any) -> Any:
    """Plain JSON data: non-finite floats become the strings "inf", "-inf", "nan" (strict JSON has no Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions of v2v and of the given distributions (those not installed are left out)."""
    out: dict[str, str] = {"v2v": v2vcli.__version__}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def to_uint8_tensor(frames: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) in [-1, 1] → (..., H, W, 3) RGB uint8 on the frames' device."""
    x = frames.detach().float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().byte()
    return x.movedim(-3, -1).contiguous()


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) in [-1, 1] → (..., H, W, 3) RGB uint8 on the CPU (converted on the frames' device, so only
    bytes are copied)."""
    return to_uint8_tensor(frames).cpu().numpy()
