"""`v2v synthesize` first frames (issue 19, point 5), as the official vid2vid test makes them.

A vid2vid model trained with real history frames (``model.history: real``, L = n_frames_G - 1 = 2 for the tiny
preset) needs a source for frames 0..L-1: a single-image generator (``--first-frame-model RUN``, a trained perframe
run), the input's real frames (``--first-frames real``) or an empty history (``--first-frames empty``). A model
trained from an empty history starts from nothing (``auto``). Tiny runs on the synthetic world, one torch thread.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "examples" / "configs"
L = 2  # tiny.yaml: n_frames_G = 3


pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one CPU thread (conftest)


def _save(run: Path, config: Path, raw: dict[str, Any], label_set: Any) -> Path:
    """An untrained checkpoint of ``config`` merged with ``raw``, saved through the checkpoint API."""
    from v2vcli.checkpoint import CheckpointMeta, save_checkpoint
    from v2vcli.config import build_config, load_yaml, merge, to_dict
    from v2vcli.registry import get_registry

    cfg = build_config(merge(load_yaml(config), raw))
    model = get_registry().get_model(cfg.model.name)(cfg, label_set, "cpu")
    meta = CheckpointMeta(model=cfg.model.name, config=to_dict(cfg), label_set=label_set.to_dict(),
                          networks=["G"])
    save_checkpoint(run, 1, model.weights(), meta, {"format": 1})
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A world (3 sequences of 8 frames), vid2vid and perframe runs trained 2 steps on it through the CLI, and
    checkpoints saved through the API: a vid2vid trained from an empty history, perframe models on other inputs or
    another size."""
    import torch
    from typer.testing import CliRunner

    from v2v_plugins.world import write_world
    from v2vcli.cli import build_app
    from v2vcli.data.layout import Dataset

    root = tmp_path_factory.mktemp("first_frames")
    world = write_world(root / "world", seed=0, size=(128, 64), frames=8, sequences=3, val=1)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, preset in (("vid2vid", "tiny.yaml"), ("perframe", "tiny_perframe.yaml")):
            res = CliRunner().invoke(build_app(), ["train", "--config", str(CONFIGS / preset), "--data", str(world),
                                                   "--run-dir", str(root / name), "--max-steps", "2", "--device",
                                                   "cpu", "--set", "data.num_workers=0"], catch_exceptions=False)
            assert res.exit_code == 0, res.output
    finally:
        torch.set_num_threads(before)
    labels = Dataset(world).label_set("seg")
    pf = {"model": {"name": "perframe", "fg": False, "fg_classes": []}}
    return {
        "world": world, "vid2vid": root / "vid2vid", "perframe": root / "perframe",
        "empty": _save(root / "empty", CONFIGS / "tiny.yaml", {"model": {"history": "empty"}}, labels),
        "pf_seg_only": _save(root / "pf_seg_only", CONFIGS / "tiny_perframe.yaml",
                             {**pf, "data": {"inputs": ["seg"]}}, labels),
        "pf_small": _save(root / "pf_small", CONFIGS / "tiny_perframe.yaml", {**pf, "data": {"size": [32, 32]}},
                          labels),
    }


def _run(**kw: Any) -> Any:
    from v2v_plugins.synthesize import SynthesisOptions, synthesize

    kw.setdefault("device", "cpu")
    kw.setdefault("format", "png")
    return synthesize(SynthesisOptions(**kw))


def _pngs(folder: Path) -> list[np.ndarray]:
    from v2vcli.io.files import read_image

    return [read_image(p) for p in sorted(folder.glob("*.png"))]


def _real(world: Path, seq: str, i: int) -> np.ndarray:
    """Real frame i of ``seq`` as the 64x64 model sees it: the 128x64 frame's centre crop."""
    from v2vcli.io.files import read_image

    return read_image(next((world / "frames" / seq).glob(f"{i:06d}.*")))[:, 32:96]


def _diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def _one_line_error(result: Any, *needles: str) -> str:
    assert result.exit_code == 1, result.output
    errors = [x for x in result.output.splitlines() if "Error" in x]  # log lines (warnings) may come before it
    assert len(errors) == 1 and errors[0].startswith("Error: "), result.output
    line = errors[0]
    assert result.output.rstrip().endswith(line), result.output
    for n in needles:
        assert n in line, line
    return line


# -- auto ---------------------------------------------------------------------------------------------------------
def test_auto_on_a_real_history_model_is_an_error_naming_the_three_sources(cli: Any, runs: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("synthesize", "--checkpoint", runs["vid2vid"], "--labels", runs["world"], "-o", out, "--device",
                 "cpu")
    line = _one_line_error(result, "model.history: real", "--first-frame-model RUN", "perframe",
                           "--first-frames real", "--first-frames empty")
    assert "2 real history frames" in line
    assert not out.exists()


def test_auto_on_an_empty_history_model_starts_from_nothing(runs: dict[str, Path], tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from v2v_plugins.synthesize.engine import load_synthesizer
    from v2v_plugins.synthesize.sources import resolve_labels

    with caplog.at_level(logging.WARNING):
        report = _run(checkpoint=runs["empty"], labels=runs["world"], output=tmp_path / "auto")
    assert (report.first_frames, report.first_frame_count) == ("empty", 0)
    assert report.to_dict()["first_frames"] == {"source": "empty", "frames": 0, "model": None}
    assert not [r for r in caplog.records if "first-frames" in r.getMessage()]
    # frame 0 is the generator's output from an empty history
    synth = load_synthesizer(runs["empty"], device="cpu")
    (seq,) = resolve_labels(runs["world"]).sequences
    synth.generator.reset()
    frame0 = next(iter(synth.reader(seq)))
    from v2vcli.runtime import to_uint8

    expect = to_uint8(synth.generator.step(synth.batch([frame0])).frame)[0]
    assert _diff(_pngs(tmp_path / "auto")[0], expect) <= 1


# -- real ---------------------------------------------------------------------------------------------------------
def test_real_first_frames_are_the_input_frames_and_the_history(runs: dict[str, Path], tmp_path: Path) -> None:
    report = _run(checkpoint=runs["vid2vid"], labels=runs["world"], output=tmp_path / "real", first_frames="real")
    assert (report.first_frames, report.first_frame_count) == ("real", L)
    (seq,) = [s.name for s in report.sequences]
    real = _pngs(tmp_path / "real")
    assert len(real) == 8
    for i in range(L):
        assert _diff(real[i], _real(runs["world"], seq, i)) <= 1
    assert _diff(real[L], _real(runs["world"], seq, L)) > 1  # frame L on is generated
    _run(checkpoint=runs["vid2vid"], labels=runs["world"], output=tmp_path / "empty", first_frames="empty")
    empty = _pngs(tmp_path / "empty")
    assert not np.array_equal(real[L], empty[L])  # generated from the real history, not from nothing


def test_real_on_an_empty_history_model_takes_frame_zero(runs: dict[str, Path], tmp_path: Path) -> None:
    report = _run(checkpoint=runs["empty"], labels=runs["world"], output=tmp_path / "o", first_frames="real")
    assert (report.first_frames, report.first_frame_count) == ("real", 1)
    frames = _pngs(tmp_path / "o")
    assert _diff(frames[0], _real(runs["world"], report.sequences[0].name, 0)) <= 1
    assert _diff(frames[1], _real(runs["world"], report.sequences[0].name, 1)) > 1


def test_real_without_real_frames_is_an_error_and_writes_nothing(cli: Any, runs: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    labels_only = tmp_path / "labels_only"
    shutil.copytree(runs["world"], labels_only, ignore=shutil.ignore_patterns("frames"))
    out = tmp_path / "out"
    result = cli("synthesize", "--checkpoint", runs["vid2vid"], "--labels", labels_only, "-o", out, "--device", "cpu",
                 "--first-frames", "real")
    _one_line_error(result, "--first-frames real", "no real frames", "world_002", "--first-frame-model RUN",
                    "--first-frames empty")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# -- model --------------------------------------------------------------------------------------------------------
def test_model_first_frames_are_the_perframe_runs_frames(cli: Any, runs: dict[str, Path], tmp_path: Path) -> None:
    """Frames 0..L-1 are what the perframe run alone makes for them; frame L on, vid2vid generates from them."""
    import torch

    from v2v_plugins.synthesize.engine import load_synthesizer
    from v2vcli.runtime import to_uint8
    from v2v_plugins.synthesize.sources import resolve_labels

    alone = _run(checkpoint=runs["perframe"], labels=runs["world"], split="train", output=tmp_path / "alone/")
    assert alone.first_frames == "empty"  # a perframe model has no history: auto keeps today's behaviour
    result = cli("synthesize", "--checkpoint", runs["vid2vid"], "--labels", runs["world"], "--split", "train",
                 "-o", tmp_path / "model/", "--format", "png", "--device", "cpu", "--batch-sequences", "2",
                 "--first-frame-model", runs["perframe"])
    assert result.exit_code == 0, result.output
    assert "first frames: model" in result.output
    synth = load_synthesizer(runs["vid2vid"], device="cpu")
    ff = load_synthesizer(runs["perframe"], device="cpu")
    seqs = resolve_labels(runs["world"], split="train").sequences
    assert len(seqs) == 2
    for seq in seqs:
        ours, theirs = _pngs(tmp_path / "model" / seq.name), _pngs(tmp_path / "alone" / seq.name)
        assert len(ours) == len(theirs) == 8
        for i in range(L):
            assert _diff(ours[i], theirs[i]) <= 1, i
        assert _diff(ours[L], theirs[L]) > 1  # vid2vid's own from frame L
        # frame L is vid2vid's step from a history of the perframe frames
        synth.generator.reset()
        frames = iter(synth.reader(seq))
        for _ in range(L):
            inputs = synth.batch([next(frames)])
            synth.generator.step(inputs, real=ff.generator.step(inputs).frame)
        with torch.no_grad():
            expect = to_uint8(synth.generator.step(synth.batch([next(frames)])).frame)[0]
        assert _diff(ours[L], expect) <= 1


def test_first_frames_model_via_the_library(runs: dict[str, Path], tmp_path: Path) -> None:
    report = _run(checkpoint=runs["vid2vid"], labels=runs["world"], output=tmp_path / "o", first_frames="model",
                  first_frame_model=runs["perframe"])
    assert (report.first_frames, report.first_frame_count) == ("model", L)
    assert report.first_frame_model is not None and str(runs["perframe"]) in report.first_frame_model
    assert report.to_dict()["first_frames"]["source"] == "model"


@pytest.mark.parametrize("run, needles", [
    ("pf_seg_only", ("conditioned on seg but the model on seg, inst",)),
    ("pf_small", ("trained at 32x32 but the model at 64x64",)),
    ("vid2vid", ("'vid2vid' run that itself starts from 2 real frame(s)", "perframe")),
])
def test_incompatible_first_frame_model_is_an_error(cli: Any, runs: dict[str, Path], tmp_path: Path, run: str,
                                                    needles: tuple[str, ...]) -> None:
    out = tmp_path / "out"
    result = cli("synthesize", "--checkpoint", runs["vid2vid"], "--labels", runs["world"], "-o", out, "--device",
                 "cpu", "--first-frame-model", runs[run])
    _one_line_error(result, "--first-frame-model", *needles)
    assert not out.exists()


# -- empty, image and option errors -------------------------------------------------------------------------------
def test_empty_on_a_real_history_model_warns_and_hallucinates(runs: dict[str, Path], tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        report = _run(checkpoint=runs["vid2vid"], labels=runs["world"], output=tmp_path / "o", first_frames="empty")
    assert (report.first_frames, report.first_frame_count) == ("empty", 0)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("--first-frames empty" in m and "never saw in training" in m for m in warned), warned
    frames = _pngs(tmp_path / "o")
    assert _diff(frames[0], _real(runs["world"], report.sequences[0].name, 0)) > 1


def test_image_first_frame_is_frame_zero(runs: dict[str, Path], tmp_path: Path) -> None:
    from v2vcli.io.files import write_image

    img = np.random.default_rng(5).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    write_image(tmp_path / "first.png", img)
    report = _run(checkpoint=runs["vid2vid"], labels=runs["world"], output=tmp_path / "o",
                  first_frame=tmp_path / "first.png")
    assert (report.first_frames, report.first_frame_count) == ("image", 1)
    frames = _pngs(tmp_path / "o")
    assert np.array_equal(frames[0], img) and not np.array_equal(frames[1], img)


@pytest.mark.parametrize("args, needle", [
    (["--first-frames", "bogus"], "--first-frames must be one of auto, model, real, empty, got 'bogus'"),
    (["--first-frames", "model"], "--first-frames model needs --first-frame-model RUN"),
    (["--first-frames", "real", "--first-frame-model", "{perframe}"], "contradicts --first-frames real"),
    (["--first-frames", "empty", "--first-frame", "{image}"], "leave out --first-frames empty"),
    (["--first-frame-model", "{perframe}", "--first-frame", "{image}"], "two sources of the first frames"),
    (["--first-frame-model", "{missing}"], "--first-frame-model: "),
])
def test_first_frame_option_errors(cli: Any, runs: dict[str, Path], tmp_path: Path, args: list[str],
                                   needle: str) -> None:
    from v2vcli.io.files import write_image

    write_image(tmp_path / "first.png", np.zeros((64, 64, 3), np.uint8))
    subst = {"perframe": str(runs["perframe"]), "image": str(tmp_path / "first.png"), "missing": str(tmp_path / "no")}
    out = tmp_path / "out"
    result = cli("synthesize", "--checkpoint", runs["vid2vid"], "--labels", runs["world"], "-o", out, "--device",
                 "cpu", *[a.format(**subst) for a in args])
    _one_line_error(result, needle)
    assert not out.exists()
