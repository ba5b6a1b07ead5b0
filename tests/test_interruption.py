"""Reliability pass (issue 15), part 2: SIGKILL and SIGINT at seeded random points of extract, train and synthesize,
and a full disk (a file-size limit, as `ulimit -f` sets) during extract and train.

Every command runs as a real `v2v` process. The kill points are drawn from a seeded RNG as amounts of finished work
(frames written, checkpoints saved), so a run is interrupted in the middle of its work, not before it starts.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "configs" / "tiny.yaml"
V2V = str(Path(sys.executable).parent / "v2v")
RNG = random.Random(15)  # the seeded choice of interruption points
pytestmark = pytest.mark.skipif(not Path(V2V).is_file(), reason="needs the v2v console script of this venv")


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run(*args: object, fsize: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([V2V, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=_env(),
                          preexec_fn=limit)


def interrupt(args: list[object], ready: Callable[[], bool], sig: int, timeout: float = 120) -> int:
    """Start ``v2v args``, send ``sig`` as soon as ``ready()`` holds, and return the exit code."""
    proc = subprocess.Popen([V2V, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=_env())
    t0 = time.monotonic()
    try:
        while proc.poll() is None and not ready():
            if time.monotonic() - t0 > timeout:
                raise AssertionError("the command never reached the interruption point")
            time.sleep(0.005)
        assert proc.poll() is None, f"finished before the interruption point: {proc.stderr.read()[-500:]}"
        proc.send_signal(sig)
        proc.wait(timeout=60)
        return proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return errors[0]


# -- extract ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import cv2

    from v2vcli.io.video import write_video

    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (160, 320, 3), dtype=np.uint8), (5, 5), 0)
    for k in range(2):
        frames = [np.ascontiguousarray(np.roll(base, 3 * t + 40 * k, axis=1)[16:144, 32:224]) for t in range(90)]
        write_video(root / "in" / f"clip{k}.mp4", frames, 15.0)
    return root


@pytest.fixture(scope="module")
def extract_reference(videos: Path) -> Path:
    out = videos / "reference"
    res = run("extract", "edges", videos / "in", "-o", out)
    assert res.returncode == 0, res.stderr
    return out


def _count(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.png")) if folder.is_dir() else 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_extract_interrupted_then_rerun_is_byte_identical(sig: int, videos: Path, extract_reference: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "ds"
    point = RNG.randrange(5, 170)  # edge maps written before the signal (2 × 90 frames in all)
    code = interrupt(["extract", "edges", videos / "in", "-o", out], lambda: _count(out / "edges") >= point, sig)
    assert code != 0
    res = run("extract", "edges", videos / "in", "-o", out)
    assert res.returncode == 0, res.stderr
    assert files_of(out) == files_of(extract_reference)


def test_extract_on_a_full_disk_then_rerun(videos: Path, extract_reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    res = run("extract", "edges", videos / "in", "-o", out, fsize=4096)  # a frame's JPEG is larger than 4 KiB
    assert res.returncode == 1
    assert "no space left" in one_error_line(res.stderr)
    assert not list(out.rglob("*.tmp*")) if out.exists() else True
    res = run("extract", "edges", videos / "in", "-o", out)
    assert res.returncode == 0, res.stderr
    assert files_of(out) == files_of(extract_reference)


# -- train -----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from v2v_plugins.world.dataset import write_world

    return write_world(tmp_path_factory.mktemp("world") / "world", seed=0, size=(64, 64), frames=6, sequences=3,
                       val=1, progress=False)


def _train_args(world: Path, run_dir: Path, steps: int, *extra: object) -> list[object]:
    return ["train", "--config", TINY, "--data", world, "--run-dir", run_dir, "--max-steps", steps, "--device", "cpu",
            "--set", "data.num_workers=0", "--set", "train.checkpoint_every=2", *extra]


def _steps(run_dir: Path) -> list[int]:
    ck = run_dir / "checkpoints"
    return sorted(int(p.name.split("_")[1]) for p in ck.glob("step_*") if p.is_dir() and "." not in p.name) \
        if ck.is_dir() else []


def _loads(run_dir: Path, step: int) -> None:
    from v2vcli.checkpoint import load_weights

    weights, _ = load_weights(run_dir / "checkpoints" / f"step_{step:08d}")
    assert weights


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_train_interrupted_resumes_from_its_last_checkpoint(sig: int, world: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    after = RNG.choice([2, 4])  # checkpoints written before the signal
    code = interrupt(_train_args(world, run_dir, 8), lambda: after in _steps(run_dir), sig)
    if sig == signal.SIGINT:
        assert code in (0, 130)  # a clean stop: the loop saved a checkpoint where it was
    saved = _steps(run_dir)
    assert saved and saved[-1] >= after
    _loads(run_dir, saved[-1])
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")] or sig == signal.SIGKILL
    res = run(*_train_args(world, run_dir, 8, "--resume"))
    assert res.returncode == 0, res.stderr
    assert _steps(run_dir)[-1] == 8
    _loads(run_dir, 8)
    logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
              if '"G_total"' in line]
    assert max(logged) == 8 and min(s for s in logged if s > saved[-1]) == saved[-1] + 1


def test_train_on_a_full_disk_keeps_the_last_good_checkpoint(world: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    res = run(*_train_args(world, run_dir, 2))
    assert res.returncode == 0, res.stderr
    size = (run_dir / "checkpoints" / "step_00000002" / "weights.safetensors").stat().st_size
    before = files_of(run_dir / "checkpoints")
    res = run(*_train_args(world, run_dir, 4, "--resume"), fsize=size // 2)
    assert res.returncode == 1
    assert "no space left" in one_error_line(res.stderr)
    assert _steps(run_dir) == [2]
    assert files_of(run_dir / "checkpoints") == before  # the last good checkpoint is untouched, no partial one
    _loads(run_dir, 2)


# -- synthesize ------------------------------------------------------------------------------------------------------
def test_synthesize_interrupted_leaves_no_output(world: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    res = run(*_train_args(world, run_dir, 2))
    assert res.returncode == 0, res.stderr
    long = tmp_path / "long"
    from v2v_plugins.world.dataset import write_world

    write_world(long, seed=3, size=(64, 64), frames=60, sequences=2, val=1, progress=False)
    out = tmp_path / "out.mp4"
    for sig in (signal.SIGINT, signal.SIGKILL):
        code = interrupt(["synthesize", "--checkpoint", run_dir, "--labels", long / "seg" / "world_001", "-o", out,
                          "--device", "cpu", "--first-frames", "real"], lambda: any(tmp_path.glob(".out.*")), sig)
        assert code != 0
        assert not out.exists()
        if sig == signal.SIGINT:  # a clean stop removes its temporary file too
            assert not list(tmp_path.glob(".out.*"))
    res = run("synthesize", "--checkpoint", run_dir, "--labels", long / "seg" / "world_001", "-o", out,
              "--device", "cpu", "--first-frames", "real")
    assert res.returncode == 0, res.stderr
    from v2vcli.io.video import open_video

    with open_video(out) as reader:
        assert sum(1 for _ in reader) == 60
    shutil.rmtree(long)
