"""The configuration presets that ship with v2v, addressable by name.

The presets are the YAML files of ``examples/configs/`` in the source tree; the package's ``presets`` folder links to
that folder, so the wheel carries them as ``v2vcli/presets/*.yaml`` and an installed v2v finds them without a
checkout. ``--config street_512`` (a name: no ``.yaml`` suffix, no folder, not an existing file) means the preset
of that name; anything else is a file path.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from v2vcli.errors import ConfigError, did_you_mean

__all__ = ["presets_dir", "preset_names", "preset_path", "resolve_config"]


def presets_dir() -> Path:
    """The folder of the shipped presets (inside the installed package)."""
    return Path(__file__).resolve().parent / "presets"


def preset_names() -> list[str]:
    """Names of the shipped presets, sorted."""
    folder = presets_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def preset_path(name: str) -> Path:
    """The YAML file of preset ``name`` (``street_512`` or ``street_512.yaml``); :class:`ConfigError` if unknown."""
    stem = name[:-5] if name.endswith(".yaml") else name
    path = presets_dir() / f"{stem}.yaml"
    if not path.is_file():
        raise ConfigError(f"no preset named '{stem}'{did_you_mean(stem, preset_names())}; `v2v presets` lists "
                          f"them, or pass a YAML file path")
    return path


def _looks_like_name(spec: str) -> bool:
    return bool(spec) and "/" not in spec and "\\" not in spec and not spec.startswith(".")


def resolve_config(spec: str | Path) -> Path:
    """``--config`` value → a YAML file: an existing path as it is, else a preset name (``street_512``)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    text = str(spec)
    if isinstance(spec, str) and _looks_like_name(text):
        stem = text[:-5] if text.endswith(".yaml") else text
        if (presets_dir() / f"{stem}.yaml").is_file():
            return presets_dir() / f"{stem}.yaml"
        if not text.endswith((".yaml", ".yml")):
            preset_path(stem)  # raises: an unknown preset name, with the close matches
    close = difflib.get_close_matches(path.stem, preset_names(), n=1, cutoff=0.75) if path.stem else []
    hint = f" (the preset '{close[0]}'?)" if close else ""
    raise ConfigError(f"config file '{path}' does not exist{hint}; pass an existing YAML file or a preset name "
                      f"(`v2v presets` lists them)")
