"""v2v built-in plugin 'vid2vid': registers the vid2vid model (generator, conditioning, config sections).

Only light modules are imported here; torch is imported when a network is built.
"""

from __future__ import annotations

from collections.abc import Callable

from v2vcli.hookspecs import hookimpl

__all__ = ["v2v_register_models"]


@hookimpl
def v2v_register_models(register: Callable[[str, type], None]) -> None:
    from .training import Vid2VidModel

    register(Vid2VidModel.name, Vid2VidModel)
