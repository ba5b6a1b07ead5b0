"""The packages stay mypy-clean (STYLE.md: typed public code): a type error is a failing test, not a review note."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (pip install 'v2vcli[dev]')")
def test_mypy_finds_no_errors(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "--cache-dir", str(tmp_path),
                           "v2vcli", "plugins/v2v_plugins"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
