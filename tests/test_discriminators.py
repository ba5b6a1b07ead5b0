"""vid2vid discriminators: parity parameter counts, PatchGAN layout, temporal scales and their inputs, face crops."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

from v2v_plugins.gan.discriminators import (
    HEAD_KEYPOINTS,
    MultiscaleDiscriminator,
    NLayerDiscriminator,
    TemporalScale,
    Vid2VidDiscriminators,
    build_temporal_inputs,
    compose_flows,
    count_parameters,
    crop_regions,
    head_boxes,
    head_points_from_pose_json,
    temporal_scale_plan,
    temporal_windows,
)
from v2vcli.errors import ConfigError


@pytest.mark.parametrize(("num_d", "expected"), [(2, 5_606_786), (3, 8_410_179), (4, 11_213_572)])
def test_image_d_parameter_parity(num_d: int, expected: int) -> None:
    with torch.device("meta"):
        d = MultiscaleDiscriminator(in_channels=39, ndf=64, n_layers=3, num_d=num_d)
    assert count_parameters(d) == expected
    assert [count_parameters(s) for s in d.scales] == [2_803_393] * num_d


def test_temporal_d_parameter_parity() -> None:
    with torch.device("meta"):
        ds = Vid2VidDiscriminators(label_channels=36, num_d=2)
    assert count_parameters(ds.image) == 5_606_786
    assert len(ds.temporal) == 3
    for d in ds.temporal:
        assert d.in_channels == 13
        assert count_parameters(d) == 5_553_538
        assert count_parameters(d.scales[0]) == 2_776_769


def test_from_config_reads_documented_names() -> None:
    cfg = types.SimpleNamespace(num_D=3, n_layers_D=3, ndf=64, n_scales_temporal=2, n_frames_D=3, num_D_T=2,
                                face_D=True, input_nc=0)
    with torch.device("meta"):
        ds = Vid2VidDiscriminators.from_config(cfg, label_channels=36)
    assert count_parameters(ds.image) == 8_410_179
    assert len(ds.temporal) == 2 and all(count_parameters(d) == 5_553_538 for d in ds.temporal)
    assert ds.face is not None and ds.face.in_channels == 39
    with pytest.raises(ConfigError, match="input_nc"):
        Vid2VidDiscriminators.from_config(cfg)


def test_from_config_with_vid2vid_config() -> None:
    config = pytest.importorskip("v2v_plugins.vid2vid.config", reason="the generator's config module is absent")
    cfg = config.Vid2VidConfig(num_D=4)
    with torch.device("meta"):
        ds = Vid2VidDiscriminators.from_config(cfg, label_channels=36)
    assert count_parameters(ds.image) == 11_213_572
    assert ds.face is None and len(ds.temporal) == 2  # the official n_scales_temporal 2
    assert all(len(d.scales) == 4 for d in ds.temporal)  # num_D_T 0 → num_D


def test_patchgan_layout_and_features() -> None:
    d = NLayerDiscriminator(in_channels=5, ndf=8, n_layers=3)
    feats = d(torch.randn(2, 5, 32, 32))
    # 4×4 kernels, padding 2: stride 2 maps 32→17→9→5, stride 1 maps 5→6→7
    assert [tuple(f.shape) for f in feats] == [(2, 8, 17, 17), (2, 16, 9, 9), (2, 32, 5, 5), (2, 64, 6, 6),
                                               (2, 1, 7, 7)]
    norms = [type(m).__name__ for layer in d.layers for m in layer if "Norm" in type(m).__name__]
    assert len(norms) == 3  # none on the first and the last conv
    assert len(NLayerDiscriminator(in_channels=5, ndf=8, n_layers=2)(torch.randn(1, 5, 32, 32))) == 4


def test_multiscale_downsamples_with_avg_pool() -> None:
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(in_channels=3, ndf=4, num_d=3)
    seen: list[torch.Tensor] = []
    for scale in d.scales:
        scale.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    x = torch.randn(1, 3, 20, 24)
    out = d(x)
    assert len(out) == 3 and all(len(s) == 5 for s in out)
    x1 = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    assert torch.equal(seen[0], x)
    torch.testing.assert_close(seen[1], x1)
    torch.testing.assert_close(seen[2], F.avg_pool2d(x1, 3, 2, 1, count_include_pad=False))
    # count_include_pad=False: the corner average covers only the 2×2 pixels inside the frame
    torch.testing.assert_close(seen[1][0, :, 0, 0], x[0, :, :2, :2].mean((1, 2)))
    with pytest.raises(ValueError, match="4 input channels"):
        MultiscaleDiscriminator(in_channels=4, ndf=4)(x)


def test_temporal_scale_plan_spans_and_skips() -> None:
    plan = temporal_scale_plan(19)
    assert [(s.stride, s.span) for s in plan.active] == [(1, 3), (3, 7), (9, 19)]
    assert plan.skipped_indices == []
    plan = temporal_scale_plan(7)
    assert plan.active_indices == [0, 1] and plan.skipped_indices == [2]
    plan = temporal_scale_plan(18)
    assert plan.skipped_indices == [2]
    assert temporal_scale_plan(2).active_indices == []
    with pytest.raises(ConfigError):
        temporal_scale_plan(10, n_frames_d=1)


def test_compose_flows_follows_the_pixel() -> None:
    h, w = 4, 12
    later = torch.zeros(1, 2, h, w)
    later[:, 0] = 2.0  # frame t → t-1: every pixel moves 2 px right
    xs = torch.arange(w, dtype=torch.float32).expand(h, w)
    earlier = torch.zeros(1, 2, h, w)
    earlier[:, 0] = xs / 10  # frame t-1 → t-2: depends on x
    earlier[:, 1] = -xs / 20
    flow = torch.stack([torch.zeros(1, 2, h, w), earlier, later], dim=1)  # (B, T=3, 2, H, W)
    composed = compose_flows(flow, 2)
    assert composed.shape == (1, 1, 2, h, w)
    inner = slice(0, w - 2)  # p + 2 stays inside the frame
    torch.testing.assert_close(composed[0, 0, 0, :, inner], 2 + (xs[:, inner] + 2) / 10)
    torch.testing.assert_close(composed[0, 0, 1, :, inner], -(xs[:, inner] + 2) / 20)
    # constant motion composes additively, border included
    const = torch.zeros(2, 10, 2, h, w)
    const[:, :, 0], const[:, :, 1] = 1.0, -0.5
    nine = compose_flows(const, 9)
    torch.testing.assert_close(nine, const[:, :1].expand(2, 1, 2, h, w) * 9)
    with pytest.raises(ValueError):
        compose_flows(const, 10)


def test_temporal_windows_channel_layout() -> None:
    b, t, h, w = 2, 12, 4, 5
    frames = torch.arange(t, dtype=torch.float32).view(1, t, 1, 1, 1).expand(b, t, 3, h, w).clone()
    frames[1] += 100
    flow = torch.zeros(b, t, 2, h, w)
    flow[:, :, 0], flow[:, :, 1] = 2.0, 1.0
    scale = TemporalScale(1, 3, 3)
    composed = compose_flows(flow, 3)
    out = temporal_windows(frames, composed, scale, [6, 11])
    assert out.shape == (4, 13, h, w)
    # windows of a sample are adjacent: (sample 0, end 6), (0, 11), (1, 6), (1, 11)
    firsts = out[:, 0:9:3, 0, 0].tolist()
    assert firsts == [[0, 3, 6], [5, 8, 11], [100, 103, 106], [105, 108, 111]]
    torch.testing.assert_close(out[:, 9:13, 0, 0], torch.tensor([[6.0, 3.0, 6.0, 3.0]] * 4) / 20)


def test_build_temporal_inputs_on_a_19_frame_clip() -> None:
    b, t, h, w = 1, 19, 8, 8
    real, fake = torch.randn(b, t, 3, h, w), torch.randn(b, t, 3, h, w)
    flow = torch.randn(b, t, 2, h, w)
    inputs = build_temporal_inputs(real, fake, flow)
    assert inputs.plan.skipped_indices == []
    assert [(bt.scale.index, len(bt.ends), bt.ends[0]) for bt in inputs.batches] == [(0, 17, 2), (1, 13, 6),
                                                                                     (2, 1, 18)]
    assert all(bt.real.shape[1:] == (13, h, w) and bt.real.shape == bt.fake.shape for bt in inputs.batches)
    # the stride-1 window ending at 2 carries frames 0, 1, 2 and flows 1→0, 2→1
    first = inputs.batches[0]
    torch.testing.assert_close(first.real[0, :9], real[0, :3].reshape(9, h, w))
    torch.testing.assert_close(first.fake[0, 9:], flow[0, 1:3].reshape(4, h, w) / 20)
    short = build_temporal_inputs(real[:, :7], fake[:, :7], flow[:, :7], max_windows=2)
    assert short.plan.skipped_indices == [2] and [len(bt.ends) for bt in short.batches] == [2, 1]
    with pytest.raises(ValueError):
        build_temporal_inputs(real, fake[:, :5], flow)


def test_head_points_boxes_and_crops() -> None:
    kp = [0.0] * 75
    for i, (x, y) in zip(HEAD_KEYPOINTS, [(50, 40), (46, 36), (54, 36), (42, 38), (58, 38)]):
        kp[3 * i:3 * i + 3] = [x, y, 0.9]
    pts = head_points_from_pose_json({"version": 1.3, "people": [{"pose_keypoints_2d": kp}]})
    assert pts[0] == (50.0, 40.0, 0.9) and pts[4] == (58.0, 38.0, 0.9)
    assert head_points_from_pose_json({"people": []}) == [(0.0, 0.0, 0.0)] * 5
    points = torch.tensor([pts, [(10, 10, 0.9), (0, 0, 0.0), (0, 0, 0.0), (0, 0, 0.0), (0, 0, 0.0)]])
    boxes, valid = head_boxes(points, extent_scale=2.0, min_size=8.0)
    # centre (50, 37.6); extent max(16, 4) = 16 → side 32
    torch.testing.assert_close(boxes[0], torch.tensor([34.0, 21.6, 66.0, 53.6]))
    assert valid.tolist() == [1.0, 0.0]  # one confident point is not a head
    boxes2, _ = head_boxes(points, scale=(0.5, 0.5), min_size=8.0)
    torch.testing.assert_close(boxes2[0], boxes[0] / 2)
    # a horizontal ramp (value = x at pixel centre x): bin j of the crop spans x 10+2j..12+2j, its mean 11+2j
    ramp = torch.arange(80, dtype=torch.float32).view(1, 1, 1, 80).expand(1, 2, 64, 80)
    crop = crop_regions(ramp, torch.tensor([[10.0, 5.0, 26.0, 21.0]]), 8)
    assert crop.shape == (1, 2, 8, 8)
    torch.testing.assert_close(crop[0, 0, 0], torch.arange(8, dtype=torch.float32) * 2 + 11, atol=1e-4,
                               rtol=0)


def test_summary_rows_count_params_and_flops() -> None:
    ds = Vid2VidDiscriminators(label_channels=4, ndf=8, num_d=1, n_scales_temporal=2, face_d=True,
                               face_crop_size=32)
    rows = ds.summary(32, 32)
    assert [r.name for r in rows] == ["D", "D_T0", "D_T1", "D_face"]
    assert rows[0].params == count_parameters(ds.image)
    # conv FLOP by hand: 2·Cin·Cout·16·Hout·Wout for 32→17→9→5→6→7
    shapes = [(7, 8, 17), (8, 16, 9), (16, 32, 5), (32, 64, 6), (64, 1, 7)]
    flops = sum(2 * cin * cout * 16 * s * s for cin, cout, s in shapes)
    assert rows[0].gflop == pytest.approx(flops / 1e9)
    assert rows[3].input_size == (32, 32) and rows[3].params == count_parameters(ds.face)


def test_norm_choice_is_checked() -> None:
    with pytest.raises(ConfigError, match="norm"):
        NLayerDiscriminator(in_channels=3, norm="batch")
    plain = NLayerDiscriminator(in_channels=3, ndf=8, norm="none")
    assert not any("Norm" in type(m).__name__ for m in plain.modules())


@pytest.mark.parametrize(("num_d", "face_scales"), [(1, 1), (2, 1), (3, 1), (4, 2)])
def test_face_d_has_the_official_structure(num_d: int, face_scales: int) -> None:
    """Official netD_f: max(1, num_D − 2) scales and the image D's n_layers_D (3), not a 2-layer PatchGAN."""
    with torch.device("meta"):
        ds = Vid2VidDiscriminators(label_channels=6, num_d=num_d, n_scales_temporal=0, face_d=True)
    assert ds.face is not None and ds.face.num_d == face_scales and ds.face.n_layers == 3
    cfg = types.SimpleNamespace(num_D=num_d, n_layers_D=3, face_D=True, n_scales_temporal=0)
    with torch.device("meta"):
        built = Vid2VidDiscriminators.from_config(cfg, label_channels=6)
    assert built.face is not None and (built.face.num_d, built.face.n_layers) == (face_scales, 3)


def test_densepose_head_square_is_the_official_face_region() -> None:
    """get_face_region: a fixed H//32·8 square at native resolution, centred on the middle of the head pixels'
    (DensePose I > 0.9) bounding box and moved inside the frame; a frame without head pixels is invalid."""
    from v2v_plugins.gan.discriminators import crop_squares, densepose_head_squares, face_crop_side

    assert face_crop_side(256) == 64 and face_crop_side(512) == 128 and face_crop_side(1024) == 256
    h, w = 64, 48
    part = torch.full((3, h, w), -1.0)
    part[0, 10:15, 20:27] = 23 * 255 / 24 / 127.5 - 1  # head parts (23, 24) → > 0.9
    part[0, 30:40, 20:27] = 22 * 255 / 24 / 127.5 - 1  # a hand part (22) is not the head
    part[1, 0:3, 44:48] = 1.0  # head at the top-right corner: the square is moved inside
    side = face_crop_side(h)
    assert side == 16
    corners, valid = densepose_head_squares(part, side)
    assert valid.tolist() == [1.0, 1.0, 0.0]
    # frame 0: centre ((10+14)//2, (20+26)//2) = (12, 23) → y0 = 4, x0 = 15
    assert corners[0].tolist() == [15, 4] and corners[1].tolist() == [w - 1 - 8 - 8, 0]
    img = torch.arange(2 * h * w, dtype=torch.float32).view(1, 2, h, w).expand(3, 2, h, w).clone()
    img.requires_grad_()
    crops = crop_squares(img, corners, side)
    assert crops.shape == (3, 2, side, side)
    torch.testing.assert_close(crops[0], img[0, :, 4:20, 15:31])  # exact native pixels, no resampling
    crops.sum().backward()
    assert img.grad is not None and img.grad[0].sum().item() == 2 * side * side


def test_face_terms_weights_and_feature_matching_normalisation() -> None:
    """G face terms ×lambda_face (2), D face terms ×1, face FM normalised by the image D's num_D (official)."""
    from v2v_plugins.gan.discriminators import crop_squares, densepose_head_squares, face_crop_side
    from v2v_plugins.gan.losses import GANLoss, Vid2VidLoss, feature_matching_loss

    torch.manual_seed(0)
    d = Vid2VidDiscriminators(label_channels=6, ndf=4, n_layers_d=2, num_d=3, n_scales_temporal=0, face_d=True)
    n, h, w = 2, 64, 32
    labels = torch.rand(n, 6, h, w) * 2 - 1
    labels[:, 5] = -1
    labels[:, 5, 8:14, 10:16] = 0.95  # densepose I channel (densepose after pose: channel 3 + 2)
    real, fake = torch.rand(n, 3, h, w) * 2 - 1, torch.rand(n, 3, h, w) * 2 - 1
    loss = Vid2VidLoss(lambda_vgg=0, lambda_face=2.0)
    loss.face_part_channel = 5
    g = loss.generator_frame(d, labels=labels, real=real, fake=fake)
    dl = loss.discriminator_frame(d, labels=labels, real=real, fake=fake)
    corners, _ = densepose_head_squares(labels[:, 5], face_crop_side(h, w))
    crop = lambda x: crop_squares(torch.cat([labels, x], 1), corners, 16)  # noqa: E731
    with torch.no_grad():
        fr, ff = d.face(crop(real)), d.face(crop(fake))
        gan = GANLoss()
        assert len(fr) == 1  # max(1, 3 - 2) scales
        assert g.terms["G_GAN_face"].item() == pytest.approx(2 * gan.generator(ff).item(), rel=1e-5)
        assert g.terms["G_feat_face"].item() == pytest.approx(2 * 10 * feature_matching_loss(ff, fr, num_d=3).item(),
                                                              rel=1e-5)
        assert feature_matching_loss(ff, fr, num_d=3).item() == pytest.approx(
            feature_matching_loss(ff, fr).item() / 3, rel=1e-6)
        assert dl.terms["D_real_face"].item() == pytest.approx(0.5 * gan.real([s[-1] for s in fr]).item(), rel=1e-5)
        assert dl.terms["D_fake_face"].item() == pytest.approx(0.5 * gan.fake([s[-1] for s in ff]).item(), rel=1e-5)
