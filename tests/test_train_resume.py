"""Exact resume (issue 8): a `v2v train` killed with SIGKILL mid-run (2 DataLoader workers, past an epoch boundary)
and continued with `--resume` ends with the same weights and optimizer state as an uninterrupted run; a training
state that carries code is refused on `--resume` without running it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import invoke_one_thread as _invoke
from v2vcli.checkpoint import STATE_FILE, list_checkpoints, load_training_state, load_weights

TINY = Path(__file__).resolve().parents[1] / "examples" / "configs" / "tiny.yaml"
STEPS = 5  # two training sequences, batch 1: 2 steps per epoch, so the run spans epochs 0..2
OPTS = ["--device", "cpu", "--set", "data.size=[32,32]", "--set", "data.num_workers=2",
        "--set", "data.n_frames_total=1", "--set", "train.checkpoint_every=1", "--set", "train.keep_last=0"]


@dataclass
class Runs:
    data: Path
    full: Path  # uninterrupted
    resumed: Path  # killed, then --resume
    killed_at: int  # the last checkpoint when the process was killed


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    from v2v_plugins.world import write_world

    root = tmp_path_factory.mktemp("resume")
    data = write_world(root / "world", seed=0, size=(64, 32), frames=8, sequences=2, val=0, progress=False)
    full, resumed = root / "full", root / "resumed"
    cmd = [sys.executable, "-c", "import sys; from v2vcli.cli import main; sys.exit(main())", "train", "--config",
           str(TINY), "--data", str(data), "--run-dir", str(resumed), "--max-steps", str(STEPS), *OPTS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    killed_at = -1
    deadline = time.monotonic() + 100
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = [s for s, _ in list_checkpoints(resumed)]
            if done and done[-1] >= 3:  # past the epoch boundary after step 2; the resumed run crosses the next
                os.kill(proc.pid, signal.SIGKILL)
                killed_at = done[-1]
                break
            time.sleep(0.02)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL and 3 <= killed_at < STEPS, (proc.returncode, killed_at)
    res = _invoke("train", "--run-dir", resumed, "--resume", "--max-steps", STEPS)  # no other flag needed
    assert res.exit_code == 0, res.output
    res = _invoke("train", "--config", TINY, "--data", data, "--run-dir", full, "--max-steps", STEPS, *OPTS)
    assert res.exit_code == 0, res.output
    yield Runs(data, full, resumed, killed_at)


def test_sigkill_then_resume_equals_an_uninterrupted_run(runs: Runs) -> None:
    a, b = (r / "checkpoints" / f"step_{STEPS:08d}" for r in (runs.full, runs.resumed))
    wa, wb = load_weights(a)[0], load_weights(b)[0]
    assert set(wa) == set(wb) and {k.split(".")[0] for k in wa} == {"G", "G_ema", "D"}
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-6, atol=1e-7, msg=k)
    sa, sb = load_training_state(a), load_training_state(b)
    assert sa["loop"] == sb["loop"] == {"step": STEPS, "epoch": 2, "next_batch": 1, "bad_steps": 0}
    assert sa["model"]["ema_updates"] == sb["model"]["ema_updates"] == STEPS
    for name, opt in sa["model"]["optimizers"].items():
        for i, st in opt["state"].items():
            for key in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(sb["model"]["optimizers"][name]["state"][i][key], st[key], rtol=1e-6,
                                           atol=1e-10)
    # the log continues where the checkpoint was: one line per step, none twice
    steps = [json.loads(x)["step"] for x in (runs.resumed / "metrics.jsonl").read_text().splitlines()
             if "event" not in json.loads(x)]
    assert steps == list(range(1, STEPS + 1))


def test_resume_refuses_a_training_state_that_carries_code(runs: Runs, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs.full, run)
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    latest = list_checkpoints(run)[-1][1]
    torch.save({"model": Evil(), "loop": {"step": STEPS}}, latest / STATE_FILE)
    res = _invoke("train", "--run-dir", run, "--resume", "--max-steps", STEPS + 2)
    assert res.exit_code == 1
    assert "refused to load" in res.output and "system" in res.output, res.output
    assert not marker.exists()
