"""v2v: video-to-video synthesis toolkit (the vid2vid method) as a library and a ``v2v`` command line.

Public API (stable names): configuration loading, the plugin registry, weights lookup and the error types.
Heavy modules (torch, cv2) are imported by the functions that need them.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from v2vcli.config import V2VConfig, load_config
from v2vcli.errors import (CheckpointError, ConfigError, DatasetError, DeviceError, PluginError, V2VError,
                           VideoError, WeightsError)
from v2vcli.registry import Registry, get_registry
from v2vcli.weights import WeightsEntry, resolve_weights

DISTRIBUTION = "v2vcli"  # the name pip knows (`pip install v2vcli`); the command is `v2v`

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "__version__",
    "V2VConfig",
    "load_config",
    "Registry",
    "get_registry",
    "WeightsEntry",
    "resolve_weights",
    "V2VError",
    "ConfigError",
    "PluginError",
    "WeightsError",
    "VideoError",
    "DatasetError",
    "CheckpointError",
    "DeviceError",
]
