"""Label sets the seg extractors write: COCO panoptic (133 classes), Cityscapes (labelIds) and person/background.

COCO panoptic. The 80 thing and 53 stuff categories of COCO panoptic 2017 with the colours detectron2 draws them
in (its ``COCO_CATEGORIES``, from panopticapi's ``panoptic_coco_categories.json``). COCO's own category ids run
1..200 with gaps; a one-hot generator input wants contiguous ids, so v2v writes id 0 = ``unlabeled`` (void, also
what a pixel no segment covers gets), 1..80 = the things and 81..133 = the stuff classes in COCO's order, and
records each class's COCO id in meta/seg.json (``coco_ids``). Stuff names are the short ones detectron2 shows
(``wall-other-merged`` → ``wall``), so configs can name them; :func:`class_lookup` accepts both spellings.

Cityscapes and generic label sets are core's (:mod:`v2vcli.data.layout`, shared with ``v2v dataset
import-vid2vid``): labelIds 0..34 with 0 ``unlabeled`` ignored. Models trained on Cityscapes predict ``trainIds``
(19 classes); :data:`CITYSCAPES_TRAIN_TO_LABEL_ID` maps them back.
"""

from __future__ import annotations

from v2vcli.data.layout import LabelClass, LabelSet, cityscapes_label_set, generic_label_set

__all__ = [
    "COCO_PANOPTIC_CATEGORIES",
    "CITYSCAPES_TRAIN_CLASSES",
    "CITYSCAPES_TRAIN_TO_LABEL_ID",
    "coco_panoptic_label_set",
    "cityscapes_label_set",
    "person_label_set",
    "short_coco_name",
    "class_lookup",
    "generic_label_set",
]

# (COCO category id, isthing, name, colour): COCO panoptic 2017, detectron2's visualisation colours.
COCO_PANOPTIC_CATEGORIES: tuple[tuple[int, int, str, tuple[int, int, int]], ...] = (
    (1, 1, "person", (220, 20, 60)), (2, 1, "bicycle", (119, 11, 32)), (3, 1, "car", (0, 0, 142)),
    (4, 1, "motorcycle", (0, 0, 230)), (5, 1, "airplane", (106, 0, 228)), (6, 1, "bus", (0, 60, 100)),
    (7, 1, "train", (0, 80, 100)), (8, 1, "truck", (0, 0, 70)), (9, 1, "boat", (0, 0, 192)),
    (10, 1, "traffic light", (250, 170, 30)), (11, 1, "fire hydrant", (100, 170, 30)),
    (13, 1, "stop sign", (220, 220, 0)), (14, 1, "parking meter", (175, 116, 175)), (15, 1, "bench", (250, 0, 30)),
    (16, 1, "bird", (165, 42, 42)), (17, 1, "cat", (255, 77, 255)), (18, 1, "dog", (0, 226, 252)),
    (19, 1, "horse", (182, 182, 255)), (20, 1, "sheep", (0, 82, 0)), (21, 1, "cow", (120, 166, 157)),
    (22, 1, "elephant", (110, 76, 0)), (23, 1, "bear", (174, 57, 255)), (24, 1, "zebra", (199, 100, 0)),
    (25, 1, "giraffe", (72, 0, 118)), (27, 1, "backpack", (255, 179, 240)), (28, 1, "umbrella", (0, 125, 92)),
    (31, 1, "handbag", (209, 0, 151)), (32, 1, "tie", (188, 208, 182)), (33, 1, "suitcase", (0, 220, 176)),
    (34, 1, "frisbee", (255, 99, 164)), (35, 1, "skis", (92, 0, 73)), (36, 1, "snowboard", (133, 129, 255)),
    (37, 1, "sports ball", (78, 180, 255)), (38, 1, "kite", (0, 228, 0)), (39, 1, "baseball bat", (174, 255, 243)),
    (40, 1, "baseball glove", (45, 89, 255)), (41, 1, "skateboard", (134, 134, 103)),
    (42, 1, "surfboard", (145, 148, 174)), (43, 1, "tennis racket", (255, 208, 186)),
    (44, 1, "bottle", (197, 226, 255)), (46, 1, "wine glass", (171, 134, 1)), (47, 1, "cup", (109, 63, 54)),
    (48, 1, "fork", (207, 138, 255)), (49, 1, "knife", (151, 0, 95)), (50, 1, "spoon", (9, 80, 61)),
    (51, 1, "bowl", (84, 105, 51)), (52, 1, "banana", (74, 65, 105)), (53, 1, "apple", (166, 196, 102)),
    (54, 1, "sandwich", (208, 195, 210)), (55, 1, "orange", (255, 109, 65)), (56, 1, "broccoli", (0, 143, 149)),
    (57, 1, "carrot", (179, 0, 194)), (58, 1, "hot dog", (209, 99, 106)), (59, 1, "pizza", (5, 121, 0)),
    (60, 1, "donut", (227, 255, 205)), (61, 1, "cake", (147, 186, 208)), (62, 1, "chair", (153, 69, 1)),
    (63, 1, "couch", (3, 95, 161)), (64, 1, "potted plant", (163, 255, 0)), (65, 1, "bed", (119, 0, 170)),
    (67, 1, "dining table", (0, 182, 199)), (70, 1, "toilet", (0, 165, 120)), (72, 1, "tv", (183, 130, 88)),
    (73, 1, "laptop", (95, 32, 0)), (74, 1, "mouse", (130, 114, 135)), (75, 1, "remote", (110, 129, 133)),
    (76, 1, "keyboard", (166, 74, 118)), (77, 1, "cell phone", (219, 142, 185)), (78, 1, "microwave", (79, 210, 114)),
    (79, 1, "oven", (178, 90, 62)), (80, 1, "toaster", (65, 70, 15)), (81, 1, "sink", (127, 167, 115)),
    (82, 1, "refrigerator", (59, 105, 106)), (84, 1, "book", (142, 108, 45)), (85, 1, "clock", (196, 172, 0)),
    (86, 1, "vase", (95, 54, 80)), (87, 1, "scissors", (128, 76, 255)), (88, 1, "teddy bear", (201, 57, 1)),
    (89, 1, "hair drier", (246, 0, 122)), (90, 1, "toothbrush", (191, 162, 208)),
    (92, 0, "banner", (255, 255, 128)), (93, 0, "blanket", (147, 211, 203)), (95, 0, "bridge", (150, 100, 100)),
    (100, 0, "cardboard", (168, 171, 172)), (107, 0, "counter", (146, 112, 198)), (109, 0, "curtain", (210, 170, 100)),
    (112, 0, "door-stuff", (92, 136, 89)), (118, 0, "floor-wood", (218, 88, 184)), (119, 0, "flower", (241, 129, 0)),
    (122, 0, "fruit", (217, 17, 255)), (125, 0, "gravel", (124, 74, 181)), (128, 0, "house", (70, 70, 70)),
    (130, 0, "light", (255, 228, 255)), (133, 0, "mirror-stuff", (154, 208, 0)), (138, 0, "net", (193, 0, 92)),
    (141, 0, "pillow", (76, 91, 113)), (144, 0, "platform", (255, 180, 195)), (145, 0, "playingfield", (106, 154, 176)),
    (147, 0, "railroad", (230, 150, 140)), (148, 0, "river", (60, 143, 255)), (149, 0, "road", (128, 64, 128)),
    (151, 0, "roof", (92, 82, 55)), (154, 0, "sand", (254, 212, 124)), (155, 0, "sea", (73, 77, 174)),
    (156, 0, "shelf", (255, 160, 98)), (159, 0, "snow", (255, 255, 255)), (161, 0, "stairs", (104, 84, 109)),
    (166, 0, "tent", (169, 164, 131)), (168, 0, "towel", (225, 199, 255)), (171, 0, "wall-brick", (137, 54, 74)),
    (175, 0, "wall-stone", (135, 158, 223)), (176, 0, "wall-tile", (7, 246, 231)), (177, 0, "wall-wood", (107, 255, 200)),
    (178, 0, "water-other", (58, 41, 149)), (180, 0, "window-blind", (183, 121, 142)),
    (181, 0, "window-other", (255, 73, 97)), (184, 0, "tree-merged", (107, 142, 35)),
    (185, 0, "fence-merged", (190, 153, 153)), (186, 0, "ceiling-merged", (146, 139, 141)),
    (187, 0, "sky-other-merged", (70, 130, 180)), (188, 0, "cabinet-merged", (134, 199, 156)),
    (189, 0, "table-merged", (209, 226, 140)), (190, 0, "floor-other-merged", (96, 36, 108)),
    (191, 0, "pavement-merged", (96, 96, 96)), (192, 0, "mountain-merged", (64, 170, 64)),
    (193, 0, "grass-merged", (152, 251, 152)), (194, 0, "dirt-merged", (208, 229, 228)),
    (195, 0, "paper-merged", (206, 186, 171)), (196, 0, "food-other-merged", (152, 161, 64)),
    (197, 0, "building-other-merged", (116, 112, 0)), (198, 0, "rock-merged", (0, 114, 143)),
    (199, 0, "wall-other-merged", (102, 102, 156)), (200, 0, "rug-merged", (250, 141, 255)),
)

# The 19 Cityscapes classes models predict, in trainId order (cityscapesScripts).
CITYSCAPES_TRAIN_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation", "terrain",
    "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
CITYSCAPES_TRAIN_TO_LABEL_ID: dict[int, int] = {t: cityscapes_label_set().id_of(name)
                                                for t, name in enumerate(CITYSCAPES_TRAIN_CLASSES)}
CITYSCAPES_THINGS: tuple[str, ...] = ("person", "rider", "car", "truck", "bus", "caravan", "trailer", "train",
                                      "motorcycle", "bicycle")


def short_coco_name(name: str) -> str:
    """detectron2's short stuff name: ``sky-other-merged`` → ``sky``, ``tree-merged`` → ``tree``."""
    return name.replace("-other", "").replace("-merged", "")


def coco_panoptic_label_set() -> LabelSet:
    """id 0 unlabeled, 1..80 things, 81..133 stuff (COCO panoptic order), detectron2's colours."""
    classes = [LabelClass(0, "unlabeled", (0, 0, 0))]
    classes += [LabelClass(i + 1, short_coco_name(name), color)
                for i, (_, _, name, color) in enumerate(COCO_PANOPTIC_CATEGORIES)]
    return LabelSet("coco_panoptic", classes, ignore_id=0)


def coco_things() -> list[str]:
    return [short_coco_name(name) for _, isthing, name, _ in COCO_PANOPTIC_CATEGORIES if isthing]


def coco_ids() -> dict[str, int]:
    """v2v class name → COCO panoptic category id (recorded in meta/seg.json)."""
    return {short_coco_name(name): cid for cid, _, name, _ in COCO_PANOPTIC_CATEGORIES}


def person_label_set() -> LabelSet:
    """Person/background: the label set of the ``selfie`` backend."""
    return LabelSet("person", [LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "person", (220, 20, 60))],
                    ignore_id=None)


def class_lookup(label_set: LabelSet) -> dict[str, int]:
    """Lower-cased class name → id, with COCO's long and short stuff spellings both accepted."""
    table: dict[str, int] = {}
    for c in label_set.classes:
        table[c.name.lower()] = c.id
    if label_set.name == "coco_panoptic":
        ids = {c.name: c.id for c in label_set.classes}
        for _, _, name, _ in COCO_PANOPTIC_CATEGORIES:
            table[name.lower()] = ids[short_coco_name(name)]
    return table
