"""solov2's datasets in Detectron2's DatasetCatalog/MetadataCatalog, loaded by solov2's own loaders."""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ..data import DatasetCatalog as _SolovDatasets
from ..data import MetadataCatalog as _SolovMetadata
from ..data import register_datasets_from_cfg
from ..structures import BitMasks
from ..utils.file_io import PathManager

# Names this module put in Detectron2's catalogs (so a second call, or a name clash, can tell them apart).
_REGISTERED: set = set()


def register_solov2_datasets(cfg: Optional[Any] = None) -> List[str]:
    """Register solov2's datasets in Detectron2's catalogs; returns the names registered by this call.

    That is solov2's builtin shapes splits, every dataset registered through `solov2.data` (e.g.
    `register_coco_instances`) and, given `cfg`, its DATASETS.COCO_INSTANCES. Names Detectron2 registers itself
    (its builtin COCO splits) stay Detectron2's; a DATASETS.COCO_INSTANCES name that clashes with one is an error.
    """
    if cfg is not None:
        # Checked before solov2 registers anything, so a refused config leaves both catalogs as they were.
        for entry in cfg.DATASETS.COCO_INSTANCES:
            name = str(entry[0]) if len(entry) else ""
            if name in DatasetCatalog and name not in _REGISTERED:
                raise ValueError(
                    f"DATASETS.COCO_INSTANCES registers '{name}', a name Detectron2 already uses for its own "
                    "dataset; choose another name"
                )
        register_datasets_from_cfg(cfg)
    added = []
    for name in _SolovDatasets.list():
        if name in DatasetCatalog:
            continue
        DatasetCatalog.register(name, functools.partial(_load, name))
        _copy_metadata(name, with_json_file=False)
        _REGISTERED.add(name)
        added.append(name)
    return added


def _load(name: str) -> List[Dict[str, Any]]:
    """solov2's dataset dicts of `name` in the form Detectron2's mapper and evaluator expect; metadata copied."""
    dicts = _SolovDatasets.get(name)
    for d in dicts:
        for ann in d.get("annotations", ()):
            _to_detectron2_annotation(ann, d["height"], d["width"])
    _copy_metadata(name, with_json_file=True)  # loaders set json_file (shapes splits are generated on first use)
    return dicts


def _to_detectron2_annotation(ann: Dict[str, Any], height: int, width: int) -> None:
    """Detectron2's BoxMode; a box where the file had none; compressed RLE where it had uncompressed RLE."""
    segm = ann.get("segmentation")
    if isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        # Detectron2's mapper and COCO conversion decode compressed RLE only; solov2 reads both kinds.
        rle = mask_util.frPyObjects(segm, *segm["size"])
        ann["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    if "bbox" not in ann:
        # solov2 derives boxes from masks; Detectron2 reads annotation boxes, so give it the mask's tight box.
        boxes = BitMasks.from_segmentations([ann["segmentation"]], height, width).get_bounding_boxes()
        ann["bbox"] = boxes.tensor[0].tolist()
        ann["bbox_mode"] = BoxMode.XYXY_ABS
    else:
        ann["bbox_mode"] = BoxMode(int(ann["bbox_mode"]))  # solov2 stores Detectron2's enum value


def _copy_metadata(name: str, with_json_file: bool) -> None:
    """Copy solov2's metadata of `name` to Detectron2's, leaving values already set there.

    json_file is copied only when that file's categories are exactly the classes: Detectron2's COCOEvaluator
    scores against the file and expects one category per class, while solov2's loader drops a labelme
    `_background_` category. Without json_file, Detectron2's evaluator converts the loaded dicts instead.
    """
    src = _SolovMetadata.get(name).as_dict()
    dst = MetadataCatalog.get(name)
    json_file = src.get("json_file")
    keep_json = (
        with_json_file
        and json_file is not None
        and _category_ids(json_file) == frozenset(src.get("thing_dataset_id_to_contiguous_id", {}))
    )
    for key, value in src.items():
        if key == "name" or (key == "json_file" and not keep_json) or hasattr(dst, key):
            continue
        setattr(dst, key, value)


def _category_ids(json_file: str) -> FrozenSet[Any]:
    """The category ids a COCO json file declares (read once per file version)."""
    stat = os.stat(json_file) if os.path.exists(json_file) else None
    return _category_ids_cached(json_file, (stat.st_mtime_ns, stat.st_size) if stat else None)


@functools.lru_cache(maxsize=None)
def _category_ids_cached(json_file: str, version: Optional[Tuple[int, int]]) -> FrozenSet[Any]:
    """_category_ids, cached per (file, modification time and size)."""
    with PathManager.open(json_file, "r") as f:
        return frozenset(c["id"] for c in json.load(f).get("categories", []))
