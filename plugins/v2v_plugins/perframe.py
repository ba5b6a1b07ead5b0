"""v2v built-in plugin 'perframe': the per-frame ablation of vid2vid (pix2pixHD-style), model name ``perframe``.

Each frame is translated on its own: one encoder-decoder (reflect-pad + 7×7 conv, ``n_downsample`` stride-2 convs,
``n_blocks`` residual blocks, transposed convs, 7×7 conv + tanh) on the frame's conditioning only. No previous
frames, no flow head, no warp/flow/temporal losses, no temporal discriminators: what is left is the multi-scale
image D with GAN + feature matching (+ VGG) losses. It trains through the same model contract and trainer as
vid2vid, which is what makes it a fair ablation (same data, schedule, optimizers, EMA).

Registered by its own ``v2v_register_models`` hook; only light modules are imported at plugin load.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from v2vcli.errors import ConfigError
from v2vcli.hookspecs import hookimpl
from v2vcli.io.preview import colorize_inputs
from v2vcli.model import FrameGenerator, FrameOutput, StepResult, VideoModel

if TYPE_CHECKING:
    import torch
    from torch import nn

    from v2vcli.config import V2VConfig
    from v2vcli.data.clips import ClipBatch
    from v2vcli.data.layout import LabelSet

__all__ = ["PerFrameConfig", "PerFrameLossConfig", "PerFrame", "PerFrameGenerator", "v2v_register_models"]


@dataclass(kw_only=True)
class PerFrameConfig:
    """The ``model`` section of ``perframe``: a pix2pixHD global generator and vid2vid's image D."""

    name: str = "perframe"
    label_nc: int = 0  # 0 = from the dataset's label set
    use_instance: bool | None = None  # instance-boundary channel; None = when data.inputs has inst
    input_nc: int = 0  # channels per frame as a check; 0 = derived from data.inputs
    output_nc: int = 3
    ngf: int = 64
    n_downsample: int = 3
    n_blocks: int = 9
    norm: Literal["instance", "batch"] = "instance"
    init_std: float = 0.02
    num_D: int = 2
    n_layers_D: int = 3
    ndf: int = 64
    # no foreground branch: kept so the shared conditioning code reads the same fields as vid2vid's config
    # (:class:`~v2v_plugins.gan.conditioning.ConditioningConfig`)
    fg: bool = False
    fg_classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.fg:
            raise ConfigError("model.fg: the perframe model has no foreground branch; use model.name=vid2vid")
        for key in ("ngf", "output_nc", "num_D", "n_layers_D", "ndf"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be at least 1, got {getattr(self, key)}")
        if self.n_downsample < 0 or self.n_blocks < 0:
            raise ConfigError("model.n_downsample and model.n_blocks must be 0 or more")


@dataclass(kw_only=True)
class PerFrameLossConfig:
    """The ``loss`` section of ``perframe`` (a weight of 0 disables its term)."""

    gan_mode: Literal["lsgan", "hinge", "bce"] = "lsgan"
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    vgg_weights: str = "vgg19"
    vgg_input: Literal["official", "imagenet"] = "official"  # as vid2vid's loss.vgg_input

    def __post_init__(self) -> None:
        if self.lambda_feat < 0 or self.lambda_vgg < 0:
            raise ConfigError("loss.lambda_feat and loss.lambda_vgg must be 0 or more")


def build_perframe_generator(cfg: PerFrameConfig, input_nc: int) -> nn.Module:
    """conv7 → downs → residual blocks → ups → conv7 + tanh, from the GAN blocks (N(0, init_std) init)."""
    from torch import nn

    from v2v_plugins.gan.blocks import conv7, conv7_out, down, init_weights, res_blocks, up

    layers, c = conv7(input_nc, cfg.ngf, cfg.norm), cfg.ngf
    for _ in range(cfg.n_downsample):
        layers += down(c, 2 * c, cfg.norm)
        c *= 2
    layers += res_blocks(cfg.n_blocks, c, cfg.norm)
    for _ in range(cfg.n_downsample):
        layers += up(c, c // 2, cfg.norm)
        c //= 2
    net = nn.Sequential(*layers, conv7_out(c, cfg.output_nc), nn.Tanh())
    init_weights(net, cfg.init_std)
    return net


class PerFrameGenerator(FrameGenerator):
    """Stateless: each frame from its own conditioning (``real`` frames are passed through)."""

    history_frames = 0

    def __init__(self, generator: nn.Module, build: Callable[[Mapping[str, Any]], torch.Tensor], device: Any,
                 autocast: Any) -> None:
        self.G, self.build, self.device, self._autocast = generator, build, device, autocast

    def reset(self) -> None:
        """Nothing to forget."""

    def step(self, inputs: Mapping[str, Any], real: torch.Tensor | None = None) -> FrameOutput:
        import torch

        if real is not None:
            return FrameOutput(real.to(self.device).float())
        cond = self.build(inputs).to(self.device)
        cond = cond.unsqueeze(0) if cond.dim() == 3 else cond
        was = self.G.training
        self.G.eval()
        try:
            with torch.no_grad(), self._autocast():
                frame = self.G(cond).float()
        finally:
            self.G.train(was)
        return FrameOutput(frame)


class PerFrame(VideoModel):
    """The per-frame ablation behind the model contract; networks ``G`` and ``D`` (image D only)."""

    name: ClassVar[str] = "perframe"
    Config: ClassVar[type] = PerFrameConfig
    LossConfig: ClassVar[type] = PerFrameLossConfig

    #: A ready VGG loss module (tests pass random weights); None builds it from loss.vgg_weights when needed.
    vgg_module: nn.Module | None = None

    def __init__(self, cfg: V2VConfig, label_set: LabelSet | None = None, device: Any = "cpu") -> None:
        import torch

        from v2v_plugins.gan.conditioning import ConditioningSpec

        super().__init__(cfg, label_set, device)
        self.spec = ConditioningSpec.from_config(cfg.model, cfg.data, label_set)
        k = 2 ** cfg.model.n_downsample
        w, h = cfg.data.size
        if w % k or h % k:
            raise ConfigError(f"size {w}x{h} does not fit model.n_downsample={cfg.model.n_downsample}: width and "
                              f"height must be multiples of {k}")
        with torch.device(self.device):
            self.nets: dict[str, nn.Module] = {"G": build_perframe_generator(cfg.model, self.spec.input_nc)}
        self.loss_fn: Any = None

    def networks(self) -> dict[str, nn.Module]:
        return dict(self.nets)

    @property
    def needs_flow(self) -> bool:
        return False

    @property
    def loss_names(self) -> tuple[str, ...]:
        lc = self.cfg.loss
        return tuple(["G_GAN"] + (["G_feat"] if lc.lambda_feat else []) + (["G_vgg"] if lc.lambda_vgg else [])
                     + ["D_real", "D_fake"])

    def build_training(self) -> None:
        import torch

        from v2v_plugins.gan.discriminators import Vid2VidDiscriminators
        from v2v_plugins.gan.losses import Vid2VidLoss

        m = self.cfg.model
        with torch.device(self.device):
            self.nets["D"] = Vid2VidDiscriminators(label_channels=self.spec.input_nc, image_channels=m.output_nc,
                                                   ndf=m.ndf, n_layers_d=m.n_layers_D, num_d=m.num_D,
                                                   n_scales_temporal=0)
        lc = self.cfg.loss
        self.loss_fn = Vid2VidLoss(gan_mode=lc.gan_mode, lambda_feat=lc.lambda_feat, lambda_vgg=lc.lambda_vgg,
                                   lambda_flow=0, lambda_warp=0, lambda_temporal=0, lambda_mask=0,
                                   vgg=self.vgg_module, vgg_weights_name=lc.vgg_weights,
                                   vgg_input=lc.vgg_input).to(self.device)

    def train_step(self, batch: ClipBatch) -> StepResult:
        import torch

        from v2v_plugins.gan.parallel import parallel_discriminators

        b = batch.to(self.device, non_blocking=True)
        real = b.frames.flatten(0, 1)  # every frame of every clip is a sample: (B·T, 3, H, W)
        cond = self.spec.build(b.inputs).flatten(0, 1)
        G, D = self.data_parallel("G", self.nets["G"]), self.nets["D"]  # DDP wrappers in a distributed run
        self.set_requires_grad(D, False)
        with self.autocast():
            fake = G(cond)
            g = self.loss_fn.generator_frame(D, labels=cond, real=real, fake=fake)
        ok_g = self.optimize("G", g.total)
        self.set_requires_grad(D, True)
        with self.autocast():
            d = self.loss_fn.discriminator_frame(parallel_discriminators(D, self.data_parallel), labels=cond,
                                                 real=real, fake=fake.detach())
        ok_d = self.optimize("D", d.total)
        terms = {**g.terms, **d.terms}
        values = torch.stack([v.detach().float() for v in terms.values()]
                             + [g.total.detach().float(), d.total.detach().float()]).tolist()
        shape = b.frames.shape
        self.set_visuals(labels=colorize_inputs(b.inputs, self.label_set), generated=fake.detach().view(shape),
                         real=b.frames)
        return StepResult(dict(zip(list(terms) + ["G_total", "D_total"], values)), frames=int(real.shape[0]),
                          skipped=not (ok_g and ok_d), info={"clip_frames": int(shape[1])})

    def frame_generator(self, use_ema: bool = True) -> PerFrameGenerator:
        G = self.eval_generator() if use_ema else self.nets["G"]
        return PerFrameGenerator(G, self.spec.build, self.device, self.autocast)


@hookimpl
def v2v_register_models(register: Callable[[str, type], None]) -> None:
    register(PerFrame.name, PerFrame)
