"""Test helpers for the Detectron2 adapter: exact polygons of bit masks, Detectron2 inputs, a tiny polygon dataset."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Tuple

import numpy as np

from solov2.data.datasets import generate_shapes
from solov2.structures import polygons_to_bitmask, rle_to_bitmask


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """Axis-aligned rectangles (COCO polygons) on pixel edges whose rasterisation is exactly `mask`.

    Each maximal run of pixels in a row becomes a rectangle, and a run repeated on the next rows extends it.
    """
    rects: List[List[float]] = []
    open_runs: Dict[Tuple[int, int], int] = {}  # (x0, x1) -> first row
    h = mask.shape[0]
    for y in range(h + 1):
        runs = set()
        if y < h:
            d = np.diff(np.concatenate([[0], mask[y].astype(np.int8), [0]]))
            runs = set(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))
        for run in list(open_runs):
            if run not in runs:
                y0 = open_runs.pop(run)
                x0, x1 = run
                rects.append([float(v) for v in (x0, y0, x1, y0, x1, y, x0, y)])
        for run in runs:
            open_runs.setdefault(run, y)
    rects.sort(key=lambda r: (r[1], r[0]))
    assert np.array_equal(polygons_to_bitmask(rects, *mask.shape), mask.astype(bool)), "inexact polygons"
    return rects


def to_detectron2_inputs(inputs: List[Dict[str, Any]], mask_format: str) -> List[Dict[str, Any]]:
    """solov2 inputs with ground truth -> the same inputs with Detectron2 Instances (BitMasks or PolygonMasks)."""
    from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks

    out = []
    for x in inputs:
        x = dict(x)
        if "instances" in x:
            inst = x["instances"]
            masks = inst.gt_masks.tensor
            if mask_format == "bitmask":
                gt_masks = BitMasks(masks.clone())
            else:
                gt_masks = PolygonMasks([mask_to_polygons(m.numpy()) for m in masks])
            x["instances"] = Instances(inst.image_size, gt_masks=gt_masks, gt_boxes=Boxes(inst.gt_boxes.tensor.clone()),
                                       gt_classes=inst.gt_classes.clone())
        out.append(x)
    return out


def write_polygon_shapes(out_dir: str, num_images: int, seed: int) -> Tuple[str, str]:
    """A synthetic shapes split whose annotations are polygons (exact rectangles of its masks); (json, image root)."""
    json_file = generate_shapes(out_dir, num_images, seed, image_size=(96, 128), max_objects=4)
    with open(json_file) as f:
        data = json.load(f)
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    for a in data["annotations"]:
        mask = rle_to_bitmask(a["segmentation"], *sizes[a["image_id"]])
        a["segmentation"] = mask_to_polygons(mask)
    poly_json = os.path.join(out_dir, "polygons.json")
    with open(poly_json, "w") as f:
        json.dump(data, f)
    return poly_json, os.path.join(out_dir, "images")
