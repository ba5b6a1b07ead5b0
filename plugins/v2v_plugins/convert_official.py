"""Official NVIDIA/vid2vid checkpoints → v2v run folders (the library behind `v2v convert-official`).

An official checkpoint folder holds ``latest_net_G0.pth`` (``composite``), ``latest_net_G1.pth`` ... (one
``compositeLocal`` per finer scale), optionally discriminators and the trainer's ``opt.txt``. The single-image
generator of the first frames (pix2pixHD ``global``, e.g. ``label2city_single/latest_net_G_512.pth``) is a separate
file. Everything is read with ``torch.load(weights_only=True)``.

The options come from ``opt.txt`` when the folder has it; otherwise the architecture is read from tensor shapes
(ngf, n_downsample, blocks, scales, frames, foreground branch) and what shapes cannot say (which label set, which
modalities, the history mode) from the per-frame channel count, a preset or ``--set``. The tensors are renamed onto
:class:`~v2v_plugins.vid2vid.generator.Vid2VidGenerator` (or the ``perframe`` generator) built on the meta device,
every shape checked, and written as an ordinary run: ``checkpoints/step_00000000/weights.safetensors`` with the
config and label set in its metadata.

Norms: the official test never calls ``.eval()``, so its BatchNorm (batch 1) and InstanceNorm layers normalise
each image with its own statistics: v2v's InstanceNorm2d(affine=True) computes the same. BatchNorm's affine
parameters are kept and the running statistics dropped; the official InstanceNorm has no affine parameters, so
v2v's are set to weight 1, bias 0.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from v2vcli.checkpoint import CheckpointMeta, safe_torch_load, save_checkpoint
from v2vcli.config import build_config, dump_config, load_yaml, merge, parse_set, to_dict
from v2vcli.data.layout import cityscapes_label_set, generic_label_set
from v2vcli.errors import CheckpointError, ConfigError, did_you_mean

from .gan.conditioning import ConditioningSpec
from .perframe import PerFrame
from .vid2vid.training import Vid2VidModel

if TYPE_CHECKING:
    from v2vcli.config import V2VConfig
    from v2vcli.data.layout import LabelSet

__all__ = ["OfficialNetwork", "OfficialCheckpoint", "ConversionPlan", "read_opt_txt", "load_official",
           "plan_conversion", "convert", "write_run", "POSE_CHANNEL_ORDER"]

log = logging.getLogger(__name__)

_STATS = ("running_mean", "running_var", "num_batches_tracked")
_G_FILE = re.compile(r"^(?:latest|\d+)_net_G(\d+)\.pth$")
_D_FILE = re.compile(r"^(?:latest|\d+)_net_(D(?:_T\d+)?)\.pth$")
#: official pose input per frame is DensePose (3) then OpenPose (3) (data/pose_dataset.py: cat([Di, Oi]));
#: v2v's channel order is pose then densepose: v2v channel j reads official channel POSE_CHANNEL_ORDER[j].
POSE_CHANNEL_ORDER = (3, 4, 5, 0, 1, 2)
#: the official default of --fg_labels (Cityscapes "car")
_OFFICIAL_FG_LABELS = [26]


# -- reading -------------------------------------------------------------------------------------------------------
@dataclass
class OfficialNetwork:
    """One official state dict: its file, its tensors (norm running statistics included, as saved)."""

    name: str  # G0, G1, ..., D, D_T0, G_single
    path: Path
    tensors: dict[str, torch.Tensor]

    @property
    def params(self) -> int:
        """Parameters as the official code counts them (running statistics are buffers, not parameters)."""
        return sum(int(t.numel()) for k, t in self.tensors.items() if k.rsplit(".", 1)[-1] not in _STATS)


@dataclass
class OfficialCheckpoint:
    generators: list[OfficialNetwork]  # G0, G1, ... (empty for a single-image generator alone)
    discriminators: list[OfficialNetwork] = field(default_factory=list)
    single: OfficialNetwork | None = None
    opt: dict[str, Any] | None = None
    opt_path: Path | None = None


def read_opt_txt(path: str | Path) -> dict[str, Any]:
    """The official ``opt.txt`` (``name: value`` lines between dashed lines) as Python values."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read options file '{p}': {exc}") from exc
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if line.startswith("---") or ":" not in line:
            continue
        key, _, raw = line.partition(":")
        raw = raw.strip()
        try:
            value: Any = ast.literal_eval(raw) if raw else ""
        except (ValueError, SyntaxError):
            value = raw
        out[key.strip()] = value
    return out


def _load_state_dict(path: Path, name: str) -> OfficialNetwork:
    obj = safe_torch_load(path)
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"'{path}' is not an official state dict (a mapping of tensor names to tensors, as "
                              f"the official trainer saves with torch.save(net.state_dict()))")
    tensors = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in tensors):  # saved from a DataParallel wrapper
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return OfficialNetwork(name, path, tensors)


def load_official(src: str | Path, single_g: str | Path | None = None) -> OfficialCheckpoint:
    """Read an official checkpoint folder (or one ``.pth``) and the optional single-image generator file."""
    p = Path(src)
    gens: list[OfficialNetwork] = []
    discs: list[OfficialNetwork] = []
    single: OfficialNetwork | None = None
    opt = opt_path = None
    if p.is_dir():
        found: dict[int, Path] = {}
        for child in sorted(p.iterdir()):
            m = _G_FILE.match(child.name)
            if m and (child.name.startswith("latest") or int(m.group(1)) not in found):
                found[int(m.group(1))] = child
            d = _D_FILE.match(child.name)
            if d and child.name.startswith("latest"):
                discs.append(_load_state_dict(child, d.group(1)))
        if not found:
            raise CheckpointError(f"'{p}' holds no official generator (latest_net_G0.pth, latest_net_G1.pth, ...); "
                                  f"pass an official checkpoint folder or a .pth file")
        missing = [s for s in range(max(found) + 1) if s not in found]
        if missing:
            raise CheckpointError(f"'{p}' has {', '.join(found[s].name for s in sorted(found))} but no "
                                  f"latest_net_G{missing[0]}.pth: every scale up to the finest is needed")
        gens = [_load_state_dict(found[s], f"G{s}") for s in sorted(found)]
        if (p / "opt.txt").is_file():
            opt_path = p / "opt.txt"
            opt = read_opt_txt(opt_path)
    elif p.is_file():
        net = _load_state_dict(p, "G0")
        if _is_single_image(net.tensors):
            net.name = "G_single"
            single = net
        else:
            gens = [net]
        if (p.parent / "opt.txt").is_file() and gens:
            opt_path = p.parent / "opt.txt"
            opt = read_opt_txt(opt_path)
    else:
        raise CheckpointError(f"official checkpoint '{p}' does not exist; pass a folder with latest_net_G0.pth or "
                              f"a .pth file")
    if single_g is not None:
        if single is not None:
            raise ConfigError("--single-G: SRC is already a single-image generator; pass the vid2vid checkpoint "
                              "as SRC")
        single = _load_state_dict(Path(single_g), "G_single")
        if not _is_single_image(single.tensors):
            raise CheckpointError(f"--single-G '{single_g}' is not a pix2pixHD single-image generator (no "
                                  f"'model.*' tensors)")
    return OfficialCheckpoint(gens, discs, single, opt, opt_path)


def _is_single_image(tensors: Mapping[str, Any]) -> bool:
    return any(k.startswith(("model.", "model1_1.")) for k in tensors) and "model_down_seg.1.weight" not in tensors


# -- options ---------------------------------------------------------------------------------------------------------
def _indices(tensors: Mapping[str, Any], seq: str, res: bool | None = None) -> list[int]:
    """Sorted module indices of Sequential ``seq`` with tensors (res: only residual blocks / only plain layers)."""
    out: set[Any] = set()
    for k in tensors:
        m = re.match(rf"^{re.escape(seq)}\.(\d+)\.(conv_block\.)?", k)
        if m and (res is None or bool(m.group(2)) == res):
            out.add(int(m.group(1)))
    return sorted(out)


def _need(tensors: Mapping[str, Any], key: str, net: OfficialNetwork) -> Any:
    if key not in tensors:
        raise CheckpointError(f"'{net.path}' has no tensor '{key}': it is not an official vid2vid "
                              f"{'composite' if net.name == 'G0' else 'compositeLocal'} generator")
    return tensors[key]


def _detect_vid2vid(ck: OfficialCheckpoint) -> dict[str, Any]:
    """Architecture facts the generators' tensor shapes fix."""
    g0 = ck.generators[0]
    t = g0.tensors
    seg = _need(t, "model_down_seg.1.weight", g0)
    ngf, in_all = int(seg.shape[0]), int(seg.shape[1])
    output_nc = int(_need(t, "model_final_img.1.weight", g0).shape[0])
    prev = int(_need(t, "model_down_img.1.weight", g0).shape[1])
    if prev % output_nc:
        raise CheckpointError(f"'{g0.path}': the previous-frame encoder sees {prev} channels, not a multiple of "
                              f"{output_nc}")
    n_frames_G = prev // output_nc + 1
    if in_all % n_frames_G:
        raise CheckpointError(f"'{g0.path}': the label encoder sees {in_all} channels, not {n_frames_G} frames' "
                              f"worth")
    n_down = len([i for i in _indices(t, "model_down_seg", res=False)
                  if i > 1 and getattr(t.get(f"model_down_seg.{i}.weight"), "ndim", 0) == 4])
    n_enc, n_head = len(_indices(t, "model_down_seg", res=True)), len(_indices(t, "model_res_img"))
    facts: dict[str, Any] = {
        "ngf": ngf, "n_downsample": n_down, "n_blocks": n_enc + n_head, "n_frames_G": n_frames_G,
        "n_scales_spatial": len(ck.generators), "fg": "indv_down.1.weight" in t, "output_nc": output_nc,
        "channels_per_frame": in_all // n_frames_G,
        "official_norm": "batch" if "model_down_seg.2.weight" in t else "instance",
    }
    if n_enc != n_blocks_split(facts["n_blocks"])[0]:
        raise CheckpointError(f"'{g0.path}': {n_enc} residual blocks in the label encoder and {n_head} in the image "
                              f"head do not split n_blocks as the official generator does")
    if "model_res_flow.0.conv_block.1.weight" not in t:
        raise CheckpointError(f"'{g0.path}' has no flow head (trained with --no_flow); v2v's generator always "
                              f"predicts flow")
    if len(ck.generators) > 1:
        g1 = ck.generators[1]
        facts["n_blocks_local"] = len(_indices(g1.tensors, "model_up_img", res=True))
    return facts


def n_blocks_split(n_blocks: int) -> tuple[int, int]:
    """Residual blocks of G0's encoders and of each head (official and v2v alike)."""
    return n_blocks - n_blocks // 2, n_blocks // 2


def _detect_single(net: OfficialNetwork) -> dict[str, Any]:
    t = net.tensors
    if any(k.startswith("model1_1.") for k in t):
        raise CheckpointError(f"'{net.path}' is a pix2pixHD 'local' generator (the 2048 single-image model); v2v's "
                              f"perframe model is the pix2pixHD 'global' generator, so it cannot be converted")
    first = t.get("model.1.weight")
    if first is None or first.dim() != 4 or tuple(first.shape[-2:]) != (7, 7):
        raise CheckpointError(f"'{net.path}' is not a pix2pixHD 'global' generator (no 7x7 'model.1.weight')")
    res = _indices(t, "model", res=True)
    plain = _indices(t, "model", res=False)
    if not res:
        raise CheckpointError(f"'{net.path}' is not a pix2pixHD 'global' generator (no residual blocks)")
    downs = [i for i in plain if 1 < i < res[0] and getattr(t.get(f"model.{i}.weight"), "ndim", 0) == 4]
    return {"ngf": int(first.shape[0]), "input_nc": int(first.shape[1]), "n_downsample": len(downs),
            "n_blocks": len(res), "output_nc": int(t[f"model.{plain[-1]}.weight"].shape[0]),
            "official_norm": "batch" if "model.2.weight" in t else "instance"}


# -- the plan ----------------------------------------------------------------------------------------------------------
@dataclass
class ConversionPlan:
    """Everything decided before any tensor is copied: configs, label set, where the options came from."""

    cfg: V2VConfig | None  # the vid2vid run (None when converting a single-image generator alone)
    single_cfg: V2VConfig | None
    label_set: LabelSet | None
    options: dict[str, Any]  # the detected/read official options (for --check and the provenance)
    options_from: str  # "opt.txt" or "tensor shapes"
    channel_order: tuple[int, ...] | None = None  # per-frame permutation official → v2v (pose)
    notes: list[str] = field(default_factory=list)


def _preset_raw(preset: str | None) -> dict[str, Any]:
    if not preset:
        return {}
    p = Path(preset)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        return load_yaml(p)
    root = Path(__file__).resolve().parents[2] / "examples" / "configs"
    cand = root / f"{preset}.yaml"
    if not cand.is_file():
        names = sorted(x.stem for x in root.glob("*.yaml")) if root.is_dir() else []

        raise ConfigError(f"--preset '{preset}' is not a preset{did_you_mean(preset, names)} (presets: "
                          f"{', '.join(names) or 'examples/configs/ not found'}); or pass a YAML file")
    return load_yaml(cand)


def _inputs_for(label_nc: int, use_instance: bool, input_nc: int, opt: Mapping[str, Any]) -> tuple[list[str], Any]:
    """data.inputs (and the pose channel permutation) for the official per-frame input."""
    if label_nc:
        return (["seg", "inst"] if use_instance else ["seg"]), None
    if input_nc == 15:
        return ["edges", "edge_dist"], None
    if input_nc == 6:
        return ["pose", "densepose"], POSE_CHANNEL_ORDER
    if input_nc == 3 and opt.get("openpose_only"):
        return ["pose"], None
    if input_nc == 3 and opt.get("densepose_only"):
        return ["densepose"], None
    raise ConfigError(f"the official model sees {input_nc} float channels per frame, which match no v2v modality "
                      f"set (15: edges + edge_dist, 6: pose + densepose); pass --set data.inputs=[...]")


def plan_conversion(ck: OfficialCheckpoint, *, preset: str | None = None, sets: Sequence[str] = ()) -> ConversionPlan:
    """Decide the v2v configs: preset < defaults inferred from shapes < opt.txt and shape facts < --set."""
    user: dict[str, Any] = {}
    for expr in sets:
        user = merge(user, parse_set(expr))
    base = _preset_raw(preset)
    opt = ck.opt or {}
    notes: list[str] = []
    options: dict[str, Any] = {}
    order = None
    raw: dict[str, Any] = merge({"model": {"name": "vid2vid"}}, base)
    raw.setdefault("model", {})["name"] = "vid2vid"
    if ck.generators:
        facts = _detect_vid2vid(ck)
        C = facts.pop("channels_per_frame")
        official_norm = facts.pop("official_norm")
        m = raw["model"]
        if opt:
            label_nc, use_inst = int(opt.get("label_nc", 0)), bool(opt.get("use_instance", False))
            input_nc = C - (1 if use_inst else 0) if label_nc else C
            if label_nc and label_nc + (1 if use_inst else 0) != C:
                raise CheckpointError(f"opt.txt says label_nc {label_nc}{' + instance' if use_inst else ''} but G0 "
                                      f"sees {C} channels per frame")
            inputs, order = _inputs_for(label_nc, use_inst, input_nc, opt)
            m.update(label_nc=label_nc, use_instance=use_inst if label_nc else False)
            raw.setdefault("data", {})["inputs"] = inputs
            fg_labels = [int(v) for v in opt.get("fg_labels", _OFFICIAL_FG_LABELS)] if facts["fg"] else []
            m["history"] = "empty" if opt.get("no_first_img") else "real"
            if label_nc == 35 and opt.get("loadSize"):
                raw["data"]["size"] = [int(opt["loadSize"]), int(opt["loadSize"]) // 2]
            options_from = "opt.txt"
        else:
            options_from = "tensor shapes"
            fg_labels = _OFFICIAL_FG_LABELS if facts["fg"] else []
            if not base.get("data", {}).get("inputs") and "inputs" not in user.get("data", {}):
                if C == 36:
                    m.setdefault("label_nc", 35)
                    raw.setdefault("data", {})["inputs"] = ["seg", "inst"]
                    notes.append("36 channels per frame: Cityscapes label ids (35) + instance edges")
                elif C in (15, 6):
                    inputs, order = _inputs_for(0, False, C, {})
                    raw.setdefault("data", {})["inputs"] = inputs
                    notes.append(f"{C} channels per frame: {' + '.join(inputs)}")
                else:
                    raise ConfigError(f"G0 sees {C} channels per frame and the folder has no opt.txt: say what they "
                                      f"are with --preset or --set data.inputs=[seg,inst] --set model.label_nc=N")
            elif raw.get("data", {}).get("inputs") == ["pose", "densepose"] or \
                    user.get("data", {}).get("inputs") == ["pose", "densepose"]:
                order = POSE_CHANNEL_ORDER
        m.update({k: v for k, v in facts.items()})
        m["norm"] = "instance"
        options = {**facts, "channels_per_frame": C, "norm": official_norm, "fg_labels": fg_labels,
                   **{k: opt[k] for k in ("label_nc", "use_instance", "input_nc", "no_first_img", "loadSize",
                                          "dataroot") if k in opt}}
        raw = merge(raw, user)
        label_set = _label_set_for(raw)
        if facts["fg"]:
            if user.get("model", {}).get("fg_classes") is None:
                if label_set is None or any(i >= label_set.num_classes for i in fg_labels):
                    raise ConfigError(f"the foreground branch's classes (official fg_labels {fg_labels}) are not in "
                                      f"the label set; pass --set model.fg_classes=[NAME]")
                raw["model"]["fg_classes"] = [label_set.classes[i].name for i in fg_labels]
            raw.setdefault("data", {})["foreground"] = []
        cfg = build_config(raw)
        cfg = _checked_vid2vid(cfg, label_set, C)
    else:
        cfg, label_set, options_from = None, None, "tensor shapes"
        raw = merge(raw, user)

    single_cfg = None
    if ck.single is not None:
        sf = _detect_single(ck.single)
        options["single_G"] = sf
        if cfg is not None:
            want = cfg.model.label_nc
            if "seg" not in cfg.data.inputs or sf["input_nc"] != want:
                raise CheckpointError(
                    f"--single-G '{ck.single.path}' sees {sf['input_nc']} channels but the vid2vid model's labels "
                    f"give {want if 'seg' in cfg.data.inputs else 'no one-hot'} channels; only label-map "
                    f"single-image generators convert (the official face single-image generator also needs its "
                    f"feature encoder latest_net_E.pth and the features.npy nearest-neighbour lookup, which v2v "
                    f"does not implement)")
            s_raw = {"data": {**_data_dict(cfg), "inputs": list(cfg.data.inputs)}}
            label_set_single = label_set
        else:
            label_nc = sf["input_nc"]
            label_set_single = cityscapes_label_set() if label_nc == 35 else generic_label_set(label_nc)
            label_set = label_set_single
            data = dict(raw.get("data", {}))
            data.setdefault("inputs", ["seg", "inst"] if label_nc == 35 else ["seg"])
            s_raw = {"data": data}
        s_raw["model"] = {"name": "perframe", "label_nc": sf["input_nc"], "use_instance": False, "ngf": sf["ngf"],
                          "n_downsample": sf["n_downsample"], "n_blocks": sf["n_blocks"],
                          "output_nc": sf["output_nc"], "norm": "instance"}
        if cfg is None:
            s_raw = merge(s_raw, {k: v for k, v in user.items() if k != "model"})
            s_raw["model"] = merge(s_raw["model"], {k: v for k, v in user.get("model", {}).items()
                                                    if k not in s_raw["model"]})
        single_cfg = build_config(s_raw)
        k = 2 ** sf["n_downsample"]
        w, h = single_cfg.data.size
        if w % k or h % k:
            raise ConfigError(f"data.size {w}x{h} does not fit the single-image generator (n_downsample "
                              f"{sf['n_downsample']}: multiples of {k}); pass --set data.size=[W,H]")
        if label_set_single is not None and label_set_single.num_classes != sf["input_nc"]:
            raise ConfigError(f"the single-image generator sees {sf['input_nc']} label channels but the label set "
                              f"has {label_set_single.num_classes}")
    options_out = {"from": options_from, **options}
    return ConversionPlan(cfg, single_cfg, label_set, options_out, options_from, order, notes)


def _data_dict(cfg: V2VConfig) -> dict[str, Any]:
    return dict(to_dict(cfg.data))


def _label_set_for(raw: Mapping[str, Any]) -> LabelSet | None:
    inputs = (raw.get("data") or {}).get("inputs") or ["seg", "inst"]
    if "seg" not in inputs:
        return None
    label_nc = int((raw.get("model") or {}).get("label_nc") or 0)
    if label_nc <= 0:
        raise ConfigError("the label set's size is unknown; pass --set model.label_nc=N (35 for Cityscapes)")
    return cityscapes_label_set() if label_nc == 35 else generic_label_set(label_nc)


def _checked_vid2vid(cfg: V2VConfig, label_set: LabelSet | None, channels: int) -> V2VConfig:
    spec = ConditioningSpec.from_config(cfg.model, cfg.data, label_set)
    if spec.input_nc != channels:
        raise ConfigError(f"the official G0 sees {channels} channels per frame but the config gives "
                          f"{spec.input_nc} ({spec.describe()}); fix --preset/--set (data.inputs, model.label_nc)")
    try:
        Vid2VidModel.check_size(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; pass --set data.size=[W,H]") from None
    return cfg


# -- renaming ---------------------------------------------------------------------------------------------------------
_G0_MAP = {  # official Sequential → (v2v module, index offset; "head" = + n_blocks//2, "fg" = + n_blocks)
    "model_down_seg": ("label_encoder", ""), "model_down_img": ("prev_encoder", ""),
    "model_res_img": ("image_head.body", ""), "model_up_img": ("image_head.body", "head"),
    "model_final_img": ("image_head.out", ""), "model_res_flow": ("flow_head.body", ""),
    "model_up_flow": ("flow_head.body", "head"), "model_final_flow": ("flow_head.flow_out", ""),
    "model_final_w": ("flow_head.mask_out", ""), "indv_down": ("fg_branch.entry", ""),
    "indv_res": ("fg_branch.head.body", ""), "indv_up": ("fg_branch.head.body", "fg"),
    "indv_final": ("fg_branch.head.out", ""),
}
_LOCAL_MAP = {
    "model_down_seg": ("label_stream", ""), "model_down_img": ("prev_stream", ""),
    "model_up_img": ("image_head.body", ""), "model_final_img": ("image_head.out", ""),
    "model_up_flow": ("flow_head.body", ""), "model_final_flow": ("flow_head.flow_out", ""),
    "model_final_w": ("flow_head.mask_out", ""), "indv_down": ("fg_branch.entry", ""),
    "indv_up": ("fg_branch.head.body", ""), "indv_final": ("fg_branch.head.out", ""),
}
_KEY = re.compile(r"^(?P<seq>[A-Za-z0-9_]+)\.(?P<idx>\d+)\.(?P<rest>.+)$")


def _vid2vid_renamer(scale: int, n_blocks: int) -> Callable[[str], str | None]:
    table = _G0_MAP if scale == 0 else _LOCAL_MAP
    offsets = {"": 0, "head": n_blocks // 2, "fg": n_blocks}

    def rename(key: str) -> str | None:
        m = _KEY.match(key)
        if not m or m.group("seq") not in table:
            return None
        target, off = table[m.group("seq")]
        rest = m.group("rest").replace("conv_block.", "block.")
        return f"scales.{scale}.{target}.{int(m.group('idx')) + offsets[off]}.{rest}"

    return rename


def _single_renamer(tensors: Mapping[str, Any]) -> Callable[[str], str | None]:
    last = max(_indices(tensors, "model", res=False))  # the output conv: official pad at last-1, conv, tanh

    def rename(key: str) -> str | None:
        m = _KEY.match(key)
        if not m or m.group("seq") != "model":
            return None
        idx, rest = int(m.group("idx")), m.group("rest").replace("conv_block.", "block.")
        return f"{last - 1}.1.{rest}" if idx == last else f"{idx}.{rest}"

    return rename


def _norm_params(module: Any) -> set[str]:
    out: set[Any] = set()
    for name, mod in module.named_modules():
        if isinstance(mod, (nn.InstanceNorm2d, nn.BatchNorm2d)):
            out.update(f"{name}.{p}" for p, _ in mod.named_parameters(recurse=False))
    return out


def _rename_into(net: OfficialNetwork, rename: Callable[[str], str | None], target: Mapping[str, Any],
                 out: dict[str, torch.Tensor], norm_params: set[str], what: str) -> None:
    for key, value in net.tensors.items():
        if key.rsplit(".", 1)[-1] in _STATS:
            continue
        new = rename(key)
        if new is None or new not in target:
            raise CheckpointError(f"'{net.path}': tensor '{key}' has no place in v2v's {what} (is this an official "
                                  f"{what} checkpoint of the detected options?)")
        if tuple(value.shape) != tuple(target[new].shape):
            raise CheckpointError(f"'{net.path}': tensor '{key}' has shape {tuple(value.shape)} but v2v's '{new}' "
                                  f"has {tuple(target[new].shape)}; the options do not match the checkpoint")
        if new in out:
            raise CheckpointError(f"'{net.path}': two tensors map onto '{new}'")
        out[new] = value.detach().to("cpu", dtype=target[new].dtype).contiguous()
    del norm_params  # filled by the caller once every network is in


def _fill_and_check(out: dict[str, torch.Tensor], target: Mapping[str, Any], norm_params: set[str],
                    where: str) -> None:
    for key, ref in target.items():
        if key in out:
            continue
        if key in norm_params:  # official InstanceNorm(affine=False): identity affine
            fill = 1.0 if key.endswith(".weight") else 0.0
            out[key] = torch.full(tuple(ref.shape), fill, dtype=ref.dtype)
            continue
        raise CheckpointError(f"{where} has no tensor for v2v's '{key}'; the checkpoint does not match the options")


def _permute_inputs(out: dict[str, torch.Tensor], keys: Sequence[str], order: Sequence[int], frames: int) -> None:
    for k in keys:
        if k in out:
            w = out[k]
            c = w.shape[1] // frames
            if c != len(order):
                raise CheckpointError(f"cannot reorder '{k}': {c} channels per frame, expected {len(order)}")
            out[k] = w.view(w.shape[0], frames, c, *w.shape[2:])[:, :, list(order)].reshape(w.shape).contiguous()


@dataclass
class Converted:
    """Converted generators: ``G`` state of the vid2vid run and of the perframe run (either may be None)."""

    plan: ConversionPlan
    vid2vid: dict[str, torch.Tensor] | None
    single: dict[str, torch.Tensor] | None
    params: dict[str, int]  # official parameters per network (G0, G1, ..., D, G_single)
    v2v_params: dict[str, int]  # v2v parameters per converted network (vid2vid scales G0.., G_single)


def convert(ck: OfficialCheckpoint, plan: ConversionPlan, *, materialise: bool = True) -> Converted:
    """Rename and check every tensor against v2v's generators (built on the meta device); ``materialise=False``
    checks names and shapes only (``--check``)."""
    params = {n.name: n.params for n in [*ck.generators, *ck.discriminators]}
    v2v_params: dict[str, int] = {}
    g_out = s_out = None
    if plan.cfg is not None:
        model = Vid2VidModel(plan.cfg, plan.label_set, "meta")
        G = model.generator
        target = G.state_dict()
        norms = _norm_params(G)
        out: dict[str, Any] = {}
        for s, net in enumerate(ck.generators):
            _rename_into(net, _vid2vid_renamer(s, plan.cfg.model.n_blocks), target, out, norms,
                         "vid2vid generator")
        _fill_and_check(out, target, norms, f"the official G0..G{len(ck.generators) - 1}")
        if plan.channel_order is not None:
            keys = [f"scales.{s}.{m}.1.weight" for s in range(len(ck.generators))
                    for m in ("label_encoder", "label_stream", "fg_branch.entry")]
            _permute_inputs(out, keys, plan.channel_order, plan.cfg.model.n_frames_G)
        for s, scale in enumerate(G.scales):
            v2v_params[f"G{s}"] = sum(p.numel() for p in scale.parameters())
        g_out = out
    if ck.single is not None and plan.single_cfg is not None:
        params["G_single"] = ck.single.params
        model_s = PerFrame(plan.single_cfg, plan.label_set, "meta")
        Gs = model_s.nets["G"]
        target = Gs.state_dict()
        norms = _norm_params(Gs)
        out = {}
        _rename_into(ck.single, _single_renamer(ck.single.tensors), target, out, norms,
                     "pix2pixHD global generator")
        _fill_and_check(out, target, norms, f"'{ck.single.path}'")
        v2v_params["G_single"] = sum(p.numel() for p in Gs.parameters())
        s_out = out
    if not materialise:
        g_out = s_out = None
    return Converted(plan, g_out, s_out, params, v2v_params)


# -- writing ----------------------------------------------------------------------------------------------------------
SINGLE_DIR = "single_G"


def write_run(out_dir: str | Path, conv: Converted, *, source: str) -> Path:
    """Write the converted run(s) atomically: ``OUT`` (vid2vid, or perframe alone) and ``OUT/single_G`` (perframe,
    with --single-G). Nothing is left behind on failure."""
    p = Path(out_dir)
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise ConfigError(f"output '{p}' already exists; choose a new run folder with -o")
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.parent / f".{p.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    plan = conv.plan
    try:
        if conv.vid2vid is not None and plan.cfg is not None:
            _write_one(tmp, plan.cfg, "vid2vid", conv.vid2vid, plan, source)
            if conv.single is not None and plan.single_cfg is not None:
                _write_one(tmp / SINGLE_DIR, plan.single_cfg, "perframe", conv.single, plan, source)
        elif conv.single is not None and plan.single_cfg is not None:
            _write_one(tmp, plan.single_cfg, "perframe", conv.single, plan, source)
        else:
            raise CheckpointError("nothing to write: no generator was converted")
        if p.exists():
            p.rmdir()
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return p


def _write_one(run: Path, cfg: V2VConfig, model_name: str, weights: Mapping[str, Any], plan: ConversionPlan,
               source: str) -> None:
    cfg.run_dir = str(run)
    extra: dict[str, Any] = {"converted_from": "NVIDIA/vid2vid"}
    if model_name == "vid2vid":
        m = cfg.model
        extra.update(n_scales_spatial=int(m.n_scales_spatial), init_scales=0,
                     history_frames=0 if m.history == "empty" else int(m.n_past))
    label_set = plan.label_set if "seg" in cfg.data.inputs else None
    meta = CheckpointMeta(model=model_name, config=to_dict(cfg),
                          label_set=label_set.to_dict() if label_set is not None else None,
                          provenance={"official_vid2vid": {"source": source, "options": plan.options}},
                          networks=["G"], extra=extra)
    text = dump_config(cfg, mark_non_defaults=True)
    run.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run, 0, {f"G.{k}": v for k, v in weights.items()}, meta,
                    {"format": 1, "converted_from": source}, config_text=text)
    (run / "config.yaml").write_text(text, encoding="utf-8")
