"""benchmarks/gpu_check.sh (issue 25): its CPU-checkable plan runs (--dry-run) and writes the JSON report; on a
machine without CUDA the real run refuses with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def test_dry_run_runs_every_step_and_writes_the_report(tmp_path: Path) -> None:
    env = dict(os.environ, V2V_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(tmp_path / "out"), "--python",
                           sys.executable], cwd=ROOT, capture_output=True, text=True, timeout=170, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["dry_run"] and report["ok"] and "dry run" in report["device"]
    steps = {s["step"]: s for s in report["steps"]}
    assert list(steps) == ["gpu_tests", "bench_model", "bench_synthesize", "bench_train"]
    assert all(s["rc"] == 0 for s in steps.values())
    # the GPU tests are collected (all six kinds of check are there), the benchmarks gave their JSON
    assert "test_gpu.py" in steps["gpu_tests"]["log_tail"] and "tests collected" in steps["gpu_tests"]["log_tail"]
    for name in ("bench_model", "bench_synthesize", "bench_train"):
        assert isinstance(steps[name]["result"], dict) and steps[name]["result"], name


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_real_run_refuses_without_cuda(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(SCRIPT), "--out", str(tmp_path / "out"), "--python", sys.executable],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "no CUDA" in errors[0], proc.stderr
    assert not (tmp_path / "out").exists()
