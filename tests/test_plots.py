"""Plots people look at: confusion matrix by hand count, PR curves = pycocotools, plots after a tiny training run,
tools/plot_metrics.py (--compare), TEST.MAX_IMAGES, the matplotlib-less fallback."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from solov2.config import get_cfg
from solov2.data import DatasetCatalog, build_detection_test_loader, register_coco_instances
from solov2.data.datasets import ensure_shapes_split
from solov2.evaluation import COCOEvaluator
from solov2.evaluation.confusion import confusion_csv, confusion_matrix, load_confusion
from solov2.evaluation.pr_curves import load_precision, pr_curves
from solov2.structures import Boxes, Instances, segmentation_to_bitmask
from solov2.utils import plots
from solov2.utils.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "quickstart" / "shapes_R18.yaml"


def _rle(mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _box(r0, r1, c0, c1, size=20) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def test_confusion_matrix_equals_a_hand_count():
    a, b = 1, 2  # COCO category ids
    gts = [
        # image 1: A1 and B1 found (B1 with the wrong class), A2 missed (only a prediction below the score threshold)
        {"id": 1, "image_id": 1, "category_id": a, "segmentation": _rle(_box(0, 10, 0, 10)), "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": b, "segmentation": _rle(_box(10, 20, 10, 20)), "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": a, "segmentation": _rle(_box(0, 5, 15, 20)), "iscrowd": 0},
        # image 2: B2 found, its duplicate is spurious; a crowd region swallows a prediction
        {"id": 4, "image_id": 2, "category_id": b, "segmentation": _rle(_box(0, 10, 0, 20)), "iscrowd": 0},
        {"id": 5, "image_id": 2, "category_id": a, "segmentation": _rle(_box(12, 20, 0, 20)), "iscrowd": 1},
    ]
    preds = [
        {"image_id": 1, "category_id": a, "segmentation": _rle(_box(0, 10, 0, 10)), "score": 0.9},  # A1 -> A
        {"image_id": 1, "category_id": a, "segmentation": _rle(_box(10, 20, 10, 20)), "score": 0.8},  # B1 -> A
        {"image_id": 1, "category_id": b, "segmentation": _rle(_box(15, 20, 0, 5)), "score": 0.7},  # nothing there
        {"image_id": 1, "category_id": a, "segmentation": _rle(_box(0, 5, 15, 20)), "score": 0.1},  # below 0.3
        {"image_id": 2, "category_id": b, "segmentation": _rle(_box(0, 8, 0, 20)), "score": 0.6},  # IoU 0.8 -> B
        {"image_id": 2, "category_id": b, "segmentation": _rle(_box(0, 8, 0, 20)), "score": 0.5},  # duplicate
        {"image_id": 2, "category_id": a, "segmentation": _rle(_box(14, 20, 0, 20)), "score": 0.9},  # in the crowd
    ]
    sizes = {1: (20, 20), 2: (20, 20)}
    #                 pred A, pred B, missed
    expected = np.array([[1, 0, 1],    # gt A
                         [1, 1, 0],    # gt B
                         [0, 2, 0]])   # background
    assert np.array_equal(confusion_matrix(gts, preds, sizes, [a, b]), expected)
    random.Random(0).shuffle(preds)  # the matching does not depend on the order of the predictions
    assert np.array_equal(confusion_matrix(gts, preds, sizes, [a, b]), expected)
    # Only the images named count: image 2 alone.
    assert np.array_equal(confusion_matrix(gts, preds, {2: (20, 20)}, [a, b]), [[0, 0, 0], [0, 1, 0], [0, 1, 0]])
    assert confusion_csv(expected, ["A", "B"]).splitlines() == [
        "ground truth \\ predicted,A,B,missed", "A,1,0,1", "B,1,1,0", "background,0,2,0"]


@pytest.fixture(scope="module")
def shapes_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots_data")
    json_file, image_root = ensure_shapes_split(str(root), "plots", num_images=6, seed=13)
    name = "shapes_plots_test"
    if name not in DatasetCatalog:
        register_coco_instances(name, {}, json_file, image_root)
    return name, json_file, image_root


def _noisy_predictions(name):
    """Ground truth shifted by 0-8 px with random scores, plus one spurious mask per image: curves that are not flat."""
    rng = np.random.RandomState(1)
    inputs, outputs = [], []
    for d in DatasetCatalog.get(name):
        h, w = d["height"], d["width"]
        masks = [segmentation_to_bitmask(a["segmentation"], h, w) for a in d["annotations"]]
        classes = [a["category_id"] for a in d["annotations"]]
        masks = [np.roll(m, int(rng.randint(0, 9)), axis=1) for m in masks] + [np.roll(masks[0], 40, axis=0)]
        classes.append(int(rng.randint(0, 3)))
        inst = Instances((h, w), pred_masks=torch.from_numpy(np.stack(masks)),
                         pred_boxes=Boxes(torch.zeros(len(masks), 4)),
                         scores=torch.tensor(rng.uniform(0.3, 1.0, len(masks)), dtype=torch.float32),
                         pred_classes=torch.tensor(classes, dtype=torch.int64))
        inputs.append({"image_id": d["image_id"], "file_name": d["file_name"]})
        outputs.append({"instances": inst})
    return inputs, outputs


def test_pr_curves_equal_pycocotools_precision_array(shapes_split, tmp_path):
    name, json_file, _ = shapes_split
    ev = COCOEvaluator(name, output_dir=str(tmp_path), distributed=False)
    ev.reset()
    ev.process(*_noisy_predictions(name))
    ev.evaluate()
    results = json.loads((tmp_path / "coco_instances_results.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(json_file)
    for task in ("segm", "bbox"):
        task_results = [dict(r) for r in results]
        for r in task_results:
            r.pop("bbox" if task == "segm" else "segmentation")
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval = COCOeval(gt, gt.loadRes(task_results), task)
            coco_eval.evaluate()
            coco_eval.accumulate()
        data = load_precision(str(tmp_path / f"coco_eval_{task}.npz"))
        np.testing.assert_array_equal(data["precision"], coco_eval.eval["precision"])
        names = {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())}
        for t, iou in ((0, 0.5), (5, 0.75)):
            recall, curves = pr_curves(data, iou)
            np.testing.assert_array_equal(recall, coco_eval.params.recThrs)
            assert set(curves) == set(names.values())
            for k, cat in enumerate(coco_eval.params.catIds):
                np.testing.assert_array_equal(curves[names[cat]], coco_eval.eval["precision"][t, :, k, 0, -1])
        # not a degenerate case: some recall levels are reached at less than full precision
        _, curves = pr_curves(data, 0.5)
        assert any(0 < p.max() and p.min() < p.max() for p in curves.values())
    confusion = load_confusion(str(tmp_path / "confusion_segm.json"))
    assert confusion["num_images"] == 6 and confusion["class_names"] == ["circle", "triangle", "rectangle"]
    assert confusion["matrix"].sum() > 0


def test_an_evaluation_without_predictions_leaves_no_stale_curves(shapes_split, tmp_path):
    name, _, _ = shapes_split
    inputs, outputs = _noisy_predictions(name)
    ev = COCOEvaluator(name, output_dir=str(tmp_path), distributed=False)
    for outs in (outputs, [{"instances": o["instances"][:0]} for o in outputs]):
        ev.reset()
        ev.process(inputs, outs)
        ev.evaluate()
        written = plots.draw_evaluation_plots(str(tmp_path), str(tmp_path / "plots"))
    assert not (tmp_path / "coco_eval_segm.npz").exists() and not (tmp_path / "plots" / "pr_segm.png").exists()
    assert sorted(os.path.basename(p) for p in written) == ["confusion_segm.csv", "confusion_segm.png"]
    matrix = load_confusion(str(tmp_path / "confusion_segm.json"))["matrix"]
    objects = sum(len(d["annotations"]) for d in DatasetCatalog.get(name))
    assert matrix[:-1, -1].sum() == objects and matrix.sum() == objects  # every object missed, nothing else


def test_max_images_limits_the_loader_and_the_scored_ground_truth(shapes_split, tmp_path):
    name, _, _ = shapes_split
    cfg = get_cfg()
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.TEST.MAX_IMAGES = 2
    loader = build_detection_test_loader(cfg, name)
    seen = [d["image_id"] for batch in loader for d in batch]
    assert seen == [d["image_id"] for d in DatasetCatalog.get(name)[:2]]
    # Ground truth as predictions on those 2 images: AP 100 only if the other 4 images' objects are not scored.
    inputs, outputs = _noisy_predictions(name)
    exact = []
    for inp, out in zip(inputs[:2], outputs[:2]):
        d = next(x for x in DatasetCatalog.get(name) if x["image_id"] == inp["image_id"])
        h, w = d["height"], d["width"]
        masks = torch.from_numpy(np.stack([segmentation_to_bitmask(a["segmentation"], h, w) for a in d["annotations"]]))
        exact.append({"instances": Instances((h, w), pred_masks=masks, pred_boxes=Boxes(torch.zeros(len(masks), 4)),
                                             scores=torch.ones(len(masks)),
                                             pred_classes=torch.tensor([a["category_id"] for a in d["annotations"]]))})
    for max_images, expected_ap in ((2, 100.0), (0, None)):
        ev = COCOEvaluator(name, output_dir=str(tmp_path), distributed=False, max_images=max_images)
        ev.reset()
        ev.process(inputs[:2], exact)
        res = ev.evaluate()
        if expected_ap is not None:
            assert res["segm"]["AP"] == pytest.approx(expected_ap)
            assert load_confusion(str(tmp_path / "confusion_segm.json"))["num_images"] == 2
        else:
            assert res["segm"]["AP"] < 90  # without the limit the 4 unseen images' objects count as missed
    cfg.TEST.MAX_IMAGES = -1
    with pytest.raises(ConfigError, match="TEST.MAX_IMAGES"):
        build_detection_test_loader(cfg, name)


def test_without_matplotlib_plots_are_skipped_with_one_line(monkeypatch, tmp_path, caplog):
    confusion = {"class_names": ["a"], "matrix": [[1, 0], [0, 0]], "iou_thr": 0.5, "score_thr": 0.3,
                 "num_images": 1}
    (tmp_path / "confusion_segm.json").write_text(json.dumps(confusion))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr(plots, "_warned_missing", False)
    with caplog.at_level(logging.WARNING, logger="solov2.utils.plots"):
        written = plots.draw_evaluation_plots(str(tmp_path), str(tmp_path / "plots"))
        written += plots.draw_evaluation_plots(str(tmp_path), str(tmp_path / "plots"))
    assert [os.path.basename(p) for p in written] == ["confusion_segm.csv"] * 2  # the CSV needs no matplotlib
    lines = [r.getMessage() for r in caplog.records if "matplotlib" in r.getMessage()]
    assert len(lines) == 1 and "pip install 'solov2[plots]'" in lines[0]


# ------------------------------------------------------------------ after a tiny training with periodic evaluation

def _tiny_cfg(json_file, image_root, out_dir, seed=3):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG))
    cfg.DATASETS.COCO_INSTANCES = (("shapes_plots_train", json_file, image_root),)
    cfg.DATASETS.TRAIN = ("shapes_plots_train",)
    cfg.DATASETS.TEST = ("shapes_plots_train",)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TRAIN = (96,)
    cfg.INPUT.MIN_SIZE_TEST = 96
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.MAX_ITER = 4
    cfg.SOLVER.WARMUP_ITERS = 2
    cfg.SOLVER.CHECKPOINT_PERIOD = 100
    cfg.TEST.EVAL_PERIOD = 2
    cfg.TEST.MAX_IMAGES = 3
    # untrained: let it predict something on every image
    cfg.MODEL.SOLOV2.SCORE_THR = 0.0
    cfg.MODEL.SOLOV2.UPDATE_THR = 0.0
    cfg.MODEL.SOLOV2.MAX_PER_IMG = 5
    cfg.SEED = seed
    cfg.OUTPUT_DIR = str(out_dir)
    return cfg


@pytest.fixture(scope="module")
def trained_runs(shapes_split, tmp_path_factory):
    """Two tiny runs (4 iterations, evaluated at 2 and 4 on the first 3 images) that differ in their seed."""
    from solov2.engine import DefaultTrainer

    _, json_file, image_root = shapes_split
    runs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as conftest's one_thread: contended OpenMP threads are many times slower
    try:
        for seed in (3, 4):
            out = tmp_path_factory.mktemp(f"run_seed{seed}")
            torch.manual_seed(seed)
            trainer = DefaultTrainer(_tiny_cfg(json_file, image_root, out, seed))
            trainer.resume_or_load(resume=False)
            trainer.train()
            runs.append(out)
    finally:
        torch.set_num_threads(threads)
    return runs


def _image(path: Path, min_h=150, min_w=150) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"{path} is not a readable image"
    assert img.shape[0] >= min_h and img.shape[1] >= min_w and img.shape[0] <= 4000 and img.shape[1] <= 4000
    assert img.std() > 5  # not blank
    return img


@pytest.mark.slow
def test_tiny_training_leaves_plots_and_tensorboard_images(trained_runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = trained_runs[0]
    plots_dir = out / "plots"
    for name in ("curves.png", "pr_segm.png", "pr_bbox.png", "confusion_segm.png", "val_mosaic.jpg"):
        _image(plots_dir / name)
    assert _image(plots_dir / "curves.png").shape[:2] == (800, 1200)
    # 3 mosaic panels (TEST.MAX_IMAGES 3) in 2 columns: 2 rows
    mosaic = _image(plots_dir / "val_mosaic.jpg")
    assert 2 * 320 <= mosaic.shape[0] <= 2 * 320 + 8
    rows = (plots_dir / "confusion_segm.csv").read_text().splitlines()
    assert rows[0] == "ground truth \\ predicted,circle,triangle,rectangle,missed" and len(rows) == 5
    confusion = load_confusion(str(out / "inference" / "confusion_segm.json"))
    assert confusion["num_images"] == 3  # TEST.MAX_IMAGES
    first3 = [d for d in DatasetCatalog.get("shapes_plots_train")[:3]]
    objects = sum(len(d["annotations"]) for d in first3)
    assert confusion["matrix"][:-1].sum() == objects  # every object of the 3 images is in a ground-truth row
    predicted = {r["image_id"] for r in json.loads((out / "inference" / "coco_instances_results.json").read_text())}
    assert predicted == {d["image_id"] for d in first3}
    # AP at both evaluations in metrics.json, and the curves drawn from it
    records = plots.read_metrics(str(out / "metrics.json"))
    assert [r["iteration"] for r in records if "segm/AP" in r] == [1, 4]
    events = EventAccumulator(str(out), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()["images"]
    for tag in ("val_mosaic", "pr_segm", "pr_bbox", "confusion_segm"):
        tag = f"shapes_plots_train/{tag}"
        assert tag in tags
        assert [e.step for e in events.Images(tag)] == [1, 4]  # at each evaluation
    encoded = events.Images("shapes_plots_train/val_mosaic")[-1]
    assert (encoded.height, encoded.width) == mosaic.shape[:2]


@pytest.mark.slow
def test_plot_metrics_redraws_and_compares(trained_runs, tmp_path):
    from solov2.commands.plot_metrics import main

    run_a, run_b = trained_runs
    # Redraw a finished run elsewhere: the same figures from the saved files alone.
    copy = tmp_path / "copy"
    shutil.copytree(run_a, copy, ignore=shutil.ignore_patterns("plots", "*.pth", "events.*"))
    assert main([str(copy)]) == 0
    for name in ("curves.png", "pr_segm.png", "pr_bbox.png", "confusion_segm.png", "confusion_segm.csv"):
        assert (copy / "plots" / name).exists()
    assert (copy / "plots" / "confusion_segm.csv").read_text() == (run_a / "plots" / "confusion_segm.csv").read_text()
    # A running run: a half-written last line of metrics.json is skipped.
    with open(copy / "metrics.json", "a") as f:
        f.write('{"iteration": 99, "total_lo')
    assert main([str(copy), "--output-dir", str(tmp_path / "running")]) == 0
    _image(tmp_path / "running" / "curves.png")

    # --compare, through the tools/ wrapper in a subprocess
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, str(REPO / "tools" / "plot_metrics.py"), str(run_a), "--compare", str(run_b),
                        "--output-dir", str(out)], capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("curves.png", "pr_segm.png", "pr_bbox.png"):
        compared = _image(out / name)
        single = _image(run_a / "plots" / name)
        assert compared.shape == single.shape and not np.array_equal(compared, single)
    # the compare figure holds both runs: drawing run_a alone gives another picture than run_a + run_b
    records = {p.name: plots.read_metrics(str(p / "metrics.json")) for p in (run_a, run_b)}
    assert plots.plot_training_curves(records, str(tmp_path / "both.png"))
    assert np.array_equal(cv2.imread(str(tmp_path / "both.png")), cv2.imread(str(out / "curves.png")))
    # a folder that is no run: one ERROR line
    r = subprocess.run([sys.executable, str(REPO / "tools" / "plot_metrics.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("ERROR: ")
    assert "metrics.json" in r.stderr


@pytest.mark.slow
def test_eval_only_writes_plots(trained_runs, shapes_split, tmp_path):
    _, json_file, image_root = shapes_split
    out = tmp_path / "eval"
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", str(CONFIG), "--eval-only",
         "--register-coco", "shapes_plots_train", json_file, image_root,
         "DATASETS.TRAIN", "('shapes_plots_train',)", "DATASETS.TEST", "('shapes_plots_train',)",
         "INPUT.MIN_SIZE_TEST", "96", "MODEL.SOLOV2.SCORE_THR", "0.0", "MODEL.SOLOV2.UPDATE_THR", "0.0",
         "TEST.MAX_IMAGES", "2", "MODEL.WEIGHTS", str(trained_runs[0] / "model_final.pth"), "OUTPUT_DIR", str(out)],
        capture_output=True, text=True, timeout=300, cwd=str(REPO), env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for name in ("pr_segm.png", "pr_bbox.png", "confusion_segm.png", "val_mosaic.jpg"):
        _image(out / "plots" / name)
    assert not (out / "plots" / "curves.png").exists()  # nothing was trained in this OUTPUT_DIR
    assert load_confusion(str(out / "inference" / "confusion_segm.json"))["num_images"] == 2
    assert list(out.glob("events.out.tfevents.*"))  # the mosaic and plots as TensorBoard images


@pytest.mark.slow
def test_visualize_data_draws_any_split_and_predictions_beside_ground_truth(trained_runs, shapes_split, tmp_path,
                                                                           capsys):
    import importlib.util

    _, json_file, image_root = shapes_split
    spec = importlib.util.spec_from_file_location("visualize_data", REPO / "tools" / "visualize_data.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    # DATASETS.TRAIN empty: --dataset names what to draw
    opts = ["DATASETS.COCO_INSTANCES", str((("shapes_plots_train", json_file, image_root),)), "DATASETS.TRAIN", "()",
            "INPUT.MIN_SIZE_TEST", "96", "MODEL.SOLOV2.SCORE_THR", "0.0", "MODEL.SOLOV2.UPDATE_THR", "0.0"]
    args = ["--config-file", str(CONFIG), "--dataset", "shapes_plots_train", "--num", "2"]
    assert tool.main(args + ["--output-dir", str(tmp_path / "gt")] + opts) == 0
    assert tool.main(args + ["--source", "predictions", "--weights", str(trained_runs[0] / "model_final.pth"),
                             "--score-thr", "0", "--output-dir", str(tmp_path / "pred")] + opts) == 0
    for d in DatasetCatalog.get("shapes_plots_train")[:2]:
        name = os.path.splitext(os.path.basename(d["file_name"]))[0] + ".png"
        gt_only = _image(tmp_path / "gt" / name, 64, 64)
        pair = _image(tmp_path / "pred" / name, 64, 64)
        assert gt_only.shape[:2] == (d["height"], d["width"])
        # ground truth | 4 px gap | predictions, each scaled to the image's height (at least 320 px)
        h = max(320, d["height"])
        w = round(d["width"] * h / d["height"])
        assert pair.shape[0] == h and abs(pair.shape[1] - (2 * w + 4)) <= 2
        left, right = pair[:, :w], pair[:, -w:]
        assert not np.array_equal(left, right)  # predictions drawn, not a copy of the ground truth
    assert tool.main(args + ["--source", "predictions", "--output-dir", str(tmp_path / "x")] + opts) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "ERROR: --source predictions needs a model: give --weights FILE")


def test_tile_mosaic_packs_rows_left_to_right():
    from solov2.utils.visualizer import tile_mosaic

    panels = [np.full((10, 30, 3), 1, np.uint8), np.full((20, 10, 3), 2, np.uint8), np.full((5, 5, 3), 3, np.uint8)]
    out = tile_mosaic(panels, columns=2, gap=4)
    assert out.shape == (20 + 4 + 5, 30 + 4 + 10, 3)
    assert (out[:10, :30] == 1).all() and (out[:20, 34:44] == 2).all() and (out[24:29, :5] == 3).all()
    assert (out[10:20, :30] == 255).all() and (out[24:, 5:] == 255).all()  # the rest is white
