"""`v2v eval all`: on a tiny synthetic world it runs every metric whose inputs and weights exist, records why the
others were skipped (or failed), and writes report.json, report.md and every PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from v2vcli.hookspecs import hookimpl
from v2vcli.metric import Metric, MetricResult


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from v2v_plugins.world import write_world

    return write_world(tmp_path_factory.mktemp("world") / "ds", seed=5, size=(64, 48), frames=5, sequences=2, val=0,
                       frames_format="png", progress=False)


def _fake(world: Path, out: Path) -> Path:
    """The world's frames with a little noise, one frame folder per sequence (what synthesize writes)."""
    from v2vcli.io.files import read_image, write_image

    rng = np.random.default_rng(0)
    for seq_dir in sorted((world / "frames").iterdir()):
        for f in sorted(seq_dir.glob("*.png")):
            img = read_image(f).astype(np.int16) + rng.integers(-6, 7, size=(48, 64, 3))
            write_image(out / seq_dir.name / f.name, np.clip(img, 0, 255).astype(np.uint8))
    return out


class Broken(Metric):
    name = "broken_metric"

    def compute(self, real: Any, fake: Any) -> MetricResult:
        raise RuntimeError("boom")


class _BrokenPlugin:
    @hookimpl
    def v2v_register_metrics(self, register: Any) -> None:
        register("broken_metric", Broken)


def test_eval_all_writes_every_artefact(cli: Any, world: Path, tmp_path: Path, register_plugin: Any) -> None:
    pytest.importorskip("matplotlib", reason="the report's plots need matplotlib")
    register_plugin(_BrokenPlugin())
    fake = _fake(world, tmp_path / "fake")
    out = tmp_path / "report"
    res = cli("eval", "all", "--real", world, "--fake", fake, "-o", out, "--set",
              f"seg_consistency.backend=dataset:{world}", "--horizons", "--device", "cpu", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert set(summary["summary"]) == {"psnr", "ssim", "warp_error", "seg_consistency"}
    assert summary["summary"]["seg_consistency"]["value"] == 1.0
    assert 30 < summary["summary"]["psnr"]["value"] < 60
    for name in ("fid", "fvd", "vfid_i3d", "lpips"):
        assert "not available" in summary["skipped"][name]
    assert "pose" in summary["skipped"]["pose_consistency"]
    assert summary["failed"] == {"broken_metric": "RuntimeError: boom"}
    expected = {"report.json", "report.md", "warp_error_per_frame.png", "seg_per_class_iou.png", "per_horizon.png"}
    assert expected <= {p.name for p in out.iterdir()}
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["warp_error"]["protocol"]["flow"] == "dis"
    assert len(report["metrics"]["warp_error"]["per_frame"]["world_000"]) == 4
    assert report["versions"]["torch"] and report["device"] == "cpu"
    assert sorted(report["plots"]) == sorted(expected - {"report.json", "report.md"})
    table = cli("eval", "all", "--real", world, "--fake", fake, "-o", tmp_path / "r2", "--metric", "psnr",
                "--device", "cpu")
    assert table.exit_code == 0 and "psnr" in table.stdout and (tmp_path / "r2" / "report.md").is_file()
    md = (out / "report.md").read_text()
    for text in ("| psnr |", "seg_consistency", "## Weights", "## Versions", "fvd (skipped)",
                 "broken_metric (FAILED)", "![per_horizon](per_horizon.png)"):
        assert text in md


def test_eval_all_weights_hashes_and_metric_selection(world: Path, tmp_path: Path) -> None:
    """Weights given explicitly are recorded with their sha256; --metric limits the run; bad names are errors."""
    torch = pytest.importorskip("torch")
    from torchvision.models.vgg import cfgs, make_layers

    from v2v_plugins.evaluate.lpips import LPIPS_CHANNELS
    from v2v_plugins.evaluate.report import evaluate_all
    from v2vcli.errors import ConfigError, WeightsError
    from v2vcli.weights import sha256_file

    torch.manual_seed(0)
    vgg = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}, vgg)
    heads = tmp_path / "heads.pth"
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(LPIPS_CHANNELS)}, heads)
    fake = _fake(world, tmp_path / "fake")
    short = tmp_path / "short" / "world_001"  # two frames keep VGG16 on CPU quick; the common prefix is compared
    short.mkdir(parents=True)
    for f in sorted((fake / "world_001").glob("*.png"))[:2]:
        (short / f.name).write_bytes(f.read_bytes())
    report = evaluate_all(world, short, tmp_path / "out", metrics=["lpips", "psnr"], device="cpu",
                          weights={"vgg16": str(vgg), "lpips_vgg": str(heads)}, verify_weights=False, plots=False)
    assert set(report["summary"]) == {"lpips", "psnr"} and report["plots"] == []
    assert len(report["metrics"]["lpips"]["per_frame"]["world_001"]) == 2
    assert report["weights"]["lpips_vgg"]["sha256"] == sha256_file(heads)
    assert report["weights"]["vgg16"]["verified"] is False
    assert sha256_file(heads) in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate_all(world, fake, tmp_path / "x", metrics=["fvdd"])
    with pytest.raises(WeightsError, match="unknown weights"):
        evaluate_all(world, fake, tmp_path / "x", weights={"i3d": "/x"})
