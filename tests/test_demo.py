"""`v2v demo` (issue 14): the whole pipeline offline in --quick mode, and every artefact of its report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np


def test_quick_demo_writes_every_artefact(cli: Any, tmp_path: Path) -> None:
    from v2vcli.io.files import read_image
    from v2vcli.io.video import open_video

    out = tmp_path / "demo"
    result = cli("demo", "--quick", "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "report: " in result.output and "target" in result.output

    from v2vcli.io.files import current_umask

    mask = current_umask()  # issue 23: every file and folder of the demo has the umask's mode (0644/0755 under 022)
    bad = [f"{p}: {oct(p.stat().st_mode & 0o777)}" for p in [out, *out.rglob("*")] if not p.is_symlink()
           and p.stat().st_mode & 0o777 != (0o777 if p.is_dir() else 0o666) & ~mask]
    assert bad == []
    report = json.loads((out / "report.json").read_text())
    for source in ("ground truth", "perframe", "vid2vid"):
        m = report["metrics"][source]
        assert 0 <= m["warp_error"] < 1 and 0 <= m["seg_miou"] <= 1
        if source != "ground truth":
            assert 0 < m["psnr"] < 60 and -1 <= m["ssim"] <= 1
    assert report["target_met"] == ("is met" in report["verdict"])
    for model in ("perframe", "vid2vid"):
        assert report["training"][model]["steps"] == 4
        assert Path(report["training"][model]["checkpoint"]).is_dir()

    html = (out / "report.html").read_text()
    links = re.findall(r'(?:src|poster)="([^"]+)"', html)
    assert any(x.endswith(".mp4") for x in links) and sum(x.endswith(".png") for x in links) >= 8
    for rel in links:
        assert (out / rel).is_file(), rel
    for cmd in ("v2v demo world", "v2v train --config tiny ", "v2v synthesize", "v2v eval",
                f"--first-frame-model {out}/runs/perframe"):
        assert cmd in html
    # vid2vid was trained with real history frames: its first L = 2 frames come from the perframe run (issue 19)
    assert report["synthesis"]["vid2vid"]["first_frames"] == "model"
    assert report["synthesis"]["vid2vid"]["first_frame_count"] == 2
    assert report["synthesis"]["perframe"]["first_frames"] == "empty"
    for png in (out / "plots").glob("*.png"):
        img = read_image(png)
        assert img.std() > 5, f"{png.name} looks blank"  # axes, bars and text, not an empty canvas
    val = json.loads((out / "world" / "splits.json").read_text())["val"]
    for seq in val:
        with open_video(out / "videos" / f"{seq}.mp4") as reader:  # ffmpeg decodes every frame
            frames = list(reader)
        assert len(frames) == 8 and frames[0].shape[1] > 4 * 2 * 64  # four panels at twice the size
        assert np.std(frames[4]) > 5
        for model in ("perframe", "vid2vid"):
            assert len(list((out / "synth" / model / seq).glob("*.png"))) == 8
        pf, v2v = (sorted((out / "synth" / m / seq).glob("*.png")) for m in ("perframe", "vid2vid"))
        for i in range(2):
            assert np.abs(read_image(pf[i]).astype(int) - read_image(v2v[i]).astype(int)).max() <= 1


def test_demo_errors_are_one_line(cli: Any, tmp_path: Path) -> None:
    result = cli("demo", "--quick", "--minutes", "0", "--out", tmp_path / "a")
    assert result.exit_code == 1 and result.output.startswith("Error: --minutes must be positive")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("keep me")
    result = cli("demo", "--quick", "--out", busy)
    assert result.exit_code == 1 and "not an earlier demo" in result.output
    assert (busy / "thesis.tex").read_text() == "keep me" and len(list(busy.iterdir())) == 1
    result = cli("demo", "--quick", "--device", "cuda:7", "--out", tmp_path / "b")
    import torch

    if not torch.cuda.is_available():
        assert result.exit_code == 1 and "CUDA is not available" in result.output
        assert not (tmp_path / "b").exists()
