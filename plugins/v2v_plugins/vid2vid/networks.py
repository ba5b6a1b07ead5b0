"""The vid2vid networks (generator and discriminators, built from config) and the summary behind
`v2v model summary`.

:class:`Vid2Vid` declares the ``model``/``loss`` config sections (``Config``, ``LossConfig``), derives the
conditioning from the config and the dataset's label set, and builds its networks by name (``"G"``; the
discriminators join the same mapping). :func:`summarize_networks` measures any mapping of networks without
allocating weights (meta device): parameters per network, per scale and per module, GFLOP per generated frame
(``torch.utils.flop_counter``: convolutions and matmuls, 1 MAC = 2 FLOP) and the activation memory autograd keeps
for backward. A network takes part through a small protocol:

- ``summary_inputs(size, device) -> tuple``: positional arguments of one forward call at W×H ``size``, batch 1;
- ``summary_calls_per_frame`` (optional, default 1): forward calls per generated frame;
- ``summary_parts() -> {scale: {module: nn.Module}}`` (optional): the per-scale and per-module rows.

This module imports torch only inside functions: the model class registers (and configs resolve) without torch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from v2v_plugins.gan.conditioning import ConditioningSpec
from v2vcli.errors import ConfigError

from .config import Vid2VidConfig, Vid2VidLossConfig

if TYPE_CHECKING:
    from torch import nn

    from v2vcli.config import V2VConfig
    from v2vcli.data.layout import LabelSet

    from .generator import Vid2VidGenerator

__all__ = ["Vid2Vid", "ModelSummary", "NetworkSummary", "ScaleSummary", "PartSummary", "summarize_networks"]

log = logging.getLogger(__name__)


@dataclass
class PartSummary:
    params: int
    gflop: float


@dataclass
class ScaleSummary:
    params: int
    gflop: float
    modules: dict[str, PartSummary] = field(default_factory=dict)


@dataclass
class NetworkSummary:
    cls: str
    params: int
    gflop_per_frame: float  # at the summary's size, batch 1
    activation_mib: float  # tensors autograd saves for backward in one frame's forward (fp32, batch 1)
    calls_per_frame: float = 1.0
    scales: dict[str, ScaleSummary] = field(default_factory=dict)


@dataclass
class ModelSummary:
    model: str
    size: tuple[int, int]  # W×H
    input_nc: int  # conditioning channels per frame
    conditioning: str
    networks: dict[str, NetworkSummary]
    #: training-only networks (image, temporal and face Ds): one row each, GFLOP per application
    discriminators: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(n.params for n in self.networks.values())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["size"] = list(self.size)
        out["total_params"] = self.total_params
        return out


def summarize_networks(nets: Mapping[str, nn.Module], size: tuple[int, int]) -> dict[str, NetworkSummary]:
    """Measure each network (ideally built on the meta device) for one generated frame at W×H ``size``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    out: dict[str, NetworkSummary] = {}
    for name, net in nets.items():
        params = list(net.parameters())
        device = params[0].device if params else torch.device("meta")
        args = net.summary_inputs(size, device)  # type: ignore[operator]
        calls = float(getattr(net, "summary_calls_per_frame", 1))
        param_storages = {p.untyped_storage()._cdata for p in params}
        saved: dict[int, int] = {}
        keep: list[torch.Tensor] = []  # keeps storages alive so their ids stay unique during the pass

        def pack(t: torch.Tensor) -> torch.Tensor:
            st = t.untyped_storage()
            if st._cdata not in param_storages and st._cdata not in saved:
                saved[st._cdata] = st.nbytes()
                keep.append(t)
            return t

        was_training = net.training
        net.train()
        try:
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                    FlopCounterMode(display=False) as counter:
                net(*args)
        finally:
            net.train(was_training)
        counts = counter.get_flop_counts()
        root = type(net).__name__

        def flops_of(prefix: str) -> float:
            return float(sum(counts.get(prefix, {}).values()))

        modname = {id(m): n for n, m in net.named_modules()}
        scales: dict[str, ScaleSummary] = {}
        parts_fn = getattr(net, "summary_parts", None)
        parts: dict[str, dict[str, Any]] = parts_fn() if callable(parts_fn) else {}
        for scale_name, mods in parts.items():
            rows = {}
            for mod_name, mod in mods.items():
                fq = f"{root}.{modname[id(mod)]}"
                rows[mod_name] = PartSummary(_count(mod), flops_of(fq) * calls / 1e9)
            scale_params = sum(r.params for r in rows.values())
            scales[scale_name] = ScaleSummary(scale_params, sum(r.gflop for r in rows.values()), rows)
        out[name] = NetworkSummary(
            cls=type(net).__name__, params=_count(net), gflop_per_frame=counter.get_total_flops() * calls / 1e9,
            activation_mib=sum(saved.values()) * calls / 2**20, calls_per_frame=calls, scales=scales)
        keep.clear()
    return out


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class Vid2Vid:
    """vid2vid (Wang et al., NeurIPS 2018): the sequential generator and its discriminators, built from config."""

    name: ClassVar[str] = "vid2vid"
    Config: ClassVar[type] = Vid2VidConfig
    LossConfig: ClassVar[type] = Vid2VidLossConfig

    def __init__(self, cfg: V2VConfig, label_set: LabelSet | None = None, device: Any = "cpu") -> None:
        self.cfg = cfg
        self.spec = self.conditioning(cfg, label_set)
        if self.spec.fg_ids is None:
            raise ConfigError(f"foreground classes {list(self.spec.fg_names)} need the dataset's label set to "
                              f"become channel ids; pass the dataset")
        self.nets = self.build_networks(cfg, self.spec, device=device)

    @property
    def generator(self) -> Vid2VidGenerator:
        return self.nets["G"]  # type: ignore[return-value]

    def networks(self) -> dict[str, nn.Module]:
        """Every trainable network by name ("G", then the discriminators)."""
        return dict(self.nets)

    # -- construction ----------------------------------------------------------------------------------------------
    @staticmethod
    def conditioning(cfg: V2VConfig, label_set: LabelSet | None = None) -> ConditioningSpec:
        """Per-frame conditioning channels from ``data.inputs``, ``model`` and the dataset's label set."""
        return ConditioningSpec.from_config(cfg.model, cfg.data, label_set)

    @staticmethod
    def size_multiple(model: Vid2VidConfig) -> int:
        """Frame sides must be multiples of 2^(n_downsample + S - 1)."""
        return int(2 ** (model.n_downsample + model.n_scales_spatial - 1))

    @classmethod
    def check_size(cls, cfg: V2VConfig, size: tuple[int, int] | None = None) -> tuple[int, int]:
        w, h = size or tuple(cfg.data.size)
        k = cls.size_multiple(cfg.model)
        # The coarsest feature map must stay at least 2 pixels wide for the residual blocks' reflect padding.
        if w < 2 * k or h < 2 * k or w % k or h % k:
            raise ConfigError(f"size {w}x{h} does not fit model.n_downsample={cfg.model.n_downsample} with "
                              f"n_scales_spatial={cfg.model.n_scales_spatial}: width and height must be multiples "
                              f"of {k} and at least {2 * k} (e.g. {max(2 * k, w // k * k)}x"
                              f"{max(2 * k, h // k * k)})")
        return w, h

    @classmethod
    def build_generator(cls, cfg: V2VConfig, spec: ConditioningSpec, device: Any = None) -> Vid2VidGenerator:
        import torch

        from .generator import Vid2VidGenerator

        with torch.device(device or "cpu"):
            gen = Vid2VidGenerator(cfg.model, spec.input_nc, spec.fg_channels)
        if cfg.model.channels_last:
            gen = gen.to(memory_format=torch.channels_last)
        return gen

    @classmethod
    def build_networks(cls, cfg: V2VConfig, spec: ConditioningSpec, device: Any = None) -> dict[str, nn.Module]:
        """The model's networks by name. Discriminators are added here as they are built ("D", "D_T0", ...)."""
        return {"G": cls.build_generator(cfg, spec, device)}

    # -- summary ------------------------------------------------------------------------------------------------
    @classmethod
    def summary(cls, cfg: V2VConfig, label_set: LabelSet | None = None,
                size: tuple[int, int] | None = None) -> ModelSummary:
        """Parameters, GFLOP per generated frame and activation memory of every network, on the meta device."""
        w, h = cls.check_size(cfg, size)
        spec = cls.conditioning(cfg, label_set)
        nets = cls.build_networks(cfg, spec, device="meta")
        import torch

        from v2v_plugins.gan.discriminators import Vid2VidDiscriminators

        with torch.device("meta"):
            D = Vid2VidDiscriminators.from_config(cfg.model, label_channels=spec.input_nc,
                                                  image_channels=cfg.model.output_nc)
        rows = [{**asdict(r), "input_size": list(r.input_size)} for r in D.summary(w, h)]
        return ModelSummary(cfg.model.name, (w, h), spec.input_nc, spec.describe(),
                            summarize_networks(nets, (w, h)), rows)
