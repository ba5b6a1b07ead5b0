"""Config: dataclass sections, YAML merge order, --set type checks, closest-key errors, `v2v config show`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from v2vcli.config import dump_config, load_config, parse_set, to_dict
from v2vcli.errors import ConfigError
from v2vcli.hookspecs import hookimpl


class ToyModel:
    @dataclass(kw_only=True)
    class Config:
        name: str = "toy"
        ngf: int = 8
        norm: Literal["instance", "batch"] = "instance"
        foreground: list[str] = field(default_factory=list)

    @dataclass(kw_only=True)
    class LossConfig:
        lambda_feat: float = 10.0


class ToyPlugin:
    __name__ = "toy"

    @hookimpl
    def v2v_register_models(self, register: Any) -> None:
        register("toy", ToyModel)


@pytest.fixture
def toy(register_plugin: Any) -> None:
    register_plugin(ToyPlugin())


def write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_precedence_defaults_files_set_flags(tmp_path: Path, toy: None) -> None:
    a = write(tmp_path, "a.yaml", {"model": {"name": "toy", "ngf": 16}, "seed": 1, "optim": {"lr": 1e-3}})
    b = write(tmp_path, "b.yaml", {"model": {"ngf": 32}, "train": {"max_steps": 5}})
    cfg = load_config([a, b], ["model.ngf=64", "optim.lr=5e-4"], overrides={"train": {"max_steps": 9}})
    assert cfg.model.ngf == 64 and cfg.seed == 1 and cfg.optim.lr == 5e-4 and cfg.train.max_steps == 9
    assert cfg.optim.beta1 == 0.5  # default kept
    cfg2 = load_config([b, a])  # later file wins
    assert cfg2.model.ngf == 16


def test_types_are_checked(tmp_path: Path, toy: None) -> None:
    base = write(tmp_path, "a.yaml", {"model": {"name": "toy"}})
    with pytest.raises(ConfigError, match="train.max_steps must be an integer"):
        load_config([base], ["train.max_steps=abc"])
    with pytest.raises(ConfigError, match="must be one of"):
        load_config([base], ["model.norm=group"])
    with pytest.raises(ConfigError, match="must have 2 values"):
        load_config([base], ["data.size=[1,2,3]"])
    cfg = load_config([base], ["data.size=[128, 64]", "optim.lr=1", "model.foreground=[car]"])
    assert cfg.data.size == (128, 64) and cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.model.foreground == ["car"]


def test_unknown_keys_name_the_closest(tmp_path: Path, toy: None) -> None:
    base = write(tmp_path, "a.yaml", {"model": {"name": "toy"}})
    with pytest.raises(ConfigError, match="unknown config key 'model.ngff'.*did you mean 'ngf'"):
        load_config([base], ["model.ngff=3"])
    with pytest.raises(ConfigError, match="did you mean 'train'"):
        load_config([write(tmp_path, "b.yaml", {"trian": {}})])
    with pytest.raises(ConfigError, match="did you mean 'lambda_feat'"):
        load_config([base], ["loss.lambda_fet=1"])


def test_bad_files(tmp_path: Path, toy: None) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config([tmp_path / "missing.yaml"])
    with pytest.raises(ConfigError, match="cannot parse config file .* line"):
        load_config([write(tmp_path, "bad.yaml", "model: [unclosed\n")])
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config([write(tmp_path, "list.yaml", "- 1\n- 2\n")])
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_set("novalue")


def test_dump_marks_non_defaults_and_round_trips(tmp_path: Path, toy: None) -> None:
    cfg = load_config([write(tmp_path, "a.yaml", {"model": {"name": "toy", "ngf": 12}})], ["seed=3"])
    text = dump_config(cfg, mark_non_defaults=True)
    assert "ngf: 12  # changed" in text and "seed: 3  # changed" in text
    assert "lr: 0.0002\n" in text  # unchanged keys unmarked
    again = load_config([write(tmp_path, "dump.yaml", dump_config(cfg))])
    assert to_dict(again) == to_dict(cfg)


def test_config_show_cli(tmp_path: Path, toy: None, cli: Any) -> None:
    path = write(tmp_path, "a.yaml", {"model": {"name": "toy"}})
    result = cli("config", "show", "--config", path, "--set", "train.seed=3", "--set", "model.ngf=4")
    assert result.exit_code == 0, result.output
    assert "ngf: 4  # changed" in result.output
    # the seed is one top-level key; train.seed is accepted as its alias
    assert "seed: 3  # changed" in result.output
    result = cli("config", "show", "--config", path, "--set", "seed=2", "--set", "train.seed=3")
    assert result.exit_code == 1 and "seed is set twice" in result.output


@pytest.mark.parametrize("content,needle", [
    ("model: [unclosed\n", "cannot parse config file"),
    ("model:\n  name: toy\n  ngff: 2\n", "did you mean 'ngf'"),
    ("model:\n  name: toy\n  ngf: lots\n", "model.ngf must be an integer"),
])
def test_bad_config_is_one_line_error(tmp_path: Path, toy: None, cli: Any, content: str, needle: str) -> None:
    path = write(tmp_path, "c.yaml", content)
    result = cli("config", "show", "--config", path)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], result.output
    assert "Traceback" not in result.output


def test_missing_config_file_cli(tmp_path: Path, toy: None, cli: Any) -> None:
    result = cli("config", "show", "--config", tmp_path / "nope.yaml")
    assert result.exit_code == 1 and "does not exist" in result.output


PRESET_DIR = Path(__file__).resolve().parents[1] / "examples" / "configs"


def test_old_train_keys_still_load_with_one_warning(tmp_path: Path, toy: None,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Keys that left the train section (vid2vid-only ones went to its model section, dead ones went away) still
    load from old configs and saved runs: moved where the model declares them, else ignored, in one warning line."""
    old = {"train": {"niter_fix_global": 3, "max_frames_backpropagate": 2, "activation_checkpointing": True,
                     "channels_last": True, "max_steps": 4}}
    with caplog.at_level("WARNING", logger="v2vcli.config"):
        cfg = load_config([write(tmp_path, "old.yaml", old)])
    assert (cfg.model.niter_fix_global, cfg.model.max_frames_backpropagate, cfg.model.activation_checkpointing,
            cfg.model.channels_last, cfg.train.max_steps) == (3, 2, True, False, 4)
    lines = [r.getMessage() for r in caplog.records if r.name == "v2vcli.config"]
    assert len(lines) == 1 and "train.niter_fix_global is now model.niter_fix_global" in lines[0]
    assert "train.channels_last is no longer used" in lines[0]
    # the model section wins over an old train key; the duplicate checkpointing switch is on when either is
    both = {"model": {"niter_fix_global": 5, "activation_checkpointing": False},
            "train": {"niter_fix_global": 3, "activation_checkpointing": True}}
    cfg = load_config([write(tmp_path, "both.yaml", both)])
    assert cfg.model.niter_fix_global == 5 and cfg.model.activation_checkpointing is True
    # a model without the key ignores it (a saved run of the toy model)
    toy_cfg = load_config([write(tmp_path, "toy.yaml", {"model": {"name": "toy"}, "train": {"niter_fix_global": 0}})])
    assert not hasattr(toy_cfg.model, "niter_fix_global") and not hasattr(toy_cfg.train, "niter_fix_global")
    with pytest.raises(ConfigError, match="model.niter_fix_global must be 0 or more"):
        load_config([], ["train.niter_fix_global=-1"])


def test_pose_and_g1_presets_follow_the_official_scripts() -> None:
    """scripts/pose/train_{256,512,1024}p.sh + data/pose_dataset.py, scripts/street/train_g1_{512,1024}.sh."""
    for name, size, batch, fix in (("pose_256", [192, 256], 8, 0), ("pose_512", [448, 512], 8, 3),
                                   ("pose_1024", [896, 1024], 1, 3)):
        cfg = load_config([PRESET_DIR / f"{name}.yaml"])
        d = cfg.data
        assert (list(d.size), d.batch_size, cfg.model.niter_fix_global) == (size, batch, fix), name
        assert (d.flip, d.random_drop_prob, d.epoch_items, d.crop, list(d.scale_range)) == (
            False, 0.05, "frames", "centred", [1.0, 1.5]), name
    g512 = load_config([PRESET_DIR / "street_512_g1.yaml"])
    assert (g512.model.num_D, g512.optim.lr, g512.optim.niter, g512.optim.niter_decay, g512.train.niter_step,
            g512.model.niter_fix_global, list(g512.data.size)) == (2, 2e-4, 10, 5, 2, 8, [512, 256])
    g1024 = load_config([PRESET_DIR / "street_1024_g1.yaml"])
    assert (g1024.model.num_D, g1024.model.n_frames_D, g1024.optim.lr, g1024.optim.niter_decay,
            g1024.train.niter_step, g1024.model.niter_fix_global) == (3, 2, 1e-4, 5, 2, 8)
    assert load_config([PRESET_DIR / "street_512.yaml"]).data.epoch_items == "sequences"  # street: one per sequence


def test_data_keys_for_official_pose_data_are_checked() -> None:
    for key, bad in (("data.random_drop_prob", "-0.1"), ("data.epoch_items", "frame"), ("data.crop", "center")):
        with pytest.raises(ConfigError, match=key.split(".")[1]):
            load_config([], [f"{key}={bad}"])
    assert load_config([], ["data.random_drop_prob=0.05"]).data.random_drop_prob == 0.05
