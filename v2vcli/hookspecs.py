"""pluggy hook specifications of v2v (entry-point group ``v2v``).

Every hook is prefixed ``v2v_``. Registration hooks receive a ``register`` callback; clashes are resolved in one
place, :mod:`v2vcli.registry`. Built-in stages are ordinary plugins in ``plugins/v2v_plugins`` registered through
the same entry points a third party uses. docs/plugin-hooks.md documents each hook (a test keeps them in sync).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["hookspec", "hookimpl", "PROJECT_NAME"]

PROJECT_NAME = "v2v"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def v2v_register_commands(app: Any) -> None:
    """Add Typer commands or command groups to the ``v2v`` application.

    Called once when the CLI is built, before arguments are parsed. ``app`` is the root ``typer.Typer``.
    """


@hookspec
def v2v_register_extractors(register: Callable[[str, str, type], None]) -> None:
    """Register extractor classes with ``register(kind, backend, cls)``.

    Called when the registry is first asked for extractors. ``kind`` is the dataset modality written (``pose``,
    ``edges``, ``seg``, ``flow`` or a new one); ``backend`` names the implementation. A (kind, backend) pair
    registered twice is an error naming both plugins.
    """


@hookspec
def v2v_register_models(register: Callable[[str, type], None]) -> None:
    """Register trainable video models with ``register(name, cls)``.

    Called when the registry is first asked for models. ``cls`` follows the model contract the trainer drives.
    """


@hookspec
def v2v_register_metrics(register: Callable[[str, type], None]) -> None:
    """Register evaluation metrics with ``register(name, cls)``; names are snake_case (dashes on the CLI)."""


@hookspec
def v2v_register_flow_estimators(register: Callable[[str, type], None]) -> None:
    """Register optical-flow estimators with ``register(name, cls)``; shared by extraction, training and metrics."""


@hookspec
def v2v_register_weights(register: Callable[[Any], None]) -> None:
    """Declare weight files a plugin can use with ``register(WeightsEntry(...))``."""


@hookspec(firstresult=True)
def v2v_open_video(path: str) -> Any:
    """Return a video reader for ``path`` or ``None`` to let another plugin try.

    Called for every input path. The first non-``None`` result wins; the built-in plugin handles ffmpeg formats
    and folders of frames, so a plugin registering this hook runs before it and may claim a new format.
    """


@hookspec
def v2v_on_log(stage: str, step: int, metrics: dict[str, float]) -> None:
    """Called on the main process whenever a stage logs scalars (``stage`` e.g. ``train`` or ``val``)."""


@hookspec
def v2v_on_checkpoint(path: str, step: int) -> None:
    """Called on the main process after a checkpoint has been written atomically to ``path``."""
