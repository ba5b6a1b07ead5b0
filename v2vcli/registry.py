"""Typed facade over the plugin manager: the only module that calls ``pm.hook``.

Registration hooks are called one implementation at a time so every registered name remembers which plugin
registered it; a duplicate name is an error that names both plugins.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from v2vcli.errors import PluginError, did_you_mean
from v2vcli.plugins import get_plugin_manager

if TYPE_CHECKING:
    from v2vcli.extractor import Extractor

__all__ = ["Registration", "Registry", "get_registry", "reset_registry"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    """One registered thing: its key, the object, and the plugin that registered it."""

    key: str
    obj: Any
    plugin: str


@dataclass
class _Table:
    what: str
    items: dict[str, Registration] = field(default_factory=dict)

    def add(self, key: str, obj: Any, plugin: str) -> None:
        if key in self.items:
            other = self.items[key].plugin
            raise PluginError(f"{self.what} '{key}' is registered by two plugins: '{other}' and '{plugin}'; "
                              f"uninstall one or block it with V2V_DISABLE_PLUGINS={plugin}")
        self.items[key] = Registration(key, obj, plugin)


class Registry:
    """What the installed plugins registered: extractors, models, metrics, flow estimators, weights."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._tables: dict[str, _Table] = {}

    # -- registration hooks --------------------------------------------------------------------------------------
    def _collect(self, hook_name: str, what: str, make_key: Callable[..., tuple[str, Any]]) -> _Table:
        if hook_name in self._tables:
            return self._tables[hook_name]
        table = _Table(what)
        hook = getattr(self.pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):  # registration order: first loaded first
            plugin = impl.plugin_name

            def register(*args: Any, _plugin: str = plugin) -> None:
                key, obj = make_key(*args)
                table.add(key, obj, _plugin)

            if os.environ.get("V2V_TRACE_PLUGINS"):
                sys.stderr.write(f"v2v: calling {hook_name} of plugin '{plugin}'\n")
            try:
                impl.function(register)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"plugin '{plugin}' failed in {hook_name}: {type(exc).__name__}: {exc}") from exc
        self._tables[hook_name] = table
        return table

    def extractors(self) -> dict[str, Registration]:
        """Extractor classes keyed ``kind/backend``."""

        def key(kind: str, backend: str, cls: type) -> tuple[str, Any]:
            return f"{kind}/{backend}", cls

        return dict(self._collect("v2v_register_extractors", "extractor", key).items)

    def models(self) -> dict[str, Registration]:
        return dict(self._collect("v2v_register_models", "model", lambda name, cls: (name, cls)).items)

    def metrics(self) -> dict[str, Registration]:
        return dict(self._collect("v2v_register_metrics", "metric", lambda name, cls: (name, cls)).items)

    def flow_estimators(self) -> dict[str, Registration]:
        return dict(self._collect("v2v_register_flow_estimators", "flow estimator",
                                  lambda name, cls: (name, cls)).items)

    def weights(self) -> dict[str, Registration]:
        return dict(self._collect("v2v_register_weights", "weights", lambda entry: (entry.name, entry)).items)

    # -- lookups with helpful errors -------------------------------------------------------------------------------
    def extractor_kinds(self) -> dict[str, list[str]]:
        kinds: dict[str, list[str]] = {}
        for key in self.extractors():
            kind, backend = key.split("/", 1)
            kinds.setdefault(kind, []).append(backend)
        return kinds

    def get_extractor(self, kind: str, backend: str | None = None) -> type[Extractor]:
        kinds = self.extractor_kinds()
        if kind not in kinds:
            raise PluginError(f"no extractor for kind '{kind}'{did_you_mean(kind, kinds)}")
        if backend is None:
            backend = self.default_backend(kind)
        reg = self.extractors().get(f"{kind}/{backend}")
        if reg is None:
            raise PluginError(f"no '{kind}' extractor backend '{backend}'{did_you_mean(backend, kinds[kind])}")
        return reg.obj  # type: ignore[no-any-return]

    def default_backend(self, kind: str) -> str:
        """The backend whose class says ``default = True``, else the first registered."""
        backends = self.extractor_kinds()[kind]
        for backend in backends:
            if getattr(self.extractors()[f"{kind}/{backend}"].obj, "default", False):
                return backend
        return backends[0]

    def _get(self, table: dict[str, Registration], what: str, name: str) -> Any:
        name = name.replace("-", "_") if what == "metric" else name
        if name not in table:
            raise PluginError(f"unknown {what} '{name}'{did_you_mean(name, table)}")
        return table[name].obj

    def get_model(self, name: str) -> type:
        return self._get(self.models(), "model", name)  # type: ignore[no-any-return]

    def get_metric(self, name: str) -> type:
        return self._get(self.metrics(), "metric", name)  # type: ignore[no-any-return]

    def get_flow_estimator(self, name: str) -> type:
        return self._get(self.flow_estimators(), "flow estimator", name)  # type: ignore[no-any-return]

    # -- other hooks -----------------------------------------------------------------------------------------------
    def register_commands(self, app: Any) -> None:
        self.pm.hook.v2v_register_commands(app=app)

    def open_video(self, path: str) -> Any:
        return self.pm.hook.v2v_open_video(path=path)

    def on_log(self, stage: str, step: int, metrics: dict[str, float]) -> None:
        self.pm.hook.v2v_on_log(stage=stage, step=step, metrics=metrics)

    def on_checkpoint(self, path: str, step: int) -> None:
        self.pm.hook.v2v_on_checkpoint(path=path, step=step)

    # -- introspection for `v2v plugins` ----------------------------------------------------------------------------
    def plugin_info(self) -> list[dict[str, Any]]:
        versions = {}
        for plugin, dist in self.pm.list_plugin_distinfo():
            versions[self.pm.get_name(plugin)] = (dist.project_name, dist.version)
        registered: dict[str, dict[str, list[str]]] = {}
        tables = {"extractors": self.extractors(), "models": self.models(), "metrics": self.metrics(),
                  "flow_estimators": self.flow_estimators(), "weights": self.weights()}
        for what, table in tables.items():
            for reg in table.values():
                registered.setdefault(reg.plugin, {}).setdefault(what, []).append(reg.key)
        info = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda item: item[0]):
            if plugin is None:
                continue
            hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
            dist_name, version = versions.get(name, (None, None))
            info.append({"name": name, "module": getattr(plugin, "__name__", type(plugin).__name__),
                         "distribution": dist_name, "version": version, "hooks": hooks,
                         "registered": {k: sorted(v) for k, v in registered.get(name, {}).items()}})
        return info


_REGISTRY: Registry | None = None


def get_registry(extra_plugins: Iterable[Any] = ()) -> Registry:
    """The process-wide registry (built on first use); ``reset_registry()`` drops it (tests, plugin installs)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry(get_plugin_manager(extra_plugins))
    return _REGISTRY


def reset_registry(registry: Registry | None = None) -> None:
    global _REGISTRY
    _REGISTRY = registry
