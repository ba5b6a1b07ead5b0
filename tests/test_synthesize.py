"""`v2v synthesize`: streaming synthesis from a trained checkpoint (tiny preset, synthetic world data).

One module-scoped run is trained for 2 steps through the CLI; a second checkpoint (edges from Canny in its
provenance) is built and saved through the checkpoint API for the raw-video path. Torch runs on one thread here:
on a shared 2-core machine two OpenMP threads can be 20x slower than one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "examples" / "configs" / "tiny.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one CPU thread (conftest)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two world datasets (8 and 24 frames per sequence) and a tiny run trained 2 steps on the first."""
    import torch
    from typer.testing import CliRunner

    from v2v_plugins.world import write_world
    from v2vcli.cli import build_app

    root = tmp_path_factory.mktemp("synth")
    short = write_world(root / "world", seed=0, size=(128, 64), frames=8, sequences=3, val=1)
    long = write_world(root / "world_long", seed=1, size=(128, 64), frames=24, sequences=2, val=1)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(build_app(), ["train", "--config", str(TINY), "--data", str(short), "--run-dir",
                                                  str(root / "run"), "--max-steps", "2", "--device", "cpu"],
                                    catch_exceptions=False)
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    return {"root": root, "world": short, "long": long, "run": root / "run"}


@pytest.fixture(scope="module")
def edges_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny edges→video vid2vid checkpoint whose provenance says its edges came from Canny."""
    from v2v_plugins.vid2vid.training import Vid2VidModel
    from v2vcli.checkpoint import CheckpointMeta, save_checkpoint
    from v2vcli.config import build_config, load_yaml, merge, to_dict

    raw = merge(load_yaml(TINY), {"data": {"inputs": ["edges"]}, "model": {"fg": False, "fg_classes": []}})
    cfg = build_config(raw)
    model = Vid2VidModel(cfg, None, "cpu")
    prov = {"frames": {"format": "jpg", "sequences": 1, "options": [{"resize": None, "fps": None, "start": None,
                                                                       "end": None}]},
            "edges": {"kind": "edges", "extractor": "v2v_plugins.extract.edges.CannyEdges", "plugin": "edges",
                      "backend": "canny", "version": "1", "options": {"sigma": 0.33, "blur": 5},
                      "outputs": ["edges"]}}
    run = tmp_path_factory.mktemp("edges_run")
    meta = CheckpointMeta(model="vid2vid", config=to_dict(cfg), label_set=None, provenance=prov, networks=["G"])
    return save_checkpoint(run, 1, model.weights(), meta, {"format": 1})


def _run(**kw: Any) -> Any:
    from v2v_plugins.synthesize import SynthesisOptions, synthesize

    kw.setdefault("device", "cpu")
    return synthesize(SynthesisOptions(**kw))


def _pngs(folder: Path) -> list[np.ndarray]:
    from v2vcli.io.files import read_image

    return [read_image(p) for p in sorted(folder.glob("*.png"))]


def test_frame_count_and_fps_match_input(world: dict[str, Path], tmp_path: Path) -> None:
    from v2vcli.io.video import open_video, probe_video

    report = _run(checkpoint=world["run"], labels=world["world"], split="train", output=tmp_path / "out",
                  first_frames="real")
    assert [s.name for s in report.sequences] == ["world_000", "world_001"]
    for s in report.sequences:
        assert s.output == tmp_path / "out" / f"{s.name}.mp4"
        info = probe_video(s.output)
        assert float(info.fps) == pytest.approx(15.0)
        assert info.size == (64, 64)
        with open_video(s.output) as reader:
            assert reader.count == 8
    assert report.ema


def test_cli_sequence_folder_to_file_and_preview(cli: Any, world: dict[str, Path], tmp_path: Path) -> None:
    from v2vcli.io.video import open_video

    out = tmp_path / "one.mp4"
    result = cli("synthesize", "--checkpoint", world["run"] / "checkpoints" / "step_00000002", "--labels",
                 world["world"] / "seg" / "world_002", "-o", out, "--preview", "--device", "cpu", "--first-frames",
                 "real")
    assert result.exit_code == 0, result.output
    assert out.is_file() and oct(out.stat().st_mode & 0o077) != "0o0"
    with open_video(out) as r:
        assert r.count == 8 and r.size == (64, 64)
    with open_video(tmp_path / "one_preview.mp4") as r:
        assert r.count == 8 and r.size == (128, 64)  # labels | output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_errors_are_one_line(cli: Any, world: dict[str, Path], tmp_path: Path) -> None:
    result = cli("synthesize", "--checkpoint", world["run"], "--labels", world["world"], "--remap", "tre:building",
                 "-o", tmp_path / "x", "--device", "cpu")
    assert result.exit_code == 1
    assert "Error: class 'tre' is not in label set 'world' (did you mean 'tree'?)" in result.output
    result = cli("synthesize", "--checkpoint", world["run"], "--labels", tmp_path / "missing", "--device", "cpu")
    assert result.exit_code == 1 and "Error: --labels" in result.output and "does not exist" in result.output
    result = cli("synthesize", "--checkpoint", tmp_path, "--labels", world["world"], "--device", "cpu")
    assert result.exit_code == 1 and "holds no checkpoint" in result.output
    result = cli("synthesize", "--checkpoint", world["run"], "--labels", world["world"], "--split", "nope",
                 "--device", "cpu")
    assert result.exit_code == 1 and "has no split 'nope'" in result.output
    assert not (tmp_path / "x").exists()


def _capture_inputs(synth: Any) -> list[Any]:
    """Record the generator's input tensor (the conditioning of each frame) of every step."""
    seen: list[Any] = []
    gen = synth.generator
    orig = gen.step

    def step(inputs: Any, real: Any = None) -> Any:
        seen.append((gen.spec.build(inputs).clone(), {k: v.clone() for k, v in inputs.items()}))
        return orig(inputs, real)

    gen.step = step
    return seen


def test_remap_changes_generator_input_exactly_in_remapped_regions(world: dict[str, Path], tmp_path: Path) -> None:
    from v2v_plugins.synthesize.engine import load_synthesizer
    from v2v_plugins.synthesize.sources import parse_remap, resolve_labels

    synth = load_synthesizer(world["run"], device="cpu")
    seqs = resolve_labels(world["world"] / "seg" / "world_000").sequences
    table = parse_remap(["car:road", "7:5"], synth.label_set)  # names or ids
    runs = []
    for remap, name in ((None, "plain"), (table, "remapped")):
        orig = synth.generator.step
        seen = _capture_inputs(synth)
        try:
            synth.run(seqs, {"world_000": tmp_path / name}, fmt="png", remap=remap, first_frames="real")
        finally:
            synth.generator.step = orig
        runs.append(seen)
    car, tree = synth.label_set.id_of("car"), synth.label_set.id_of("tree")
    changed_somewhere = False
    for (cond_a, in_a), (cond_b, _) in zip(*runs):
        seg = in_a["seg"]
        expected = (seg == car) | (seg == tree)  # (1, H, W)
        differs = (cond_a != cond_b).any(dim=1)  # over channels
        assert bool((differs == expected).all())
        changed_somewhere |= bool(expected.any())
    assert changed_somewhere, "the world sequence should show cars or trees"
    assert len(runs[0]) == 8


def test_ema_and_trained_generator_differ(world: dict[str, Path], tmp_path: Path) -> None:
    from v2vcli.checkpoint import load_weights, split_networks

    parts = split_networks(load_weights(world["run"])[0])
    assert any(not bool((parts["G"][k] == parts["G_ema"][k]).all()) for k in parts["G"])
    a = _run(checkpoint=world["run"], labels=world["world"], output=tmp_path / "ema", format="png",
             first_frames="real")
    b = _run(checkpoint=world["run"], labels=world["world"], output=tmp_path / "g", format="png", use_ema=False,
             first_frames="real")
    assert a.ema and not b.ema
    fa, fb = _pngs(tmp_path / "ema"), _pngs(tmp_path / "g")
    assert len(fa) == len(fb) == 8
    assert any(not np.array_equal(x, y) for x, y in zip(fa, fb))


def test_first_frame_replaces_frame_zero(world: dict[str, Path], tmp_path: Path) -> None:
    from v2vcli.io.files import write_image

    img = np.random.default_rng(3).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    write_image(tmp_path / "first.png", img)
    _run(checkpoint=world["run"], labels=world["world"], output=tmp_path / "plain", format="png", first_frames="empty")
    report = _run(checkpoint=world["run"], labels=world["world"], output=tmp_path / "first", format="png",
                  first_frame=tmp_path / "first.png")
    assert (report.first_frames, report.first_frame_count) == ("image", 1)
    plain, first = _pngs(tmp_path / "plain"), _pngs(tmp_path / "first")
    assert len(first) == len(plain) == 8
    assert np.array_equal(first[0], img)
    assert not np.array_equal(first[0], plain[0])
    assert not np.array_equal(first[1], plain[1])  # the history differs too


def test_same_inputs_and_seed_give_identical_pngs(world: dict[str, Path], tmp_path: Path) -> None:
    for name in ("a", "b"):
        _run(checkpoint=world["run"], labels=world["world"], output=tmp_path / name, format="png", seed=7,
             first_frames="real")
    a, b = (sorted(p for p in (tmp_path / n).iterdir() if not p.name.startswith(".")) for n in ("a", "b"))
    assert [p.name for p in a] == [f"{i:06d}.png" for i in range(8)]
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_batch_sequences_of_different_lengths(world: dict[str, Path], tmp_path: Path) -> None:
    """Two sequences (8 and 24 frames) as one batch: each output has its own length; frames agree with one-at-a-time
    runs up to float rounding (the feedback loop of a 2-step model amplifies rounding over later frames)."""
    from v2v_plugins.synthesize.engine import load_synthesizer
    from v2v_plugins.synthesize.sources import resolve_labels

    synth = load_synthesizer(world["run"], device="cpu")
    seqs = [resolve_labels(world["world"] / "seg" / "world_000").sequences[0],
            resolve_labels(world["long"] / "seg" / "world_001").sequences[0]]
    outs = {"world_000": tmp_path / "b" / "short", "world_001": tmp_path / "b" / "long"}
    results = synth.run(seqs, outs, fmt="png", batch_sequences=2, first_frames="real")
    assert [r.frames for r in results] == [8, 24]
    single = synth.run(seqs[:1], {"world_000": tmp_path / "single"}, fmt="png", first_frames="real")
    assert single[0].frames == 8
    a, b = _pngs(tmp_path / "single"), _pngs(tmp_path / "b" / "short")
    assert len(a) == len(b) == 8 and len(_pngs(tmp_path / "b" / "long")) == 24
    assert max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a[:3], b[:3])) <= 1


def _make_video_with_audio(path: Path, frames: int = 12, fps: int = 10) -> Path:
    from v2vcli.io.video import ffmpeg_exe

    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=96x64:rate={fps}", "-f", "lavfi",
           "-i", "sine=frequency=440:sample_rate=22050", "-frames:v", str(frames), "-t", f"{frames / fps}",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def test_raw_video_runs_through_recorded_extractors(edges_checkpoint: Path, tmp_path: Path) -> None:
    from v2vcli.io.video import open_video, probe_video

    video = _make_video_with_audio(tmp_path / "clip.mp4")
    src = probe_video(video)
    assert src.has_audio
    with open_video(video) as r:
        n_in = r.count
    report = _run(checkpoint=edges_checkpoint, labels=video, output=tmp_path / "out.mp4", use_ema=True,
                  first_frames="real")  # the video's own frames, extracted with its edges
    (res,) = report.sequences
    assert res.output == tmp_path / "out.mp4" and res.audio and not report.ema  # no G_ema saved: G is used
    info = probe_video(res.output)
    assert info.has_audio and float(info.fps) == pytest.approx(float(src.fps))
    with open_video(res.output) as r:
        assert r.count == n_in == 12
    leftovers = [p for p in Path(tempfile.gettempdir()).glob("v2v-synth-*")
                 if p.stat().st_mtime > time.time() - 60 and any(p.rglob("clip"))]
    assert not leftovers


def test_raw_video_with_unextractable_provenance_is_a_clear_error(cli: Any, world: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    video = _make_video_with_audio(tmp_path / "clip.mp4", frames=4)
    result = cli("synthesize", "--checkpoint", world["run"], "--labels", video, "--device", "cpu")
    assert result.exit_code == 1
    assert "not an installed extractor" in result.output and result.output.count("\n") <= 2


_RSS_SCRIPT = textwrap.dedent("""
    import sys
    from v2v_plugins.synthesize import SynthesisOptions, synthesize
    r = synthesize(SynthesisOptions(checkpoint=sys.argv[1], labels=sys.argv[2], output=sys.argv[3], device="cpu",
                                    first_frames="real"))
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
    print(r.frames, hwm)
""")


def _peak_rss_kib(run: Path, labels: Path, out: Path) -> tuple[int, int]:
    proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(run), str(labels), str(out)], env=ENV,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    frames, kib = proc.stdout.split()[-2:]
    return int(frames), int(kib)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc (Linux) for the peak RSS")
def test_peak_memory_does_not_grow_with_length(world: dict[str, Path], tmp_path: Path) -> None:
    n1, rss1 = _peak_rss_kib(world["run"], world["world"] / "seg" / "world_002", tmp_path / "short.mp4")
    n3, rss3 = _peak_rss_kib(world["run"], world["long"] / "seg" / "world_001", tmp_path / "long.mp4")
    assert (n1, n3) == (8, 24)
    assert abs(rss3 - rss1) <= 0.10 * rss1, (rss1, rss3)


@pytest.mark.slow
def test_kill_9_leaves_no_output_and_the_next_run_cleans_up(world: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "killed.mp4"
    script = ("import time, v2v_plugins.synthesize.engine as e\n"
              "orig = e.Synthesizer.batch\n"
              "def slow(self, frames):\n"
              "    time.sleep(0.3)\n"
              "    return orig(self, frames)\n"
              "e.Synthesizer.batch = slow\n"
              f"e.synthesize(e.SynthesisOptions(checkpoint={str(world['run'])!r}, "
              f"labels={str(world['long'] / 'seg' / 'world_001')!r}, output={str(out)!r}, device='cpu', "
              f"first_frames='real'))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not list(tmp_path.glob(".killed.*.tmp.mp4")):
            assert proc.poll() is None, "synthesize ended before it could be killed"
            time.sleep(0.05)
        assert list(tmp_path.glob(".killed.*.tmp.mp4")), "no temporary output appeared"
        time.sleep(0.5)  # a few frames in
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    time.sleep(0.5)  # ffmpeg sees EOF and exits
    temps = list(tmp_path.glob(".killed.*"))
    for p in temps:  # pretend they were left long ago
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    _run(checkpoint=world["run"], labels=world["world"] / "seg" / "world_002", output=out, first_frames="real")
    assert out.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".killed.")]


def test_output_paths() -> None:
    from v2v_plugins.synthesize.outputs import output_paths, preview_path

    assert output_paths(["a"], None, "mp4") == {"a": Path("synthesized/a.mp4")}
    assert output_paths(["a"], "x/y.mp4", "mp4") == {"a": Path("x/y.mp4")}
    assert output_paths(["a"], "x/y.MP4", "mp4") == {"a": Path("x/y.MP4")}
    assert output_paths(["a"], "x/", "png") == {"a": Path("x/a")}
    assert output_paths(["a", "b"], "o", "png") == {"a": Path("o/a"), "b": Path("o/b")}
    assert preview_path(Path("o/a.mp4"), "mp4") == Path("o/a_preview.mp4")
    assert preview_path(Path("o/a"), "png") == Path("o/a_preview")


def test_output_paths_folder_or_file_rules(tmp_path: Path) -> None:
    """Issue 23: `-o DIR` is a folder even when the split has one sequence (it used to write DIR.mp4); a file only
    when the path ends with .mp4; a trailing '/' or several sequences always mean a folder."""
    from v2v_plugins.synthesize.outputs import output_paths
    from v2vcli.errors import ConfigError

    d = tmp_path / "out"
    assert output_paths(["a"], d, "mp4") == {"a": d / "a.mp4"}  # one sequence, no suffix: a folder
    assert output_paths(["a"], f"{d}/", "mp4") == {"a": d / "a.mp4"}
    assert output_paths(["a"], tmp_path / "runs.v2", "mp4") == {"a": tmp_path / "runs.v2" / "a.mp4"}
    assert output_paths(["a"], d / "one.mp4", "mp4") == {"a": d / "one.mp4"}
    assert output_paths(["a", "b"], d, "mp4") == {"a": d / "a.mp4", "b": d / "b.mp4"}
    assert output_paths(["a", "b"], f"{d}/", "png") == {"a": d / "a", "b": d / "b"}
    assert output_paths(["a"], d, "png") == {"a": d}  # one PNG sequence: the frames folder itself
    assert output_paths(["a"], f"{d}/", "png") == {"a": d / "a"}
    with pytest.raises(ConfigError, match="2 sequences"):
        output_paths(["a", "b"], d / "x.mp4", "mp4")
    with pytest.raises(ConfigError, match=".mp4 files"):
        output_paths(["a"], d / "x.avi", "mp4")
    with pytest.raises(ConfigError, match="folder of frames"):
        output_paths(["a"], d / "x.mp4", "png")
    (tmp_path / "plain").write_text("x")
    with pytest.raises(ConfigError, match="existing file"):
        output_paths(["a"], tmp_path / "plain", "mp4")


def test_cli_one_sequence_split_into_a_folder(world: dict[str, Path], tmp_path: Path, cli: Any) -> None:
    """`synthesize --labels DATASET -o DIR` with a one-sequence split writes DIR/<seq>.mp4, not DIR.mp4."""
    out = tmp_path / "res"
    result = cli("synthesize", "--checkpoint", world["run"], "--labels", world["world"], "--split", "val", "-o",
                 out, "--device", "cpu", "--first-frames", "real")
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["world_002.mp4"] and not (tmp_path / "res.mp4").exists()


def test_precision_bf16_runs_under_autocast_and_stays_close(world: dict[str, Path], tmp_path: Path) -> None:
    """--precision bf16 generates through bf16 autocast (a different result from fp32, same length, close)."""
    _run(checkpoint=world["run"], labels=world["world"], output=tmp_path / "fp32", format="png", first_frames="empty")
    _run(checkpoint=world["run"], labels=world["world"], output=tmp_path / "bf16", format="png", precision="bf16",
         first_frames="empty")
    fp32, bf16 = _pngs(tmp_path / "fp32"), _pngs(tmp_path / "bf16")
    assert len(fp32) == len(bf16) == 8
    diff = np.abs(fp32[0].astype(int) - bf16[0].astype(int))
    assert diff.any()  # bf16 really ran
    assert diff.mean() < 8  # first frame: no feedback yet, bf16 rounding only


def test_compile_wraps_the_generator_with_torch_compile(world: dict[str, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """--compile goes through torch.compile (here with the eager backend: inductor takes minutes on this CPU) and
    gives the eager frames."""
    import torch

    calls: list[Any] = []
    original = torch.compile

    def compile_eager(model: Any, **kw: Any) -> Any:
        calls.append(model)
        return original(model, backend="eager")

    monkeypatch.setattr(torch, "compile", compile_eager)
    _run(checkpoint=world["run"], labels=world["world"], output=tmp_path / "eager", format="png", first_frames="real")
    assert not calls
    _run(checkpoint=world["run"], labels=world["world"], output=tmp_path / "compiled", format="png", compile=True,
         first_frames="real")
    assert len(calls) == 1
    for a, b in zip(_pngs(tmp_path / "eager"), _pngs(tmp_path / "compiled")):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_the_frame_loop_reads_nothing_back_while_the_generator_runs_ahead(world: dict[str, Path], tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 25, shown on the CPU: no host sync in the frame loop. Every read of a tensor's value (item, tolist,
    bool, float, cpu, numpy) happens while a frame is handed to the writer, and frame t is handed over only after
    frame t + READ_BEHIND has been queued, so on an accelerator the generator never waits for the device."""
    import torch

    from v2v_plugins.gan import conditioning
    from v2v_plugins.synthesize import engine
    from v2v_plugins.vid2vid.training import Vid2VidFrameGenerator

    events: list[tuple[str, int]] = []
    reading = [False]
    # as on an accelerator: the label-id check runs only for CPU tensors (the reader has checked the ids)
    monkeypatch.setattr(conditioning, "check_label_ids", lambda *a, **k: None)
    step, read = Vid2VidFrameGenerator.step, engine._PendingFrame.read

    def counted_step(self: Any, *a: Any, **k: Any) -> Any:
        events.append(("step", 0))
        return step(self, *a, **k)

    def counted_read(self: Any, *a: Any, **k: Any) -> Any:
        events.append(("read", self.t))
        reading[0] = True
        try:
            return read(self, *a, **k)
        finally:
            reading[0] = False

    def spy(name: str, original: Any) -> Any:
        def wrapper(self: Any, *a: Any, **k: Any) -> Any:
            if not reading[0]:
                events.append(("sync:" + name, 0))
            return original(self, *a, **k)
        return wrapper

    monkeypatch.setattr(Vid2VidFrameGenerator, "step", counted_step)
    monkeypatch.setattr(engine._PendingFrame, "read", counted_read)
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, spy(name, getattr(torch.Tensor, name)))
    loop_start = len(events)
    _run(checkpoint=world["run"], labels=world["world"] / "seg" / "world_000", output=tmp_path / "out",
         format="png", first_frames="empty")
    monkeypatch.undo()
    loop = events[loop_start:]
    first_step = next(i for i, e in enumerate(loop) if e[0] == "step")
    last_step = max(i for i, e in enumerate(loop) if e[0] == "step")
    assert not [e for e in loop[first_step:last_step] if e[0].startswith("sync:")], loop
    steps_before = {t: sum(1 for e in loop[:i] if e[0] == "step") for i, (kind, t) in enumerate(loop) if kind == "read"}
    T = len(steps_before)
    assert T == 8 and sorted(steps_before) == list(range(T))
    for t, n in steps_before.items():
        assert n >= min(T, t + 1 + engine.READ_BEHIND), (t, n)
