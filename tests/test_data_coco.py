"""COCO loading and registration: the real labelme export in ../shared, and every bad input with its message."""

import json
import logging
import uuid

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from solov2.config import get_cfg
from solov2.data import (
    DatasetCatalog,
    DatasetFormatError,
    DatasetMapper,
    MetadataCatalog,
    check_num_classes,
    get_detection_dataset_dicts,
    load_coco_json,
    register_coco_instances,
    register_datasets_from_cfg,
)
from solov2.structures import segmentation_to_bitmask

VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train", "tv/monitor"]


def _perimeter(poly):
    pts = np.array(poly, dtype=float).reshape(-1, 2)
    return float(np.linalg.norm(pts - np.roll(pts, 1, axis=0), axis=1).sum())


def _shoelace(poly):
    x, y = np.array(poly, dtype=float).reshape(-1, 2).T
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _unique(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _check_voc(name, root):
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == 3
    assert sum(len(d["annotations"]) for d in dicts) == 12
    meta = MetadataCatalog.get(name)
    assert meta.thing_classes == VOC_CLASSES  # `_background_` (id 0) is not a class
    assert meta.thing_dataset_id_to_contiguous_id[15] == VOC_CLASSES.index("person")
    raw = json.loads((root / "annotations.json").read_text())
    areas = {a["id"]: a["area"] for a in raw["annotations"]}
    for d in dicts:
        assert d["file_name"].startswith(str(root)) and "JPEGImages" in d["file_name"]
        for a in d["annotations"]:
            m = segmentation_to_bitmask(a["segmentation"], d["height"], d["width"])
            ours = int(m.sum())
            # The labelling tool counts every pixel its outline touches; COCO rasterisation (pycocotools, which
            # the evaluator also uses) counts pixels whose centre is inside. They differ by about half the
            # perimeter, and ours stays close to the polygon's exact (shoelace) area.
            perimeter = sum(_perimeter(p) for p in a["segmentation"])
            assert areas[a["id"]] - 0.6 * perimeter - 5 <= ours <= areas[a["id"]] + 5, a["id"]
            geometric = sum(_shoelace(p) for p in a["segmentation"])
            assert abs(ours - geometric) <= 0.2 * perimeter + 5, a["id"]
    return dicts


def test_labelme_export_public_api(shared_data):
    root = shared_data / "voc_labelme_coco"
    name = _unique("voc_api")
    register_coco_instances(name, {}, str(root / "annotations.json"), str(root))
    dicts = _check_voc(name, root)
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (200,)
    sample = DatasetMapper(cfg, is_train=True)(dicts[0])
    img = sample["image"]
    assert img.shape[0] == 3 and min(img.shape[1:]) == 200
    assert sample["instances"].gt_masks.tensor.shape[1:] == img.shape[1:]
    assert len(sample["instances"]) == len(dicts[0]["annotations"])
    assert (sample["height"], sample["width"]) == (dicts[0]["height"], dicts[0]["width"])


def test_labelme_export_config_route(shared_data):
    root = shared_data / "voc_labelme_coco"
    name = _unique("voc_cfg")
    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.COCO_INSTANCES", str(((name, str(root / "annotations.json"), str(root)),)),
                         "DATASETS.TRAIN", str((name,)), "MODEL.SOLOV2.NUM_CLASSES", "20"])
    assert register_datasets_from_cfg(cfg) == [name]
    assert register_datasets_from_cfg(cfg) == [name]  # idempotent
    _check_voc(name, root)
    check_num_classes(cfg)
    cfg.MODEL.SOLOV2.NUM_CLASSES = 80
    with pytest.raises(ValueError, match=r"NUM_CLASSES is 80 .* has 20 classes.*MODEL.SOLOV2.NUM_CLASSES 20"):
        check_num_classes(cfg)
    cfg2 = get_cfg()
    cfg2.DATASETS.COCO_INSTANCES = ((name, "other.json", str(root)),)
    with pytest.raises(ValueError, match="already registered"):
        register_datasets_from_cfg(cfg2)


def _write(tmp_path, images, annotations, categories, make_images=True):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True, exist_ok=True)
    if make_images:
        for im in images:
            cv2.imwrite(str(root / im["file_name"]), np.full((im["height"], im["width"], 3), 128, np.uint8))
    js = root / "ann.json"
    js.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(js), str(root)


IMAGES = [{"id": 7, "file_name": "sub/a.png", "height": 40, "width": 50},
          {"id": 9, "file_name": "sub/b.png", "height": 40, "width": 50}]
CATS = [{"id": 3, "name": "cat"}, {"id": 11, "name": "dog"}]
POLY = [[5, 5, 30, 5, 30, 25, 5, 25]]


def _ann(i, image_id=7, cat=3, segm=None, area=500.0, **kw):
    a = {"id": i, "image_id": image_id, "category_id": cat, "segmentation": segm or POLY, "area": area,
         "bbox": [5, 5, 25, 20], "iscrowd": 0}
    a.update(kw)
    return a


def test_rle_formats_crowd_and_empty_images(tmp_path):
    m = np.zeros((40, 50), np.uint8)
    m[10:20, 10:30] = 1
    rle = mask_util.encode(np.asfortranarray(m))
    compressed = {"size": [40, 50], "counts": rle["counts"].decode()}
    flat = m.flatten(order="F")
    counts, last, run = [], 0, 0
    for v in flat:  # uncompressed RLE: run lengths starting with zeros
        if v != last:
            counts.append(run)
            run, last = 0, v
        run += 1
    counts.append(run)
    uncompressed = {"size": [40, 50], "counts": counts}
    anns = [_ann(1, segm=compressed, area=200), _ann(2, segm=uncompressed, cat=11, area=200),
            _ann(3, segm=POLY, iscrowd=1)]
    js, root = _write(tmp_path, IMAGES, anns, CATS)
    dicts = load_coco_json(js, root, _unique("rle"))
    by_id = {d["image_id"]: d for d in dicts}
    assert len(by_id[9]["annotations"]) == 0  # image without annotations kept
    a1, a2, crowd = by_id[7]["annotations"]
    assert (a1["category_id"], a2["category_id"]) == (0, 1)  # ids 3 / 11 -> contiguous 0 / 1
    for a in (a1, a2):
        assert np.array_equal(segmentation_to_bitmask(a["segmentation"], 40, 50), m.astype(bool))
    assert crowd["iscrowd"] == 1
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (40,)
    cfg.INPUT.RANDOM_FLIP = "none"
    inst = DatasetMapper(cfg, True)(by_id[7])["instances"]
    assert len(inst) == 2  # the crowd region is not a training target
    assert get_detection_dataset_dicts_len(dicts) == 1


def get_detection_dataset_dicts_len(dicts):
    name = _unique("filter")
    DatasetCatalog.register(name, lambda: dicts)
    return len(get_detection_dataset_dicts([name], filter_empty=True))


def test_degenerate_annotations_dropped_with_one_warning(tmp_path, caplog):
    anns = [_ann(1), _ann(2, segm=[[1, 1, 5, 5]]), _ann(3, area=0), _ann(4, segm=[[1, 1]])]
    js, root = _write(tmp_path, IMAGES, anns, CATS)
    with caplog.at_level(logging.WARNING):
        dicts = load_coco_json(js, root)
    warnings = [r for r in caplog.records if "degenerate" in r.getMessage()]
    assert len(warnings) == 1 and "dropped 3" in warnings[0].getMessage() and "[2, 3, 4]" in warnings[0].getMessage()
    assert sum(len(d["annotations"]) for d in dicts) == 1


@pytest.mark.parametrize(
    "anns,make_images,error,pattern",
    [
        ([_ann(1), _ann(1)], True, DatasetFormatError, "annotation id 1 appears more than once"),
        ([_ann(1, image_id=99)], True, DatasetFormatError, "annotation 1 refers to unknown image id 99"),
        ([_ann(5, cat=42)], True, DatasetFormatError, "annotation 5 has unknown category id 42"),
        ([_ann(1)], False, FileNotFoundError, r"image file\(s\) not found.*sub/a.png"),
    ],
    ids=["duplicate-id", "unknown-image", "unknown-category", "missing-file"],
)
def test_bad_inputs_name_the_culprit(tmp_path, anns, make_images, error, pattern):
    js, root = _write(tmp_path, IMAGES, anns, CATS, make_images=make_images)
    with pytest.raises(error, match=pattern):
        load_coco_json(js, root)


def test_missing_json_and_unknown_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        load_coco_json(str(tmp_path / "nothere.json"), str(tmp_path))
    with pytest.raises(KeyError, match="not registered.*Available"):
        DatasetCatalog.get("no_such_dataset")


def test_builtin_coco_missing_names_expected_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("SOLOV2_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"instances_val2017.json.*val2017"):
        DatasetCatalog.get("coco_2017_val")
    assert len(MetadataCatalog.get("coco_2017_val").thing_classes) == 80
