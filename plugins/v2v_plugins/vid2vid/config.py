"""The ``model`` and ``loss`` config sections of the vid2vid model (``Vid2Vid.Config``, ``Vid2Vid.LossConfig``).

Defaults are the paper's (docs/architecture.md, "The vid2vid model"): the generator defaults are street_512's G0 and
the loss weights are the official ones. Everything structural the generator and the discriminators are built from
lives in :class:`Vid2VidConfig`; presets in examples/configs/ set the rows of docs/architecture.md's preset table.
This module imports nothing heavy: the CLI resolves configs without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from v2vcli.errors import ConfigError

__all__ = ["Vid2VidConfig", "Vid2VidLossConfig", "NormKind", "FgMode", "HistoryMode", "GanMode", "VggInput"]

NormKind = Literal["instance", "batch", "syncbatch"]
FgMode = Literal["official", "paper"]
HistoryMode = Literal["real", "empty"]
GanMode = Literal["lsgan", "hinge", "bce"]
VggInput = Literal["official", "imagenet"]


@dataclass(kw_only=True)
class Vid2VidConfig:
    """Structure of the vid2vid networks (generator, image D, temporal Ds, face D)."""

    name: str = "vid2vid"

    # -- conditioning ------------------------------------------------------------------------------------------
    # Channels per frame are derived from data.inputs (seg → label_nc one-hot, inst → 1 boundary channel,
    # pose → 3, densepose → 3, edges → 1, edge_dist → 14).
    label_nc: int = 0  # one-hot classes of `seg`; 0 = the dataset's label set decides (a mismatch is an error)
    use_instance: bool | None = None  # instance-boundary channel; None = exactly when data.inputs has `inst`
    input_nc: int = 0  # channels per frame as a check; 0 = derived from data.inputs
    output_nc: int = 3

    # -- generator ---------------------------------------------------------------------------------------------
    ngf: int = 128  # width of G0's first layer; scale s uses ngf / 2^s
    n_downsample: int = 3  # stride-2 convs in G0's encoders (and transposed convs in its heads)
    n_blocks: int = 9  # G0 residual blocks: n_blocks - n_blocks//2 per encoder, n_blocks//2 per head
    n_blocks_local: int = 3  # residual blocks per head at the finer scales
    n_scales_spatial: int = 1  # S: G0 plus S-1 finer scales (coarse-to-fine)
    n_frames_G: int = 3  # frames the generator sees: the current one and L = n_frames_G - 1 past frames
    norm: NormKind = "instance"  # InstanceNorm2d(affine=True) | BatchNorm2d | SyncBatchNorm
    flow_multiplier: float = 20.0  # flow head output scale (pixels) at G0; ×2^s at scale s
    init_std: float = 0.02  # conv weights ~ N(0, init_std); norm weights ~ N(1, init_std)
    history: HistoryMode = "real"  # first L frames of a training clip: real frames, or empty history (pose)

    # -- foreground branch ---------------------------------------------------------------------------------------
    fg: bool = False  # separate foreground encoder-decoder (street)
    fg_classes: list[str] = field(default_factory=list)  # classes of the mask M; empty = data.foreground
    fg_mode: FgMode = "official"  # official: foreground never warped; paper: Eq. 4 blends the warp in too

    # -- image discriminator ---------------------------------------------------------------------------------------
    num_D: int = 2  # spatial scales of the multi-scale PatchGAN
    n_layers_D: int = 3
    ndf: int = 64

    # -- temporal discriminators ---------------------------------------------------------------------------------
    n_scales_temporal: int = 2  # (official default) temporal scale k sees n_frames_D frames, n_frames_D^k apart
    n_frames_D: int = 3
    num_D_T: int = 0  # spatial scales of each temporal D; 0 = num_D

    # -- face discriminator (pose data) ----------------------------------------------------------------------------
    face_D: bool = False

    # -- training schedule -------------------------------------------------------------------------------------
    niter_fix_global: int = 0  # epochs that train only the newest (finest) scale after --init-from
    # Official meaning: 1 = previous outputs are always fed detached; k > 1 = up to k (grown 1, 2, 4 ... with
    # the clip length every train.niter_step epochs) consecutive frames of a chunk stay attached.
    max_frames_backpropagate: int = 1

    # -- efficiency ---------------------------------------------------------------------------------------------
    activation_checkpointing: bool = False  # recompute residual blocks in backward
    channels_last: bool = False

    def __post_init__(self) -> None:
        positive = {"ngf": self.ngf, "n_scales_spatial": self.n_scales_spatial, "n_frames_G": self.n_frames_G,
                    "output_nc": self.output_nc, "num_D": self.num_D, "n_layers_D": self.n_layers_D,
                    "ndf": self.ndf, "n_frames_D": self.n_frames_D}
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"model.{key} must be at least 1, got {value}")
        non_negative = {"label_nc": self.label_nc, "input_nc": self.input_nc, "n_downsample": self.n_downsample,
                        "n_blocks": self.n_blocks, "n_blocks_local": self.n_blocks_local,
                        "n_scales_temporal": self.n_scales_temporal, "num_D_T": self.num_D_T,
                        "niter_fix_global": self.niter_fix_global,
                        "max_frames_backpropagate": self.max_frames_backpropagate}
        for key, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"model.{key} must be 0 or more, got {value}")
        if self.n_frames_G < 2:
            raise ConfigError(f"model.n_frames_G must be at least 2 (the current frame and one past frame), "
                              f"got {self.n_frames_G}")
        if self.init_std <= 0:
            raise ConfigError(f"model.init_std must be positive, got {self.init_std}")
        # Each finer scale halves ngf (and the foreground width), which must stay a whole number of channels.
        last = 2 ** (self.n_scales_spatial - 1)
        if self.ngf % last or (self.fg and self.fg_width % last):
            need = last * (2 if self.fg and self.n_downsample > 2 else 1)
            raise ConfigError(f"model.ngf={self.ngf} cannot be halved for {self.n_scales_spatial} spatial scales"
                              f"{' with the foreground branch' if self.fg else ''}; use a multiple of {need}")

    @property
    def n_past(self) -> int:
        """L: previous frames the generator conditions on."""
        return self.n_frames_G - 1

    @property
    def fg_width(self) -> int:
        """Width of G0's foreground branch: ngf/2 when n_downsample > 2 (official), else ngf."""
        return self.ngf // 2 if self.n_downsample > 2 else self.ngf

    @property
    def temporal_scales_D(self) -> int:
        """Spatial scales of each temporal discriminator."""
        return self.num_D_T or self.num_D


@dataclass(kw_only=True)
class Vid2VidLossConfig:
    """Loss weights and options (paper defaults). A weight of 0 disables its term."""

    gan_mode: GanMode = "lsgan"
    lambda_feat: float = 10.0  # discriminator feature matching
    lambda_vgg: float = 10.0  # VGG19 perceptual on final and raw; 0 disables (and needs no weights)
    vgg_weights: str = "vgg19"  # weights name (`v2v weights list`)
    vgg_input: VggInput = "official"  # official: [-1, 1] straight into VGG19; imagenet: [0, 1] + ImageNet mean/std
    lambda_flow: float = 10.0  # flow L1 to the reference flow, used ×1/2^(S-1)
    lambda_warp: float = 10.0  # L1 between warp(real x_{t-1}, predicted flow) and real x_t
    lambda_temporal: float = 10.0  # L1 between x_t and warp(x_{t-1}, reference flow), detached
    lambda_mask: float = 0.0  # L1(m, 0); the official code used 1 only when training from empty history
    lambda_face: float = 2.0  # multiplier of the face discriminator's terms
    conf_threshold: float = 0.02  # photometric confidence: Σ_RGB (x_t − warp(x_{t-1}, flow_ref))² < threshold

    def __post_init__(self) -> None:
        for key in ("lambda_feat", "lambda_vgg", "lambda_flow", "lambda_warp", "lambda_temporal", "lambda_mask",
                    "lambda_face", "conf_threshold"):
            value = getattr(self, key)
            if value < 0:
                raise ConfigError(f"loss.{key} must be 0 or more, got {value}")
