"""The public face: the README's Python API imports only ``v2vcli`` and the stage packages' exports, and they run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACES = {"v2v_plugins.train": {"train"}, "v2v_plugins.synthesize": {"synthesize", "SynthesisOptions"},
         "v2v_plugins.evaluate": {"compute_metric"}}


def readme_imports() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None, "README's Python API has no python block"
    return [line for line in code.group(1).splitlines() if line.startswith(("from ", "import "))]


def test_readme_python_api_uses_only_v2vcli_and_the_stage_faces() -> None:
    imported: dict[str, set[str]] = {}
    for line in readme_imports():
        found = re.fullmatch(r"from (\S+) import (.+)", line)
        assert found is not None, f"README import not of the form 'from M import a, b': {line}"
        imported.setdefault(found.group(1), set()).update(n.strip() for n in found.group(2).split(","))
    for module, names in imported.items():
        if not module.startswith("v2vcli"):
            assert module in FACES, f"README imports plugin internals: {module}"
            assert names <= FACES[module], f"{module} does not export {sorted(names - FACES[module])}"
    assert set(FACES) <= set(imported)  # every stage's face is shown


def test_readme_imports_run_and_are_the_engines() -> None:
    """In a fresh interpreter: the README's imports work, plugin faces import no torch until used, and each export
    is the engine's own function."""
    script = "\n".join([
        "import sys",
        "import v2v_plugins.train, v2v_plugins.synthesize, v2v_plugins.evaluate",
        "assert 'torch' not in sys.modules, 'a stage face imported torch'",
        *readme_imports(),
        "from v2v_plugins.train.loop import train as loop_train",
        "from v2v_plugins.synthesize.engine import synthesize as engine_synthesize",
        "from v2vcli.metric import compute_metric as core_compute_metric",
        "assert train is loop_train and synthesize is engine_synthesize and compute_metric is core_compute_metric",
        "assert {'train'} <= set(v2v_plugins.train.__all__) and 'compute_metric' in v2v_plugins.evaluate.__all__",
        "print('ok')",
    ])
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
