"""COCO-format instance annotations -> dataset dicts, and one-line registration of such datasets."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional

from ...utils.errors import ConfigError, DatasetFormatError, InputFileNotFoundError
from ...utils.file_io import PathManager
from ..catalog import DatasetCatalog, MetadataCatalog

logger = logging.getLogger(__name__)

BACKGROUND_NAMES = ("_background_", "__background__", "background")

# Detectron2's BoxMode.XYWH_ABS: COCO's box layout.
BOXMODE_XYWH_ABS = 1


def _thing_categories(cats: List[Dict[str, Any]], used_ids: set, json_file: str) -> List[Dict[str, Any]]:
    """Categories that are real classes: a labelme-style background category used by no annotation is dropped."""
    keep = []
    for c in sorted(cats, key=lambda c: c["id"]):
        if str(c.get("name", "")).strip().lower() in BACKGROUND_NAMES and c["id"] not in used_ids:
            logger.info(f"{json_file}: category {c['id']} '{c['name']}' is a background placeholder; not a class")
            continue
        keep.append(c)
    return keep


def _valid_segmentation(segm: Any) -> bool:
    """False for polygons with fewer than 3 points (and empty lists); RLE dicts are validated by area."""
    if isinstance(segm, dict):
        return "counts" in segm and "size" in segm
    if isinstance(segm, list):
        polys = [p for p in segm if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
        return len(polys) > 0
    return False


# DATASETS.ALLOW_IMAGES_OUTSIDE_ROOT (set from the config by register_datasets_from_cfg): whether an image
# file_name may leave its image_root ("../..", an absolute path). Off, a json from elsewhere cannot make a run read
# (and a visualisation or a result show) files outside the folder the user named.
_images_outside_root_allowed = False


def allow_images_outside_root(allowed: bool) -> None:
    """Let (True) or refuse (False, the default) image file_names that leave their dataset's image_root."""
    global _images_outside_root_allowed
    _images_outside_root_allowed = bool(allowed)


def _image_path(image_root: str, file_name: Any, json_file: str, img_id: Any) -> str:
    """image_root/file_name; one that climbs out of image_root is refused naming the json and the entry."""
    path = os.path.join(image_root, str(file_name))
    if _images_outside_root_allowed or "://" in image_root:
        return path
    root = os.path.normpath(os.path.abspath(image_root))
    inside = os.path.normpath(os.path.abspath(path))
    if os.path.isabs(str(file_name)) or os.path.commonpath([root, inside]) != root:
        raise DatasetFormatError(
            f"'{json_file}': image {img_id} has file_name '{file_name}', which leads outside image_root "
            f"'{image_root}'. Fix the file_name, or set DATASETS.ALLOW_IMAGES_OUTSIDE_ROOT True if this dataset is "
            "meant to read images there"
        )
    return path


def check_segmentation_size(segm: Any, height: int, width: int) -> Optional[str]:
    """Why a segmentation cannot be an image's mask (an RLE of another size), or None; training and evaluation
    both load annotations through load_coco_json, so both apply this one rule."""
    if isinstance(segm, dict) and isinstance(segm.get("size"), (list, tuple)) and len(segm["size"]) == 2:
        try:
            size = [int(x) for x in segm["size"]]
        except (TypeError, ValueError):
            return f"its RLE size {segm['size']!r} is not two numbers"
        if size != [int(height), int(width)]:
            return f"its RLE size {size} (height, width) differs from its image's {[int(height), int(width)]}"
    return None


def load_coco_json(json_file: str, image_root: str, dataset_name: Optional[str] = None) -> List[Dict[str, Any]]:
    """Load a COCO instances json into Detectron2-style dataset dicts with contiguous category ids.

    Category ids of any kind (non-contiguous, from 0, a `_background_` placeholder) map to 0..K-1 in id order.
    With `dataset_name`, its metadata gets thing_classes, thing_dataset_id_to_contiguous_id, json_file, image_root.
    """
    if not PathManager.isfile(json_file):
        raise InputFileNotFoundError(f"COCO annotation file '{json_file}' does not exist")
    with PathManager.open(json_file, "r") as f:
        try:
            data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetFormatError(f"'{json_file}' is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise DatasetFormatError(f"'{json_file}' holds a JSON {type(data).__name__}, not a COCO instances object")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetFormatError(f"'{json_file}' has no '{key}' list: is it a COCO instances file?")
    has_annotations = "annotations" in data
    if not has_annotations:
        # As in Detectron2, a file without the key (e.g. COCO's image_info_test-dev) is an unlabelled split: fine
        # for inference, but there is nothing to train on or score against.
        logger.warning(f"'{json_file}' has no 'annotations' key: its {len(data['images'])} images are loaded without "
                       "annotations (fine for a test split; training and evaluation need them)")
    anns = data.get("annotations") or []
    if not isinstance(anns, list):
        raise DatasetFormatError(f"'{json_file}': 'annotations' must be a list, got a {type(anns).__name__}")
    images = {}
    for k, img in enumerate(data["images"]):
        missing_fields = [f for f in ("id", "file_name", "height", "width") if not isinstance(img, dict) or f not in img]
        if missing_fields:
            raise DatasetFormatError(f"'{json_file}': image entry {k} ({img!r:.80}) has no {', '.join(missing_fields)}")
        if img["id"] in images:
            raise DatasetFormatError(f"'{json_file}': duplicate image id {img['id']}")
        images[img["id"]] = img
    for k, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise DatasetFormatError(f"'{json_file}': category entry {k} ({c!r:.80}) needs an 'id' and a 'name'")
    cat_ids = {c["id"] for c in data["categories"]}
    used = {a.get("category_id") for a in anns}
    cats = _thing_categories(data["categories"], used, json_file)
    id_map = {c["id"]: i for i, c in enumerate(cats)}

    per_image: Dict[Any, List[Dict[str, Any]]] = {i: [] for i in images}
    seen_ann_ids = set()
    dropped: List[Any] = []
    for a in anns:
        if not isinstance(a, dict):
            raise DatasetFormatError(f"'{json_file}': an annotation is a {type(a).__name__} ({a!r:.80}), not an object")
        aid = a.get("id")
        if aid in seen_ann_ids:
            raise DatasetFormatError(f"'{json_file}': annotation id {aid} appears more than once")
        seen_ann_ids.add(aid)
        if a.get("image_id") not in images:
            raise DatasetFormatError(f"'{json_file}': annotation {aid} refers to unknown image id {a.get('image_id')}")
        if a.get("category_id") not in cat_ids:
            raise DatasetFormatError(
                f"'{json_file}': annotation {aid} has unknown category id {a.get('category_id')} "
                f"(categories: {sorted(cat_ids)})"
            )
        segm = a.get("segmentation")
        bbox = a.get("bbox")
        try:
            area = float(a.get("area", 1) or 0)
            if bbox is not None:
                bbox = [float(x) for x in bbox]
        except (TypeError, ValueError) as e:
            raise DatasetFormatError(f"'{json_file}': annotation {aid} has a non-numeric area or bbox: {e}") from e
        image = images[a["image_id"]]
        wrong_size = check_segmentation_size(segm, image["height"], image["width"])
        if wrong_size:
            raise DatasetFormatError(
                f"'{json_file}': annotation {aid} (image {a['image_id']}, '{image['file_name']}'): {wrong_size}"
            )
        degenerate = segm is None or not _valid_segmentation(segm) or area <= 0
        if bbox is not None and len(bbox) == 4 and (bbox[2] <= 0 or bbox[3] <= 0):
            degenerate = True
        if degenerate:
            dropped.append(aid)
            continue
        obj = {
            "id": aid,
            "iscrowd": int(a.get("iscrowd", 0)),
            "category_id": id_map[a["category_id"]],
            "segmentation": segm,
            "area": area,
        }
        if bbox is not None:
            obj["bbox"] = bbox
            obj["bbox_mode"] = BOXMODE_XYWH_ABS
        per_image[a["image_id"]].append(obj)
    if dropped:
        logger.warning(
            f"{json_file}: dropped {len(dropped)} degenerate annotation(s) (polygons with < 3 points, zero area "
            f"or empty boxes), ids: {dropped[:10]}{' ...' if len(dropped) > 10 else ''}"
        )

    dataset = []
    missing = []
    for img_id, img in images.items():
        file_name = _image_path(image_root, img["file_name"], json_file, img_id)
        if not PathManager.exists(file_name):
            missing.append(file_name)
            continue
        dataset.append({
            "file_name": file_name,
            "height": int(img["height"]),
            "width": int(img["width"]),
            "image_id": img_id,
            "annotations": per_image[img_id],
        })
    if missing:
        raise InputFileNotFoundError(
            f"'{json_file}': {len(missing)} image file(s) not found under image_root '{image_root}', "
            f"e.g. '{missing[0]}'"
        )
    n_inst = sum(len(d["annotations"]) for d in dataset)
    logger.info(f"Loaded {len(dataset)} images with {n_inst} instances from {json_file}")
    if dataset_name is not None:
        meta = MetadataCatalog.get(dataset_name)
        meta.set(
            thing_classes=[c["name"] for c in cats],
            thing_dataset_id_to_contiguous_id=id_map,
            json_file=json_file,
            image_root=image_root,
            evaluator_type="coco",
            has_annotations=has_annotations,
        )
    return dataset


def register_coco_instances(name: str, metadata: Dict[str, Any], json_file: str, image_root: str) -> None:
    """Register a COCO-format instances dataset under `name` (loaded lazily on first use)."""
    if not isinstance(name, str) or not name:
        raise ConfigError("register_coco_instances needs a dataset name")
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    meta = MetadataCatalog.get(name)
    meta.set(json_file=json_file, image_root=image_root, evaluator_type="coco", **metadata)
    # Class names are needed before the data is first loaded (model size, demo labels): read them now.
    if PathManager.isfile(json_file) and "thing_classes" not in metadata:
        try:
            with PathManager.open(json_file, "r") as f:
                data = json.load(f)
            if not isinstance(data, dict):
                raise TypeError("not a COCO object")
            cats = _thing_categories(data.get("categories", []),
                                     {a.get("category_id") for a in data.get("annotations") or []}, json_file)
            meta.set(thing_classes=[c["name"] for c in cats],
                     thing_dataset_id_to_contiguous_id={c["id"]: i for i, c in enumerate(cats)})
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
            pass  # the loader reports a broken file with its full error when the data is used
