"""Checkpoints (v2vcli.checkpoint): safetensors weights with JSON metadata, tensors-only training state, atomic
saves, keep-last pruning, and pickles that carry code refused without running them."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from v2vcli.checkpoint import (STATE_FILE, WEIGHTS_FILE, CheckpointMeta, dataset_provenance, latest_checkpoint,
                               list_checkpoints, load_training_state, load_weights, read_meta, resolve_weights_file,
                               save_checkpoint, split_networks)
from v2vcli.errors import CheckpointError


def _nets() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"G": torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.InstanceNorm2d(4, affine=True)),
            "D": torch.nn.Conv2d(4, 1, 1)}


def _weights(nets: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v for n, net in nets.items() for k, v in net.state_dict().items()}


def _state(nets: dict[str, torch.nn.Module]) -> dict[str, Any]:
    opt = torch.optim.Adam(nets["G"].parameters(), lr=1e-3)
    nets["G"](torch.randn(1, 3, 8, 8)).mean().backward()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 - e / 10)
    opt.step()
    sched.step()
    return {"model": {"optimizers": {"G": opt.state_dict()}, "schedulers": {"G": sched.state_dict()}},
            "loop": {"step": 7, "epoch": 1, "next_batch": 2}, "rng": {"torch": torch.get_rng_state(),
                                                                       "python": (3, (1, 2, 3), None)}}


def _meta() -> CheckpointMeta:
    return CheckpointMeta(model="toy", config={"model": {"name": "toy", "ngf": 4}, "seed": 1},
                          label_set={"name": "toy", "classes": [{"id": 0, "name": "sky", "color": [1, 2, 3]}]},
                          provenance={"seg": {"backend": "toy"}}, networks=["D", "G"], extra={"n_scales_spatial": 1})


def test_round_trip_weights_metadata_and_state(tmp_path: Path) -> None:
    nets = _nets()
    state = _state(nets)
    path = save_checkpoint(tmp_path / "run", 7, _weights(nets), _meta(), state, config_text="seed: 1\n", keep_last=2)
    assert path == tmp_path / "run" / "checkpoints" / "step_00000007"
    assert sorted(p.name for p in path.iterdir()) == ["config.yaml", STATE_FILE, WEIGHTS_FILE]
    weights, meta = load_weights(tmp_path / "run")  # a run folder resolves to its latest checkpoint
    assert meta.step == 7 and meta.model == "toy" and meta.config["model"]["ngf"] == 4
    assert meta.label_set["classes"][0]["name"] == "sky" and meta.provenance == {"seg": {"backend": "toy"}}
    assert meta.extra == {"n_scales_spatial": 1} and meta.networks == ["D", "G"]
    for key, value in _weights(nets).items():
        assert torch.equal(weights[key], value)
    only_g, _ = load_weights(path / WEIGHTS_FILE, networks=["G"])
    assert set(split_networks(only_g)) == {"G"}
    with pytest.raises(CheckpointError, match="no network.*G_ema"):
        load_weights(path, networks=["G_ema"])
    loaded = load_training_state(path)
    opt = torch.optim.Adam(_nets()["G"].parameters(), lr=1e-3)
    opt.load_state_dict(loaded["model"]["optimizers"]["G"])
    assert opt.state_dict()["state"][0]["step"] == 1
    assert torch.equal(loaded["rng"]["torch"], state["rng"]["torch"]) and loaded["loop"]["next_batch"] == 2
    assert read_meta(path).step == 7


def test_keep_last_and_interrupted_saves(tmp_path: Path) -> None:
    nets = _nets()
    run = tmp_path / "run"
    for step in (2, 4, 6, 8):
        save_checkpoint(run, step, _weights(nets), _meta(), {"loop": {"step": step}}, keep_last=2)
    assert [s for s, _ in list_checkpoints(run)] == [6, 8]
    # a save killed half-way: a temporary folder and an incomplete step folder are not checkpoints
    (run / "checkpoints" / ".step_00000010.tmp-abc").mkdir()
    (run / "checkpoints" / "step_00000012").mkdir()
    (run / "checkpoints" / "step_00000012" / WEIGHTS_FILE).write_bytes(b"partial")
    assert latest_checkpoint(run) == run / "checkpoints" / "step_00000008"
    save_checkpoint(run, 8, _weights(nets), _meta(), {"loop": {"step": 8}}, keep_last=2)  # same step: replaced
    assert [s for s, _ in list_checkpoints(run)] == [6, 8]
    assert not (run / "checkpoints" / ".step_00000010.tmp-abc").exists()
    assert not any(p.name.startswith(".") for p in (run / "checkpoints").iterdir())


class _Evil:
    """Unpickling this object would create a marker file (stands for any code a pickle can run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.makedirs, (str(self.marker),))


def test_pickle_that_carries_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps({"model": _Evil(marker)}))
    zipped = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(2), "payload": _Evil(marker)}, zipped)
    assert not marker.exists()
    for path in (raw, zipped):
        with pytest.raises(CheckpointError) as info:
            load_training_state(path)
        msg = str(info.value)
        assert "refused to load" in msg and "\n" not in msg and "makedirs" in msg
        with pytest.raises(CheckpointError, match="refused to load"):
            load_weights(path)
        assert not marker.exists()
    # the same place in a checkpoint folder: the state file of a run
    ckpt = save_checkpoint(tmp_path / "run", 1, _weights(_nets()), _meta(), {"loop": {}})
    (ckpt / STATE_FILE).write_bytes(raw.read_bytes())
    with pytest.raises(CheckpointError, match="refused to load"):
        load_training_state(ckpt)
    assert not marker.exists()


def test_plain_tensor_files_load_and_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pth"
    torch.save({"G.w": torch.ones(3), "D.w": torch.zeros(1)}, plain)
    weights, meta = load_weights(plain, networks=["G"])
    assert list(weights) == ["G.w"] and meta.model == ""
    truncated = tmp_path / "run" / "checkpoints" / "step_00000001"
    ckpt = save_checkpoint(tmp_path / "run", 1, _weights(_nets()), _meta(), {"loop": {}})
    data = (ckpt / WEIGHTS_FILE).read_bytes()
    (ckpt / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_weights(truncated)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_weights_file(tmp_path / "missing")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        resolve_weights_file(tmp_path / "empty_run")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="without v2v metadata"):
        read_meta(tmp_path / "foreign.safetensors")


def test_dataset_provenance(tmp_path: Path) -> None:
    meta = tmp_path / "ds" / "meta"
    meta.mkdir(parents=True)
    (meta / "frames.json").write_text(json.dumps({"format": "jpg", "sequences": {
        "a": {"fps": 10, "count": 3, "options": {"resize": [64, 32]}},
        "b": {"fps": 10, "count": 4, "options": {"resize": [64, 32]}}}}))
    (meta / "seg.json").write_text(json.dumps({"extractor": "seg", "backend": "world", "version": "2",
                                               "options": {"x": 1}, "label_set": {"classes": []}}))
    prov = dataset_provenance(tmp_path / "ds")
    assert prov["seg"] == {"extractor": "seg", "backend": "world", "version": "2", "options": {"x": 1}}
    assert prov["frames"] == {"format": "jpg", "sequences": 2, "options": [{"resize": [64, 32]}]}
