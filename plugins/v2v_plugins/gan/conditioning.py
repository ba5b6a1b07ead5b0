"""Conditioning maps of the GAN models (vid2vid, perframe): which dataset modalities feed the generator, how many
channels each gives, and how one frame's decoded modalities become the generator's input tensor.

Per frame, in this fixed order (whatever order ``data.inputs`` lists them in):

| modality | channels | from |
|---|---|---|
| seg | label_nc | uint8 label ids → one-hot (label_nc from the dataset's label set or ``model.label_nc``) |
| inst | 1 | uint16 instance ids → boundary map: 1 where a 4-neighbour has another id |
| pose | 3 | RGB rendering (OpenPose colours) → [-1, 1] |
| densepose | 3 | IUV image → [-1, 1] |
| edges | 1 | edge map → [0, 1] |
| edge_dist | 14 | per-part distance maps of the face edges → [0, 1] |

The foreground mask M of the street model is the union of the one-hot channels of the foreground classes.
Inputs are torch tensors or NumPy arrays with any leading batch dimensions: ``seg``/``inst``/``edges`` are
(..., H, W); the others are channels-first (..., C, H, W). uint8 maps are rescaled; float maps are taken as already
in range. torch is imported inside functions: model classes built on this register without it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from v2vcli.errors import ConfigError, DatasetError, did_you_mean

if TYPE_CHECKING:
    import torch

    from v2vcli.config import DataConfig
    from v2vcli.data.layout import LabelSet

__all__ = ["MODALITY_CHANNELS", "MODALITY_ORDER", "ConditioningConfig", "ConditioningSpec", "instance_boundaries",
           "one_hot_labels", "stack_inputs"]

log = logging.getLogger(__name__)

# Channels of each modality with a fixed width (seg's width is label_nc).
MODALITY_CHANNELS: dict[str, int] = {"inst": 1, "pose": 3, "densepose": 3, "edges": 1, "edge_dist": 14}
MODALITY_ORDER: tuple[str, ...] = ("seg", "inst", "pose", "densepose", "edges", "edge_dist")
_SIGNED = ("pose", "densepose")  # image-like maps scaled to [-1, 1]; the others to [0, 1]


class ConditioningConfig(Protocol):
    """The ``model`` config fields the conditioning reads (vid2vid's and perframe's sections have them)."""

    label_nc: int  # 0 = from the dataset's label set
    use_instance: bool | None  # None = when data.inputs has inst
    input_nc: int  # channels per frame as a check; 0 = derived
    fg: bool
    fg_classes: list[str]


def _as_tensor(value: Any) -> torch.Tensor:
    import torch

    if isinstance(value, torch.Tensor):
        return value
    arr = np.asarray(value)
    if arr.dtype == np.uint16:  # torch has limited uint16 support: ids fit in int32
        arr = arr.astype(np.int32)
    return torch.from_numpy(np.ascontiguousarray(arr))


def check_label_ids(ids: torch.Tensor, label_nc: int, where: str = "") -> None:
    """An id outside 0..label_nc-1 is a DatasetError. Checked only on the CPU, where it is free: on an accelerator
    it would stall every training step on a host sync, and the data loader has checked the ids against the label
    set already (naming sequence and frame)."""
    import torch

    if ids.device.type != "cpu":
        return
    bad = (ids < 0) | (ids >= label_nc)
    if bool(bad.any()):
        values = torch.unique(ids[bad]).tolist()
        shown = ", ".join(str(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
        raise DatasetError(f"label id {shown} is not in the label set (label_nc {label_nc}: ids 0..{label_nc - 1})"
                           f"{_at(where)}; fix the seg files or the dataset's label set in meta/seg.json")


def one_hot_labels(seg: Any, label_nc: int, ignore_id: int | None = None, where: str = "") -> torch.Tensor:
    """(..., H, W) integer ids → (..., label_nc, H, W) float one-hot; an id ≥ label_nc is a DatasetError.

    Pixels equal to ``ignore_id`` (the label set's "unlabelled" id, when it lies outside 0..label_nc-1) get an
    all-zero vector.
    """
    import torch
    import torch.nn.functional as F

    ids = _as_tensor(seg)
    if ids.is_floating_point():
        raise DatasetError(f"seg labels must be integer ids, got {ids.dtype}{_at(where)}")
    ids = ids.long()
    valid = torch.ones_like(ids, dtype=torch.bool)
    if ignore_id is not None and ignore_id >= label_nc:
        valid = ids != ignore_id
        ids = torch.where(valid, ids, torch.zeros_like(ids))
    check_label_ids(ids, label_nc, where)
    onehot = F.one_hot(ids, label_nc).movedim(-1, -3).float()
    return onehot * valid.unsqueeze(-3).float()


def instance_boundaries(inst: Any) -> torch.Tensor:
    """(..., H, W) instance ids → (..., 1, H, W) float map: 1 where the id differs from a 4-neighbour."""
    import torch

    ids = _as_tensor(inst)
    edge = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
    dx = ids[..., :, 1:] != ids[..., :, :-1]
    dy = ids[..., 1:, :] != ids[..., :-1, :]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return edge.unsqueeze(-3).float()


def _at(where: str) -> str:
    return f" ({where})" if where else ""


def _scaled(value: Any, signed: bool) -> torch.Tensor:
    x = _as_tensor(value)
    if x.is_floating_point():
        return x.float()
    x = x.float() / 255.0
    return x * 2.0 - 1.0 if signed else x


@dataclass(frozen=True)
class ConditioningSpec:
    """What the generator sees per frame: modalities in order, their channel offsets, the foreground channels."""

    inputs: tuple[str, ...]  # modalities in channel order
    label_nc: int  # one-hot width of seg (0 when seg is not an input)
    fg_names: tuple[str, ...] = ()
    fg_ids: tuple[int, ...] | None = ()  # None: names not resolved (no label set; only the summary builds this)
    ignore_id: int | None = None

    @property
    def channels(self) -> dict[str, int]:
        return {m: (self.label_nc if m == "seg" else MODALITY_CHANNELS[m]) for m in self.inputs}

    @property
    def input_nc(self) -> int:
        """Channels per frame."""
        return sum(self.channels.values())

    def offset(self, modality: str) -> int:
        start = 0
        for m, n in self.channels.items():
            if m == modality:
                return start
            start += n
        raise ConfigError(f"modality '{modality}' is not a model input{did_you_mean(modality, self.inputs)}")

    @property
    def fg_channels(self) -> tuple[int, ...]:
        """Channel indices (within one frame's stack) whose union is the foreground mask."""
        if not self.fg_ids:
            return ()
        base = self.offset("seg")
        return tuple(base + i for i in self.fg_ids)

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, model: ConditioningConfig, data: DataConfig,
                    label_set: LabelSet | None = None) -> ConditioningSpec:
        """Derive the spec from ``model`` and ``data`` (``data.inputs``) and, when given, the dataset's label set."""
        requested = list(dict.fromkeys(data.inputs))
        for m in requested:
            if m not in MODALITY_ORDER:
                raise ConfigError(f"data.inputs has unknown modality '{m}'{did_you_mean(m, MODALITY_ORDER)}")
        inputs = [m for m in MODALITY_ORDER if m in requested]
        if model.use_instance is False and "inst" in inputs:
            inputs.remove("inst")
            log.info("model.use_instance is false: the inst modality is not used")
        if model.use_instance is True and "inst" not in inputs:
            raise ConfigError("model.use_instance is true but data.inputs has no 'inst'; add inst to data.inputs "
                              "or set model.use_instance=false")
        if not inputs:
            raise ConfigError(f"data.inputs {requested!r} has no conditioning modality; use some of "
                              f"{', '.join(MODALITY_ORDER)}")

        label_nc = 0
        ignore_id = None
        if "seg" in inputs:
            if label_set is not None:
                label_nc = label_set.num_classes
                ignore_id = label_set.ignore_id
                if model.label_nc and model.label_nc != label_nc:
                    raise ConfigError(f"model.label_nc={model.label_nc} but the dataset's label set "
                                      f"'{label_set.name}' has {label_nc} classes; set model.label_nc=0 (take it "
                                      f"from the dataset) or {label_nc}")
            elif model.label_nc:
                label_nc = model.label_nc
            else:
                raise ConfigError("model.label_nc is 0 (take it from the dataset) but no dataset label set is "
                                  "given; pass the dataset (--data DATASET) or set model.label_nc")

        fg_names: tuple[str, ...] = ()
        fg_ids: tuple[int, ...] | None = ()
        if model.fg:
            names_m, names_d = list(model.fg_classes), list(data.foreground)
            if names_m and names_d and names_m != names_d:
                raise ConfigError(f"model.fg_classes {names_m} and data.foreground {names_d} disagree; set one")
            fg_names = tuple(names_m or names_d)
            if not fg_names:
                raise ConfigError("model.fg is true but no foreground classes are named; set model.fg_classes "
                                  "(e.g. [car])")
            if "seg" not in inputs:
                raise ConfigError("model.fg needs the seg modality (the foreground mask comes from the labels); "
                                  "add seg to data.inputs or set model.fg=false")
            if label_set is not None:
                fg_ids = tuple(label_set.id_of(n) for n in fg_names)
            elif all(n.isdigit() for n in fg_names):
                fg_ids = tuple(int(n) for n in fg_names)
            else:
                fg_ids = None
            for i in fg_ids or ():
                if i >= label_nc:
                    raise ConfigError(f"foreground class id {i} is outside label_nc {label_nc}")

        spec = cls(tuple(inputs), label_nc, fg_names, fg_ids, ignore_id)
        if model.input_nc and model.input_nc != spec.input_nc:
            raise ConfigError(f"model.input_nc={model.input_nc} but data.inputs {list(inputs)} give "
                              f"{spec.input_nc} channels per frame ({spec.describe()}); fix one or set "
                              f"model.input_nc=0")
        return spec

    def describe(self) -> str:
        return " + ".join(f"{m} {n}" for m, n in self.channels.items())

    # -- tensors ------------------------------------------------------------------------------------------------
    def build(self, frame: Mapping[str, Any], where: str = "") -> torch.Tensor:
        """One frame's modalities (``{"seg": ids, "inst": ids, ...}``) → (..., input_nc, H, W) float32.

        seg, inst and edges come as (..., H, W); pose, densepose and edge_dist with their channels, (..., C, H, W).

        ``where`` (e.g. "sequence 'a' frame 12") is added to error messages.
        """
        import torch

        parts = []
        for m in self.inputs:
            if m not in frame:
                raise DatasetError(f"modality '{m}' is missing{_at(where)}; the model needs "
                                   f"{', '.join(self.inputs)}")
            value = frame[m]
            if m == "seg":
                parts.append(one_hot_labels(value, self.label_nc, self.ignore_id, where))
            elif m == "inst":
                parts.append(instance_boundaries(value))
            elif m == "edges":  # (..., H, W) like seg and inst: a size-1 batch or clip dim is not a channel
                parts.append(_scaled(value, signed=False).unsqueeze(-3))
            else:
                x = _scaled(value, signed=m in _SIGNED)
                want = MODALITY_CHANNELS[m]
                if x.dim() < 3 or x.shape[-3] != want:
                    raise DatasetError(f"modality '{m}' must have {want} channels first (..., {want}, H, W), got "
                                       f"shape {tuple(x.shape)}{_at(where)}")
                parts.append(x)
        shapes = {tuple(p.shape[-2:]) for p in parts}
        if len(shapes) > 1:
            sizes = ", ".join(f"{m} {tuple(p.shape[-2:])}" for m, p in zip(self.inputs, parts))
            raise DatasetError(f"modalities have different sizes ({sizes}){_at(where)}")
        device = parts[0].device
        return torch.cat([p.to(device) for p in parts], dim=-3)

    def foreground_mask(self, cond: torch.Tensor) -> torch.Tensor:
        """(..., input_nc, H, W) conditioning → (..., 1, H, W) union of the foreground classes' channels."""
        import torch

        chans = self.fg_channels
        if not chans:
            return torch.zeros_like(cond[..., :1, :, :])
        return cond[..., list(chans), :, :].sum(dim=-3, keepdim=True).clamp(0.0, 1.0)


def stack_inputs(frames: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-frame conditioning (each (B, C, H, W)), oldest first → (B, T, C, H, W) for the generator."""
    import torch

    return torch.stack(list(frames), dim=1)
