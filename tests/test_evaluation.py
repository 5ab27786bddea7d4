"""COCOEvaluator: ground truth used as predictions scores AP 100, and equals pycocotools run directly."""

import contextlib
import io
import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from solov2.data import DatasetCatalog, MetadataCatalog, register_coco_instances
from solov2.data.datasets import ensure_shapes_split
from solov2.evaluation import COCOEvaluator
from solov2.structures import Boxes, Instances, segmentation_to_bitmask


@pytest.fixture(scope="module")
def shapes_gt(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_root")
    json_file, image_root = ensure_shapes_split(str(root), "evalgt", num_images=8, seed=11)
    name = "shapes_eval_gt_test"
    if name not in DatasetCatalog:
        register_coco_instances(name, {}, json_file, image_root)
    return name, json_file


def _gt_as_predictions(name, perturb=False):
    inputs, outputs = [], []
    rng = np.random.RandomState(0)
    for d in DatasetCatalog.get(name):
        h, w = d["height"], d["width"]
        masks = [segmentation_to_bitmask(a["segmentation"], h, w) for a in d["annotations"]]
        m = torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, h, w, dtype=torch.bool)
        if perturb and len(masks):
            m[0] = torch.roll(m[0], shifts=3, dims=1)  # one slightly wrong mask
        scores = torch.tensor(rng.uniform(0.5, 1.0, len(masks)), dtype=torch.float32)
        inst = Instances((h, w), pred_masks=m, pred_boxes=Boxes(torch.zeros(len(masks), 4)), scores=scores,
                         pred_classes=torch.tensor([a["category_id"] for a in d["annotations"]], dtype=torch.int64))
        inputs.append({"image_id": d["image_id"], "file_name": d["file_name"]})
        outputs.append({"instances": inst})
    return inputs, outputs


def test_ground_truth_as_predictions_scores_100(shapes_gt, tmp_path):
    name, _ = shapes_gt
    ev = COCOEvaluator(name, output_dir=str(tmp_path), distributed=False)
    ev.reset()
    ev.process(*_gt_as_predictions(name))
    res = ev.evaluate()
    assert set(res) == {"segm", "bbox"}
    for task in ("segm", "bbox"):
        assert res[task]["AP"] == pytest.approx(100.0)
        assert res[task]["AP50"] == pytest.approx(100.0) and res[task]["AP75"] == pytest.approx(100.0)
        for cls in MetadataCatalog.get(name).thing_classes:
            assert res[task][f"AP-{cls}"] == pytest.approx(100.0)
    saved = json.loads((tmp_path / "coco_instances_results.json").read_text())
    assert {r["category_id"] for r in saved} <= {1, 2, 3}  # the json's own (non-contiguous-safe) ids


def test_numbers_equal_pycocotools_directly(shapes_gt, tmp_path):
    name, json_file = shapes_gt
    ev = COCOEvaluator(name, output_dir=str(tmp_path), distributed=False)
    ev.reset()
    ev.process(*_gt_as_predictions(name, perturb=True))
    res = ev.evaluate()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(json_file)
        saved = json.loads((tmp_path / "coco_instances_results.json").read_text())
        for task, iou_type in (("segm", "segm"), ("bbox", "bbox")):
            # As in Detectron2: mask results carry no bbox, or pycocotools would take their area from it.
            dets = [{k: v for k, v in r.items() if not (task == "segm" and k == "bbox")} for r in saved]
            e = COCOeval(gt, gt.loadRes(dets), iou_type)
            e.evaluate()
            e.accumulate()
            e.summarize()
            direct = dict(zip(["AP", "AP50", "AP75", "APs", "APm", "APl"], (e.stats[:6] * 100).tolist()))
            for k, v in direct.items():
                if np.isnan(res[task][k]) and v < 0:
                    continue  # no objects of that size: pycocotools says -1
                assert res[task][k] == pytest.approx(v, abs=1e-9), (task, k)
    assert res["segm"]["AP"] < 100.0  # the perturbed mask costs something


def test_no_predictions_warns_and_returns_empty(shapes_gt, caplog):
    name, _ = shapes_gt
    ev = COCOEvaluator(name, distributed=False)
    ev.reset()
    assert not ev.evaluate()
