"""vid2vid losses against hand-computed values, VGG perceptual rules, D gradients, efficiency helpers."""

from __future__ import annotations

import math
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from v2v_plugins.gan.discriminators import Vid2VidDiscriminators
from v2v_plugins.gan.efficiency import InstanceNorm2dFP32, autocast, autocast_dtype, channels_last
from v2v_plugins.gan.losses import (
    GANLoss,
    Vid2VidLoss,
    feature_matching_loss,
    mask_loss,
    masked_l1,
    photometric_confidence,
)
from v2v_plugins.gan.perceptual import (
    IMAGENET_STD,
    VGG19_LAYER_WEIGHTS,
    VGG19Features,
    VGGLoss,
    load_vgg19_features,
    pool_to_width,
)
from v2vcli.errors import ConfigError, WeightsError

REAL = [torch.tensor([[0.5, -1.0]])]  # per-scale logits
FAKE = [torch.tensor([[2.0, 0.0]])]


def sp(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.parametrize(("mode", "d_real", "d_fake", "g"), [
    ("lsgan", (0.25 + 4) / 2, (4 + 0) / 2, (1 + 1) / 2),
    ("hinge", (0.5 + 2) / 2, (3 + 1) / 2, -(2 + 0) / 2),
    ("bce", (sp(-0.5) + sp(1)) / 2, (sp(2) + sp(0)) / 2, (sp(-2) + sp(0)) / 2),
])
def test_gan_loss_hand_values(mode: str, d_real: float, d_fake: float, g: float) -> None:
    gan = GANLoss(mode)
    assert gan.real(REAL).item() == pytest.approx(d_real)
    assert gan.fake(FAKE).item() == pytest.approx(d_fake)
    assert gan.discriminator(REAL, FAKE).item() == pytest.approx(0.5 * (d_real + d_fake))
    assert gan.generator(FAKE).item() == pytest.approx(g)
    # scales are summed; a full D output (per-scale feature lists) uses each scale's last map
    two = [[torch.zeros(1, 2), REAL[0]], [torch.zeros(1, 2), REAL[0]]]
    assert gan.real(two).item() == pytest.approx(2 * d_real)


def test_gan_loss_sample_weights_and_mode_check() -> None:
    gan = GANLoss("lsgan")
    pred = torch.tensor([[[[0.0]]], [[[3.0]]]])  # (2, 1, 1, 1)
    assert gan.real(pred, torch.tensor([1.0, 0.0])).item() == pytest.approx(1.0)
    assert gan.real(pred, torch.tensor([0.0, 1.0])).item() == pytest.approx(4.0)
    assert gan.real(pred, torch.tensor([0.0, 0.0])).item() == 0.0
    with pytest.raises(ConfigError, match="hinge"):
        GANLoss("hinged")


def test_feature_matching_weights() -> None:
    def feats(values: list[float], grad: bool = False) -> list[torch.Tensor]:
        return [torch.full((1, 2, 3, 3), float(v), requires_grad=grad) for v in values]

    # two scales of a 3-layer PatchGAN: 5 maps each, the logits (last) excluded; weight (4/4)·(1/2)
    fake = [feats([0, 0, 0, 0, 0], True), feats([0, 0, 0, 0, 0], True)]
    real = [feats([1, 2, 3, 4, 100], True), feats([0.5, 0.5, 0.5, 0.5, 100], True)]
    loss = feature_matching_loss(fake, real)
    assert loss.item() == pytest.approx(0.5 * (1 + 2 + 3 + 4) + 0.5 * 2)
    loss.backward()
    assert real[0][0].grad is None and fake[0][0].grad is not None  # real features are targets
    # one scale of a 2-layer PatchGAN: weight 4/3
    assert feature_matching_loss([feats([0, 0, 0, 0])], [feats([1, 1, 1, 9])]).item() == pytest.approx(4.0)


class ScaledCopies(nn.Module):
    """A stand-in extractor: five 'layers' = the prepared input times 1..5, recording what it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.seen.append(tuple(x.shape))
        return [x * k for k in range(1, 6)]


def test_vgg_loss_weights_and_normalisation() -> None:
    fake = torch.zeros(1, 3, 4, 4)  # 0.5 in [0, 1]
    real = torch.full((1, 3, 4, 4), 0.5)  # 0.75 in [0, 1]
    imagenet = VGGLoss(features=ScaledCopies(), input_norm="imagenet")
    per_unit = 0.25 * sum(1 / s for s in IMAGENET_STD) / 3  # mean |Δ| after ImageNet normalisation
    assert imagenet(fake, real).item() == pytest.approx(
        sum(w * k * per_unit for w, k in zip(VGG19_LAYER_WEIGHTS, range(1, 6))), rel=1e-5)
    # default = official: [-1, 1] straight into VGG19 (networks.py VGGLoss), so mean |Δ| is 0.5 per unit
    loss = VGGLoss(features=ScaledCopies())
    assert loss.input_norm == "official"
    expected = sum(w * k * 0.5 for w, k in zip(VGG19_LAYER_WEIGHTS, range(1, 6)))
    assert loss(fake, real).item() == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(loss.prepare(real), real)
    with pytest.raises(ConfigError, match="vgg_input 'imagnet'"):
        VGGLoss(features=ScaledCopies(), input_norm="imagnet")
    from v2v_plugins.vid2vid.config import Vid2VidLossConfig

    built = Vid2VidLoss.from_config(types.SimpleNamespace(n_scales_spatial=1), Vid2VidLossConfig(vgg_input="imagenet"),
                                    vgg_random_init=True)
    assert built.vgg.input_norm == "imagenet"  # type: ignore[union-attr]
    assert VGG19_LAYER_WEIGHTS == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    # final and raw share one extractor pass; the real features are computed once
    extractor = ScaledCopies()
    shared = VGGLoss(features=extractor)
    both = shared.multi([fake, real], real)
    assert both[0].item() == pytest.approx(expected, rel=1e-5) and both[1].item() == 0.0
    assert [s[0] for s in extractor.seen] == [2, 1]
    d = _tiny_d()
    out = Vid2VidLoss(vgg=VGGLoss(features=ScaledCopies()), lambda_vgg=2.0).generator_frame(
        d, labels=torch.zeros(1, 2, 4, 4), real=real, fake=fake, raw=real)
    assert out.terms["G_vgg"].item() == pytest.approx(2 * expected, rel=1e-5)
    assert out.terms["G_vgg_raw"].item() == 0.0


def test_vgg_pools_until_width_fits() -> None:
    extractor = ScaledCopies()
    loss = VGGLoss(features=extractor)
    for width, seen in [(1024, 1024), (2048, 1024), (1025, 512), (3000, 750)]:
        extractor.seen.clear()
        loss(torch.zeros(1, 3, 4, width), torch.zeros(1, 3, 4, width))
        assert [s[-1] for s in extractor.seen] == [seen, seen]
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 2, 8)
    pooled = pool_to_width(x, 4)
    torch.testing.assert_close(pooled, torch.tensor([[[[4.5, 6.5, 8.5, 10.5]]]]))  # 2×2 block means
    assert pool_to_width(x, 8) is x


def test_vgg19_features_match_torchvision_architecture() -> None:
    from torchvision.models import vgg19

    with torch.device("meta"):
        tv = vgg19().features.state_dict()
        ours = VGG19Features().features.state_dict()
    assert ours.keys() == {k for k in tv if int(k.split(".")[0]) < 30}
    assert all(ours[k].shape == tv[k].shape for k in ours)
    torch.manual_seed(0)
    feats = VGG19Features()(torch.randn(1, 3, 32, 32))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4),
                                                  (512, 2, 2)]


def test_vgg19_weights_from_file_and_errors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = VGG19Features()
    state = {f"features.{k}": v.half() for k, v in source.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision files carry the classifier: ignored
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    loaded = load_vgg19_features(path, verify=False)
    source.features.load_state_dict({k: v.half().float() for k, v in source.features.state_dict().items()})
    x = torch.randn(1, 3, 16, 16)
    for ours, theirs in zip(loaded(x), source(x)):
        torch.testing.assert_close(ours, theirs)
    with pytest.raises(WeightsError, match="sha256"):
        load_vgg19_features(path)  # a random file is not torchvision's
    with pytest.raises(WeightsError, match="not found"):
        Vid2VidLoss(lambda_vgg=10)  # no vgg19 in the isolated cache
    assert Vid2VidLoss(lambda_vgg=0).vgg is None  # disabled term needs no file
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="lack"):
        load_vgg19_features(bad, verify=False)


def _tiny_d(**kw: object) -> Vid2VidDiscriminators:
    torch.manual_seed(0)
    args: dict[str, object] = dict(label_channels=2, ndf=4, num_d=2)
    args.update(kw)
    return Vid2VidDiscriminators(**args)  # type: ignore[arg-type]


def test_flow_warp_temporal_mask_terms_with_confidence() -> None:
    torch.manual_seed(0)
    n, h, w = 2, 4, 6
    real_prev = torch.rand(n, 3, h, w) * 2 - 1
    real = real_prev.clone()
    real[0, :, 1, 2] += 0.5  # photometric error → not confident there
    real[1, 0, 3, 5] -= 0.01  # ‖·‖₂ = 0.01 < 0.02 → still confident
    flow_ref = torch.zeros(n, 2, h, w)
    conf = photometric_confidence(real, real_prev, flow_ref)
    assert conf.shape == (n, 1, h, w) and conf.sum().item() == n * h * w - 1 and conf[0, 0, 1, 2] == 0
    flow = torch.zeros(n, 2, h, w, requires_grad=True)
    with torch.no_grad():
        flow[:, 0] = 1.0  # one pixel to the right
    fake_prev = (torch.rand(n, 3, h, w) * 2 - 1).requires_grad_()
    fake = (torch.rand(n, 3, h, w) * 2 - 1).requires_grad_()
    mask = torch.full((n, 1, h, w), 0.25)
    loss = Vid2VidLoss(lambda_vgg=0, lambda_feat=0, lambda_mask=3.0, n_scales_spatial=2)
    out = loss.generator_frame(_tiny_d(), labels=torch.zeros(n, 2, h, w), real=real, fake=fake,
                               real_prev=real_prev, fake_prev=fake_prev, flow=flow, mask=mask, flow_ref=flow_ref)
    c = conf
    # flow: |1 − 0| on dx only, mean over 2 channels
    assert out.terms["F_flow"].item() == pytest.approx(10 / 2 * (c.sum().item() * 1.0) / (n * 2 * h * w))
    shifted = torch.cat([real_prev[..., 1:], real_prev[..., -1:]], dim=-1)  # border padding at the right
    assert out.terms["F_warp"].item() == pytest.approx(10 * ((shifted - real).abs() * c).mean().item(), rel=1e-5)
    assert out.terms["G_temporal"].item() == pytest.approx(10 * ((fake - fake_prev).abs() * c).mean().item(),
                                                           rel=1e-5)
    assert out.terms["F_mask"].item() == pytest.approx(3.0 * 0.25 * c.mean().item())  # masked by conf (official)
    assert c.mean().item() < 1.0
    assert mask_loss(mask).item() == pytest.approx(0.25)  # without conf: unmasked
    assert set(out.terms) == {"G_GAN", "F_flow", "F_warp", "G_temporal", "F_mask"}
    assert out.total.item() == pytest.approx(sum(v.item() for v in out.terms.values()), rel=1e-6)
    out.total.backward()
    assert fake_prev.grad is None  # the temporal target is detached
    assert fake.grad is not None and flow.grad is not None
    first = loss.generator_frame(_tiny_d(), labels=torch.zeros(n, 2, h, w), real=real, fake=fake)
    assert set(first.terms) == {"G_GAN"}  # first frame: no history, no flow terms


def test_confidence_follows_reference_flow() -> None:
    torch.manual_seed(1)
    prev = torch.rand(1, 3, 5, 7) * 2 - 1
    flow = torch.zeros(1, 2, 5, 7)
    flow[:, 1] = 1.0  # x_t(p) = x_{t-1}(p + (0, 1))
    cur = torch.cat([prev[:, :, 1:], prev[:, :, -1:]], dim=2)
    assert photometric_confidence(cur, prev, flow).min().item() == 1.0
    assert photometric_confidence(cur, prev, torch.zeros_like(flow)).mean().item() < 0.5
    assert masked_l1(torch.ones(1, 2, 2, 2), torch.zeros(1, 2, 2, 2),
                     torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])).item() == pytest.approx(0.25)


def test_image_terms_and_discriminator_balance() -> None:
    torch.manual_seed(0)
    d = _tiny_d()
    labels, real = torch.rand(2, 2, 16, 16), torch.rand(2, 3, 16, 16) * 2 - 1
    fake, raw = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    loss = Vid2VidLoss(lambda_vgg=0, lambda_feat=10)
    gan = GANLoss("lsgan")
    with torch.no_grad():
        r, f, fr = d.forward_image(labels, real), d.forward_image(labels, fake), d.forward_image(labels, raw)
    out = loss.discriminator_frame(d, labels=labels, real=real, fake=fake, raw=raw)
    assert out.terms["D_real"].item() == pytest.approx(gan.real(r).item(), rel=1e-5)
    assert out.terms["D_fake"].item() == pytest.approx(0.5 * gan.fake(f).item(), rel=1e-5)
    assert out.terms["D_fake_raw"].item() == pytest.approx(0.5 * gan.fake(fr).item(), rel=1e-5)
    # ½(real + fake) + ½(real + raw)
    expected = 0.5 * (gan.real(r) + gan.fake(f)) + 0.5 * (gan.real(r) + gan.fake(fr))
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-5)
    g = loss.generator_frame(d, labels=labels, real=real, fake=fake, raw=raw)
    assert g.terms["G_GAN"].item() == pytest.approx(gan.generator(f).item(), rel=1e-5)
    assert g.terms["G_feat_raw"].item() == pytest.approx(10 * feature_matching_loss(fr, r).item(), rel=1e-5)


def test_hinge_and_lsgan_differ_on_the_same_inputs() -> None:
    d = _tiny_d()
    torch.manual_seed(3)
    batch = dict(labels=torch.rand(1, 2, 16, 16), real=torch.rand(1, 3, 16, 16), fake=torch.rand(1, 3, 16, 16))
    totals = {mode: Vid2VidLoss(gan_mode=mode, lambda_vgg=0).discriminator_frame(d, **batch).total.item()
              for mode in ("lsgan", "hinge", "bce")}
    assert len({round(v, 6) for v in totals.values()}) == 3


def test_gradients_reach_every_discriminator_parameter_on_19_frames() -> None:
    d = _tiny_d(face_d=True, face_crop_size=16, n_scales_temporal=3)
    loss = Vid2VidLoss(lambda_vgg=0)
    torch.manual_seed(0)
    b, t, h, w = 1, 19, 32, 32
    real, fake = torch.rand(b, t, 3, h, w) * 2 - 1, torch.rand(b, t, 3, h, w) * 2 - 1
    flow = torch.randn(b, t, 2, h, w)
    labels = torch.rand(b, t, 2, h, w)
    head = torch.tensor([[16.0, 12, 0.9], [14, 10, 0.9], [18, 10, 0.9], [12, 11, 0.9], [20, 11, 0.9]])
    head = head.expand(b, t, 5, 3)
    frame = loss.discriminator_frame(d, labels=labels, real=real, fake=fake, raw=fake.flip(1), head_points=head)
    clip = loss.discriminator_temporal(d, real_clip=real, fake_clip=fake, flow_ref_clip=flow)
    assert clip.active_temporal == [0, 1, 2] and clip.skipped_temporal == []
    (frame.total + clip.total).backward()
    no_grad = [n for n, p in d.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []
    # the generator side reaches the fake clip through every temporal scale
    fake_g = fake.clone().requires_grad_()
    g = loss.generator_temporal(d, real_clip=real, fake_clip=fake_g, flow_ref_clip=flow)
    assert set(g.terms) == {f"{k}_T{i}" for k in ("G_GAN", "G_feat") for i in range(3)}
    g.total.backward()
    assert fake_g.grad is not None and fake_g.grad[0, 0].abs().sum() > 0  # frame 0 is only in the 19-frame window


def test_short_clip_skips_and_reports_temporal_scales() -> None:
    d = _tiny_d()
    loss = Vid2VidLoss(lambda_vgg=0)
    clip = torch.rand(1, 7, 3, 16, 16)
    out = loss.discriminator_temporal(d, real_clip=clip, fake_clip=clip.flip(1), flow_ref_clip=torch.zeros(
        1, 7, 2, 16, 16))
    assert out.active_temporal == [0, 1] and out.skipped_temporal == [2]
    assert set(out.terms) == {"D_real_T0", "D_fake_T0", "D_real_T1", "D_fake_T1"}
    none = loss.generator_temporal(d, real_clip=clip[:, :2], fake_clip=clip[:, :2],
                                   flow_ref_clip=torch.zeros(1, 2, 2, 16, 16))
    assert none.terms == {} and none.total.item() == 0.0 and none.skipped_temporal == [0, 1, 2]


def test_losses_are_fp32_under_autocast() -> None:
    d = _tiny_d()
    loss = Vid2VidLoss(vgg=VGGLoss(features=ScaledCopies()))
    x = torch.rand(1, 3, 16, 16)
    with autocast("bf16", "cpu"):
        out = loss.generator_frame(d, labels=torch.rand(1, 2, 16, 16), real=x, fake=x.flip(-1), real_prev=x,
                                   fake_prev=x, flow=torch.zeros(1, 2, 16, 16), flow_ref=torch.zeros(1, 2, 16, 16))
    assert all(v.dtype == torch.float32 for v in out.terms.values())
    assert out.total.dtype == torch.float32


def test_from_config_honours_names() -> None:
    model = types.SimpleNamespace(n_scales_spatial=3)
    cfg = types.SimpleNamespace(gan_mode="hinge", lambda_feat=1.0, lambda_vgg=0.0, vgg_weights="vgg19",
                                lambda_flow=8.0, lambda_warp=2.0, lambda_temporal=3.0, lambda_mask=1.0,
                                lambda_face=4.0, conf_threshold=0.1)
    loss = Vid2VidLoss.from_config(model, cfg)
    assert loss.gan.mode == "hinge" and loss.vgg is None and loss.lambda_face == 4.0
    assert loss.n_scales_spatial == 3 and loss.conf_threshold == 0.1
    cfg.lambda_vgg = 10.0
    with pytest.raises(WeightsError, match="vgg19"):
        Vid2VidLoss.from_config(model, cfg)
    assert Vid2VidLoss.from_config(model, cfg, vgg_random_init=True).vgg is not None
    config = pytest.importorskip("v2v_plugins.vid2vid.config", reason="the generator's config module is absent")
    real_cfg = Vid2VidLoss.from_config(config.Vid2VidConfig(), config.Vid2VidLossConfig(lambda_vgg=0.0))
    assert real_cfg.gan.mode == "lsgan" and real_cfg.lambda_feat == 10.0 and real_cfg.lambda_face == 2.0


def test_efficiency_helpers() -> None:
    assert autocast_dtype("fp32") is None and autocast_dtype("bf16") is torch.bfloat16
    with pytest.raises(ConfigError, match="bf16"):
        autocast_dtype("bf61")
    with autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    x = torch.randn(2, 3, 8, 8)
    assert channels_last(x).is_contiguous(memory_format=torch.channels_last)
    assert channels_last(torch.randn(2, 4, 3, 8, 8)).is_contiguous()  # 5-D passes through
    conv = channels_last(nn.Conv2d(3, 4, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    norm = InstanceNorm2dFP32(3, affine=True)
    with autocast("bf16", "cpu"):
        y = norm(x.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), nn.functional.instance_norm(x.bfloat16().float(), weight=norm.weight,
                                                                       bias=norm.bias), atol=1e-2, rtol=0)


def test_confidence_is_the_official_sum_of_squares_on_a_noisy_one_pixel_shift() -> None:
    """Issue 19.1: a smooth image shifted by exactly 1 px, 8-bit frames with σ = 2 grey levels of noise each.

    The per-channel error is N(0, 2σ²) (in [-1, 1] units σ = 2·2/255), so Σ_RGB d² / (2σ²) is χ²(3): the official
    threshold Σ d² < 0.02 keeps P(χ²₃ < 0.02/(2σ²)) ≈ 99.9% of the pixels, where the old √Σd² < 0.02 kept ~18%.
    """
    from scipy.stats import chi2

    from v2vcli.warp import warp

    g = torch.Generator().manual_seed(0)
    h, w = 96, 128
    base = torch.nn.functional.interpolate(torch.rand(1, 3, h // 8, w // 8 + 1, generator=g), size=(h, w + 8),
                                           mode="bicubic", align_corners=True).clamp(0, 1) * 200 + 20
    sigma = 2.0  # grey levels

    def frame(x: torch.Tensor) -> torch.Tensor:
        noisy = (x + sigma * torch.randn(x.shape, generator=g)).round().clamp(0, 255)
        return noisy / 127.5 - 1

    prev = frame(base[..., :w])
    cur = frame(base[..., 1:w + 1])  # x_t(p) = x_{t-1}(p + (1, 0))
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0] = 1.0
    conf = photometric_confidence(cur, prev, flow)[..., :, : w - 1]  # the last column warps from the border
    s = 2 * sigma / 255.0
    expected = chi2.cdf(0.02 / (2 * s * s), df=3)
    assert expected > 0.998
    assert conf.mean().item() == pytest.approx(expected, abs=0.003)
    old_rule = ((cur - warp(prev, flow)).pow(2).sum(1).sqrt() < 0.02)[..., : w - 1].float().mean().item()
    assert old_rule < 0.3  # what the square root kept: most of the flow, warp and temporal terms switched off
