"""Reliability II (issue 22): no data lost, no silent garbage, no orphaned workers.

Each test names the item of the issue it covers. The one-line errors for bad values are rows of the bad-input table
in tests/test_reliability.py; here are the behaviours a table row cannot show: what is kept, what is swept, what
survives a kill.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from v2vcli.errors import CheckpointError, ConfigError

V2V = str(Path(sys.executable).parent / "v2v")
needs_v2v = pytest.mark.skipif(not Path(V2V).is_file(), reason="needs the v2v console script of this venv")


def _write_video(path: Path, frames: int, shift: int, seed: int = 0) -> Path:
    import cv2

    from v2vcli.io.video import write_video

    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (64, 160, 3), dtype=np.uint8), (5, 5), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, [np.ascontiguousarray(np.roll(base, shift + 2 * t, axis=1)[8:56, 16:80]) for t in range(frames)],
                10.0)
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- 1. import-vid2vid: a test sequence must not overwrite a train sequence named test_<seq> -----------------------
def test_import_vid2vid_never_merges_two_sequences(tmp_path: Path) -> None:
    from PIL import Image

    from v2vcli.data.importers import import_vid2vid
    from v2vcli.data.layout import Dataset
    from v2vcli.io.files import read_label, write_image

    src = tmp_path / "vid2vid"
    ids_of = {}
    for k, (part, seq) in enumerate([("train", "s"), ("train", "test_s"), ("test", "s")]):
        ids = np.full((8, 12), k + 1, np.uint8)
        ids_of[(part, seq)] = ids
        (src / f"{part}_A" / seq).mkdir(parents=True)
        Image.fromarray(ids, mode="L").save(src / f"{part}_A" / seq / "000000.png")
        write_image(src / f"{part}_B" / seq / "000000.png", np.full((8, 12, 3), 40 * k, np.uint8))
    report = import_vid2vid(src, tmp_path / "ds")
    assert len(report.sequences) == 3
    assert Dataset(tmp_path / "ds").sequences() == sorted(report.sequences)
    sources = {info["source"] for info in report.sequences.values()}
    assert len(sources) == 3
    # every imported sequence holds its own labels
    for name, info in report.sequences.items():
        part = "test" if info["split"] == "val" else "train"
        seq = Path(info["source"]).name
        np.testing.assert_array_equal(read_label(tmp_path / "ds" / "seg" / name / "000000.png"), ids_of[(part, seq)])


# -- 2 and 9. synthesize --format png: a folder v2v did not write is never replaced ---------------------------------
def test_png_output_replaces_only_what_v2v_wrote(tmp_path: Path) -> None:
    from v2v_plugins.synthesize.outputs import MARKER, PngSink, output_paths

    frame = np.zeros((4, 6, 3), np.uint8)
    pictures = tmp_path / "Pictures"
    pictures.mkdir()
    (pictures / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(ConfigError, match="--overwrite"):
        output_paths(["seq"], pictures, "png")
    with pytest.raises(ConfigError, match="--overwrite"):
        PngSink(pictures)
    assert (pictures / "holiday.jpg").read_bytes() == b"precious"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left either

    out = tmp_path / "frames"
    for _ in range(2):  # the second run replaces the first: v2v wrote it (its marker)
        sink = PngSink(out)
        sink.write(frame)
        sink.close()
        assert (out / MARKER).is_file() and (out / "000000.png").is_file()
    (out / MARKER).unlink()  # now nothing says v2v wrote it
    with pytest.raises(ConfigError, match="--overwrite"):
        PngSink(out)
    sink = PngSink(out, overwrite=True)
    sink.write(frame)
    sink.close()
    assert (out / MARKER).is_file()

    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file"):
        output_paths(["seq"], tmp_path / "file.png", "png")


# -- 3. extract: the recorded source of a sequence is compared -----------------------------------------------------
def test_extract_refuses_a_changed_source_unless_overwrite(tmp_path: Path, cli: Any) -> None:
    from v2vcli.data.layout import Dataset

    a = _write_video(tmp_path / "a" / "x.mp4", 6, 0, seed=1)
    b = _write_video(tmp_path / "b" / "x.mp4", 6, 0, seed=2)
    ds = tmp_path / "ds"
    assert cli("extract", "edges", a, "-o", ds).exit_code == 0
    before = _files(ds)
    result = cli("extract", "edges", b, "-o", ds)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert str(a.resolve()) in errors[0] and "--overwrite" in errors[0]
    assert _files(ds) == before  # nothing changed

    result = cli("extract", "edges", b, "-o", ds, "--overwrite")
    assert result.exit_code == 0, result.output
    meta = Dataset(ds).frames_meta()["sequences"]["x"]
    assert meta["source"] == str(b.resolve())
    assert _files(ds)["frames/x/000000.jpg"] != before["frames/x/000000.jpg"]
    assert json.loads((ds / "meta" / "edges.json").read_text())["sequences"] == {"x": {"count": 6}}


# -- 4. non-finite values: metrics stay JSON, training stops, synthesize refuses ------------------------------------
def test_metrics_jsonl_is_strict_json(tmp_path: Path) -> None:
    from v2v_plugins.train.logging import MetricsFile

    metrics = MetricsFile(tmp_path / "metrics.jsonl")
    metrics.write({"step": 1, "lr/G": math.inf, "G_total": math.nan, "temporal_active": [0, 1], "ok": 0.5})
    metrics.close()

    def strict(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    record = json.loads((tmp_path / "metrics.jsonl").read_text(), parse_constant=strict)
    assert record == {"step": 1, "lr/G": None, "G_total": None, "temporal_active": [0, 1], "ok": 0.5}


def test_non_finite_weights_stop_training_and_synthesis() -> None:
    import torch

    from v2v_plugins.synthesize.outputs import check_finite
    from v2vcli.model import TrainingError, check_finite_weights

    class Model:
        def __init__(self) -> None:
            self.g, self.d = torch.nn.Linear(3, 3), torch.nn.Linear(3, 1)
            self.ema = torch.nn.Linear(3, 3)

        def networks(self) -> dict[str, torch.nn.Module]:
            return {"G": self.g, "D": self.d}

    model = Model()
    check_finite_weights(model, 1)  # type: ignore[arg-type]
    with torch.no_grad():
        model.d.weight[0, 1] = math.inf
    with pytest.raises(TrainingError, match=r"step 7: the weights of D are no longer finite"):
        check_finite_weights(model, 7, "runs/x/checkpoints/step_00000005")  # type: ignore[arg-type]

    check_finite(torch.zeros(1, 3, 4, 4), "frame 0")
    with pytest.raises(CheckpointError, match="non-finite"):
        check_finite(torch.full((1, 3, 4, 4), math.nan), "frame 0")


def test_training_with_infinite_lr_stops_with_an_error(tmp_path: Path, cli: Any) -> None:
    """The config check refuses .inf; a huge finite lr still makes every weight non-finite: training must stop."""
    from v2v_plugins.world.dataset import write_world

    root = Path(__file__).resolve().parents[1]
    world = write_world(tmp_path / "world", seed=0, size=(64, 64), frames=6, sequences=2, val=0, progress=False)
    result = cli("train", "--config", root / "examples" / "configs" / "tiny.yaml", "--data", world, "--run-dir",
                 tmp_path / "run", "--max-steps", 2, "--device", "cpu", "--set", "data.num_workers=0", "--set",
                 "optim.lr=1e300", "--set", "optim.grad_clip=0")
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert "no longer finite" in errors[0] or "non-finite" in errors[0]
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if (
            tmp_path / "run" / "metrics.jsonl").is_file() else []:
        json.loads(line, parse_constant=lambda c: pytest.fail(f"metrics.jsonl holds {c}"))


# -- 6. predict: streamed, the preview bounded ---------------------------------------------------------------------
def test_predict_preview_columns_are_bounded() -> None:
    from v2v_plugins.predict.pipeline import MAX_HORIZON, PREVIEW_STEPS, preview_steps

    assert preview_steps(4) == [0, 1, 2, 3]
    steps = preview_steps(MAX_HORIZON)
    assert len(steps) == PREVIEW_STEPS and steps[0] == 0 and steps[-1] == MAX_HORIZON - 1
    assert steps == sorted(set(steps))


# -- 8. dataset check finds what train rejects ---------------------------------------------------------------------
def test_dataset_check_finds_missing_label_set_and_nan_flow(tmp_path: Path) -> None:
    from v2v_plugins.world.dataset import write_world
    from v2vcli.data.check import check_dataset

    world = write_world(tmp_path / "world", seed=0, size=(32, 32), frames=3, sequences=1, val=0, progress=False)
    assert check_dataset(world).ok
    meta = json.loads((world / "meta" / "seg.json").read_text())
    del meta["label_set"]
    (world / "meta" / "seg.json").write_text(json.dumps(meta))
    seq = sorted((world / "flow").iterdir())[0]
    with np.load(seq / "000001.npz") as npz:
        flow, conf = npz["flow"], npz["conf"]
    np.savez(seq / "000001.npz", flow=np.full_like(flow, np.nan), conf=conf)
    report = check_dataset(world)
    found = {(p.modality, p.problem) for p in report.problems}
    assert ("seg", "bad meta") in found and ("flow", "non-finite values") in found, report.problems


# -- 10. a killed synthesize's temp file is swept by the next run at once --------------------------------------------
def test_temp_files_of_a_dead_writer_are_swept_at_once(tmp_path: Path) -> None:
    import fcntl

    from v2v_plugins.synthesize.outputs import remove_stale_temps

    out = tmp_path / "seq.mp4"
    dead = tmp_path / ".seq.abc123.tmp.mp4"  # fresh: younger than STALE_SECONDS, but nobody holds it
    dead.write_bytes(b"partial")
    dead_dir = tmp_path / ".seq.mp4.tmp-xyz"
    dead_dir.mkdir()
    live = tmp_path / ".seq.live42.tmp.mp4"
    live.write_bytes(b"being written")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        removed = remove_stale_temps(out)
    finally:
        os.close(fd)
    assert set(removed) == {dead, dead_dir}
    assert not dead.exists() and not dead_dir.exists() and live.exists()


@needs_v2v
def test_synthesize_sink_holds_its_temp_file_until_done(tmp_path: Path) -> None:
    from v2v_plugins.synthesize.outputs import Mp4Sink, remove_stale_temps

    sink = Mp4Sink(tmp_path / "o.mp4", 10.0)
    sink.write(np.zeros((16, 16, 3), np.uint8))
    tmp = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp.mp4")]
    assert len(tmp) == 1
    assert remove_stale_temps(tmp_path / "o.mp4") == [] and tmp[0].exists()  # a live writer's file is kept
    sink.close()
    assert (tmp_path / "o.mp4").is_file() and not tmp[0].exists()


# -- 11. mediapipe's native log lines are held back, everything else passes ----------------------------------------
def test_native_log_noise_is_dropped(capfd: pytest.CaptureFixture[str]) -> None:
    from v2v_plugins.extract.pose import quiet_native_logs

    with quiet_native_logs():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"W0000 00:00:1796606003.950065    7983 inference_feedback_manager.cc:114] Feedback\n")
        os.write(2, b"E0000 00:00:1.0 1 x.cc:1] a real error\n")
        os.write(2, b"a line of someone else\n")
    err = capfd.readouterr().err
    assert "TensorFlow Lite" not in err and "absl" not in err and "Feedback" not in err
    assert "a real error" in err and "a line of someone else" in err


# -- 5. workers die with the command; SIGTERM is handled like SIGINT; the soak -------------------------------------
def _tagged(tag: str) -> list[int]:
    """Live processes whose environment carries ``tag`` (the command, its workers, their ffmpeg, the tracker)."""
    found = []
    needle = f"V2V_TEST_TAG={tag}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read()
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env.split(b"\0") and state != b"Z":
            found.append(int(entry))
    return found


def _survivors(tag: str, wait: float = 5.0) -> list[int]:
    deadline = time.monotonic() + wait
    while (alive := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def _start(args: list[Any], tag: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "V2V_TEST_TAG": tag}
    return subprocess.Popen([V2V, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)


def _reap(tag: str) -> None:
    for pid in _tagged(tag):  # only what this test started (its tag), should an assertion fail
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture(scope="module")
def soak_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("soak")
    for k in range(2):
        _write_video(root / "in" / f"clip{k}.mp4", 40, 30 * k, seed=k)
    return root


needs_proc = pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs Linux /proc")


@needs_v2v
@needs_proc
def test_sigterm_of_extract_with_workers_is_one_error_and_no_survivors(soak_videos: Path, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    out = tmp_path / "ds"
    proc = _start(["extract", "edges", soak_videos / "in", "-o", out, "--workers", 2], tag)
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline and not (
                (out / "edges").is_dir() and any((out / "edges").rglob("*.png"))):
            time.sleep(0.01)
        assert proc.poll() is None, "the extraction finished before SIGTERM"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        errors = [line for line in err.splitlines() if line.startswith("Error:")]
        assert proc.returncode != 0 and len(errors) == 1 and "interrupted" in errors[0], err[-2000:]
        assert "Traceback" not in err
        assert _survivors(tag) == []
    finally:
        _reap(tag)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@needs_v2v
@needs_proc
def test_soak_sigkill_extract_with_workers(soak_videos: Path, tmp_path: Path) -> None:
    """SIGKILL `v2v extract --workers 2` at 5 random moments (seeded): no v2v process survives any kill, and each
    rerun gives the same bytes as a clean run. Bounded: the whole test stays under 60 s."""
    t_start = time.monotonic()
    rng = random.Random(22)
    args = ["edges", soak_videos / "in", "--workers", 2]
    clean = tmp_path / "clean"
    t0 = time.monotonic()
    res = subprocess.run([V2V, "extract", *map(str, args), "-o", str(clean)], capture_output=True, text=True,
                         timeout=50, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    took = time.monotonic() - t0
    out = tmp_path / "killed"
    kills = 0
    tag = uuid.uuid4().hex
    try:
        while kills < 5:
            assert time.monotonic() - t_start + 2 * took < 58, f"only {kills} kills fit in the time budget"
            proc = _start(["extract", *args, "-o", out], tag)
            time.sleep(rng.uniform(0.2, max(0.3, took * 0.9)))
            if proc.poll() is not None:  # finished first: start again from nothing
                shutil.rmtree(out, ignore_errors=True)
                continue
            proc.kill()
            proc.wait()
            kills += 1
            assert _survivors(tag) == [], f"kill {kills}: processes outlived the killed command"
            res = subprocess.run([V2V, "extract", *map(str, args), "-o", str(out)], capture_output=True, text=True,
                                 timeout=50, env={**os.environ, "OMP_NUM_THREADS": "1"})
            assert res.returncode == 0, res.stderr
            assert _files(out) == _files(clean), f"the rerun after kill {kills} differs from a clean run"
            shutil.rmtree(out)
    finally:
        _reap(tag)
    assert time.monotonic() - t_start < 60


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs Linux /sys (unwritable even for root)")
def test_an_unwritable_output_location_is_one_sentence(tiny_video: Path, tmp_path: Path) -> None:
    """Issue 22 item 9: a read-only output gives one `Error:` sentence naming the path, not the raw OSError.
    /sys refuses new entries even to root (tests run as root, where chmod-based read-only folders do not bite)."""
    from typer.testing import CliRunner

    from v2vcli.cli import build_app

    target = f"/sys/v2v-test-{os.getpid()}"
    cases = [["demo", "world", "--out", target, "--size", "32x32", "--frames", "4", "--sequences", "2"],
             ["extract", "edges", str(tiny_video), "-o", target]]
    for args in cases:
        res = CliRunner().invoke(build_app(), args)
        errors = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
        assert res.exit_code == 1 and len(errors) == 1, (args, res.output)
        assert "cannot write" in errors[0] or "not writable" in errors[0] or "permission" in errors[0].lower(), errors
        assert "Traceback" not in res.output and "[Errno" not in res.output, res.output
        assert not Path(target).exists()
