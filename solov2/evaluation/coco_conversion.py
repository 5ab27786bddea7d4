"""Turn a registered dataset (list of dataset dicts) into a COCO-format ground-truth json for pycocotools."""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import pycocotools.mask as mask_util

from ..utils.errors import DatasetFormatError
from ..utils.file_io import PathManager, atomic_write

__all__ = ["convert_to_coco_dict", "convert_to_coco_json", "contiguous_to_dataset_id_map", "name_categories"]

logger = logging.getLogger(__name__)


def contiguous_to_dataset_id_map(metadata: Any) -> Optional[Dict[int, int]]:
    """{contiguous class index: original category id} from metadata, or None when ids are already contiguous."""
    mapping = getattr(metadata, "thing_dataset_id_to_contiguous_id", None)
    if not mapping:
        return None
    reverse = {int(v): int(k) for k, v in mapping.items()}
    if len(reverse) != len(mapping):
        raise ValueError(
            f"Metadata of '{getattr(metadata, 'name', '?')}': thing_dataset_id_to_contiguous_id maps two "
            f"dataset ids to one class: {dict(mapping)}"
        )
    return reverse


def name_categories(results: List[Dict[str, Any]], names: Optional[List[str]],
                    id_map: Optional[Dict[int, int]]) -> int:
    """Give COCO results (contiguous category_id) their class names and dataset category ids (`id_map`), in place.

    A class index without a name (a model with more classes than the dataset) gets category_name None and
    "unknown_category": true, so it cannot pass for a real category; returns how many there were.
    """
    unknown = 0
    for r in results:
        k = r["category_id"]
        if names is not None and 0 <= k < len(names) and (not id_map or k in id_map):
            r["category_name"] = names[k]
            if id_map:
                r["category_id"] = id_map[k]
        else:
            r["category_name"] = None
            r["unknown_category"] = True
            unknown += 1
    return unknown


def _segmentation_to_rle(segm: Any, height: int, width: int) -> Dict[str, Any]:
    """Polygons / uncompressed RLE / compressed RLE -> compressed RLE."""
    if isinstance(segm, list):
        return mask_util.merge(mask_util.frPyObjects(segm, height, width))
    if isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        return mask_util.frPyObjects(segm, height, width)
    if isinstance(segm, dict):
        counts = segm["counts"]
        return {"size": segm["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    raise TypeError(f"Unknown segmentation format: {type(segm).__name__}")


def _json_segmentation(segm: Any) -> Any:
    """A segmentation as JSON can hold it (compressed RLE counts bytes -> str)."""
    if isinstance(segm, dict) and isinstance(segm.get("counts"), bytes):
        return {"size": list(segm["size"]), "counts": segm["counts"].decode("ascii")}
    return segm


def _bbox_xywh(anno: Mapping[str, Any], file_name: str) -> List[float]:
    """An annotation's box as XYWH; Detectron2's bbox_mode convention (0: XYXY_ABS, 1: XYWH_ABS)."""
    bbox = [float(x) for x in anno["bbox"]]
    mode = anno.get("bbox_mode", 1)
    mode_name = getattr(mode, "name", None) or {0: "XYXY_ABS", 1: "XYWH_ABS"}.get(int(mode))
    if mode_name == "XYXY_ABS":
        return [bbox[0], bbox[1], bbox[2] - bbox[0], bbox[3] - bbox[1]]
    if mode_name == "XYWH_ABS":
        return bbox
    raise DatasetFormatError(f"Annotation in '{file_name}' has a bbox_mode ({mode}) that cannot be converted to COCO XYWH")


def convert_to_coco_dict(dataset_name: str) -> Dict[str, Any]:
    """The registered dataset `dataset_name` as a COCO instances dict (original category ids)."""
    from ..data import DatasetCatalog, MetadataCatalog

    dataset_dicts = DatasetCatalog.get(dataset_name)
    metadata = MetadataCatalog.get(dataset_name)
    thing_classes = list(getattr(metadata, "thing_classes", []) or [])
    reverse = contiguous_to_dataset_id_map(metadata)

    def to_dataset_id(contiguous: int) -> int:
        return reverse[contiguous] if reverse is not None else int(contiguous)

    categories = [{"id": to_dataset_id(i), "name": name} for i, name in enumerate(thing_classes)]
    images: List[Dict[str, Any]] = []
    annotations: List[Dict[str, Any]] = []
    for record in dataset_dicts:
        file_name = record.get("file_name", "?")
        if "image_id" not in record:
            raise DatasetFormatError(f"Dataset '{dataset_name}': the record of '{file_name}' has no 'image_id'")
        height, width = int(record["height"]), int(record["width"])
        images.append({"id": record["image_id"], "width": width, "height": height, "file_name": file_name})
        for anno in record.get("annotations", []):
            category = int(anno["category_id"])
            if thing_classes and not 0 <= category < len(thing_classes):
                raise DatasetFormatError(
                    f"Dataset '{dataset_name}', image '{file_name}': category_id {category} is not a class index "
                    f"in [0, {len(thing_classes)})"
                )
            coco_anno: Dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": record["image_id"],
                "category_id": to_dataset_id(category),
                "iscrowd": int(anno.get("iscrowd", 0)),
            }
            segm = anno.get("segmentation")
            if segm:
                rle = _segmentation_to_rle(segm, height, width)
                coco_anno["segmentation"] = _json_segmentation(segm)
                coco_anno["area"] = float(mask_util.area(rle))
                # The box of the mask itself, the same rule the evaluator applies to predicted masks.
                coco_anno["bbox"] = [float(x) for x in mask_util.toBbox(rle)]
            elif "bbox" in anno:
                coco_anno["bbox"] = _bbox_xywh(anno, file_name)
                coco_anno["area"] = float(coco_anno["bbox"][2] * coco_anno["bbox"][3])
            else:
                raise DatasetFormatError(
                    f"Dataset '{dataset_name}', image '{file_name}': an annotation has neither 'segmentation' nor 'bbox'"
                )
            annotations.append(coco_anno)

    logger.info(
        "Converted dataset '%s' to COCO format: %d images, %d annotations", dataset_name, len(images), len(annotations)
    )
    return {
        "info": {
            "date_created": str(datetime.datetime.now()),
            "description": f"Ground truth of dataset '{dataset_name}', converted by solov2",
        },
        "images": images,
        "annotations": annotations,
        "categories": categories,
        "licenses": [],
    }


def convert_to_coco_json(dataset_name: str, output_file: str, allow_cached: bool = False) -> str:
    """Write convert_to_coco_dict(dataset_name) to `output_file` (atomically); reuse it when it exists."""
    if allow_cached and PathManager.exists(output_file):
        logger.info("Using the cached COCO-format ground truth of '%s' at %s", dataset_name, output_file)
        return output_file
    coco_dict = convert_to_coco_dict(dataset_name)
    atomic_write(output_file, lambda f: json.dump(coco_dict, f, default=_json_default), mode="w")
    return output_file


def _json_default(obj: Any) -> Any:
    """json.dump fallback for numpy scalars and arrays inside dataset dicts."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, bytes):
        return obj.decode("ascii")
    raise TypeError(f"Cannot write {type(obj).__name__} to the COCO json")
