"""Precision-recall curves from pycocotools' accumulated precision array, saved so plots can be redrawn later."""

from __future__ import annotations

import os
from typing import Any, Dict, Tuple

import numpy as np

__all__ = ["PRECISION_FILE", "ap_at", "load_precision", "mean_pr_curve", "pr_curves", "save_precision"]

# COCOEvaluator saves one per task ("segm", "bbox") next to its results.
PRECISION_FILE = "coco_eval_{task}.npz"


def save_precision(path: str, coco_eval: Any, class_names: Dict[int, str]) -> None:
    """Save an accumulated COCOeval's precision array [T, R, K, A, M] with its thresholds and class names."""
    params = coco_eval.params
    cat_ids = np.asarray(params.catIds, dtype=np.int64)
    names = np.asarray([class_names.get(int(c), str(int(c))) for c in cat_ids], dtype=str)
    tmp = f"{path}.{os.getpid()}.tmp.npz"  # np.savez appends .npz to names without it
    np.savez_compressed(
        tmp,
        precision=np.asarray(coco_eval.eval["precision"], dtype=np.float64),
        iou_thrs=np.asarray(params.iouThrs, dtype=np.float64),
        rec_thrs=np.asarray(params.recThrs, dtype=np.float64),
        max_dets=np.asarray(params.maxDets, dtype=np.int64),
        cat_ids=cat_ids,
        class_names=names,
    )
    os.replace(tmp, path)


def load_precision(path: str) -> Dict[str, np.ndarray]:
    """What save_precision wrote, as a dict of arrays."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _iou_index(iou_thrs: np.ndarray, iou: float) -> int:
    hits = np.nonzero(np.isclose(iou_thrs, iou))[0]
    if hits.size == 0:
        raise ValueError(f"IoU threshold {iou} is not among the evaluated ones {iou_thrs.tolist()}")
    return int(hits[0])


def pr_curves(data: Dict[str, np.ndarray], iou: float) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """(recall points, {class name: precision at each}) at one IoU threshold, all areas, the most detections.

    Classes without ground truth (pycocotools' -1) are left out; a recall level a class never reaches has
    precision 0, as pycocotools scores it.
    """
    t = _iou_index(data["iou_thrs"], iou)
    precision = data["precision"][t, :, :, 0, -1]  # [R, K]
    curves: Dict[str, np.ndarray] = {}
    for k, name in enumerate(data["class_names"]):
        p = precision[:, k]
        if np.all(p == -1):
            continue
        curves[str(name)] = p.copy()
    return data["rec_thrs"], curves


def mean_pr_curve(curves: Dict[str, np.ndarray]) -> np.ndarray:
    """The class-mean precision at each recall point (what COCO's AP at one IoU averages), empty without classes."""
    if not curves:
        return np.zeros(0)
    return np.mean(np.stack(list(curves.values())), axis=0)


def ap_at(curves: Dict[str, np.ndarray]) -> float:
    """Mean precision over recall points and classes, in percent (COCO's AP at that IoU); NaN without classes."""
    mean = mean_pr_curve(curves)
    return float(mean.mean() * 100) if mean.size else float("nan")
