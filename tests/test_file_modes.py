"""Issue 23: every file and folder v2v publishes has the mode of a normally created one (0666/0777 less the umask),
atomic writes (mkstemp: 0600, mkdtemp: 0700) included. Checked under umask 022 and 077."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
V2V = [sys.executable, "-m", "v2vcli"]


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def bad_modes(root: Path, mask: int) -> list[str]:
    """Paths under ``root`` (itself included) whose mode is not 0666/0777 & ~mask."""
    bad = []
    for p in [root, *root.rglob("*")]:
        if p.is_symlink():
            continue
        want = (0o777 if p.is_dir() else 0o666) & ~mask
        got = stat.S_IMODE(p.stat().st_mode)
        if got != want:
            bad.append(f"{p.relative_to(root.parent)}: {oct(got)} (want {oct(want)})")
    return bad


def test_current_umask_reads_without_changing(umask: int) -> None:
    from v2vcli.io.files import current_umask

    assert current_umask() == umask
    assert os.umask(umask) == umask  # unchanged by the read


def test_atomic_writes_and_checkpoints_follow_umask(tmp_path: Path, umask: int) -> None:
    from v2vcli.checkpoint import CheckpointMeta, save_checkpoint
    from v2vcli.io.files import atomic_open, make_temp_dir, write_image, write_json, write_label

    out = tmp_path / "out"
    write_json(out / "a" / "meta.json", {"x": 1})
    write_image(out / "a" / "f.jpg", np.zeros((8, 8, 3), np.uint8))
    write_label(out / "b" / "l.png", np.zeros((8, 8), np.uint8))
    with atomic_open(out / "c.bin") as f:
        f.write(b"x")
    make_temp_dir(out, ".tmp-")
    import torch

    save_checkpoint(out / "run", 3, {"G.w": torch.zeros(2)}, CheckpointMeta(model="vid2vid"), {"step": 3},
                    config_text="a: 1\n")
    assert (out / "run" / "checkpoints" / "step_00000003").is_dir() or list((out / "run" / "checkpoints").iterdir())
    assert bad_modes(out, umask) == []


def test_synthesize_sinks_follow_umask(tmp_path: Path, umask: int) -> None:
    from v2v_plugins.synthesize.outputs import open_sink

    frame = np.full((16, 16, 3), 90, np.uint8)
    for fmt, name in (("mp4", "clip.mp4"), ("png", "frames")):
        sink = open_sink(tmp_path / "synth" / name, fmt, 10.0)  # type: ignore[arg-type]
        sink.write(frame)
        sink.write(frame)
        sink.close()
    assert bad_modes(tmp_path / "synth", umask) == []


def _run(args: list[object], mask: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
    return subprocess.run([*V2V, *map(str, args)], cwd=cwd, env=env, umask=mask, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow
def test_world_train_and_extract_follow_umask(tmp_path: Path) -> None:
    """A dataset (the synthetic world), a short train run and an extracted dataset: every file 0644 / folder 0755
    under umask 022 (umask 077 is covered by the write helpers' tests above)."""
    mask = 0o022
    from tests.conftest import moving_pattern, write_video

    world = tmp_path / "world"
    res = _run(["demo", "world", "--out", world, "--size", "64x64", "--frames", "6", "--sequences", "2", "--val",
                "1"], mask, tmp_path)
    assert res.returncode == 0, res.stderr
    run = tmp_path / "run"
    res = _run(["train", "--config", "tiny", "--data", world, "--run-dir", run, "--max-steps", "2", "--device", "cpu",
                "--set", "data.num_workers=0", "--set", "train.checkpoint_every=1"], mask, tmp_path)
    assert res.returncode == 0, res.stderr
    video = write_video(tmp_path / "clip.mp4", moving_pattern(t=4))
    ds = tmp_path / "ds"
    res = _run(["extract", "edges", video, "-o", ds], mask, tmp_path)
    assert res.returncode == 0, res.stderr
    for root in (world, run, ds):
        assert bad_modes(root, mask) == [], root
