"""COCO instance-segmentation evaluation (segm and bbox AP) with pycocotools."""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import logging
import math
import os
import tempfile
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..structures import Instances
from ..utils import comm
from ..utils.errors import ConfigError, InputFileNotFoundError
from ..utils.file_io import PathManager
from ..utils.logger import create_multi_column_table, create_small_table
from ..utils.run_state import output_write_error
from .coco_conversion import contiguous_to_dataset_id_map, convert_to_coco_json
from .confusion import CONFUSION_FILE, DEFAULT_IOU_THR, DEFAULT_SCORE_THR, confusion_matrix, save_confusion
from .evaluator import DatasetEvaluator
from .pr_curves import PRECISION_FILE, save_precision

__all__ = ["COCOEvaluator", "instances_to_coco_json", "summarize_coco_eval"]

logger = logging.getLogger(__name__)

_TASKS = ("segm", "bbox")
_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
RESULTS_FILE = "coco_instances_results.json"


def instances_to_coco_json(instances: Instances, img_id: Any) -> List[Dict[str, Any]]:
    """One image's predictions -> COCO result dicts (contiguous category ids; RLE masks; XYWH boxes of the masks)."""
    num = len(instances)
    if num == 0:
        return []
    scores = instances.scores.tolist()
    classes = instances.pred_classes.tolist()
    results: List[Dict[str, Any]] = []
    if instances.has("pred_masks"):
        masks = instances.pred_masks
        masks = masks.tensor if hasattr(masks, "tensor") else masks
        masks_np = np.asfortranarray(masks.to(torch.uint8).permute(1, 2, 0).cpu().numpy())
        rles = mask_util.encode(masks_np)
        boxes = mask_util.toBbox(rles).tolist()
        for k in range(num):
            rle = rles[k]
            rle["counts"] = rle["counts"].decode("ascii")  # bytes cannot go into json
            results.append(
                {
                    "image_id": img_id,
                    "category_id": int(classes[k]),
                    "segmentation": rle,
                    "bbox": [float(x) for x in boxes[k]],
                    "score": float(scores[k]),
                }
            )
        return results
    boxes_xyxy = instances.pred_boxes.tensor.tolist()
    for k in range(num):
        x1, y1, x2, y2 = boxes_xyxy[k]
        results.append(
            {
                "image_id": img_id,
                "category_id": int(classes[k]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(scores[k]),
            }
        )
    return results


def _percent(value: float) -> float:
    """A COCOeval stat in percent; its -1 ("no ground truth in this range") becomes NaN."""
    return float(value * 100) if value >= 0 else float("nan")


def summarize_coco_eval(coco_eval: COCOeval, class_names: Dict[int, str]) -> Dict[str, float]:
    """{"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-<class>"...} in percent from an evaluated COCOeval.

    class_names maps COCO category ids to names; categories missing from it get no per-class entry.
    """
    results = {name: _percent(coco_eval.stats[i]) for i, name in enumerate(_METRIC_NAMES)}
    # precision: [iou thresholds, recall points, categories, area ranges, max dets]
    precisions = coco_eval.eval["precision"]
    for k, cat_id in enumerate(coco_eval.params.catIds):
        if cat_id not in class_names:
            continue
        precision = precisions[:, :, k, 0, -1]
        precision = precision[precision > -1]
        results[f"AP-{class_names[cat_id]}"] = float(np.mean(precision) * 100) if precision.size else float("nan")
    return results


class COCOEvaluator(DatasetEvaluator):
    """Scores instance predictions on a registered dataset with COCO's segm and bbox AP."""

    def __init__(
        self,
        dataset_name: str,
        tasks: Optional[Sequence[str]] = None,
        distributed: bool = True,
        output_dir: Optional[str] = None,
        *,
        max_dets_per_image: Optional[int] = None,
        max_images: int = 0,
    ) -> None:
        """Ground truth: metadata.json_file, else the dataset dicts converted to COCO json in output_dir.

        max_images > 0 (TEST.MAX_IMAGES): only the images that were run through the model are scored, so a run on
        the first N images is not charged with the objects of the others. With output_dir, the precision arrays
        (coco_eval_<task>.npz) and the segm confusion matrix (confusion_segm.json) are saved there for plots.
        """
        from ..data import MetadataCatalog

        self._dataset_name = dataset_name
        self._tasks = tuple(tasks) if tasks is not None else _TASKS
        unknown = [t for t in self._tasks if t not in _TASKS]
        if unknown or not self._tasks:
            raise ValueError(f"COCOEvaluator tasks must be a non-empty subset of {_TASKS}, got {self._tasks}")
        self._distributed = distributed
        self._output_dir = output_dir
        self._max_dets = None if max_dets_per_image in (None, 100) else [1, 10, int(max_dets_per_image)]
        self._max_images = int(max_images)
        self._img_ids: Optional[List[Any]] = None  # the images scored, when not all of the ground truth's
        self._metadata = MetadataCatalog.get(dataset_name)
        self._reverse_id_map = contiguous_to_dataset_id_map(self._metadata)
        json_file = getattr(self._metadata, "json_file", None)
        if json_file and not PathManager.exists(json_file):
            raise InputFileNotFoundError(
                f"Ground-truth json '{json_file}' of dataset '{dataset_name}' (metadata.json_file) does not exist"
            )
        self._json_file: Optional[str] = json_file or None
        self._predictions: List[Dict[str, Any]] = []

    def reset(self) -> None:
        """Drop predictions from a previous run."""
        self._predictions = []

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Convert each image's "instances" to COCO results (on CPU, to keep GPU memory free)."""
        for inp, out in zip(inputs, outputs):
            if "image_id" not in inp:
                raise KeyError(f"COCOEvaluator needs 'image_id' in every input; missing for '{inp.get('file_name', '?')}'")
            prediction: Dict[str, Any] = {"image_id": inp["image_id"], "instances": []}
            if "instances" in out:
                prediction["instances"] = instances_to_coco_json(out["instances"].to("cpu"), inp["image_id"])
            self._predictions.append(prediction)

    def _ground_truth_json(self) -> str:
        """Path of the COCO json to score against (converting the dataset when it has none)."""
        if self._json_file:
            return self._json_file
        out_dir = self._output_dir or tempfile.mkdtemp(prefix="solov2_coco_gt_")
        path = os.path.join(out_dir, f"{self._dataset_name}_coco_format.json")
        logger.info("Dataset '%s' has no json_file; converting its dicts to COCO format at %s", self._dataset_name, path)
        return convert_to_coco_json(self._dataset_name, path)

    def evaluate(self) -> Optional[Dict[str, Dict[str, float]]]:
        """Gather predictions on rank 0, write them to json, score every task; other ranks return {}."""
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather(self._predictions, dst=0)
            if not comm.is_main_process():
                return {}
            predictions = list(itertools.chain(*gathered))
        else:
            predictions = self._predictions

        if not predictions:
            logger.warning("[COCOEvaluator] No images were processed for '%s'; nothing to evaluate.", self._dataset_name)
            return {}
        image_ids = [p["image_id"] for p in predictions]
        if len(set(image_ids)) != len(image_ids):
            logger.warning(
                "[COCOEvaluator] %d images of '%s' were predicted more than once; is the test loader's sampler right?",
                len(image_ids) - len(set(image_ids)),
                self._dataset_name,
            )
        coco_results = self._to_dataset_ids(list(itertools.chain(*[p["instances"] for p in predictions])))

        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            file_path = os.path.join(self._output_dir, RESULTS_FILE)
            logger.info("Saving results to %s", file_path)
            try:
                with PathManager.open(file_path, "w") as f:
                    json.dump(coco_results, f)
            except OSError as e:
                error = output_write_error("the results file", file_path, e)
                raise error or e from e

        gt_json = self._ground_truth_json()
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO(gt_json)
        if "annotations" not in coco_gt.dataset:
            # Like Detectron2: an unlabelled split (e.g. COCO test-dev) gets its predictions written, not scored.
            logger.warning(
                "[COCOEvaluator] '%s' has no 'annotations' key: the predictions of '%s' are %s but cannot be scored.",
                gt_json,
                self._dataset_name,
                f"saved to {os.path.join(self._output_dir, RESULTS_FILE)}" if self._output_dir else "not saved (no output_dir)",
            )
            return {}
        if self._json_file:
            _keep_loaded_annotations(coco_gt, self._dataset_name, gt_json)
        _renumber_zero_annotation_ids(coco_gt, gt_json)
        self._img_ids = None
        missing = set(coco_gt.getImgIds()) - set(image_ids)
        if missing and self._max_images > 0:
            self._img_ids = sorted(set(coco_gt.getImgIds()) & set(image_ids))
            logger.info(
                "[COCOEvaluator] TEST.MAX_IMAGES %d: scoring %d of the %d images of '%s'",
                self._max_images, len(self._img_ids), len(coco_gt.getImgIds()), self._dataset_name,
            )
        elif missing:
            logger.warning(
                "[COCOEvaluator] %d of %d images of '%s' were not run through the model (e.g. ids %s); their objects count as missed.",
                len(missing),
                len(coco_gt.getImgIds()),
                self._dataset_name,
                sorted(missing)[:5],
            )
        class_names = self._class_names(coco_gt)
        results: Dict[str, Dict[str, float]] = OrderedDict()
        for task in self._tasks:
            results[task] = self._evaluate_task(coco_gt, coco_results, task, class_names)
        if "segm" in self._tasks and self._output_dir:
            self._save_confusion(coco_gt, coco_results, class_names)
        return results

    def _save_confusion(self, coco_gt: COCO, coco_results: List[Dict[str, Any]], class_names: Dict[int, str]) -> None:
        """confusion_segm.json in output_dir: the segm confusion matrix of the scored images."""
        img_ids = self._img_ids if self._img_ids is not None else coco_gt.getImgIds()
        sizes = {i: (coco_gt.imgs[i]["height"], coco_gt.imgs[i]["width"]) for i in img_ids}
        cat_ids = sorted(coco_gt.getCatIds())
        anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=img_ids))
        matrix = confusion_matrix(anns, coco_results, sizes, cat_ids, DEFAULT_IOU_THR, DEFAULT_SCORE_THR)
        names = [class_names.get(c, str(c)) for c in cat_ids]
        save_confusion(os.path.join(self._output_dir, CONFUSION_FILE), matrix, names, DEFAULT_IOU_THR,
                       DEFAULT_SCORE_THR, len(img_ids))

    def _to_dataset_ids(self, coco_results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Contiguous class indices -> the dataset's original category ids."""
        if self._reverse_id_map is None:
            return coco_results
        for result in coco_results:
            category = result["category_id"]
            if category not in self._reverse_id_map:
                raise ConfigError(
                    f"A prediction has class {category}, which dataset '{self._dataset_name}' does not have "
                    f"(classes 0..{len(self._reverse_id_map) - 1}); check MODEL.SOLOV2.NUM_CLASSES"
                )
            result["category_id"] = self._reverse_id_map[category]
        return coco_results

    def _class_names(self, coco_gt: COCO) -> Dict[int, str]:
        """{COCO category id: class name} for the dataset's classes."""
        thing_classes = list(getattr(self._metadata, "thing_classes", []) or [])
        if not thing_classes:
            return {c["id"]: c["name"] for c in coco_gt.loadCats(coco_gt.getCatIds())}
        if self._reverse_id_map is None:
            return dict(enumerate(thing_classes))
        return {self._reverse_id_map[i]: name for i, name in enumerate(thing_classes) if i in self._reverse_id_map}

    def _evaluate_task(
        self, coco_gt: COCO, coco_results: List[Dict[str, Any]], task: str, class_names: Dict[int, str]
    ) -> Dict[str, float]:
        """COCOeval for one task; logged as tables."""
        if not coco_results:
            logger.warning(
                "[COCOEvaluator] The model made no predictions on '%s'; %s AP is 0.", self._dataset_name, task
            )
            results = {name: 0.0 for name in _METRIC_NAMES}
            results.update({f"AP-{name}": 0.0 for name in class_names.values()})
            if self._output_dir:
                # A previous evaluation's precision array would be drawn as this one's PR curves.
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(self._output_dir, PRECISION_FILE.format(task=task)))
            return results
        if task == "segm" and "segmentation" not in coco_results[0]:
            raise ValueError("segm evaluation needs predicted masks (instances.pred_masks); the model gave none")
        task_results = copy.deepcopy(coco_results)
        for r in task_results:
            # pycocotools takes a detection's area from its bbox when present: masks must use mask area.
            r.pop("bbox" if task == "segm" else "segmentation", None)
        with contextlib.redirect_stdout(io.StringIO()) as captured:
            coco_dt = coco_gt.loadRes(task_results)
            coco_eval = COCOeval(coco_gt, coco_dt, task)
            if self._max_dets is not None:
                coco_eval.params.maxDets = self._max_dets
            if self._img_ids is not None:
                coco_eval.params.imgIds = self._img_ids
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        # Only pycocotools' summary lines; its progress chatter ("creating index...") is noise in the log.
        summary = "\n".join(line for line in captured.getvalue().splitlines() if line.lstrip().startswith("Average"))
        logger.info("COCOeval (%s) on '%s':\n%s", task, self._dataset_name, summary)
        results = summarize_coco_eval(coco_eval, class_names)
        if self._output_dir:
            save_precision(os.path.join(self._output_dir, PRECISION_FILE.format(task=task)), coco_eval, class_names)
        self._log_tables(task, results)
        return results

    def _log_tables(self, task: str, results: Dict[str, float]) -> None:
        """Summary and per-category tables in the log."""
        summary = {k: results[k] for k in _METRIC_NAMES}
        logger.info("Evaluation results for %s:\n%s", task, create_small_table(summary))
        nan_metrics = [k for k, v in summary.items() if math.isnan(v)]
        if nan_metrics:
            logger.info("Some metrics cannot be computed and are shown as NaN: %s", ", ".join(nan_metrics))
        per_class = [(k[len("AP-"):], v) for k, v in results.items() if k.startswith("AP-")]
        if per_class:
            logger.info(
                "Per-category %s AP:\n%s", task, create_multi_column_table(per_class, ["category", "AP"], columns=3)
            )


def _keep_loaded_annotations(coco_gt: COCO, dataset_name: str, gt_json: str) -> None:
    """Score exactly the annotations the dataset loader gives training: drop those it drops as degenerate.

    The loader (load_coco_json) also refuses what it cannot use (e.g. an RLE of another size than its image), so
    scoring against the json it read cannot count an annotation that training never saw.
    """
    from ..data import DatasetCatalog

    if dataset_name not in DatasetCatalog:  # scored from metadata.json_file alone: no loader to agree with
        return
    kept = {a.get("id") for d in DatasetCatalog.get(dataset_name) for a in d.get("annotations", [])}
    if None in kept:  # a loader that gives no annotation ids: nothing to match on
        return
    anns = coco_gt.dataset.get("annotations", [])
    dropped = [a.get("id") for a in anns if a.get("id") not in kept]
    if not dropped:
        return
    logger.warning(
        "[COCOEvaluator] %d annotation(s) of '%s' are not scored because the dataset loader drops them (degenerate: "
        "< 3 polygon points, zero area or an empty box), so training never sees them either; ids %s",
        len(dropped), gt_json, dropped[:10],
    )
    coco_gt.dataset["annotations"] = [a for a in anns if a.get("id") in kept]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()


def _renumber_zero_annotation_ids(coco_gt: COCO, gt_json: str) -> None:
    """Give ground truth whose annotation ids include 0 the ids 1..N (order kept), in memory.

    pycocotools records a detection's match as the matched annotation's id and reads 0 as "unmatched", so a
    match with annotation 0 (labelme's exports number from 0) would count as a false positive.
    """
    anns = coco_gt.dataset.get("annotations", [])
    if not any(a.get("id") == 0 for a in anns):
        return
    logger.info("[COCOEvaluator] '%s' numbers annotations from 0; renumbering them 1..%d for pycocotools", gt_json,
                len(anns))
    for new_id, ann in enumerate(anns, start=1):
        ann["id"] = new_id
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
