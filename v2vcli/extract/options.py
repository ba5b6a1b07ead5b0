"""Extractor options: the fields of an extractor's ``Config`` dataclass, and an instance of it from option values.

Values are checked and converted by the config's own rule (:func:`v2vcli.config._coerce`), with strings as typed on
a command line also accepted ("0.5" for a float, "yes"/"off" for a boolean, "3" for an integer).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, fields, is_dataclass
from typing import Any, cast, get_type_hints

from v2vcli.config import _coerce
from v2vcli.errors import ConfigError, did_you_mean
from v2vcli.extractor import Extractor

__all__ = ["config_fields", "build_config", "options_dict"]


def config_fields(config_cls: type) -> dict[str, tuple[Any, Any, str]]:
    """``{name: (type, default, help)}`` of an extractor Config dataclass (help from ``field(metadata=...)``)."""
    if not is_dataclass(config_cls):
        return {}
    hints = get_type_hints(config_cls)
    out: dict[str, tuple[Any, Any, str]] = {}
    for f in fields(config_cls):
        if not f.init:
            continue
        default: Any = f.default
        if default is MISSING and f.default_factory is not MISSING:
            default = cast(Callable[[], Any], f.default_factory)()  # `is not MISSING` does not narrow for mypy
        out[f.name] = (hints.get(f.name, Any), None if default is MISSING else default, f.metadata.get("help", ""))
    return out


def build_config(cls: type[Extractor], options: Mapping[str, Any] | None) -> Any:
    """An instance of ``cls.Config`` from ``options`` (dashes or underscores); unknown names are errors."""
    config_cls = getattr(cls, "Config", None)
    spec = config_fields(config_cls) if config_cls is not None else {}
    values: dict[str, Any] = {}
    for key, value in (options or {}).items():
        name = key.replace("-", "_")
        if name not in spec:
            where = f"extractor '{cls.kind}/{cls.backend}'"
            raise ConfigError(f"{where} has no option '{key}'{did_you_mean(name, spec) if spec else ' (it has none)'}")
        values[name] = _coerce(value, spec[name][0], f"option '{name}'", text=True)
    try:
        return config_cls(**values) if config_cls is not None else None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad options for '{cls.kind}/{cls.backend}': {exc}") from exc


def options_dict(config: Any) -> dict[str, Any]:
    """Options as JSON would store them (tuples become lists), so a recorded and a new run compare equal."""
    # cast: the config is an instance by construction; is_dataclass alone would also admit a dataclass class
    raw = asdict(cast(Any, config)) if is_dataclass(config) else {}
    return json.loads(json.dumps(raw, default=str))  # type: ignore[no-any-return]
