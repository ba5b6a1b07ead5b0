"""Issue 23: presets ship with the package and are addressable by name; `v2v presets`; `model summary` without
--data for every preset; `python -m v2vcli`; shell completion; the distribution name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from v2vcli.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_presets_are_examples_configs_in_the_package() -> None:
    from v2vcli.presets import preset_names, presets_dir

    assert presets_dir().parent == Path(__import__("v2vcli").__file__).resolve().parent
    shipped = {p.name: p.read_bytes() for p in presets_dir().glob("*.yaml")}
    source = {p.name: p.read_bytes() for p in (ROOT / "examples" / "configs").glob("*.yaml")}
    assert shipped == source and len(shipped) >= 10  # one copy: the package folder is examples/configs
    assert {"tiny", "street_512", "pose_256"} <= set(preset_names())


def test_pyproject_ships_presets_and_names_the_distribution() -> None:
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "v2vcli" and meta["project"]["scripts"] == {"v2v": "v2vcli.cli:main"}
    assert "presets/*.yaml" in meta["tool"]["setuptools"]["package-data"]["v2vcli"]
    assert all(not dep.startswith("v2v[") for deps in meta["project"]["optional-dependencies"].values()
               for dep in deps)


def test_config_by_name_or_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from v2vcli.config import load_config, to_dict

    by_name = load_config(["street_512"])
    by_path = load_config([ROOT / "examples" / "configs" / "street_512.yaml"])
    assert to_dict(by_name) == to_dict(by_path) and by_name.model.label_nc == 35
    assert to_dict(load_config(["street_512.yaml"])) == to_dict(by_path)  # from a folder without that file
    with pytest.raises(ConfigError, match="did you mean 'street_512'"):
        load_config(["street_521"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config([tmp_path / "none.yaml"])
    # an existing file of the same name wins over the preset
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").write_text("data:\n  size: [32, 32]\n")
    assert tuple(load_config(["tiny"]).data.size) == (32, 32)


def test_presets_command(cli: Any) -> None:
    res = cli("presets", "tiny", "street_512", "tiny_perframe", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    street = rows["street_512"]
    assert street["size"] == [512, 256] and street["params"] == 411_335_241
    assert street["gflop_per_frame"] == pytest.approx(2115.0, abs=1.0) and 10 < street["train_gib"] < 200
    assert rows["tiny"]["label_set"] == "world" and rows["tiny"]["params"] > 0
    assert rows["tiny_perframe"]["params"] is None  # perframe has no summary: shown as '-'
    table = cli("presets", "tiny")
    assert table.exit_code == 0 and "tiny" in table.stdout and "--config NAME" in table.stdout
    assert cli("presets", "nope").exit_code == 1


def test_every_preset_loads_and_each_kind_has_a_summary_without_data() -> None:
    from v2v_plugins.model_cmds import preset_rows
    from v2vcli.config import load_config
    from v2vcli.presets import preset_names

    for name in preset_names():
        assert load_config([name]).data.size[0] > 0
    # one preset per conditioning kind (label_nc 0 seg, seg ids, pose, edges): summaries need no --data
    rows = preset_rows(["tiny", "street_256_g1", "pose_256", "face_512"])
    for r in rows:
        assert r["params"] > 0 and r["gflop_per_frame"] > 0 and r["train_gib"] > 0, r


def test_model_summary_of_tiny_without_data(cli: Any) -> None:
    res = cli("model", "summary", "--config", "tiny", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["label_set"] == "world" and data["total_params"] > 0 and data["train_gib"] > 0
    table = cli("model", "summary", "--config", str(ROOT / "examples" / "configs" / "tiny.yaml"))
    assert table.exit_code == 0 and "assuming the label set 'world'" in table.output


def test_python_dash_m_and_completion(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
    res = subprocess.run([sys.executable, "-m", "v2vcli", "version"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("v2v ") and "pip: v2vcli" in res.stdout, res.stderr
    res = subprocess.run([sys.executable, "-m", "v2vcli", "--show-completion", "bash"], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=60)
    assert res.returncode == 0 and "_v2v_completion" in res.stdout, res.stderr
    res = subprocess.run([sys.executable, "-m", "v2vcli", "--help"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert "--install-completion" in res.stdout and "presets" in res.stdout
