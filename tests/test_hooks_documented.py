"""Every hookspec is documented in docs/plugin-hooks.md and has its own ``def test_hook_<name>`` (datasette's rule;
tests/test_hooks.py holds them)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from v2vcli import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("v2v_"))


def test_hooks_found() -> None:
    assert len(HOOKS) >= 9


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook: str) -> None:
    doc = (ROOT / "docs" / "plugin-hooks.md").read_text(encoding="utf-8")
    assert f"## {hook}\n" in doc, f"{hook} has no section in docs/plugin-hooks.md"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook: str) -> None:
    this = Path(__file__).name
    used = [p.name for p in (ROOT / "tests").glob("test_*.py")
            if p.name != this and re.search(rf"^def test_hook_{hook}\(", p.read_text("utf-8"), re.MULTILINE)]
    assert used, f"no test function is named test_hook_{hook}"
