"""COCOEvaluator: ground truth used as predictions scores AP 100, and equals pycocotools run directly."""

import contextlib
import io
import json
import logging

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from solov2.data import DatasetCatalog, MetadataCatalog, register_coco_instances
from solov2.data.datasets import ensure_shapes_split
from solov2.evaluation import COCOEvaluator, DatasetEvaluator, inference_on_dataset
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


def test_no_images_warns_and_returns_empty(shapes_gt, caplog):
    name, _ = shapes_gt
    ev = COCOEvaluator(name, distributed=False)
    ev.reset()
    with caplog.at_level(logging.WARNING, logger="solov2.evaluation.coco_evaluation"):
        assert ev.evaluate() == {}
    assert "No images were processed" in caplog.text


def test_zero_detections_give_ap_0_with_warning(shapes_gt, tmp_path, caplog):
    name, _ = shapes_gt
    inputs, outputs = _gt_as_predictions(name)
    outputs = [{"instances": o["instances"][:0]} for o in outputs]  # the model found nothing
    ev = COCOEvaluator(name, output_dir=str(tmp_path), distributed=False)
    ev.reset()
    ev.process(inputs, outputs)
    with caplog.at_level(logging.WARNING, logger="solov2.evaluation.coco_evaluation"):
        res = ev.evaluate()
    assert "made no predictions" in caplog.text
    for task in ("segm", "bbox"):
        assert res[task]["AP"] == 0.0 and res[task]["AP50"] == 0.0
        assert all(res[task][f"AP-{c}"] == 0.0 for c in MetadataCatalog.get(name).thing_classes)
    assert json.loads((tmp_path / "coco_instances_results.json").read_text()) == []


def test_python_registered_dataset_is_converted_with_original_ids(shapes_gt, tmp_path):
    """No json_file: the dataset dicts are written as COCO json; results use the original category ids."""
    name, _ = shapes_gt
    py_name = "shapes_eval_python_registered"
    dicts = DatasetCatalog.get(name)
    if py_name not in DatasetCatalog:
        DatasetCatalog.register(py_name, lambda: dicts)
        MetadataCatalog.get(py_name).set(
            thing_classes=list(MetadataCatalog.get(name).thing_classes),
            thing_dataset_id_to_contiguous_id={10: 0, 20: 1, 30: 2},
        )
    inputs, outputs = _gt_as_predictions(name)
    ev = COCOEvaluator(py_name, output_dir=str(tmp_path), distributed=False)
    ev.reset()
    ev.process(inputs, outputs)
    res = ev.evaluate()
    assert res["segm"]["AP"] == pytest.approx(100.0) and res["bbox"]["AP"] == pytest.approx(100.0)
    gt = json.loads((tmp_path / f"{py_name}_coco_format.json").read_text())
    assert {c["id"] for c in gt["categories"]} == {10, 20, 30}
    assert len(gt["images"]) == len(dicts) and len(gt["annotations"]) == sum(len(d["annotations"]) for d in dicts)
    saved = json.loads((tmp_path / "coco_instances_results.json").read_text())
    assert {r["category_id"] for r in saved} <= {10, 20, 30} and len(saved) == len(gt["annotations"])


class _CountingEvaluator(DatasetEvaluator):
    def reset(self):
        self.ids = []

    def process(self, inputs, outputs):
        # -1 marks an output computed in training mode, which must never happen during inference.
        self.ids += [-1 if o["model_was_training"] else i["image_id"] for i, o in zip(inputs, outputs)]

    def evaluate(self):
        return {"count": {"n": len(self.ids)}}


def test_inference_on_dataset_visits_every_batch_in_eval_mode():
    class Model(torch.nn.Module):
        def forward(self, batch):
            return [{"model_was_training": self.training} for _ in batch]

    model = Model().train()
    loader = [[{"image_id": 2 * k}, {"image_id": 2 * k + 1}] for k in range(7)]
    evaluator = _CountingEvaluator()
    res = inference_on_dataset(model, loader, evaluator)
    assert res == {"count": {"n": 14}} and evaluator.ids == list(range(14))
    assert model.training  # the previous mode is restored


def test_annotation_ids_from_zero_still_score_100(shared_data, tmp_path):
    """labelme numbers annotations from 0; pycocotools reads a match with id 0 as none unless they are renumbered."""
    root = shared_data / "voc_labelme_coco"
    ids = [a["id"] for a in json.loads((root / "annotations.json").read_text())["annotations"]]
    assert 0 in ids  # the case this test is about
    name = "voc_labelme_eval_ids_test"
    if name not in DatasetCatalog:
        register_coco_instances(name, {}, str(root / "annotations.json"), str(root))
    ev = COCOEvaluator(name, output_dir=str(tmp_path), distributed=False)
    ev.reset()
    ev.process(*_gt_as_predictions(name))
    res = ev.evaluate()
    # (Not bbox: labelme's json boxes are the polygons' extents, a pixel off the rasterised masks' boxes.)
    assert res["segm"]["AP"] == pytest.approx(100.0)
