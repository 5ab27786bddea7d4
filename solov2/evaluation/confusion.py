"""Class confusion matrix for instance segmentation: predictions matched to ground truth by mask IoU.

Rows are the ground-truth classes plus "background" (a prediction that matches no object); columns are the
predicted classes plus "missed" (an object no prediction matches). Matching is class-agnostic and one-to-one,
greedy by decreasing mask IoU, so a correctly placed mask with the wrong class lands off the diagonal.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Sequence

import numpy as np
import pycocotools.mask as mask_util

__all__ = [
    "CONFUSION_FILE",
    "DEFAULT_IOU_THR",
    "DEFAULT_SCORE_THR",
    "confusion_matrix",
    "load_confusion",
    "save_confusion",
    "confusion_csv",
]

# Saved by COCOEvaluator next to its results, read back by the plots.
CONFUSION_FILE = "confusion_segm.json"
DEFAULT_IOU_THR = 0.5
# Like a demo's confidence threshold: below it a prediction is not "made", so it neither matches nor counts as
# spurious (all of a model's 100 low-score detections per image would otherwise swamp the background row).
DEFAULT_SCORE_THR = 0.3


def _rle(segmentation: Any, height: int, width: int) -> Dict[str, Any]:
    """Any COCO segmentation (polygons, uncompressed or compressed RLE) as one compressed RLE."""
    if isinstance(segmentation, list):
        return mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):
        return mask_util.frPyObjects(segmentation, height, width)
    return segmentation


def confusion_matrix(
    gt_annotations: Iterable[Dict[str, Any]],
    predictions: Iterable[Dict[str, Any]],
    image_sizes: Dict[Any, Sequence[int]],
    category_ids: Sequence[int],
    iou_thr: float = DEFAULT_IOU_THR,
    score_thr: float = DEFAULT_SCORE_THR,
) -> np.ndarray:
    """(K+1) x (K+1) counts: [gt class or background (last row), predicted class or missed (last column)].

    gt_annotations and predictions are COCO dicts ("image_id", "category_id", "segmentation"; predictions also
    "score"); image_sizes maps image id -> (height, width) and fixes the images counted; category_ids gives the
    row/column order. Crowd regions match nothing: a prediction covering one (intersection over the prediction's
    area >= iou_thr) is neither matched nor spurious.
    """
    index = {int(c): i for i, c in enumerate(category_ids)}
    k = len(index)
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    gts: Dict[Any, List[Dict[str, Any]]] = defaultdict(list)
    dts: Dict[Any, List[Dict[str, Any]]] = defaultdict(list)
    for a in gt_annotations:
        if a["image_id"] in image_sizes and int(a["category_id"]) in index:
            gts[a["image_id"]].append(a)
    for p in predictions:
        if p["image_id"] in image_sizes and p["score"] >= score_thr:
            if int(p["category_id"]) not in index:
                raise ValueError(f"A prediction has category id {p['category_id']}, not one of {list(index)}")
            dts[p["image_id"]].append(p)
    for img_id, (h, w) in image_sizes.items():
        objects = [a for a in gts[img_id] if not a.get("iscrowd", 0)]
        crowds = [a for a in gts[img_id] if a.get("iscrowd", 0)]
        preds = dts[img_id]
        gt_cls = [index[int(a["category_id"])] for a in objects]
        dt_cls = [index[int(p["category_id"])] for p in preds]
        dt_rles = [_rle(p["segmentation"], h, w) for p in preds]
        matched_gt, matched_dt = set(), set()
        if objects and preds:
            gt_rles = [_rle(a["segmentation"], h, w) for a in objects]
            ious = np.asarray(mask_util.iou(dt_rles, gt_rles, [0] * len(gt_rles))).reshape(len(preds), len(objects))
            # Greedy on IoU, ties broken by the higher score, so the result does not depend on input order.
            scores = np.array([p["score"] for p in preds])
            d_idx, g_idx = np.nonzero(ious >= iou_thr)
            order = np.lexsort((-scores[d_idx], -ious[d_idx, g_idx]))
            for d, g in zip(d_idx[order], g_idx[order]):
                if d in matched_dt or g in matched_gt:
                    continue
                matched_dt.add(d)
                matched_gt.add(g)
                matrix[gt_cls[g], dt_cls[d]] += 1
        for g, c in enumerate(gt_cls):
            if g not in matched_gt:
                matrix[c, k] += 1
        unmatched = [d for d in range(len(preds)) if d not in matched_dt]
        if unmatched and crowds:
            crowd_rles = [_rle(a["segmentation"], h, w) for a in crowds]
            cover = np.asarray(
                mask_util.iou([dt_rles[d] for d in unmatched], crowd_rles, [1] * len(crowd_rles))
            ).reshape(len(unmatched), len(crowds))
            unmatched = [d for d, row in zip(unmatched, cover) if row.max() < iou_thr]
        for d in unmatched:
            matrix[k, dt_cls[d]] += 1
    return matrix


def save_confusion(
    path: str, matrix: np.ndarray, class_names: Sequence[str], iou_thr: float, score_thr: float, num_images: int
) -> None:
    """Write the matrix with its labels and thresholds as json (atomically: plots may read it while it is written)."""
    data = {
        "class_names": list(class_names),
        "matrix": np.asarray(matrix).tolist(),
        "iou_thr": iou_thr,
        "score_thr": score_thr,
        "num_images": int(num_images),
        "rows": "ground truth classes, then background (predictions matching no object)",
        "columns": "predicted classes, then missed (objects matched by no prediction)",
    }
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def load_confusion(path: str) -> Dict[str, Any]:
    """What save_confusion wrote, with "matrix" as an int64 array."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data["matrix"] = np.asarray(data["matrix"], dtype=np.int64)
    return data


def confusion_csv(matrix: np.ndarray, class_names: Sequence[str]) -> str:
    """The matrix as CSV text: a header of predicted labels, then one row per ground-truth label."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ground truth \\ predicted", *class_names, "missed"])
    for name, row in zip([*class_names, "background"], np.asarray(matrix)):
        writer.writerow([name, *[int(v) for v in row]])
    return out.getvalue()
