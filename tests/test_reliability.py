"""Reliability pass (issue 15), part 1: a table of bad inputs across every command.

Each case runs the real CLI and must give exactly one ``Error:`` line that names the problem, a non-zero exit, no
traceback, and leave no output behind. Part 2 (tests/test_interruption.py) kills commands at random points and
fills the disk.
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "configs" / "tiny.yaml"
FAST = ["--device", "cpu", "--set", "data.num_workers=0"]


class _Pwned:
    """A pickle that runs code when loaded: loading it must be refused, not executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.mkdir, (str(self.marker),))


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every bad input once per module (a world dataset and a one-step run are built once)."""
    import cv2

    from v2v_plugins.world.dataset import write_world
    from v2vcli.cli import build_app
    from v2vcli.io.video import write_video

    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("bad")
    f: dict[str, Path] = {"root": root}
    rng = np.random.default_rng(0)
    frames = [cv2.GaussianBlur(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), (7, 7), 0) for _ in range(12)]
    good = write_video(root / "good.mp4", frames, 10.0) and root / "good.mp4"
    f["good_video"] = good
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(rng.integers(0, 255, 4000, dtype=np.uint8)))
    (root / "empty.mp4").write_bytes(b"")
    (root / "truncated.mp4").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    (root / "notes.txt").write_text("not a video")
    (root / "mixed").mkdir()
    cv2.imwrite(str(root / "mixed" / "000000.png"), frames[0])
    (root / "mixed" / "readme.md").write_text("# not a frame")
    (root / "broken_img").mkdir()
    (root / "broken_img" / "000000.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    for k, v in {"corrupt": "corrupt.mp4", "empty": "empty.mp4", "truncated": "truncated.mp4",
                 "text": "notes.txt", "mixed": "mixed", "broken_img": "broken_img"}.items():
        f[k] = root / v

    world = write_world(root / "world", seed=0, size=(64, 64), frames=6, sequences=3, val=1, progress=False)
    f["world"] = world
    for case in ("missing_frame", "label_id", "size", "count"):
        shutil.copytree(world, root / f"ds_{case}")
        f[f"ds_{case}"] = root / f"ds_{case}"
    (root / "ds_missing_frame" / "frames" / "world_000" / "000003.jpg").unlink()
    lab = cv2.imread(str(root / "ds_label_id" / "seg" / "world_000" / "000002.png"), cv2.IMREAD_UNCHANGED)
    lab[5:9, 5:9] = 200
    cv2.imwrite(str(root / "ds_label_id" / "seg" / "world_000" / "000002.png"), lab)
    seg = root / "ds_size" / "seg" / "world_001" / "000001.png"
    cv2.imwrite(str(seg), cv2.resize(cv2.imread(str(seg), cv2.IMREAD_UNCHANGED), (32, 32),
                                     interpolation=cv2.INTER_NEAREST))
    (root / "ds_count" / "seg" / "world_000" / "000005.png").unlink()
    (root / "not_a_dataset").mkdir()
    (root / "not_a_dataset" / "x.txt").write_text("x")
    f["not_a_dataset"] = root / "not_a_dataset"

    (root / "broken.yaml").write_text("model: [unclosed\n")
    (root / "unknown_key.yaml").write_text("model:\n  ngff: 8\n")
    (root / "wrong_type.yaml").write_text("train:\n  max_steps: many\n")
    (root / "unknown_section.yaml").write_text("trian:\n  max_steps: 3\n")
    for k in ("broken", "unknown_key", "wrong_type", "unknown_section"):
        f[f"cfg_{k}"] = root / f"{k}.yaml"

    (root / "weights").mkdir()
    (root / "weights" / "wrong.pth").write_bytes(b"not the vgg19 weights")
    f["wrong_weights"] = root / "weights" / "wrong.pth"

    # a real one-step run, then broken copies of its checkpoint
    run = root / "run"
    result = CliRunner().invoke(build_app(), ["train", "--config", str(TINY), "--data", str(world), "--run-dir",
                                              str(run), "--max-steps", "1", *FAST], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    f["run"] = run
    ckpt = next((run / "checkpoints").iterdir())
    for case in ("not_safetensors", "truncated_ckpt", "pickled_code"):
        shutil.copytree(run, root / f"run_{case}")
        f[f"run_{case}"] = root / f"run_{case}"
    (root / "run_not_safetensors" / "checkpoints" / ckpt.name / "weights.safetensors").write_bytes(b"PK\x03\x04zip")
    w = root / "run_truncated_ckpt" / "checkpoints" / ckpt.name / "weights.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    f["marker"] = root / "PWNED"
    with open(root / "run_pickled_code" / "checkpoints" / ckpt.name / "training_state.pt", "wb") as fh:
        pickle.dump({"step": _Pwned(f["marker"])}, fh)
    return f


@dataclass
class Case:
    id: str
    argv: Callable[[dict[str, Path], Path], list[Any]]
    needle: str
    #: paths (relative to the test's tmp_path) that must not exist afterwards
    absent: list[str] = field(default_factory=lambda: ["out"])
    code: int | None = None  # expected exit code (None: any non-zero)


def _train(data: str, *extra: Any) -> Callable[[dict[str, Path], Path], list[Any]]:
    return lambda f, t: ["train", "--config", TINY, "--data", f[data], "--run-dir", t / "out", "--max-steps", 2,
                         *FAST, *extra]


CASES = [
    # -- extract: videos and frame folders
    Case("extract-corrupt-video", lambda f, t: ["extract", "edges", f["corrupt"], "-o", t / "out"], "corrupt"),
    Case("extract-empty-video", lambda f, t: ["extract", "edges", f["empty"], "-o", t / "out"], "empty"),
    Case("extract-truncated-video", lambda f, t: ["extract", "edges", f["truncated"], "-o", t / "out"], "truncated"),
    Case("extract-unsupported-file", lambda f, t: ["extract", "edges", f["text"], "-o", t / "out"],
         "not a supported video"),
    Case("extract-missing-input", lambda f, t: ["extract", "edges", t / "nope.mp4", "-o", t / "out"], "does not exist"),
    Case("extract-folder-with-non-images", lambda f, t: ["extract", "edges", f["mixed"], "-o", t / "out"],
         "non-image"),
    Case("extract-undecodable-frame", lambda f, t: ["extract", "edges", f["broken_img"], "-o", t / "out"],
         "000000.png"),
    Case("extract-unknown-backend", lambda f, t: ["extract", "edges", f["good_video"], "-o", t / "out", "--backend",
                                                  "sobel"], "valid: canny"),
    Case("extract-unknown-kind", lambda f, t: ["extract", "depth", f["good_video"], "-o", t / "out"],
         "No such command", code=2),
    Case("extract-negative-workers", lambda f, t: ["extract", "edges", f["good_video"], "-o", t / "out", "--workers",
                                                   "-2"], "--workers", code=2),
    Case("extract-bad-resize", lambda f, t: ["extract", "edges", f["good_video"], "-o", t / "out", "--resize",
                                             "0x10"], "positive"),
    Case("extract-start-after-end", lambda f, t: ["extract", "edges", f["good_video"], "-o", t / "out", "--start",
                                                  "2", "--end", "1"], "--start"),
    Case("extract-unknown-option-value", lambda f, t: ["extract", "edges", f["good_video"], "-o", t / "out",
                                                       "--blur", "lots"], "--blur", code=2),
    # -- dataset
    Case("dataset-check-not-a-dataset", lambda f, t: ["dataset", "check", f["not_a_dataset"]], "not a v2v dataset",
         absent=[]),
    Case("dataset-split-missing", lambda f, t: ["dataset", "split", t / "nope"], "", absent=["nope"]),
    Case("dataset-import-wrong-layout", lambda f, t: ["dataset", "import-vid2vid", f["not_a_dataset"], t / "out"],
         "train_A"),
    # -- config and model
    Case("config-broken-yaml", lambda f, t: ["config", "show", "--config", f["cfg_broken"]], "cannot parse",
         absent=[]),
    Case("config-unknown-key", lambda f, t: ["model", "summary", "--config", f["cfg_unknown_key"]], "did you mean 'ngf'",
         absent=[]),
    Case("config-wrong-type", lambda f, t: ["config", "show", "--config", f["cfg_wrong_type"]], "must be an integer",
         absent=[]),
    Case("config-unknown-section", lambda f, t: ["config", "show", "--config", f["cfg_unknown_section"]],
         "did you mean 'train'", absent=[]),
    Case("config-missing-file", lambda f, t: ["config", "show", "--config", t / "none.yaml"], "does not exist",
         absent=[]),
    Case("model-bad-size", lambda f, t: ["model", "summary", "--config", TINY, "--set", "model.label_nc=4",
                                         "--size", "huge"], "--size", absent=[]),
    # -- train: data, devices, counts, checkpoints
    Case("train-missing-dataset", _train("not_a_dataset"), "not a v2v dataset"),
    Case("train-missing-frame", _train("ds_missing_frame"), "frame 3"),
    Case("train-label-id-outside-label-set", _train("ds_label_id"), "label id 200"),
    Case("train-mismatched-sizes", _train("ds_size"), "32x32"),
    Case("train-mismatched-counts", _train("ds_count"), "000005.png"),
    Case("train-bad-set-key", _train("world", "--set", "optim.lrr=1"), "did you mean 'lr'"),
    Case("train-bad-set-type", _train("world", "--set", "data.batch_size=two"), "data.batch_size"),
    Case("train-negative-steps", lambda f, t: ["train", "--config", TINY, "--data", f["world"], "--run-dir",
                                               t / "out", "--max-steps", -3, *FAST], "max_steps"),
    Case("train-zero-gpus", _train("world", "--gpus", "0"), "--gpus"),
    Case("train-syncbatch-on-cpu-ranks", _train("world", "--gpus", "2", "--set", "model.norm=syncbatch"),
         "syncbatch needs CUDA"),
    Case("train-cuda-without-cuda", lambda f, t: ["train", "--config", TINY, "--data", f["world"], "--run-dir",
                                                  t / "out", "--device", "cuda"], "CUDA"),
    Case("train-resume-without-run", _train("world", "--resume"), "no checkpoint"),
    Case("train-init-from-not-safetensors", _train("world", "--init-from", "{run_not_safetensors}"), "not a readable"),
    Case("train-init-from-truncated", _train("world", "--init-from", "{run_truncated_ckpt}"), "truncated"),
    # -- synthesize
    Case("synthesize-checkpoint-not-safetensors", lambda f, t: ["synthesize", "--checkpoint", f["run_not_safetensors"],
                                                                "--labels", f["world"], "-o", t / "out/"],
         "not a readable"),
    Case("synthesize-truncated-checkpoint", lambda f, t: ["synthesize", "--checkpoint", f["run_truncated_ckpt"],
                                                          "--labels", f["world"], "-o", t / "out/"], "corrupt"),
    Case("synthesize-missing-checkpoint", lambda f, t: ["synthesize", "--checkpoint", t / "none", "--labels",
                                                        f["world"], "-o", t / "out/"], "does not exist"),
    Case("synthesize-missing-labels", lambda f, t: ["synthesize", "--checkpoint", f["run"], "--labels", t / "none",
                                                    "-o", t / "out/"], "does not exist"),
    Case("synthesize-corrupt-video-labels", lambda f, t: ["synthesize", "--checkpoint", f["run"], "--labels",
                                                          f["corrupt"], "-o", t / "out.mp4"], "corrupt"),
    Case("synthesize-unknown-remap-class", lambda f, t: ["synthesize", "--checkpoint", f["run"], "--labels",
                                                         f["world"], "-o", t / "out/", "--remap", "unicorn:road"],
         "unicorn"),
    Case("synthesize-zero-batch", lambda f, t: ["synthesize", "--checkpoint", f["run"], "--labels", f["world"], "-o",
                                                t / "out/", "--batch-sequences", "0"], "--batch-sequences"),
    Case("synthesize-cuda-without-cuda", lambda f, t: ["synthesize", "--checkpoint", f["run"], "--labels", f["world"],
                                                       "-o", t / "out/", "--device", "cuda"], "CUDA"),
    Case("synthesize-corrupt-first-frame", lambda f, t: ["synthesize", "--checkpoint", f["run"], "--labels",
                                                         f["world"], "-o", t / "out/", "--first-frame",
                                                         f["broken_img"] / "000000.png"], "--first-frame"),
    # -- predict
    Case("predict-not-a-predictor", lambda f, t: ["predict", "--predictor", f["run"], "--context",
                                                  f["world"] / "seg" / "world_002", "--horizon", "2", "-o",
                                                  t / "out.mp4"], "predict"),
    Case("predict-missing-context", lambda f, t: ["predict", "--predictor", f["run"], "--context", t / "none",
                                                  "--horizon", "2", "-o", t / "out.mp4"], "none"),
    Case("predict-negative-horizon", lambda f, t: ["predict", "--predictor", f["run"], "--context",
                                                   f["world"] / "seg" / "world_002", "--horizon", "-1", "-o",
                                                   t / "out.mp4"], "horizon"),
    Case("predict-horizon-beyond-maximum", lambda f, t: ["predict", "--predictor", f["run"], "--context",
                                                         f["world"] / "seg" / "world_002", "--horizon", "1000000000",
                                                         "-o", t / "out.mp4"], "at most"),
    # -- issue 22: non-finite and out-of-range values, outputs that are not v2v's
    Case("config-infinite-lr", lambda f, t: ["config", "show", "--config", TINY, "--set", "optim.lr=.inf"],
         "optim.lr must be a finite number", absent=[]),
    Case("config-nan-float", lambda f, t: ["config", "show", "--config", TINY, "--set", "loss.lambda_feat=.nan"],
         "must be a finite number", absent=[]),
    Case("config-int-beyond-range", lambda f, t: ["model", "summary", "--config", TINY, "--set", "model.label_nc=4",
                                                  "--set", "model.ngf=99999999999999999999999"],
         "model.ngf must be between", absent=[]),
    Case("train-infinite-lr", _train("world", "--set", "optim.lr=.inf"), "optim.lr must be a finite number"),
    Case("extract-infinite-fps", lambda f, t: ["extract", "edges", f["good_video"], "-o", t / "out", "--fps", "inf"],
         "--fps must be a finite number"),
    Case("extract-nan-end", lambda f, t: ["extract", "edges", f["good_video"], "-o", t / "out", "--end", "nan"],
         "--end must be a finite number"),
    Case("extract-output-is-a-file", lambda f, t: ["extract", "edges", f["good_video"], "-o", f["text"]],
         "is a file", absent=[]),
    Case("synthesize-png-into-a-folder-v2v-did-not-write",
         lambda f, t: ["synthesize", "--checkpoint", f["run"], "--labels", f["world"] / "seg" / "world_002",
                       "--format", "png", "-o", f["not_a_dataset"], "--first-frames", "empty"], "--overwrite", absent=[]),
    Case("synthesize-png-output-is-a-file",
         lambda f, t: ["synthesize", "--checkpoint", f["run"], "--labels", f["world"] / "seg" / "world_002",
                       "--format", "png", "-o", f["text"], "--first-frames", "empty"], "is a file", absent=[]),
    # -- weights
    Case("weights-missing", lambda f, t: ["weights", "path", "vgg19"], "not found", absent=[]),
    Case("weights-wrong-hash", lambda f, t: ["weights", "verify", "vgg19", "--path", f["wrong_weights"]], "sha256",
         absent=[]),
    Case("weights-unknown-name", lambda f, t: ["weights", "path", "vgg91"], "did you mean", absent=[]),
    # -- eval
    Case("eval-corrupt-video", lambda f, t: ["eval", "psnr", "--real", f["corrupt"], "--fake", f["good_video"]],
         "corrupt", absent=[]),
    Case("eval-missing-fake", lambda f, t: ["eval", "ssim", "--real", f["good_video"], "--fake", t / "none"],
         "does not exist", absent=[]),
    Case("eval-all-missing-real", lambda f, t: ["eval", "all", "--real", t / "none", "--fake", f["good_video"],
                                                "-o", t / "out"], "does not exist"),
    # -- demo
    Case("demo-negative-minutes", lambda f, t: ["demo", "--minutes", "-1", "--out", t / "out"], "--minutes"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_error_line(case: Case, bad: dict[str, Path], cli: Any, tmp_path: Path) -> None:
    argv = [str(a).format(**{k: str(v) for k, v in bad.items()}) for a in case.argv(bad, tmp_path)]
    result = cli(*argv)
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert result.exit_code != 0, result.output
    if case.code is not None:
        assert result.exit_code == case.code, result.output
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    assert case.needle in errors[0], errors[0]
    assert "Traceback" not in result.output
    for rel in case.absent:
        assert not (tmp_path / rel).exists(), f"{rel} was left behind: {sorted(p.name for p in tmp_path.iterdir())}"
    # inputs and folders v2v did not write are untouched
    assert (bad["not_a_dataset"] / "x.txt").read_text() == "x"
    assert bad["text"].read_text() == "not a video"


def test_pickled_code_in_a_checkpoint_is_refused_without_running(bad: dict[str, Path], cli: Any) -> None:
    run = bad["run_pickled_code"]
    result = cli("train", "--config", TINY, "--data", bad["world"], "--run-dir", run, "--max-steps", 2, "--resume",
                 *FAST)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert "Traceback" not in result.output
    assert not bad["marker"].exists()  # the pickle's code never ran
    assert not list((run / "checkpoints").glob("step_00000002*"))


def test_case_table_covers_every_command() -> None:
    commands = {c.argv(_AnyPath(), Path("t"))[0] for c in CASES}
    assert {"extract", "dataset", "config", "model", "train", "synthesize", "predict", "weights", "eval",
            "demo"} <= commands
    assert len(CASES) >= 30


class _AnyPath(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> Path:
        return Path(key)
