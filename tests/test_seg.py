"""Segmentation: label sets, detectron2 output conversion (with a predictor double), selfie backend, previews."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from v2v_plugins.extract import labelsets
from v2v_plugins.extract.detectron2_convert import Detectron2Converter, ModelClasses, choose_label_set

from v2vcli.errors import ConfigError, PluginError, WeightsError

HAS_DETECTRON2 = importlib.util.find_spec("detectron2") is not None

COCO_THINGS = [name for _, isthing, name, _ in labelsets.COCO_PANOPTIC_CATEGORIES if isthing]
# Panoptic FPN's "separated" metadata: semantic class 0 is "things", then the 53 stuff classes (short names).
COCO_SEPARATED_STUFF = ["things"] + [labelsets.short_coco_name(name)
                                     for _, isthing, name, _ in labelsets.COCO_PANOPTIC_CATEGORIES if not isthing]
CITY_THINGS = ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
CITY_STUFF = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
              "terrain", "sky"] + CITY_THINGS


def coco_classes() -> ModelClasses:
    return ModelClasses("coco_2017_val_panoptic_separated", list(COCO_THINGS), list(COCO_SEPARATED_STUFF))


def coco_id(name: str) -> int:
    return labelsets.class_lookup(labelsets.coco_panoptic_label_set())[name]


class FakeInstances:
    """What detectron2's Instances exposes to the converter."""

    def __init__(self, classes: list[int], masks: np.ndarray, scores: list[float]) -> None:
        self.pred_classes = torch.tensor(classes, dtype=torch.int64)
        self.pred_masks = torch.from_numpy(masks.astype(bool))
        self.scores = torch.tensor(scores, dtype=torch.float32)


class FakePredictor:
    """Stands in for DefaultPredictor: returns fixed outputs and records the images it was given."""

    def __init__(self, outputs: dict[str, Any]) -> None:
        self.outputs = outputs
        self.images: list[np.ndarray] = []

    def __call__(self, image: np.ndarray) -> dict[str, Any]:
        self.images.append(image.copy())
        return self.outputs


def _rect(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


H, W = 24, 32


def panoptic_outputs() -> dict[str, Any]:
    """Segments: 1 person, 2 car, 3 sky (stuff), 4 a second person; 0 unassigned; 9 listed nowhere."""
    pan = np.zeros((H, W), np.int32)
    pan[:8] = 3
    pan[10:20, 2:10] = 1
    pan[10:20, 12:22] = 2
    pan[12:18, 24:30] = 4
    pan[22:, 30:] = 9
    sky = COCO_SEPARATED_STUFF.index("sky")
    info = [{"id": 1, "isthing": True, "category_id": 0, "score": 0.98, "instance_id": 0, "area": 80},
            {"id": 2, "isthing": True, "category_id": 2, "score": 0.91, "instance_id": 1, "area": 100},
            {"id": 4, "isthing": True, "category_id": 0, "score": 0.70, "instance_id": 2, "area": 36},
            {"id": 3, "isthing": False, "category_id": sky, "area": 256}]
    return {"panoptic_seg": (torch.from_numpy(pan), info), "sem_seg": torch.zeros(54, H, W),
            "instances": FakeInstances([], np.zeros((0, H, W)), [])}


# -- label sets ---------------------------------------------------------------------------------------------------------

def test_coco_panoptic_label_set_has_133_named_classes_with_detectron2_colours() -> None:
    ls = labelsets.coco_panoptic_label_set()
    assert ls.num_classes == 134 and len(ls.classes) == 134  # 0 unlabeled + 80 things + 53 stuff
    assert ls.classes[0].name == "unlabeled" and ls.ignore_id == 0
    by_name = {c.name: c for c in ls.classes}
    assert by_name["person"].id == 1 and by_name["person"].color == (220, 20, 60)
    assert by_name["toothbrush"].id == 80 and by_name["banner"].id == 81
    assert by_name["sky"].color == (70, 130, 180) and by_name["rug"].id == 133
    assert len(by_name) == 134  # short names stay unique
    assert ls.id_of("sky") == coco_id("sky-other-merged")
    assert labelsets.coco_ids()["sky"] == 187


def test_cityscapes_label_set_uses_label_ids() -> None:
    ls = labelsets.cityscapes_label_set()
    assert ls.num_classes == 35  # labelIds 0..33 + license plate 34: vid2vid's street label_nc
    assert ls.id_of("road") == 7 and ls.id_of("car") == 26 and ls.id_of("bicycle") == 33
    assert ls.palette()[26].tolist() == [0, 0, 142]
    assert labelsets.CITYSCAPES_TRAIN_TO_LABEL_ID[0] == 7 and labelsets.CITYSCAPES_TRAIN_TO_LABEL_ID[18] == 33
    assert len(labelsets.CITYSCAPES_TRAIN_TO_LABEL_ID) == 19


def test_label_set_choice_follows_the_model_metadata() -> None:
    assert choose_label_set(coco_classes()).name == "coco_panoptic"
    assert choose_label_set(ModelClasses("coco_2017_val", list(COCO_THINGS), [])).name == "coco_panoptic"
    assert choose_label_set(ModelClasses("cityscapes_fine_instance_seg_val", CITY_THINGS, [])).name == "cityscapes"
    # no dataset name: Cityscapes-only names (rider, terrain) decide
    assert choose_label_set(ModelClasses("", [], CITY_STUFF)).name == "cityscapes"
    generic = choose_label_set(ModelClasses("ade20k_sem_seg_val", [], ["wall", "windowpane", "earth"]))
    assert generic.name == "ade20k_sem_seg_val" and [c.name for c in generic.classes] == [
        "unlabeled", "wall", "windowpane", "earth"]
    assert len({c.color for c in generic.classes}) == 4


# -- detectron2 conversion -------------------------------------------------------------------------------------------------

def test_panoptic_outputs_give_label_ids_and_instances() -> None:
    conv = Detectron2Converter(coco_classes())
    seg, inst = conv.convert(panoptic_outputs())
    assert seg.dtype == np.uint8 and inst.dtype == np.uint16 and seg.shape == (H, W)
    assert (seg[:8] == coco_id("sky")).all() and not inst[:8].any()
    assert (seg[10:20, 2:10] == coco_id("person")).all() and (inst[10:20, 2:10] == 1).all()
    assert (seg[10:20, 12:22] == coco_id("car")).all() and (inst[10:20, 12:22] == 2).all()
    assert (seg[12:18, 24:30] == coco_id("person")).all() and (inst[12:18, 24:30] == 3).all()
    assert seg[21, 0] == 0 and inst[21, 0] == 0  # unassigned pixels: unlabeled
    assert seg[23, 31] == 0 and inst[23, 31] == 0  # a segment id missing from segments_info: unlabeled
    assert set(np.unique(inst)) == {0, 1, 2, 3}


def test_semantic_only_outputs_use_stuff_class_names() -> None:
    classes = ModelClasses("cityscapes_fine_sem_seg_val", [], list(CITY_STUFF))
    conv = Detectron2Converter(classes)
    assert conv.label_set.name == "cityscapes"
    logits = torch.zeros(19, H, W)
    logits[CITY_STUFF.index("road"), 12:] = 5.0
    logits[CITY_STUFF.index("sky"), :12] = 5.0
    logits[CITY_STUFF.index("car"), 14:20, 4:12] = 9.0
    seg, inst = conv.convert({"sem_seg": logits})
    assert (seg[:12] == 23).all()  # sky: trainId 10 → labelId 23
    assert (seg[14:20, 4:12] == 26).all()  # car: trainId 13 → labelId 26
    assert (seg[20:] == 7).all()  # road: trainId 0 → labelId 7
    assert inst.dtype == np.uint16 and not inst.any()


def test_instances_only_outputs_let_the_best_score_win_overlaps() -> None:
    classes = ModelClasses("cityscapes_fine_instance_seg_val", list(CITY_THINGS), [])
    conv = Detectron2Converter(classes, score_threshold=0.5)
    masks = np.stack([_rect((H, W), 2, 12, 2, 14),  # car, 0.6
                      _rect((H, W), 6, 16, 10, 20),  # person, 0.9, overlaps the car
                      _rect((H, W), 18, 22, 24, 30),  # bicycle, 0.3: below threshold
                      _rect((H, W), 6, 16, 10, 20)])  # a duplicate person, 0.55: fully covered, dropped
    out = {"instances": FakeInstances([2, 0, 7, 0], masks, [0.6, 0.9, 0.3, 0.55])}
    seg, inst = conv.convert(out)
    assert seg[10, 15] == 24 and inst[10, 15] == 1  # person wins the overlap and is instance 1 (best score)
    assert seg[3, 3] == 26 and inst[3, 3] == 2  # car
    assert seg[20, 26] == 0 and inst[20, 26] == 0  # low-score bicycle dropped
    assert set(np.unique(inst)) == {0, 1, 2}
    assert conv.things()[:3] == ["person", "rider", "car"]


def test_semantic_plus_instances_paints_things_over_stuff() -> None:
    conv = Detectron2Converter(coco_classes())
    logits = torch.zeros(54, H, W)
    logits[COCO_SEPARATED_STUFF.index("road")] = 1.0
    logits[0, 5:15, 5:15] = 3.0  # "things" semantic class: no label of its own
    masks = _rect((H, W), 5, 15, 5, 15)[None]
    seg, inst = conv.convert({"sem_seg": logits, "instances": FakeInstances([COCO_THINGS.index("dog")], masks, [0.8])})
    assert (seg[5:15, 5:15] == coco_id("dog")).all() and (inst[5:15, 5:15] == 1).all()
    assert (seg[20:] == coco_id("road")).all() and not inst[20:].any()


def test_panoptic_deeplab_style_ids_without_segments_info() -> None:
    classes = ModelClasses("cityscapes_fine_panoptic_val", list(CITY_STUFF), list(CITY_STUFF), label_divisor=1000)
    conv = Detectron2Converter(classes)
    car, sky = CITY_STUFF.index("car"), CITY_STUFF.index("sky")
    pan = np.full((H, W), sky * 1000, np.int32)
    pan[10:20, 0:10] = car * 1000 + 1
    pan[10:20, 12:20] = car * 1000 + 2
    pan[0, 0] = -1  # void
    seg, inst = conv.convert({"panoptic_seg": (torch.from_numpy(pan), None)})
    assert seg[5, 5] == 23 and inst[5, 5] == 0
    assert seg[12, 2] == 26 and seg[12, 14] == 26
    assert inst[12, 2] != inst[12, 14] and {int(inst[12, 2]), int(inst[12, 14])} == {1, 2}
    assert seg[0, 0] == 0 and inst[0, 0] == 0


def test_outputs_that_do_not_fit_the_metadata_are_plugin_errors() -> None:
    conv = Detectron2Converter(ModelClasses("coco_2017_val", list(COCO_THINGS), []))
    bad = {"panoptic_seg": (torch.ones(H, W, dtype=torch.int32),
                            [{"id": 1, "isthing": True, "category_id": 95, "area": H * W}])}
    with pytest.raises(PluginError, match="thing category 95.*80 thing classes"):
        conv.convert(bad)
    with pytest.raises(PluginError, match="none of panoptic_seg, sem_seg, instances"):
        conv.convert({"proposals": []})


# -- the detectron2 extractor with a predictor double -------------------------------------------------------------------

def test_detectron2_extractor_with_a_predictor_double() -> None:
    from v2v_plugins.extract.seg import Detectron2Options, Detectron2Seg

    predictor = FakePredictor(panoptic_outputs())
    ex = Detectron2Seg(Detectron2Options(preview=True), predictor=predictor, classes=coco_classes())
    frame = np.zeros((H, W, 3), np.uint8)
    frame[..., 0] = 200  # red in RGB
    out = ex.process(frame, 0)
    assert predictor.images[0][0, 0].tolist() == [0, 0, 200]  # DefaultPredictor is given BGR
    assert out["seg"].dtype == np.uint8 and out["inst"].dtype == np.uint16
    preview = out["seg_preview"]
    assert preview.shape == (H, W, 3) and preview.dtype == np.uint8
    assert preview[2, 2].tolist() == [70, 130, 180]  # sky in detectron2's colour
    assert preview[14, 5].tolist() == [220, 20, 60]  # person interior
    assert preview[10, 5].tolist() == [255, 255, 255]  # person outline
    ls = ex.label_set()
    assert ls.name == "coco_panoptic" and ls.num_classes == 134
    meta = ex.meta()
    assert meta["model"] == "COCO-PanopticSegmentation/panoptic_fpn_R_50_3x.yaml"
    assert meta["dataset"] == "coco_2017_val_panoptic_separated"
    assert len(meta["things"]) == 80 and meta["things"][0] == "person"
    assert meta["coco_ids"]["car"] == 3 and "1..N" in meta["instance_encoding"]
    assert "seg_preview" not in Detectron2Seg(predictor=predictor, classes=coco_classes()).process(frame, 0)


def test_detectron2_extractor_rejects_maps_of_another_size() -> None:
    from v2v_plugins.extract.seg import Detectron2Seg

    ex = Detectron2Seg(predictor=FakePredictor(panoptic_outputs()), classes=coco_classes())
    with pytest.raises(PluginError, match="32x24 map for a 40x30 frame"):
        ex.process(np.zeros((30, 40, 3), np.uint8), 0)


def test_missing_detectron2_is_a_plugin_error_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from v2v_plugins.extract.seg import Detectron2Seg

    monkeypatch.setitem(sys.modules, "detectron2", None)  # makes `import detectron2` fail
    with pytest.raises(PluginError) as info:
        Detectron2Seg()
    message = str(info.value)
    assert "pip install" in message and "git+https://github.com/facebookresearch/detectron2.git" in message
    assert "setuptools<81" in message and "\n" not in message


def test_bad_detectron2_options_are_config_errors() -> None:
    from v2v_plugins.extract.seg import Detectron2Options, Detectron2Seg

    with pytest.raises(ConfigError, match="score-threshold"):
        Detectron2Seg(Detectron2Options(score_threshold=2.0), predictor=FakePredictor({}), classes=coco_classes())


@pytest.mark.skipif(not HAS_DETECTRON2 and not os.environ.get("CI"),
                    reason="detectron2 is not installed (not on PyPI; `make detectron2`); required in CI")
def test_real_detectron2_panoptic_fpn_with_random_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from v2v_plugins.extract.seg import DEFAULT_DETECTRON2_MODEL, Detectron2Options, Detectron2Seg

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(DEFAULT_DETECTRON2_MODEL))
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    weights = tmp_path / "random.pth"
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    ex = Detectron2Seg(Detectron2Options(weights=str(weights), score_threshold=0.0, min_size=64))
    out = ex.process(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8), 0)
    assert out["seg"].shape == (64, 96) and out["seg"].dtype == np.uint8
    assert out["inst"].dtype == np.uint16 and int(out["seg"].max()) < 134
    assert ex.label_set().name == "coco_panoptic"
    assert ex.meta()["dataset"] == "coco_2017_val_panoptic_separated"
    monkeypatch.delenv("V2V_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(WeightsError, match="V2V_ALLOW_DOWNLOAD"):
        Detectron2Seg(Detectron2Options())


# -- selfie ----------------------------------------------------------------------------------------------------------------

def _video_frames(path: Path, step: int) -> list[np.ndarray]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(buf, np.uint8).reshape(h, w, 3) for buf in reader]
    return frames[::step]


def test_selfie_finds_the_person_in_carphone(carphone_mp4: Path) -> None:
    from v2v_plugins.extract.seg import SelfieSeg

    frames = _video_frames(carphone_mp4, 10)
    ex = SelfieSeg()
    ex.start_sequence("carphone", 30.0, (frames[0].shape[1], frames[0].shape[0]))
    found = 0
    for i, frame in enumerate(frames):
        out = ex.process(frame, i * 10)
        seg, inst = out["seg"], out["inst"]
        assert seg.dtype == np.uint8 and inst.dtype == np.uint16 and seg.shape == frame.shape[:2]
        assert np.array_equal(seg, (inst > 0).astype(np.uint8))
        person = seg == 1
        if person.mean() < 0.1:
            continue
        ys, xs = np.nonzero(inst == 1)
        h, w = seg.shape
        # the speaker sits in the middle of the frame, head and shoulders filling its lower part
        if 0.3 < xs.mean() / w < 0.75 and 0.35 < ys.mean() / h < 0.9:
            found += 1
    ex.close()
    assert found >= 0.8 * len(frames)
    assert ex.label_set().to_dict()["classes"][1] == {"id": 1, "name": "person", "color": [220, 20, 60]}


def test_selfie_instances_are_connected_components_by_area(monkeypatch: pytest.MonkeyPatch) -> None:
    from v2v_plugins.extract.seg import SelfieOptions, SelfieSeg

    prob = np.zeros((40, 60), np.float32)
    prob[5:15, 5:15] = 0.9  # 100 px
    prob[20:35, 30:50] = 0.8  # 300 px: the largest, instance 1
    prob[38, 58] = 0.95  # a 1-px speck: below min-area, dropped from seg and inst
    prob[25, 5] = 0.4  # below threshold
    ex = SelfieSeg(SelfieOptions(min_area=0.01, preview=True))
    monkeypatch.setattr(ex, "person_mask", lambda frame: prob)
    out = ex.process(np.zeros((40, 60, 3), np.uint8), 0)
    inst, seg = out["inst"], out["seg"]
    assert (inst[20:35, 30:50] == 1).all() and (inst[5:15, 5:15] == 2).all()
    assert inst[38, 58] == 0 and seg[38, 58] == 0 and seg[25, 5] == 0
    assert int(seg.sum()) == 400
    assert out["seg_preview"][27, 40].tolist() == [220, 20, 60] and out["seg_preview"][0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("options,match", [({"model": "portrait"}, "general, landscape"),
                                           ({"threshold": 1.0}, "threshold"), ({"min_area": -0.1}, "min-area")])
def test_bad_selfie_options_are_config_errors(options: dict[str, Any], match: str) -> None:
    from v2v_plugins.extract.seg import SelfieOptions, SelfieSeg

    with pytest.raises(ConfigError, match=match):
        SelfieSeg(SelfieOptions(**options))


def test_seg_backends_are_registered() -> None:
    from v2vcli.registry import get_registry

    reg = get_registry()
    assert {"seg/detectron2", "seg/selfie"} <= set(reg.extractors())
    assert reg.default_backend("seg") == "detectron2"


# -- CLI ------------------------------------------------------------------------------------------------------------------

def test_cli_seg_without_detectron2_is_a_one_line_error(cli: Any, tiny_video: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "detectron2", None)
    result = cli("extract", "seg", tiny_video, "-o", tmp_path / "ds")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: seg backend 'detectron2' needs detectron2"), result.output
    assert "git+https://github.com/facebookresearch/detectron2.git" in lines[0]


def test_cli_seg_selfie_writes_labels_instances_previews_and_label_set(cli: Any, carphone_mp4: Path,
                                                                       tmp_path: Path) -> None:
    from v2vcli.data.layout import Dataset
    from v2vcli.io.files import read_image, read_instance, read_label

    out = tmp_path / "ds"
    result = cli("extract", "seg", carphone_mp4, "-o", out, "--backend", "selfie", "--preview", "--end", "0.5")
    assert result.exit_code == 0, result.output
    ds = Dataset(out)
    seq = "carphone_pristine"
    count = ds.count(seq)
    assert count >= 10
    for name in ("seg", "inst", "seg_preview"):
        assert len(list((out / name / seq).glob("*.png"))) == count
    seg = read_label(out / "seg" / seq / "000005.png")
    inst = read_instance(out / "inst" / seq / "000005.png")
    preview = read_image(out / "seg_preview" / seq / "000005.png")
    assert seg.shape == (144, 176) and set(np.unique(seg)) <= {0, 1} and seg.mean() > 0.2
    assert inst.dtype == np.uint16 and np.array_equal(inst > 0, seg == 1)
    assert preview.shape == (144, 176, 3)
    # background black and person red, except the white outline on both sides of the person's border
    assert (preview[seg == 0] == 0).all(axis=1).mean() > 0.9
    assert (preview[seg == 1] == [220, 20, 60]).all(axis=1).mean() > 0.9
    ls = ds.label_set("seg")
    assert [c.name for c in ls.classes] == ["background", "person"]
    meta = ds.kind_meta("seg")
    assert meta is not None and meta["backend"] == "selfie" and "seg_preview" in meta["outputs"]
