"""Plugin manager factory.

``get_plugin_manager()`` builds a fresh :class:`pluggy.PluginManager` with v2v's hookspecs, loads every plugin of
the ``v2v`` entry-point group (built-ins included), honours ``V2V_DISABLE_PLUGINS`` (comma-separated entry-point
names, or ``all`` for every non-core plugin) and ``V2V_TRACE_PLUGINS`` (hook calls written to stderr), and calls
``check_pending()`` so an implementation of a hook that does not exist is an error, not a silent no-op.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from v2vcli import hookspecs
from v2vcli.errors import PluginError

__all__ = ["get_plugin_manager", "disabled_plugins", "CORE_PLUGIN"]

log = logging.getLogger(__name__)
CORE_PLUGIN = "core"


def disabled_plugins() -> set[str]:
    """Entry-point names listed in ``V2V_DISABLE_PLUGINS``."""
    raw = os.environ.get("V2V_DISABLE_PLUGINS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def _entry_point_names() -> list[str]:
    return [ep.name for ep in entry_points(group=hookspecs.PROJECT_NAME)]


def get_plugin_manager(extra_plugins: Iterable[Any] = (), *, load_entry_points: bool = True) -> pluggy.PluginManager:
    """Return a new plugin manager with the entry-point plugins and ``extra_plugins`` registered."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    blocked = disabled_plugins()
    if "all" in blocked:
        blocked = (set(_entry_point_names()) - {CORE_PLUGIN}) | (blocked - {"all"})
    for name in blocked:
        pm.set_blocked(name)
    if load_entry_points:
        try:
            pm.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin!r} is invalid: {exc}; fix or uninstall it, or block it with "
                              f"V2V_DISABLE_PLUGINS") from exc
        except Exception as exc:  # a third-party plugin that fails to import must not hide the reason
            raise PluginError(f"a v2v plugin failed to load: {type(exc).__name__}: {exc}; uninstall it or set "
                              f"V2V_DISABLE_PLUGINS=<name>") from exc
    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if pm.is_blocked(name):
            continue
        pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc}; a plugin implements a hook v2v does not define (check the name's spelling "
                          f"against docs/plugin-hooks.md)") from exc
    if os.environ.get("V2V_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda message: sys.stderr.write(message))
        pm.enable_tracing()
    return pm
