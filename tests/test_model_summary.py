"""`v2v model summary`: parity with docs/architecture.md's table (meta device, no weights), the summary protocol other
networks plug into, presets and config errors through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from v2vcli.config import load_config
from v2vcli.data.layout import Dataset, LabelClass, LabelSet
from v2v_plugins.vid2vid.networks import Vid2Vid, summarize_networks

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"
PRESETS = ["street_512", "street_1024", "street_2048", "street_256_g1", "street_512_g1", "street_1024_g1",
           "face_512", "pose_256", "pose_512", "pose_1024", "tiny"]

# docs/architecture.md "Parity (fixed)": params per scale (G0, G1, G2), total, GFLOP per frame, per-scale GFLOP given.
PARITY: dict[str, dict[str, Any]] = {
    "street_512": {"scales": [411_335_241], "total": 411_335_241, "gflop": 2115, "size": [512, 256]},
    "street_1024": {"scales": [411_335_241, 2_880_489], "total": 414_215_730, "gflop": 3301,
                    "scale_gflop": {"G1": 1186}, "size": [1024, 512]},
    "street_2048": {"scales": [411_335_241, 2_880_489, 859_641], "total": 415_075_371, "gflop": 5064,
                    "scale_gflop": {"G2": 1763}, "size": [2048, 1024]},
    "street_256_g1": {"scales": [137_792_649], "total": 137_792_649, "gflop": 675, "size": [256, 128]},
    "street_1024_g1": {"scales": [137_792_649, 3_830_217, 1_140_969], "total": 142_763_835, "gflop": 1650,
                       "size": [1024, 512]},
    "face_512": {"scales": [364_996_230], "total": 364_996_230, "gflop": 3434, "size": [512, 512]},
}
G0_MODULES_STREET_512 = {
    "label_encoder": 101_278_848,
    "prev_encoder": 100_639_104,
    "image_head": 75_522_048 + 6_195_840 + 18_819,
    "flow_head": 75_522_048 + 6_195_840 + 12_546 + 6_273,
    "fg_branch": 1_889_856 + 42_494_976 + 1_549_632 + 9_411,
}


def run_summary(cli: Any, *args: str) -> dict[str, Any]:
    result = cli("model", "summary", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("preset", list(PARITY))
def test_summary_matches_the_parity_table(cli: Any, preset: str) -> None:
    want = PARITY[preset]
    got = run_summary(cli, "--config", str(CONFIGS / f"{preset}.yaml"))
    g = got["networks"]["G"]
    assert got["size"] == want["size"]
    assert g["params"] == want["total"] and got["total_params"] >= want["total"]
    assert [s["params"] for s in g["scales"].values()] == want["scales"]
    assert list(g["scales"]) == [f"G{i}" for i in range(len(want["scales"]))]
    assert g["gflop_per_frame"] == pytest.approx(want["gflop"], rel=0.01)
    assert sum(s["gflop"] for s in g["scales"].values()) == pytest.approx(g["gflop_per_frame"], rel=1e-9)
    for scale, gflop in want.get("scale_gflop", {}).items():
        assert g["scales"][scale]["gflop"] == pytest.approx(gflop, rel=0.01)
    for scale in g["scales"].values():
        assert sum(m["params"] for m in scale["modules"].values()) == scale["params"]
    assert g["activation_mib"] > 0
    assert got["input_nc"] == (15 if preset == "face_512" else 36)
    g0_modules = {k: v["params"] for k, v in g["scales"]["G0"]["modules"].items()}
    if preset == "street_512":
        assert g0_modules == G0_MODULES_STREET_512
        assert got["conditioning"] == "seg 35 + inst 1"
    assert ("fg_branch" in g0_modules) == preset.startswith("street")


def test_summary_lists_the_discriminators(cli: Any) -> None:
    got = run_summary(cli, "--config", str(CONFIGS / "street_512.yaml"))
    rows = {r["name"]: r for r in got["discriminators"]}
    assert list(rows) == ["D", "D_T0", "D_T1"]  # the official n_scales_temporal 2
    # the official counts: 39-channel image D and 13-channel temporal Ds at num_D 2
    assert rows["D"]["params"] == 5_606_786 and rows["D"]["in_channels"] == 39
    assert all(rows[f"D_T{k}"]["params"] == 5_553_538 for k in range(2))
    assert rows["D"]["gflop"] > 0 and rows["D"]["input_size"] == got["size"]
    assert "fg_branch" in got["networks"]["G"]["scales"]["G0"]["modules"]  # D rows do not replace G's


def test_pose_has_no_foreground_branch(cli: Any) -> None:
    pose = run_summary(cli, "--config", str(CONFIGS / "pose_256.yaml"), "--size", "128x64")
    assert pose["input_nc"] == 6 and pose["size"] == [128, 64] and pose["conditioning"] == "pose 3 + densepose 3"
    assert "fg_branch" not in pose["networks"]["G"]["scales"]["G0"]["modules"]


def test_every_preset_resolves(cli: Any) -> None:
    for preset in PRESETS:
        cfg = load_config([CONFIGS / f"{preset}.yaml"])
        assert cfg.model.name == "vid2vid"
        Vid2Vid.check_size(cfg)
    street = load_config([CONFIGS / "street_2048.yaml"])
    assert (street.model.n_scales_spatial, street.model.num_D, street.optim.lr, street.data.n_frames_total,
            street.optim.niter, street.optim.niter_decay, street.train.niter_step,
            street.model.niter_fix_global) == (3, 4, 5e-5, 4, 5, 5, 1, 5)
    pose = load_config([CONFIGS / "pose_256.yaml"])
    assert pose.data.max_t_step == 4 and pose.model.history == "empty" and pose.data.n_frames_total == 12
    assert load_config([CONFIGS / "pose_1024.yaml"]).model.face_D


def test_tiny_preset_on_a_dataset_label_set(cli: Any, tmp_path: Path) -> None:
    ds = Dataset(tmp_path / "ds")
    ds.meta_dir.mkdir(parents=True)
    ds.write_frames_meta({"sequences": {}})
    labels = LabelSet("world", [LabelClass(i, n, (i, i, i)) for i, n in enumerate(["sky", "road", "car", "tree"])])
    ds.write_kind_meta("seg", {"label_set": labels.to_dict()})
    got = run_summary(cli, "--config", str(CONFIGS / "tiny.yaml"), "--data", str(ds.root))
    assert got["input_nc"] == 5 and got["size"] == [64, 64]
    g = got["networks"]["G"]
    assert "fg_branch" in g["scales"]["G0"]["modules"] and g["params"] < 2_000_000
    # The human table works too.
    result = cli("model", "summary", "--config", str(CONFIGS / "tiny.yaml"), "--data", str(ds.root))
    assert result.exit_code == 0 and "label_encoder" in result.stdout and "total" in result.stdout


def test_summary_errors_are_one_line(cli: Any) -> None:
    tiny = str(CONFIGS / "tiny.yaml")
    result = cli("model", "summary", "--config", tiny)  # issue 23: no --data needed, the world label set is assumed
    assert result.exit_code == 0 and "assuming the label set 'world'" in result.stderr and "--data" in result.stderr
    result = cli("model", "summary", "--config", tiny, "--set", "model.label_nc=4", "--size", "62x62")
    assert result.exit_code == 1 and "multiples of 4" in result.stderr
    result = cli("model", "summary", "--config", tiny, "--set", "model.label_nc=4", "--size", "big")
    assert result.exit_code == 1 and "WxH" in result.stderr
    result = cli("model", "summary", "--config", tiny, "--set", "model.ngff=3")
    assert result.exit_code == 1 and "did you mean 'ngf'" in result.stderr


def test_config_show_names_the_closest_model_key(cli: Any) -> None:
    result = cli("config", "show", "--config", str(CONFIGS / "tiny.yaml"), "--set", "model.ngff=3")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: unknown config key 'model.ngff' (did you mean 'ngf'?)"
    result = cli("config", "show", "--config", str(CONFIGS / "tiny.yaml"), "--set", "model.norm=group")
    assert result.exit_code == 1 and "'instance', 'batch', 'syncbatch'" in result.stderr
    result = cli("config", "show", "--config", str(CONFIGS / "street_512.yaml"), "--set", "loss.lambda_vgg=-1")
    assert result.exit_code == 1 and "loss.lambda_vgg" in result.stderr


def test_the_model_is_registered_with_its_config_sections() -> None:
    from v2vcli.registry import get_registry

    cls = get_registry().get_model("vid2vid")
    assert issubclass(cls, Vid2Vid)  # the trainer may register a subclass carrying the training contract
    cfg = load_config([])
    assert cfg.model.name == "vid2vid" and (cfg.model.ngf, cfg.model.n_frames_G, cfg.model.norm) == (128, 3, "instance")
    assert (cfg.loss.gan_mode, cfg.loss.lambda_feat, cfg.loss.lambda_vgg, cfg.loss.lambda_flow, cfg.loss.lambda_warp,
            cfg.loss.lambda_temporal, cfg.loss.lambda_mask, cfg.loss.lambda_face,
            cfg.loss.conf_threshold) == ("lsgan", 10, 10, 10, 10, 10, 0, 2, 0.02)


def test_meta_summary_equals_a_real_one() -> None:
    """The meta-device measurement (no weights) counts what a real CPU network does."""
    cfg = load_config([CONFIGS / "tiny.yaml"], ["model.label_nc=4", "model.fg_classes=['2']",
                                                 "model.n_scales_spatial=2", "data.size=[32, 32]"])
    meta = Vid2Vid.summary(cfg).networks["G"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: avoid OpenMP stalls on a shared machine
    try:
        real = summarize_networks({"G": Vid2Vid(cfg).generator}, (32, 32))["G"]
    finally:
        torch.set_num_threads(before)
    assert (meta.params, meta.gflop_per_frame, meta.activation_mib) == (real.params, real.gflop_per_frame,
                                                                        real.activation_mib)
    assert meta.scales == real.scales


class ToyCritic(nn.Module):
    """A network following the summary protocol, as the discriminators do."""

    summary_calls_per_frame = 2  # e.g. applied to the final and the raw frame

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def summary_inputs(self, size: tuple[int, int], device: Any) -> tuple[torch.Tensor]:
        return (torch.zeros(1, 3, size[1], size[0], device=device),)


def test_other_networks_plug_into_the_summary() -> None:
    with torch.device("meta"):
        nets = {"D": ToyCritic()}
    got = summarize_networks(nets, (8, 4))["D"]
    assert got.params == 3 * 4 * 9 + 4
    assert got.gflop_per_frame == pytest.approx(2 * 2 * (3 * 4 * 9) * 8 * 4 / 1e9)
    assert got.scales == {} and got.cls == "ToyCritic"


@pytest.mark.parametrize("coarse,fine", [("street_512", "street_1024"), ("street_1024", "street_2048"),
                                         ("street_256_g1", "street_512_g1"), ("street_512_g1", "street_1024_g1"),
                                         ("pose_256", "pose_512"), ("pose_512", "pose_1024")])
def test_coarse_to_fine_routes_fit_init_from(coarse: str, fine: str) -> None:
    """Every `--init-from` route the README and the presets' comments name: the finer preset has one spatial scale
    more, and its scales 0..S-2 have exactly the coarser generator's parameter names and shapes (meta device)."""
    shapes = {}
    for name in (coarse, fine):
        cfg = load_config([CONFIGS / f"{name}.yaml"])
        gen = Vid2Vid.build_networks(cfg, Vid2Vid.conditioning(cfg, None), device="meta")["G"]
        shapes[name] = (cfg.model.n_scales_spatial, {k: tuple(v.shape) for k, v in gen.state_dict().items()})
    (s_old, old), (s_new, new) = shapes[coarse], shapes[fine]
    assert s_new == s_old + 1
    inherited = {k: v for k, v in new.items() if k.split(".")[:2] in [["scales", str(i)] for i in range(s_old)]}
    assert inherited == old
