"""Issue 23: a training run without a terminal logs a plain progress line (step, losses, frames/s, ETA) every
``log_every`` steps or every 30 s, instead of nothing for minutes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from v2vcli.model import StepResult


def _logger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_every: int) -> object:
    import v2v_plugins.train.logging as tl

    monkeypatch.setattr(tl.sys.stderr, "isatty", lambda: False, raising=False)
    return tl.TrainLogger(tmp_path, log_every=log_every, total_steps=100, start_step=0, device=torch.device("cpu"),
                          tensorboard=False, resume=False)


def test_plain_lines_every_n_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="v2v_plugins.train.logging")
    logger = _logger(tmp_path, monkeypatch, log_every=5)
    assert logger.plain_lines  # type: ignore[attr-defined]
    for step in range(1, 11):
        logger.step(step, 1, StepResult({"G_total": 2.5, "D_total": 0.75, "G_vgg": 1.0}, frames=4), {"G": 2e-4})
    logger.close()  # type: ignore[attr-defined]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(lines) == 2 and lines[0].startswith("step 5/100 (5%) epoch 1 | D_total 0.75 G_total 2.5 | ")
    assert "frames/s" in lines[1] and "ETA " in lines[1] and "G_vgg" not in lines[1]


def test_plain_line_after_30_seconds_even_between_log_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    import v2v_plugins.train.logging as tl

    caplog.set_level(logging.INFO, logger="v2v_plugins.train.logging")
    clock = [1000.0]
    monkeypatch.setattr(tl.time, "perf_counter", lambda: clock[0])
    logger = _logger(tmp_path, monkeypatch, log_every=1000)
    for step in range(1, 5):
        clock[0] += 12.0  # a slow step: 12 s
        logger.step(step, 1, StepResult({"G_total": 1.0, "D_total": 1.0}, frames=6), {})
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    # 36 s after the start at step 3 (frames/s over those 36 s: 18 / 36), ETA from 12 s per step for 97 steps
    assert lines == ["step 3/100 (3%) epoch 1 | D_total 1 G_total 1 | 0.5 frames/s | ETA 19m24s"]
    logger.close()  # type: ignore[attr-defined]


def test_duration_format() -> None:
    from v2v_plugins.train.logging import _duration

    assert [_duration(s) for s in (41, 725, 10920)] == ["41s", "12m05s", "3h02m"]
