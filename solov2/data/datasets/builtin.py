"""Builtin datasets: COCO (2017 and the 2014 splits users know) and the synthetic shapes splits."""

from __future__ import annotations

import os
from typing import Dict, Tuple

from ...utils.errors import InputFileNotFoundError
from ...utils.file_io import PathManager
from ..catalog import DatasetCatalog, MetadataCatalog
from .coco import load_coco_json
from .shapes import SHAPE_CLASSES, SHAPES_SPLITS, ensure_shapes_split

# name -> (image folder, annotation json), relative to the datasets root
COCO_SPLITS: Dict[str, Tuple[str, str]] = {
    "coco_2017_train": ("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": ("coco/val2017", "coco/annotations/instances_val2017.json"),
    "coco_2014_train": ("coco/train2014", "coco/annotations/instances_train2014.json"),
    "coco_2014_val": ("coco/val2014", "coco/annotations/instances_val2014.json"),
    "coco_2014_minival": ("coco/val2014", "coco/annotations/instances_minival2014.json"),
    "coco_2014_valminusminival": ("coco/val2014", "coco/annotations/instances_valminusminival2014.json"),
}

# COCO's 80 thing classes with their (non-contiguous) dataset ids.
COCO_CATEGORIES = [
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"),
    (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"),
    (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"),
    (60, "donut"), (61, "cake"), (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"),
    (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"),
    (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"),
    (89, "hair drier"), (90, "toothbrush"),
]


def datasets_root() -> str:
    """$SOLOV2_DATASETS, else $DETECTRON2_DATASETS, else ./datasets."""
    return os.path.expanduser(os.environ.get("SOLOV2_DATASETS") or os.environ.get("DETECTRON2_DATASETS") or "datasets")


def _load_builtin_coco(name: str):
    image_dir, json_rel = COCO_SPLITS[name]
    root = datasets_root()
    json_file, image_root = os.path.join(root, json_rel), os.path.join(root, image_dir)
    if not PathManager.isfile(json_file) or not PathManager.isdir(image_root):
        raise InputFileNotFoundError(
            f"Builtin dataset '{name}' expects annotations at '{json_file}' and images in '{image_root}' "
            f"(datasets root '{root}', from SOLOV2_DATASETS / DETECTRON2_DATASETS / ./datasets). "
            "See datasets/README.md for the layout."
        )
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root)
    return load_coco_json(json_file, image_root, name)


def _load_shapes(name: str):
    n, seed = SHAPES_SPLITS[name]
    json_file, image_root = ensure_shapes_split(datasets_root(), name.split("_", 1)[1], n, seed)
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root)
    return load_coco_json(json_file, image_root, name)


def register_all_builtin() -> None:
    """Register the builtin names (idempotent); data is only read when a dataset is used."""
    for name in COCO_SPLITS:
        if name not in DatasetCatalog:
            DatasetCatalog.register(name, lambda n=name: _load_builtin_coco(n))
            MetadataCatalog.get(name).set(
                thing_classes=[c for _, c in COCO_CATEGORIES],
                thing_dataset_id_to_contiguous_id={i: k for k, (i, _) in enumerate(COCO_CATEGORIES)},
                evaluator_type="coco",
            )
    for name in SHAPES_SPLITS:
        if name not in DatasetCatalog:
            DatasetCatalog.register(name, lambda n=name: _load_shapes(n))
            MetadataCatalog.get(name).set(
                thing_classes=list(SHAPE_CLASSES),
                thing_dataset_id_to_contiguous_id={k + 1: k for k in range(len(SHAPE_CLASSES))},
                evaluator_type="coco",
            )
