"""User-facing error hierarchy.

Library code raises a subclass of :class:`V2VError` whose message says what was wrong and how to fix it.  The CLI
has exactly one handler that prints ``Error: <message>`` on stderr and exits 1; nothing else prints tracebacks
unless ``--verbose`` is given.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "V2VError",
    "ConfigError",
    "PluginError",
    "WeightsError",
    "VideoError",
    "DatasetError",
    "CheckpointError",
    "DeviceError",
    "did_you_mean",
]


class V2VError(Exception):
    """Base of every error a user is meant to read. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        # One line: the CLI promises a one-line ``Error:``.
        super().__init__(" ".join(str(message).split()))


class ConfigError(V2VError):
    """Bad configuration: unknown key, wrong type, unreadable YAML, missing file."""


class PluginError(V2VError):
    """A plugin failed to load, clashed with another, or a requested name is not registered."""


class WeightsError(V2VError):
    """A weights file is missing, truncated or has the wrong hash."""


class VideoError(V2VError):
    """A video or frame folder cannot be read or written."""


class DatasetError(V2VError):
    """A dataset folder does not follow the v2v layout or is inconsistent."""


class CheckpointError(V2VError):
    """A checkpoint is missing, corrupt, unsafe or does not fit the model."""


class DeviceError(V2VError):
    """The requested device or number of GPUs is not available."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or a list of valid choices."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{close[0]}'?)"
    if options:
        shown = ", ".join(options[:12]) + (", ..." if len(options) > 12 else "")
        return f" (valid: {shown})"
    return ""
