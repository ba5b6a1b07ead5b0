"""The example third-party plugin (examples/v2v-plugin-example): installed with pip, it runs through the CLI."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import moving_pattern, write_video

from v2vcli.io.files import read_json, read_label

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "v2v-plugin-example"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the example (a real wheel build from its pyproject) into a temp folder, once per module."""
    if importlib.util.find_spec("setuptools") is None or importlib.util.find_spec("pip") is None:
        pytest.skip("pip and setuptools are needed to build the example plugin")
    tmp = tmp_path_factory.mktemp("example")
    source = tmp / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, capture_output=True)
    return target


@pytest.fixture
def installed_example(example_site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The installed example on sys.path for one test (the registry is rebuilt by conftest's autouse fixture)."""
    target = example_site
    monkeypatch.syspath_prepend(str(target))
    sys.modules.pop("v2v_plugin_example", None)
    return target


def test_example_plugin_is_listed_and_extracts_through_the_cli(installed_example: Path, cli: Any,
                                                               tmp_path: Path) -> None:
    plugins = json.loads(cli("plugins", "--json").stdout)
    sobel = next(p for p in plugins if p["name"] == "sobel")
    assert sobel["distribution"] == "v2v-plugin-example" and sobel["version"] == "0.1.0"
    assert sobel["registered"] == {"extractors": ["sobel/opencv"]}
    assert str(installed_example) in sys.modules["v2v_plugin_example"].__file__

    help_text = cli("extract", "sobel", "--help").output
    assert "--ksize" in help_text and "--no-normalize" in help_text

    video = write_video(tmp_path / "clip.mp4", moving_pattern(t=4))
    ds = tmp_path / "ds"
    result = cli("extract", "sobel", video, "-o", ds, "--ksize", "5", "--normalize")
    assert result.exit_code == 0, result.output
    maps = sorted((ds / "sobel" / "clip").glob("*.png"))
    assert [p.name for p in maps] == [f"{i:06d}.png" for i in range(4)]
    edges = read_label(maps[0])
    assert edges.shape == (48, 64) and edges.max() == 255  # --normalize: the strongest gradient maps to 255
    meta = read_json(ds / "meta" / "sobel.json")
    assert meta["plugin"] == "sobel" and meta["backend"] == "opencv" and meta["units"] == "8-bit gradient magnitude"
    assert meta["options"] == {"ksize": 5, "blur": 0.0, "gain": 0.25, "normalize": True}
    assert cli("dataset", "check", ds).exit_code == 0

    bad = cli("extract", "sobel", video, "-o", tmp_path / "bad", "--ksize", "4")
    assert bad.exit_code == 1 and bad.stderr.strip() == "Error: --ksize must be 1, 3, 5 or 7, got 4"


def test_sobel_extractor_finds_a_step_edge(installed_example: Path) -> None:
    from v2v_plugin_example import SobelConfig, SobelExtractor

    frame = np.zeros((16, 20, 3), np.uint8)
    frame[:, 10:] = 200  # vertical step between columns 9 and 10
    out = SobelExtractor(SobelConfig(gain=0.25)).process(frame, 0)["sobel"]
    assert out.dtype == np.uint8 and out.shape == (16, 20)
    assert out[8, :8].max() == 0 and out[8, 12:].max() == 0
    assert out[8, 9] == out[8, 10] == 200  # |gx| = 4·200 for ksize 3, times gain 0.25
