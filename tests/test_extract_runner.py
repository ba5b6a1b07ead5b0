"""The extraction runner: layout, meta, resume, frame options, workers, torchrun ranks, kill -9, CLI and errors.

The extractors here are defined at module level so spawned worker processes (and the rank/kill subprocesses,
which import this module) can load them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pytest
from conftest import moving_pattern, write_video

from v2vcli.data.layout import LabelClass, LabelSet
from v2vcli.distributed import shard
from v2vcli.errors import ConfigError, DatasetError, PluginError, VideoError
from v2vcli.extract import resolve_inputs, run_extraction
from v2vcli.extractor import Extractor, FloatMaps, FlowField
from v2vcli.hookspecs import hookimpl
from v2vcli.io.files import read_flow, read_image, read_json, read_label

TESTS = Path(__file__).parent
LABELS = LabelSet("halves", [LabelClass(0, "dark", (0, 0, 0)), LabelClass(1, "bright", (255, 255, 255))])


@dataclass(kw_only=True)
class GrayConfig:
    scale: float = field(default=1.0, metadata={"help": "Multiply the gray level."})
    invert: bool = False
    delay: float = 0.0  # seconds per frame, so a test can kill a run in the middle


class GrayExtractor(Extractor):
    """Gray level, a binary label map with a label set, a frame-difference 'flow' and a JSON record per frame."""

    kind: ClassVar[str] = "gray"
    backend: ClassVar[str] = "mean"
    default: ClassVar[bool] = True
    version: ClassVar[str] = "2"
    outputs: ClassVar[tuple[str, ...]] = ("gray", "halves", "motion")
    Config: ClassVar[type] = GrayConfig
    calls: ClassVar[list[tuple[str, int]]] = []

    def label_set(self) -> LabelSet:
        return LABELS

    def meta(self) -> dict[str, Any]:
        return {"note": "test extractor"}

    def start_sequence(self, seq: str, fps: float, size: tuple[int, int]) -> None:
        self.seq, self.prev = seq, None

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        GrayExtractor.calls.append((self.seq, index))
        if self.config.delay:
            time.sleep(self.config.delay)
        gray = np.clip(frame.astype(np.float32).mean(axis=2) * self.config.scale, 0, 255).astype(np.uint8)
        if self.config.invert:
            gray = 255 - gray
        conf = np.full(gray.shape, 255 if self.prev is not None else 0, np.uint8)
        diff = np.zeros((*gray.shape, 2), np.float32)
        if self.prev is not None:
            diff[..., 0] = gray.astype(np.float32) - self.prev
        self.prev = gray.astype(np.float32)
        return {"gray": gray, "halves": (gray > 127).astype(np.uint8), "motion": FlowField(diff, conf),
                "gray.json": {"index": index, "checksum": int(frame.astype(np.int64).sum())}}


@dataclass(kw_only=True)
class SharpConfig:
    amount: float = 1.0
    mode: Literal["soft", "hard"] = "soft"


class SharpExtractor(Extractor):
    """A second backend of 'gray' with its own options; writes float maps."""

    kind: ClassVar[str] = "gray"
    backend: ClassVar[str] = "sharp"
    outputs: ClassVar[tuple[str, ...]] = ("gray",)
    Config: ClassVar[type] = SharpConfig

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        return {"gray": frame[..., 1].copy(), "sharp_maps": FloatMaps(frame[..., :2].astype(np.float32) / 255)}


class BrokenExtractor(Extractor):
    kind: ClassVar[str] = "broken"
    backend: ClassVar[str] = "shape"
    outputs: ClassVar[tuple[str, ...]] = ("broken",)

    def process(self, frame: np.ndarray, index: int) -> dict[str, Any]:
        if index == 2:
            return {"broken": np.zeros((3, 3), np.uint8)}
        return {"broken": frame[..., 0].copy()}


class Plugin:
    @hookimpl
    def v2v_register_extractors(self, register: Any) -> None:
        register("gray", "mean", GrayExtractor)
        register("gray", "sharp", SharpExtractor)
        register("broken", "shape", BrokenExtractor)


def register_test_plugin() -> None:
    """Registry with the test plugin, for subprocesses (tests use the register_plugin fixture)."""
    from v2vcli.plugins import get_plugin_manager
    from v2vcli.registry import Registry, reset_registry

    reset_registry(Registry(get_plugin_manager([Plugin()])))


@pytest.fixture
def plugin(register_plugin: Any) -> Any:
    GrayExtractor.calls = []
    return register_plugin(Plugin())


@pytest.fixture
def videos(tmp_path: Path) -> list[Path]:
    src = tmp_path / "videos"
    src.mkdir()
    return [write_video(src / "alpha.mp4", moving_pattern(t=6, seed=1)),
            write_video(src / "beta.mp4", moving_pattern(t=5, seed=2))]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden lock file aside) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_runner_writes_the_dataset_layout(plugin: Any, videos: list[Path], tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    report = run_extraction("gray", videos, ds, progress=False)
    assert [(s.seq, s.status, s.frames) for s in report.sequences] == [("alpha", "extracted", 6),
                                                                      ("beta", "extracted", 5)]
    assert report.frames == 11 and report.backend == "mean"
    for seq, n in (("alpha", 6), ("beta", 5)):
        for folder, ext in (("frames", ".jpg"), ("gray", ".png"), ("halves", ".png"), ("motion", ".npz"),
                            ("gray", ".json")):
            assert sorted(p.name for p in (ds / folder / seq).glob(f"*{ext}")) == [f"{i:06d}{ext}" for i in range(n)]
    frame = read_image(ds / "frames" / "alpha" / "000003.jpg")
    gray = read_label(ds / "gray" / "alpha" / "000003.png")
    np.testing.assert_array_equal(gray, np.clip(frame.astype(np.float32).mean(2), 0, 255).astype(np.uint8))
    # the extractor saw the stored JPEG frame, not the decoded video frame
    assert read_json(ds / "gray" / "alpha" / "000003.json")["checksum"] == int(frame.astype(np.int64).sum())
    flow0, conf0 = read_flow(ds / "motion" / "alpha" / "000000.npz")
    assert not flow0.any() and not conf0.any()
    assert read_flow(ds / "motion" / "alpha" / "000001.npz")[1].min() == 255

    fm = read_json(ds / "meta" / "frames.json")
    assert fm["format"] == "jpg" and list(fm["sequences"]) == ["alpha", "beta"]
    alpha = fm["sequences"]["alpha"]
    assert alpha["fps"] == 10.0 and alpha["size"] == [64, 48] and alpha["count"] == 6
    assert alpha["source"] == str(videos[0].resolve())
    assert alpha["options"] == {"resize": None, "fps": None, "start": None, "end": None}
    meta = read_json(ds / "meta" / "gray.json")
    assert meta["extractor"] == "test_extract_runner.GrayExtractor" and meta["backend"] == "mean"
    assert meta["version"] == "2" and meta["options"] == {"scale": 1.0, "invert": False, "delay": 0.0}
    assert LabelSet.from_dict(meta["label_set"]) == LABELS and meta["note"] == "test extractor"
    assert meta["outputs"] == ["gray", "halves", "motion"]
    assert meta["sequences"] == {"alpha": {"count": 6}, "beta": {"count": 5}}


def test_frame_options_are_applied_and_recorded(plugin: Any, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", moving_pattern(t=20), fps=10)
    ds = tmp_path / "ds"
    run_extraction("gray", [video], ds, resize=(32, -1), fps=5, start=0.4, end=3.0, frames_format="png",
                   progress=False)
    entry = read_json(ds / "meta" / "frames.json")["sequences"]["clip"]
    assert entry["size"] == [32, 24] and entry["fps"] == 5.0 and entry["count"] == 8  # [0.4, 2.0) s at 5 fps
    assert entry["options"] == {"resize": [32, -1], "fps": 5.0, "start": 0.4, "end": 3.0}
    assert read_image(ds / "frames" / "clip" / "000007.png").shape == (24, 32, 3)
    assert not (ds / "frames" / "clip" / "000008.png").exists()
    # the same options again: nothing to do; different ones: an error with a hint
    assert run_extraction("gray", [video], ds, resize=(32, -1), fps=5, start=0.4, end=3.0,
                          frames_format="png").sequences[0].status == "skipped"
    with pytest.raises(DatasetError, match=r"--resize 32x-1 --fps 5 --start 0.4 --end 3.*--resize 16x12.*-o"):
        run_extraction("gray", [video], ds, resize=(16, 12))


def test_resume_skips_finished_and_recomputes_unfinished(plugin: Any, videos: list[Path], tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    run_extraction("gray", videos, ds)
    before = tree(ds)
    GrayExtractor.calls = []
    report = run_extraction("gray", videos, ds)
    assert [s.status for s in report.sequences] == ["skipped", "skipped"] and GrayExtractor.calls == []

    # beta "interrupted": no meta entry, a stale extra file and a missing one
    meta = read_json(ds / "meta" / "gray.json")
    del meta["sequences"]["beta"]
    (ds / "meta" / "gray.json").write_text(json.dumps(meta, indent=2) + "\n")
    (ds / "gray" / "beta" / "000009.png").write_bytes(b"stale")
    (ds / "halves" / "beta" / "000002.png").unlink()
    report = run_extraction("gray", videos, ds)
    assert [s.status for s in report.sequences] == ["skipped", "extracted"]
    assert GrayExtractor.calls == [("beta", i) for i in range(5)]  # from frame 0
    assert tree(ds) == before


def test_second_kind_reuses_stored_frames(plugin: Any, videos: list[Path], tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    run_extraction("gray", videos, ds)
    frames_before = {p: p.stat().st_mtime_ns for p in (ds / "frames").rglob("*.jpg")}
    report = run_extraction("gray", [ds], ds, backend="sharp", options={"mode": "hard"}, overwrite=True)
    assert [s.frames for s in report.sequences] == [6, 5]
    assert {p: p.stat().st_mtime_ns for p in (ds / "frames").rglob("*.jpg")} == frames_before
    frame = read_image(ds / "frames" / "beta" / "000004.jpg")
    np.testing.assert_array_equal(read_label(ds / "gray" / "beta" / "000004.png"), frame[..., 1])
    maps = np.load(ds / "sharp_maps" / "beta" / "000004.npz")["data"]
    assert maps.shape == (48, 64, 2) and maps.dtype == np.float16
    meta = read_json(ds / "meta" / "gray.json")
    assert meta["backend"] == "sharp" and meta["outputs"] == ["gray", "sharp_maps"]
    assert not (ds / "halves").exists()  # --overwrite removed the old backend's outputs
    with pytest.raises(ConfigError, match="do not apply"):
        run_extraction("gray", [ds / "frames" / "alpha"], ds, backend="sharp", options={"mode": "hard"}, fps=5)


def test_changed_extractor_options_are_an_error(plugin: Any, videos: list[Path], tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    run_extraction("gray", videos[:1], ds, options={"scale": 0.5})
    with pytest.raises(DatasetError, match=r'"scale": 0.5.*"scale": 0.7.*--overwrite'):
        run_extraction("gray", videos, ds, options={"scale": 0.7})
    run_extraction("gray", videos, ds, options={"scale": "0.5"})  # same value from a string: adds beta
    assert set(read_json(ds / "meta" / "gray.json")["sequences"]) == {"alpha", "beta"}
    with pytest.raises(ConfigError, match="no option 'scal'.*did you mean 'scale'"):
        run_extraction("gray", videos, ds, options={"scal": 1})
    with pytest.raises(ConfigError, match="must be one of soft, hard"):
        run_extraction("gray", videos, tmp_path / "x", backend="sharp", options={"mode": "medium"})


def test_workers_give_identical_files(plugin: Any, videos: list[Path], tmp_path: Path) -> None:
    extra = write_video(videos[0].parent / "gamma.mp4", moving_pattern(t=4, seed=3))
    one = tmp_path / "one"
    two = tmp_path / "two"
    run_extraction("gray", [videos[0].parent], one, options={"invert": True})
    report = run_extraction("gray", [videos[0].parent], two, options={"invert": True}, workers=2)
    assert report.workers == 2 and [s.seq for s in report.sequences] == ["alpha", "beta", "gamma"]
    assert extra.exists() and tree(one) == tree(two)


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


# argv: DATASET INPUT...; env DELAY: seconds per frame
_RUN = ("import os, sys, test_extract_runner as t; t.register_test_plugin(); "
        "from v2vcli.extract import run_extraction; "
        "run_extraction('gray', sys.argv[2:], sys.argv[1], options={'delay': float(os.environ.get('DELAY', '0'))})")


def test_torchrun_ranks_shard_sequences(plugin: Any, videos: list[Path], tmp_path: Path) -> None:
    write_video(videos[0].parent / "gamma.mp4", moving_pattern(t=4, seed=3))
    inputs = [str(videos[0].parent)]
    assert [s.seq for s in shard(resolve_inputs(inputs), 1, 2)] == ["beta"]
    single = tmp_path / "single"
    run_extraction("gray", inputs, single)
    ranked = tmp_path / "ranked"
    procs = [subprocess.Popen([sys.executable, "-c", _RUN, str(ranked), *inputs],
                              env=_subprocess_env(RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r)),
                              stderr=subprocess.PIPE) for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert tree(ranked) == tree(single)


def test_kill9_then_rerun_gives_identical_bytes(plugin: Any, videos: list[Path], tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    run_extraction("gray", videos, reference, options={"delay": 0.15})  # delay is an option: same meta
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _RUN, str(killed), *map(str, videos)],
                            env=_subprocess_env(DELAY="0.15"), stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:  # kill once alpha is finished and beta is half written
            done = (killed / "meta" / "gray.json").is_file() and "alpha" in read_json(
                killed / "meta" / "gray.json")["sequences"]
            if done and len(list((killed / "gray" / "beta").glob("*.png"))) >= 2:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the extraction subprocess did not reach the middle of the second sequence")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "beta" not in read_json(killed / "meta" / "gray.json")["sequences"]
    GrayExtractor.calls = []
    report = run_extraction("gray", videos, killed, options={"delay": 0.15})
    assert [s.status for s in report.sequences] == ["skipped", "extracted"]
    assert GrayExtractor.calls[0] == ("beta", 0)
    assert tree(killed) == tree(reference)


def test_input_resolution(plugin: Any, videos: list[Path], tmp_path: Path) -> None:
    folder = videos[0].parent
    frames = folder / "delta"
    frames.mkdir()
    for i, f in enumerate(moving_pattern(t=3)):
        from v2vcli.io.files import write_image

        write_image(frames / f"img{i}.png", f)
    (folder / "notes.txt").write_text("ignored: not a video")
    found = resolve_inputs([folder])
    assert [(s.seq, s.kind) for s in found] == [("alpha", "video"), ("beta", "video"), ("delta", "folder")]
    ds = tmp_path / "ds"
    report = run_extraction("gray", [folder], ds, fps=6)  # a plain frame folder: --fps names its rate
    assert read_json(ds / "meta" / "frames.json")["sequences"]["delta"]["fps"] == 6.0
    assert [s.frames for s in report.sequences] == [4, 3, 3]  # 0.6 s and 0.5 s at 10 fps, resampled to 6
    assert [(s.seq, s.kind) for s in resolve_inputs([ds / "frames" / "alpha"])] == [("alpha", "dataset")]
    with pytest.raises(DatasetError, match="two inputs give sequence 'alpha'"):
        resolve_inputs([videos[0], ds / "frames" / "alpha"])
    with pytest.raises(VideoError, match="holds no videos"):
        resolve_inputs([tmp_path / "ds" / "meta"])


def test_options_as_text_checked_ranks_and_no_crop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Options typed as text convert by the config's rule; RANK/WORLD_SIZE are checked before sharding; an
    extractor that does not override sequence_crop keeps frames whole."""
    from v2vcli.distributed import dist_env
    from v2vcli.extract import build_config

    config = build_config(GrayExtractor, {"invert": "yes", "scale": "0.5"})
    assert config.invert is True and config.scale == 0.5
    assert build_config(GrayExtractor, {"invert": "off"}).invert is False
    with pytest.raises(ConfigError, match="option 'invert' must be true or false"):
        build_config(GrayExtractor, {"invert": "maybe"})
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match=r"RANK=2 is not in 0\.\.WORLD_SIZE-1"):
        dist_env()
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ConfigError, match="RANK/WORLD_SIZE must be integers"):
        dist_env()
    monkeypatch.setenv("RANK", "1")
    assert dist_env() == (1, 2)
    assert GrayExtractor().sequence_crop(np.zeros((4, 4, 3), np.uint8)) is None

def test_bad_extractor_output_is_a_plugin_error_and_leaves_no_partial_files(plugin: Any, videos: list[Path],
                                                                           tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    with pytest.raises(PluginError, match=r"returned 'broken' of shape \(3, 3\) for a 64x48 frame"):
        run_extraction("broken", videos, ds)
    assert not ds.exists()


def test_progress_bar_runs(plugin: Any, videos: list[Path], tmp_path: Path, capsys: Any) -> None:
    report = run_extraction("gray", videos[:1], tmp_path / "ds", progress=True)
    assert report.frames == 6
    assert "frames/s" in capsys.readouterr().err


# -- CLI -----------------------------------------------------------------------------------------------------------
def test_cli_extract_options_and_json(plugin: Any, cli: Any, videos: list[Path], tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    help_text = cli("extract", "gray", "--help").output
    for option in ("--scale", "--invert", "--no-invert", "--amount", "--mode", "--workers", "--resize", "--backend"):
        assert option in help_text
    result = cli("extract", "gray", *videos, "-o", ds, "--scale", "0.5", "--invert", "--resize", "32x24", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["frames"] == 11 and [s["seq"] for s in report["sequences"]] == ["alpha", "beta"]
    assert read_json(ds / "meta" / "gray.json")["options"] == {"scale": 0.5, "invert": True, "delay": 0.0}
    table = cli("extract", "gray", *videos, "-o", ds, "--scale", "0.5", "--invert", "--resize", "32x24")
    assert table.exit_code == 0 and "skipped" in table.output

    wrong = cli("extract", "gray", *videos, "-o", tmp_path / "x", "--mode", "hard")
    assert wrong.exit_code == 2 and "--mode is not an option of backend 'mean'" in wrong.output
    ok = cli("extract", "gray", *videos, "-o", tmp_path / "y", "--backend", "sharp", "--mode", "hard")
    assert ok.exit_code == 0, ok.output
    unknown = cli("extract", "gray", *videos, "-o", tmp_path / "z", "--backend", "shrap")
    assert unknown.exit_code == 1 and "did you mean 'sharp'" in unknown.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "truncated"])
def test_cli_broken_video_is_one_line_error_without_output(plugin: Any, cli: Any, tmp_path: Path,
                                                           case: str) -> None:
    good = write_video(tmp_path / "good.mp4", moving_pattern(t=20))
    path = tmp_path / f"{case}.mp4"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "corrupt":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    ds = tmp_path / "ds"
    result = cli("extract", "gray", good, path, "-o", ds)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and path.name in lines[0]
    assert not ds.exists()  # nothing written, not even the good video's frames


def test_cli_without_registered_extractors(cli: Any) -> None:
    import importlib

    from v2vcli.plugins import get_plugin_manager
    from v2vcli.registry import Registry, reset_registry

    modules = [importlib.import_module(m) for m in ("v2v_plugins.core", "v2v_plugins.extract")]
    reset_registry(Registry(get_plugin_manager(modules, load_entry_points=False)))
    result = cli("extract", "anything", "video.mp4")
    assert result.exit_code == 1 and "no extractor is registered" in result.stderr


def test_pipeline_keeps_order_runs_the_extractor_in_the_caller_and_stops_on_errors() -> None:
    """The three-stage pipeline inside a sequence: every frame once, in order, the extractor in the calling thread;
    an exception in any stage is raised by the caller after both helper threads have stopped, and nothing is
    written after it."""
    import threading

    from v2vcli.extract.pipeline import run_pipeline

    caller = threading.get_ident()
    seen: list[int] = []
    written: list[int] = []

    def process(i: int, f: np.ndarray) -> dict[str, Any]:
        assert threading.get_ident() == caller
        seen.append(i)
        return {"v": int(f[0, 0, 0])}

    frames = (np.full((2, 2, 3), i, np.uint8) for i in range(50))
    n = run_pipeline(frames, lambda i, f: f + 1, process, lambda i, r: written.append(r["v"]))
    assert n == 50 and seen == list(range(50)) and written == [i + 1 for i in range(50)]

    def bad_frames() -> Any:
        yield np.zeros((2, 2, 3), np.uint8)
        raise VideoError("broken at frame 1")

    with pytest.raises(VideoError, match="frame 1"):
        run_pipeline(bad_frames(), lambda i, f: f, lambda i, f: {}, lambda i, r: None)

    def failing_process(i: int, f: np.ndarray) -> dict[str, Any]:
        if i == 3:
            raise PluginError("model failed")
        return {}

    written.clear()
    with pytest.raises(PluginError, match="model failed"):
        run_pipeline((np.zeros((2, 2, 3), np.uint8) for _ in range(20)), lambda i, f: f, failing_process,
                  lambda i, r: written.append(i))
    assert max(written, default=-1) < 3
    before = threading.active_count()

    def failing_write(i: int, r: Any) -> None:
        if i == 5:
            raise OSError(28, "No space left on device")
        written.append(i)

    written.clear()
    with pytest.raises(OSError, match="No space"):
        run_pipeline((np.zeros((2, 2, 3), np.uint8) for _ in range(100)), lambda i, f: f, lambda i, f: {},
                  failing_write)
    assert written == [0, 1, 2, 3, 4]
    assert threading.active_count() <= before  # both helper threads have finished


def test_real_torchrun_two_ranks_through_the_cli(tmp_path: Path) -> None:
    """README's scale-out command, for real: torchrun starts 2 ranks of `v2v extract edges`; each takes its shard
    and the dataset equals a single-process run's."""
    src = tmp_path / "videos"
    src.mkdir()
    for i, name in enumerate(("a", "b", "c")):
        write_video(src / f"{name}.mp4", moving_pattern(t=4, seed=i))
    v2v = Path(sys.executable).parent / "v2v"
    single, ranked = tmp_path / "single", tmp_path / "ranked"
    subprocess.run([str(v2v), "extract", "edges", str(src), "-o", str(single)], check=True,
                   env=_subprocess_env(), capture_output=True, timeout=120)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--no-python",
                           str(v2v), "extract", "edges", str(src), "-o", str(ranked)], env=_subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert tree(ranked) == tree(single)
    assert sorted(read_json(ranked / "meta" / "edges.json")["sequences"]) == ["a", "b", "c"]
