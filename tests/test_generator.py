"""The vid2vid generator and its conditioning: composition by warping, empty history, foreground branch, scales,
gradients, torch.compile and bf16, on tiny widths with random weights (never the street presets' real weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from v2vcli.config import DataConfig, load_config
from v2vcli.data.layout import LabelClass, LabelSet
from v2vcli.errors import ConfigError, DatasetError
from v2vcli.warp import warp
from v2v_plugins.gan.conditioning import ConditioningSpec, instance_boundaries, one_hot_labels
from v2v_plugins.vid2vid.config import Vid2VidConfig
from v2v_plugins.vid2vid.generator import GeneratorInput, Vid2VidGenerator, pyramid_down
from v2v_plugins.vid2vid.networks import Vid2Vid

from conftest import moving_pattern

TINY = Path(__file__).resolve().parents[1] / "examples" / "configs" / "tiny.yaml"
NC = 5  # label classes of the hand-made inputs; class 3 is the foreground ("car")
CAR = 3


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """Tiny tensors: one intra-op thread avoids OpenMP barrier stalls on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cfg(**kw: Any) -> Vid2VidConfig:
    base: dict[str, Any] = dict(ngf=8, n_downsample=2, n_blocks=3, n_blocks_local=1, n_scales_spatial=1)
    base.update(kw)
    return Vid2VidConfig(**base)


def make_gen(seed: int = 0, **kw: Any) -> Vid2VidGenerator:
    torch.manual_seed(seed)
    cfg = tiny_cfg(**kw)
    return Vid2VidGenerator(cfg, NC + 1, (CAR,) if cfg.fg else ())


def label_stack(h: int = 32, w: int = 32, t: int = 3, car_box: bool = True) -> torch.Tensor:
    """(1, t, NC+1, H, W): smooth regions of classes 0..2 plus a car rectangle, and its instance boundary."""
    ids = torch.zeros(h, w, dtype=torch.long)
    ids[:, w // 2:] = 1
    ids[h // 2:, :] = 2
    if car_box:
        ids[h // 4:h // 2 + 4, w // 4:w // 2 + 4] = CAR
    inst = (ids == CAR).long() * 7
    frame = torch.cat([one_hot_labels(ids, NC), instance_boundaries(inst)], dim=0)
    return frame.unsqueeze(0).unsqueeze(0).expand(1, t, -1, -1, -1).contiguous()


def frames(t: int = 3, h: int = 32, w: int = 32) -> torch.Tensor:
    """(t, 3, H, W) in [-1, 1]: a smooth texture moving 2 px right per frame (backward flow dx = -2)."""
    arr = moving_pattern(t, h, w)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def force_flow(gen: Vid2VidGenerator, dx: float, dy: float, mask_logit: float) -> None:
    """Make every scale's flow head output constant (dx, dy) pixels and its mask sigmoid(mask_logit)."""
    with torch.no_grad():
        for scale in gen.scales:
            head: Any = scale.flow_head
            conv, mconv = head.flow_out[1], head.mask_out[1]
            conv.weight.zero_()
            conv.bias.copy_(torch.tensor([dx, dy]) / head.multiplier)
            mconv.weight.zero_()
            mconv.bias.fill_(mask_logit)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a, b).item()
    return 10 * np.log10(4.0 / mse)  # images in [-1, 1]: peak-to-peak 2


# -- warp and composition -------------------------------------------------------------------------------------------
def test_zero_flow_warps_image_to_itself() -> None:
    img = torch.rand(2, 3, 17, 23) * 2 - 1
    assert (warp(img, torch.zeros(2, 2, 17, 23)) - img).abs().max().item() <= 1e-5


def test_zero_flow_through_the_generator_returns_the_previous_frame() -> None:
    gen = make_gen(n_scales_spatial=2).eval()
    force_flow(gen, 0.0, 0.0, mask_logit=-40.0)  # m = 0: everything comes from the warp
    prev = frames(2)
    out = gen(GeneratorInput(label_stack(car_box=False), prev.unsqueeze(0)))
    assert torch.equal(out.flow, torch.zeros_like(out.flow))
    assert (out.final - prev[-1:]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("scales", [1, 2])
def test_flow_convention_matches_the_extractors(scales: int) -> None:
    """A frame translated by a known backward flow (t→t-1, pixels) is reproduced by the composition path."""
    clip = frames(3, 32, 48)
    gen = make_gen(n_scales_spatial=scales).eval()
    force_flow(gen, -2.0, 0.0, mask_logit=-40.0)  # content moved +2 px in x: x_t(p) = x_{t-1}(p + (-2, 0))
    with torch.no_grad():
        out = gen(GeneratorInput(label_stack(32, 48, car_box=False), clip[:2].unsqueeze(0)))
    assert torch.allclose(out.flow[:, 0], torch.full_like(out.flow[:, 0], -2.0))
    target = clip[2:3]
    # Columns 0-1 sample outside the previous frame (border padding): judge the rest.
    assert psnr(out.final[..., 2:], target[..., 2:]) >= 30.0
    assert psnr(out.final, target) >= 25.0
    # The opposite sign is clearly wrong, so the test does pin the convention.
    force_flow(gen, 2.0, 0.0, mask_logit=-40.0)
    with torch.no_grad():
        wrong = gen(GeneratorInput(label_stack(32, 48, car_box=False), clip[:2].unsqueeze(0)))
    assert psnr(wrong.final[..., 2:-2], target[..., 2:-2]) < 25.0


def test_mask_one_gives_the_hallucination() -> None:
    gen = make_gen().eval()
    force_flow(gen, 3.0, -1.0, mask_logit=40.0)
    with torch.no_grad():
        out = gen(GeneratorInput(label_stack(), frames(2).unsqueeze(0)))
    assert torch.equal(out.mask, torch.ones_like(out.mask))
    assert torch.allclose(out.final, out.hallucinated, atol=1e-6)
    assert out.warped is not None and not torch.allclose(out.warped, out.hallucinated)


@pytest.mark.parametrize("fg", [False, True])
def test_empty_history_outputs_the_raw_frame(fg: bool) -> None:
    gen = make_gen(fg=fg).eval()
    labels = label_stack()
    with torch.no_grad():
        none = gen(GeneratorInput(labels, None))
        zero = gen(GeneratorInput(labels, torch.zeros(1, 0, 3, 32, 32)))
    for out in (none, zero):
        assert out.warped is None
        assert torch.equal(out.final, out.raw)
    assert torch.equal(none.final, zero.final)
    if not fg:
        assert torch.equal(none.final, none.hallucinated)


def test_foreground_pixels_come_from_the_foreground_branch() -> None:
    gen = make_gen(fg=True).eval()
    labels = label_stack()
    with torch.no_grad():
        out = gen(GeneratorInput(labels, frames(2).unsqueeze(0)))
    assert out.fg is not None and out.fg_mask is not None
    car = labels[0, -1, CAR].bool()
    assert torch.equal(out.fg_mask[0, 0].bool(), car)
    assert car.any() and (~car).any()
    for image in (out.final, out.raw):
        assert torch.equal(image[0][:, car], out.fg[0][:, car])
    # Background keeps the composed (warped) frame and the raw hallucination respectively.
    assert out.warped is not None
    composed = out.mask * out.hallucinated + (1 - out.mask) * out.warped
    assert torch.allclose(out.final[0][:, ~car], composed[0][:, ~car], atol=1e-6)
    assert torch.equal(out.raw[0][:, ~car], out.hallucinated[0][:, ~car])


def test_paper_foreground_mode_blends_the_warp_into_the_foreground() -> None:
    official = make_gen(fg=True).eval()
    paper = make_gen(fg=True, fg_mode="paper").eval()
    paper.load_state_dict(official.state_dict())
    labels, prev = label_stack(), frames(2).unsqueeze(0)
    with torch.no_grad():
        a, b = official(GeneratorInput(labels, prev)), paper(GeneratorInput(labels, prev))
    assert torch.equal(a.raw, b.raw)
    assert b.warped is not None
    expected = (1 - b.mask) * b.warped + b.mask * b.raw  # Eq. 4 of the paper
    assert torch.allclose(b.final, expected, atol=1e-6)
    car = labels[0, -1, CAR].bool()
    assert not torch.allclose(a.final[0][:, car], b.final[0][:, car])


def test_any_history_length_and_label_count() -> None:
    gen = make_gen(fg=True, n_scales_spatial=2).eval()
    labels, clip = label_stack(16, 16), frames(4, 16, 16).unsqueeze(0)
    with torch.no_grad():
        outs = {k: gen(GeneratorInput(labels, clip[:, :k])) for k in range(0, 5)}
        one_label = gen(GeneratorInput(labels[:, -1:], clip[:, 2:4]))
        three_labels = gen(GeneratorInput(labels, clip[:, 2:4]))
        padded = gen(GeneratorInput(labels, torch.cat([torch.zeros_like(clip[:, :1]), clip[:, :1]], 1)))
    for out in outs.values():
        assert out.final.shape == (1, 3, 16, 16) and torch.isfinite(out.final).all()
        assert len(out.scales) == 2 and out.scales[0].final.shape == (1, 3, 8, 8)
    # K > L keeps the last L frames; K < L pads with zeros (the official empty history); missing labels repeat.
    assert torch.equal(outs[4].final, gen(GeneratorInput(labels, clip[:, 2:4])).final)
    assert torch.equal(outs[1].final, padded.final)
    assert torch.equal(one_label.final, three_labels.final)


def test_scales_see_pyramids_and_scale_the_flow() -> None:
    gen: Any = make_gen(n_scales_spatial=2)
    assert gen.scales[0].flow_head.multiplier == 20.0 and gen.scales[1].flow_head.multiplier == 40.0
    x = torch.ones(1, 1, 8, 8)
    assert torch.equal(pyramid_down(x), torch.ones(1, 1, 4, 4))  # padding not counted: borders stay 1
    with pytest.raises(ValueError, match="multiple of 8"):
        gen(GeneratorInput(label_stack(36, 36), None))


# -- training-relevant properties -------------------------------------------------------------------------------------
def test_gradients_reach_every_parameter_with_foreground_and_two_scales() -> None:
    gen = make_gen(fg=True, n_scales_spatial=2).train()
    out = gen(GeneratorInput(label_stack(), frames(2).unsqueeze(0)))
    # The frame is the finest scale's; the coarser scales' own outputs carry their heads' gradients (those heads
    # are what a coarser run trained, kept for --init-from and parity).
    loss = sum(o.final.square().mean() + o.raw.square().mean() + o.flow.square().mean() + o.mask.mean()
               for o in out.scales)
    loss.backward()
    missing = [n for n, p in gen.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    # A bias right before a normalisation is cancelled by it (exactly zero gradient); every weight must move.
    dead = [n for n, p in gen.named_parameters() if p.dim() > 1 and p.grad is not None and p.grad.abs().max() == 0]
    assert not dead


def test_frame_gradients_reach_the_finest_scale_and_g0_features() -> None:
    gen = make_gen(fg=True, n_scales_spatial=2).train()
    out = gen(GeneratorInput(label_stack(), frames(2).unsqueeze(0)))
    (out.final.square().mean() + out.raw.square().mean()).backward()
    g0: Any = gen.scales[0]
    for module in (gen.scales[1], g0.label_encoder, g0.prev_encoder, g0.image_head.body, g0.flow_head.body,
                   g0.fg_branch.entry, g0.fg_branch.head.body):
        assert all(p.grad is not None for p in module.parameters() if p.dim() > 1)


def test_torch_compile_fullgraph_traces_without_breaks() -> None:
    """fullgraph=True turns any graph break into an error, so one successful trace proves there is none."""
    import torch._dynamo

    gen = make_gen(fg=True, n_scales_spatial=2, n_blocks=1).eval()  # few blocks: tracing time grows with them
    inp = GeneratorInput(label_stack(16, 16), frames(2, 16, 16).unsqueeze(0))
    torch._dynamo.reset()
    compiled = torch.compile(gen, fullgraph=True, backend="eager")
    try:
        with torch.no_grad():
            a, b = compiled(inp), gen(inp)
    finally:
        torch._dynamo.reset()
    assert isinstance(a, type(b)) and len(a.scales) == 2
    assert torch.allclose(a.final, b.final, atol=1e-6) and torch.allclose(a.flow, b.flow, atol=1e-5)


def test_bf16_autocast_matches_fp32_on_the_tiny_preset() -> None:
    """Stated tolerance (smooth inputs, random weights): hallucination max 0.05 / mean 0.01; final frame (through
    the bf16 flow features ×20) max 0.3 / mean 0.03; flow mean error < 5% of its mean magnitude."""
    cfg = load_config([TINY], ["model.label_nc=5", "model.fg_classes=['3']", "data.size=[64, 64]"])
    torch.manual_seed(0)
    gen = Vid2Vid(cfg).generator.eval()
    labels = F.interpolate(label_stack(16, 16)[0], size=(64, 64), mode="nearest").unsqueeze(0)
    inp = GeneratorInput(labels, frames(2, 64, 64).unsqueeze(0))
    with torch.no_grad():
        ref = gen(inp)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = gen(inp)
    assert low.hallucinated.dtype == torch.bfloat16
    assert low.flow.dtype == torch.float32  # the flow conv runs in fp32
    diff_h = (low.hallucinated.float() - ref.hallucinated).abs()
    diff_f = (low.final.float() - ref.final).abs()
    assert diff_h.max() <= 0.05 and diff_h.mean() <= 0.01
    assert diff_f.max() <= 0.3 and diff_f.mean() <= 0.03
    assert (low.flow - ref.flow).abs().mean() <= 0.05 * ref.flow.abs().mean()


@pytest.mark.parametrize("norm", ["batch", "syncbatch"])
def test_batch_norm_options(norm: str) -> None:
    inst = make_gen(fg=True)
    gen = make_gen(fg=True, norm=norm).train()
    assert sum(p.numel() for p in gen.parameters()) == sum(p.numel() for p in inst.parameters())
    out = gen(GeneratorInput(label_stack().expand(2, -1, -1, -1, -1), frames(2).unsqueeze(0).expand(2, -1, -1, -1, -1)))
    assert out.final.shape == (2, 3, 32, 32) and torch.isfinite(out.final).all()


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    plain = make_gen(fg=True).train()
    ckpt = make_gen(fg=True, activation_checkpointing=True).train()
    ckpt.load_state_dict(plain.state_dict())
    inp = GeneratorInput(label_stack(), frames(2).unsqueeze(0))
    for gen in (plain, ckpt):
        gen(inp).final.square().mean().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        assert a.grad is not None and b.grad is not None
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_initialisation_is_normal_0_02() -> None:
    torch.manual_seed(0)
    gen: Any = Vid2VidGenerator(tiny_cfg(ngf=16), NC + 1)
    w = gen.scales[0].label_encoder[1].weight
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002
    norm = gen.scales[0].label_encoder[2]
    assert isinstance(norm, torch.nn.InstanceNorm2d) and norm.affine
    assert abs(norm.weight.mean().item() - 1.0) < 0.02
    assert torch.equal(gen.scales[0].label_encoder[1].bias, torch.zeros(16))


# -- conditioning ---------------------------------------------------------------------------------------------------
def street_labels() -> LabelSet:
    return LabelSet("toy", [LabelClass(i, n, (i, i, i)) for i, n in enumerate(["road", "sky", "building", "car"])])


def test_one_hot_and_instance_boundaries() -> None:
    ids = np.array([[0, 0, 1], [2, 3, 3]], dtype=np.uint8)
    onehot = one_hot_labels(ids, 4)
    assert onehot.shape == (4, 2, 3)
    assert torch.equal(onehot.argmax(0), torch.from_numpy(ids).long()) and torch.equal(onehot.sum(0), torch.ones(2, 3))
    inst = np.array([[0, 0, 0, 0], [0, 5, 5, 0], [0, 5, 5, 0], [0, 0, 0, 0]], dtype=np.uint16)
    edge = instance_boundaries(inst)[0].numpy()
    expected = np.array([[0, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 0]], dtype=np.float32)
    assert edge.shape == (4, 4) and np.array_equal(edge, expected)


def test_unknown_label_id_is_a_dataset_error_naming_it() -> None:
    spec = ConditioningSpec.from_config(Vid2VidConfig(), DataConfig(inputs=["seg"]), street_labels())
    ids = np.zeros((4, 4), dtype=np.uint8)
    ids[1, 2] = 17
    with pytest.raises(DatasetError, match=r"label id 17 .*label_nc 4.*sequence 'a' frame 3"):
        spec.build({"seg": ids}, where="sequence 'a' frame 3")


def test_channel_counts_are_derived_from_modalities() -> None:
    street = ConditioningSpec.from_config(Vid2VidConfig(label_nc=35), DataConfig(inputs=["inst", "seg"]))
    assert street.inputs == ("seg", "inst") and street.input_nc == 36
    face = ConditioningSpec.from_config(Vid2VidConfig(), DataConfig(inputs=["edges", "edge_dist"]))
    assert face.input_nc == 15 and face.label_nc == 0
    pose = ConditioningSpec.from_config(Vid2VidConfig(), DataConfig(inputs=["pose", "densepose"]))
    assert pose.input_nc == 6
    no_inst = ConditioningSpec.from_config(Vid2VidConfig(label_nc=35, use_instance=False),
                                           DataConfig(inputs=["seg", "inst"]))
    assert no_inst.input_nc == 35
    with pytest.raises(ConfigError, match="did you mean 'pose'"):
        ConditioningSpec.from_config(Vid2VidConfig(), DataConfig(inputs=["poses"]))
    with pytest.raises(ConfigError, match="input_nc=20 .* 15 channels"):
        ConditioningSpec.from_config(Vid2VidConfig(input_nc=20), DataConfig(inputs=["edges", "edge_dist"]))


def test_label_nc_and_foreground_come_from_the_label_set() -> None:
    model = Vid2VidConfig(fg=True, fg_classes=["car"])
    spec = ConditioningSpec.from_config(model, DataConfig(inputs=["seg", "inst"]), street_labels())
    assert spec.label_nc == 4 and spec.fg_ids == (3,) and spec.fg_channels == (3,)
    with pytest.raises(ConfigError, match="label_nc=35 .* 'toy' has 4 classes"):
        ConditioningSpec.from_config(Vid2VidConfig(label_nc=35), DataConfig(), street_labels())
    with pytest.raises(DatasetError, match="did you mean 'car'"):
        ConditioningSpec.from_config(Vid2VidConfig(fg=True, fg_classes=["cars"]), DataConfig(), street_labels())
    with pytest.raises(ConfigError, match="no dataset label set"):
        ConditioningSpec.from_config(Vid2VidConfig(), DataConfig())
    # data.foreground works as the class list too; both set and different is an error.
    assert ConditioningSpec.from_config(Vid2VidConfig(fg=True), DataConfig(foreground=["car"]),
                                        street_labels()).fg_ids == (3,)
    with pytest.raises(ConfigError, match="disagree"):
        ConditioningSpec.from_config(model, DataConfig(foreground=["sky"]), street_labels())


def test_build_tensors_for_every_modality() -> None:
    rng = np.random.default_rng(0)
    h, w = 6, 8
    spec = ConditioningSpec.from_config(Vid2VidConfig(label_nc=4, fg=True, fg_classes=["3"]),
                                        DataConfig(inputs=["seg", "inst", "pose", "densepose", "edges",
                                                           "edge_dist"]))
    assert spec.input_nc == 4 + 1 + 3 + 3 + 1 + 14
    frame = {"seg": rng.integers(0, 4, (2, h, w)).astype(np.uint8),
             "inst": rng.integers(0, 3, (2, h, w)).astype(np.uint16),
             "pose": rng.integers(0, 256, (2, 3, h, w)).astype(np.uint8),
             "densepose": torch.zeros(2, 3, h, w),
             "edges": np.full((2, h, w), 255, dtype=np.uint8),
             "edge_dist": rng.random((2, 14, h, w)).astype(np.float32)}
    cond = spec.build(frame)
    assert cond.shape == (2, spec.input_nc, h, w) and cond.dtype == torch.float32
    pose = cond[:, spec.offset("pose"):spec.offset("pose") + 3]
    assert pose.min() >= -1 and pose.max() <= 1 and pose.min() < 0
    assert torch.equal(cond[:, spec.offset("edges")], torch.ones(2, h, w))
    mask = spec.foreground_mask(cond)
    assert torch.equal(mask[:, 0], torch.from_numpy(frame["seg"] == 3).float())
    with pytest.raises(DatasetError, match="'edge_dist' is missing"):
        spec.build({k: v for k, v in frame.items() if k != "edge_dist"})
    one = spec.build({k: v[:1] for k, v in frame.items()})  # a batch of 1 (synthesis): edges' size-1 dim is B
    assert one.shape == (1, spec.input_nc, h, w)
    torch.testing.assert_close(one, cond[:1])


def test_street_stack_has_108_label_channels() -> None:
    with torch.device("meta"):
        gen: Any = Vid2VidGenerator(Vid2VidConfig(fg=True, n_downsample=3), 36, (26,))
    assert gen.scales[0].label_encoder[1].in_channels == 108
    assert gen.scales[0].prev_encoder[1].in_channels == 6
    assert gen.scales[0].fg_branch.entry[1].in_channels == 108


def test_compiled_and_eager_g_plus_d_step_agree() -> None:
    """One G+D training step (G forward, image-D GAN + L1 loss, backward into G and D) under torch.compile
    (aot_eager: dynamo graph + AOT autograd, the backward included) gives the eager step's losses and gradients."""
    import copy

    import torch._dynamo

    from v2v_plugins.gan.discriminators import Vid2VidDiscriminators
    from v2v_plugins.gan.losses import GANLoss

    gen = make_gen(fg=True, n_blocks=1)
    torch.manual_seed(1)
    disc = Vid2VidDiscriminators(label_channels=NC + 1, ndf=8, n_layers_d=2, num_d=1, n_scales_temporal=0)
    gan = GANLoss("lsgan")
    labels = label_stack(16, 16)
    inp = GeneratorInput(labels, frames(2, 16, 16).unsqueeze(0))
    real = frames(3, 16, 16)[2:]

    def step(g: Any, d: Any) -> torch.Tensor:
        fake = g(inp).final
        g_loss = gan.generator(d.forward_image(labels[:, -1], fake)) + (fake - real).abs().mean()
        d_loss = gan.discriminator(d.forward_image(labels[:, -1], real), d.forward_image(labels[:, -1], fake.detach()))
        return g_loss + d_loss

    g2, d2 = copy.deepcopy(gen), copy.deepcopy(disc)
    eager = step(gen, disc)
    eager.backward()
    torch._dynamo.reset()
    try:
        compiled = step(torch.compile(g2, backend="aot_eager"), torch.compile(d2, backend="aot_eager"))
        compiled.backward()
    finally:
        torch._dynamo.reset()
    assert torch.allclose(eager, compiled, atol=1e-5)
    for (name, a), b in zip(list(gen.named_parameters()) + list(disc.named_parameters()),
                            list(g2.parameters()) + list(d2.parameters())):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), name
