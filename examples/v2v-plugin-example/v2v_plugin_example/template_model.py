"""A template model: ``template``, a small per-frame conv net from a label map to RGB, trained with an L1 loss.

Copy this file to add a model. It is the smallest thing the trainer (``v2v train``) and the synthesizer
(``v2v synthesize``) drive through the model contract, :class:`v2vcli.model.VideoModel`:

* ``name``, and the ``Config`` / ``LossConfig`` dataclasses: the ``model`` and ``loss`` sections of a config
  selected by ``model.name: template`` (``--set model.ngf=32`` works like for the built-in models);
* ``networks()``: every network by checkpoint name, ``"G"`` always (checkpoints, EMA and synthesis use it);
* ``loss_names``: the loss terms ``train_step`` reports;
* ``build_training()``: what only training needs (discriminators, loss modules); nothing here;
* ``train_step(batch)``: one optimisation step on a :class:`~v2vcli.data.clips.ClipBatch`: each trained
  network's forward runs through ``self.data_parallel(name, net)`` (DDP in a distributed run, so gradients are
  averaged over the ranks), and ``self.optimize(name, loss)`` steps its optimizer (NaN guard, clipping, fp16
  scaling); it returns a :class:`~v2vcli.model.StepResult`;
* ``frame_generator()``: a :class:`~v2vcli.model.FrameGenerator` that makes one frame at a time for synthesis
  and validation.

The base class provides the rest: one Adam per network with the linear-decay LR schedule, the EMA of G,
checkpoints, resume and distributed training. Override ``history_frames`` (real frames a clip starts from, vid2vid's
L), ``needs_flow`` (batches carry the reference flow) or ``optimizer_params`` when the model needs them.

Only the hook in the package's ``__init__`` imports this module, when the registry is first asked for models, so
``v2v --help`` does not pay for torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from v2vcli.config import V2VConfig
from v2vcli.data.clips import ClipBatch
from v2vcli.data.layout import LabelSet
from v2vcli.errors import ConfigError
from v2vcli.io.preview import colorize_inputs
from v2vcli.model import FrameGenerator, FrameOutput, StepResult, VideoModel

__all__ = ["TemplateConfig", "TemplateLossConfig", "TemplateModel", "TemplateGenerator", "build_generator"]


@dataclass(kw_only=True)
class TemplateConfig:
    """The ``model`` section of ``model.name: template``."""

    name: str = "template"
    ngf: int = 16  # feature channels of the hidden layers
    n_layers: int = 3  # 3×3 convolutions, the last one to RGB

    def __post_init__(self) -> None:
        if self.ngf < 1 or self.n_layers < 1:
            raise ConfigError(f"model.ngf and model.n_layers must be at least 1, got {self.ngf} and {self.n_layers}")


@dataclass(kw_only=True)
class TemplateLossConfig:
    """The ``loss`` section of ``model.name: template``."""

    lambda_l1: float = 1.0

    def __post_init__(self) -> None:
        if self.lambda_l1 <= 0:
            raise ConfigError(f"loss.lambda_l1 must be positive, got {self.lambda_l1:g}")


def build_generator(label_nc: int, cfg: TemplateConfig) -> nn.Module:
    """(N, label_nc, H, W) one-hot labels → (N, 3, H, W) frames in [-1, 1]; any size."""
    layers: list[nn.Module] = []
    c = label_nc
    for _ in range(cfg.n_layers - 1):
        layers += [nn.Conv2d(c, cfg.ngf, 3, padding=1), nn.ReLU()]
        c = cfg.ngf
    return nn.Sequential(*layers, nn.Conv2d(c, 3, 3, padding=1), nn.Tanh())


def one_hot(inputs: Mapping[str, torch.Tensor], label_nc: int) -> torch.Tensor:
    """``inputs["seg"]`` (..., H, W) label ids → (..., label_nc, H, W) float one-hot."""
    return F.one_hot(inputs["seg"].long(), label_nc).movedim(-1, -3).float()


class TemplateGenerator(FrameGenerator):
    """Stateless: each frame from its own labels; a ``real`` frame is passed through."""

    history_frames = 0

    def __init__(self, generator: nn.Module, label_nc: int, device: torch.device) -> None:
        self.G, self.label_nc, self.device = generator, label_nc, device

    def reset(self) -> None:
        """Nothing to forget."""

    def step(self, inputs: Mapping[str, Any], real: torch.Tensor | None = None) -> FrameOutput:
        if real is not None:
            return FrameOutput(real.to(self.device).float())
        cond = one_hot({"seg": torch.as_tensor(inputs["seg"])}, self.label_nc).to(self.device)
        with torch.no_grad():
            return FrameOutput(self.G(cond).float())


class TemplateModel(VideoModel):
    """Label map → frame, one frame at a time; one network ``G``, one loss ``G_L1``."""

    name: ClassVar[str] = "template"
    Config: ClassVar[type] = TemplateConfig
    LossConfig: ClassVar[type] = TemplateLossConfig

    def __init__(self, cfg: V2VConfig, label_set: LabelSet | None = None, device: Any = "cpu") -> None:
        super().__init__(cfg, label_set, device)
        if list(cfg.data.inputs) != ["seg"] or label_set is None:
            raise ConfigError(f"model 'template' is conditioned on label maps only: set data.inputs=[seg] (got "
                              f"{list(cfg.data.inputs)}) on a dataset with a label set")
        self.label_nc = label_set.num_classes
        self.G = build_generator(self.label_nc, cfg.model).to(self.device)

    # -- the contract ----------------------------------------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G}

    @property
    def loss_names(self) -> tuple[str, ...]:
        return ("G_L1",)

    @property
    def needs_flow(self) -> bool:
        return False  # no temporal loss: the loader need not read or compute flow

    def build_training(self) -> None:
        """Nothing beyond G: no discriminator, and the L1 loss is a function."""

    def train_step(self, batch: ClipBatch) -> StepResult:
        b = batch.to(self.device, non_blocking=True)
        real = b.frames.flatten(0, 1)  # every frame of every clip is a sample: (B·T, 3, H, W)
        cond = one_hot(b.inputs, self.label_nc).flatten(0, 1)
        G = self.data_parallel("G", self.G)  # DDP in a distributed run (averages G's gradients), else G itself
        with self.autocast():
            fake = G(cond)
        loss = self.cfg.loss.lambda_l1 * F.l1_loss(fake.float(), real)
        stepped = self.optimize("G", loss)
        # what `train.sample_every` writes: (B, T, 3, H, W) clips, the first one kept
        self.set_visuals(labels=colorize_inputs(b.inputs, self.label_set), generated=fake.detach().view(b.frames.shape),
                         real=b.frames)
        value = float(loss.detach())
        return StepResult({"G_L1": value, "G_total": value}, frames=int(real.shape[0]), skipped=not stepped,
                          info={"clip_frames": int(b.length)})

    def frame_generator(self, use_ema: bool = True) -> TemplateGenerator:
        return TemplateGenerator(self.eval_generator() if use_ema else self.G, self.label_nc, self.device)
