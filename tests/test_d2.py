"""solov2 inside a real Detectron2: config keys, registration, Detectron2 structures in and out, published
checkpoint names, and the same answers as the native model (the pinned record) with the same weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("detectron2", reason="Detectron2 is not installed (CI installs ../shared/wheels/detectron2-*.whl)")

import pinned_model as pm  # noqa: E402
from d2_helpers import to_detectron2_inputs  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import get_cfg as d2_get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog  # noqa: E402
from detectron2.evaluation import COCOEvaluator  # noqa: E402
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec  # noqa: E402
from detectron2.modeling import META_ARCH_REGISTRY, build_model  # noqa: E402
from detectron2.modeling.backbone import FPN, build_resnet_backbone  # noqa: E402
from detectron2.modeling.backbone.fpn import LastLevelMaxPool  # noqa: E402
from detectron2.structures import BitMasks, Boxes, BoxMode, Instances, PolygonMasks  # noqa: E402

import solov2.d2  # noqa: E402
from solov2.layers import set_norm_folding  # noqa: E402
from solov2.config import get_cfg  # noqa: E402
from solov2.d2 import add_solov2_config, apply_solov2_data_keys, register_solov2_datasets  # noqa: E402
from solov2.modeling import build_model as solov2_build_model  # noqa: E402
from solov2.modeling.meta_arch import SOLOv2 as NativeSOLOv2  # noqa: E402
from solov2.structures import segmentation_to_bitmask  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted((REPO / "configs").rglob("*.yaml"))

# The published Detectron2-based SOLOv2's YAML text (tuples written as strings), as in tests/test_config.py.
PUBLISHED_BASE = (
    'MODEL:\n  META_ARCHITECTURE: "SOLOv2"\n  MASK_ON: True\n  BACKBONE:\n    NAME: "build_resnet_fpn_backbone"\n'
    '  RESNETS:\n    OUT_FEATURES: ["res2", "res3", "res4", "res5"]\n'
    '  FPN:\n    IN_FEATURES: ["res2", "res3", "res4", "res5"]\n'
    'DATASETS:\n  TRAIN: ("coco_2017_train",)\n  TEST: ("coco_2017_val",)\nSOLVER:\n  IMS_PER_BATCH: 16\n'
    '  BASE_LR: 0.01\n  WARMUP_FACTOR: 0.01\n  WARMUP_ITERS: 1000\n  STEPS: (60000, 80000)\n  MAX_ITER: 90000\n'
    'INPUT:\n  MIN_SIZE_TRAIN: (640, 672, 704, 736, 768, 800)\n  MASK_FORMAT: "bitmask"\nVERSION: 2\n'
)
PUBLISHED_R50_3X = (
    '_BASE_: "Base-SOLOv2.yaml"\nMODEL:\n  WEIGHTS: "detectron2://ImageNetPretrained/MSRA/R-50.pkl"\n'
    '  RESNETS:\n    DEPTH: 50\nSOLVER:\n  STEPS: (210000, 250000)\n  MAX_ITER: 270000\n'
)


def d2_cfg():
    """Detectron2's get_cfg() with solov2's keys added."""
    cfg = d2_get_cfg()
    add_solov2_config(cfg)
    return cfg


def _leaves(node, prefix=""):
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _leaves(v, prefix + k + ".")
        else:
            yield prefix + k, v


def _norm(v):
    return tuple(_norm(x) for x in v) if isinstance(v, (list, tuple)) else v


def _d2_build_from_solov2_cfg(cfg):
    """Detectron2's build_model on the Detectron2 config carrying every value of a solov2 config."""
    d2 = d2_cfg()
    d2.merge_from_other_cfg(cfg)  # works only because add_solov2_config added every key solov2 has
    return build_model(d2)


# ------------------------------------------------------------------------------------------------ config
def test_add_solov2_config_adds_every_solov2_key_and_keeps_detectron2_values():
    before = dict(_leaves(d2_get_cfg()))
    ours = dict(_leaves(get_cfg()))
    cfg = d2_cfg()
    after = dict(_leaves(cfg))
    assert set(ours) <= set(after)
    for key, value in after.items():
        if key in before:
            assert _norm(value) == _norm(before[key]), f"{key}: Detectron2's value must be kept"
        else:
            assert _norm(value) == _norm(ours[key]), key
    # The keys the brief names, with solov2's defaults.
    assert cfg.MODEL.SOLOV2.NUM_GRIDS == [40, 36, 24, 16, 12] and cfg.MODEL.SOLOV2.LOSS.DICE_WEIGHT == 3.0
    assert cfg.SOLVER.OPTIMIZER == "SGD" and tuple(cfg.SOLVER.BETAS) == (0.9, 0.999)
    assert cfg.DATASETS.COCO_INSTANCES == () and cfg.MODEL.RESNETS.DEFORM_INTERVAL == 1
    assert cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"  # Detectron2's own default stays
    assert type(cfg.MODEL.SOLOV2.LOSS) is type(cfg)  # Detectron2's CfgNode all the way down
    add_solov2_config(cfg)  # idempotent
    assert dict(_leaves(cfg)) == after
    cfg.freeze()
    with pytest.raises(ValueError, match="unfrozen"):
        add_solov2_config(cfg)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=[str(p.relative_to(REPO / "configs")) for p in CONFIG_FILES])
def test_our_yaml_files_load_through_detectron2_get_cfg(path):
    ours = get_cfg()
    ours.merge_from_file(str(path))
    theirs = d2_cfg()
    theirs.merge_from_file(str(path))
    got = dict(_leaves(theirs))
    ours_default, d2_default = dict(_leaves(get_cfg())), dict(_leaves(d2_cfg()))
    for key, value in _leaves(ours):
        if _norm(got[key]) == _norm(value):
            continue
        # Only a key whose defaults differ (e.g. MODEL.DEVICE) and that the YAML leaves alone may differ.
        assert _norm(value) == _norm(ours_default[key]) and _norm(got[key]) == _norm(d2_default[key]), key


@pytest.fixture(scope="module")
def published_yaml(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("published")
    (d / "Base-SOLOv2.yaml").write_text(PUBLISHED_BASE)
    (d / "R50_3x.yaml").write_text(PUBLISHED_R50_3X)
    return d / "R50_3x.yaml"


def test_published_yaml_loads_unchanged(published_yaml):
    cfg = d2_cfg()
    cfg.merge_from_file(str(published_yaml))
    assert cfg.MODEL.META_ARCHITECTURE == "SOLOv2" and cfg.MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone"
    assert cfg.INPUT.MASK_FORMAT == "bitmask" and cfg.VERSION == 2 and cfg.SOLVER.STEPS == (210000, 250000)


def test_solov2_only_data_keys():
    cfg = d2_cfg()
    cfg.INPUT.HFLIP_TRAIN = False
    with pytest.raises(ValueError, match="HFLIP_TRAIN"):  # building the model refuses what the data would ignore
        solov2.d2.SOLOv2(cfg)
    apply_solov2_data_keys(cfg)
    assert cfg.INPUT.RANDOM_FLIP == "none"
    cfg.DATALOADER.SKIP_CORRUPT_IMAGES = True
    with pytest.raises(ValueError, match="SKIP_CORRUPT_IMAGES"):
        apply_solov2_data_keys(cfg)
    with pytest.raises(ValueError, match="SKIP_CORRUPT_IMAGES"):
        solov2.d2.SOLOv2(cfg)
    # Detectron2's test loader and evaluator would evaluate every image: refused by name, not ignored.
    cfg = d2_cfg()
    cfg.TEST.MAX_IMAGES = 10
    with pytest.raises(ValueError, match="TEST.MAX_IMAGES 10"):
        apply_solov2_data_keys(cfg)
    with pytest.raises(ValueError, match="TEST.MAX_IMAGES 10"):
        solov2.d2.SOLOv2(cfg)


# ------------------------------------------------------------------------------------------------ registration
def test_registered_in_detectron2():
    cls = META_ARCH_REGISTRY.get("SOLOv2")
    assert cls is solov2.d2.SOLOv2 and issubclass(cls, NativeSOLOv2)
    for name in ("shapes_train", "shapes_val"):
        assert name in DatasetCatalog.list()
        assert MetadataCatalog.get(name).thing_classes == ["circle", "triangle", "rectangle"]
    register_solov2_datasets()  # mirrors whatever other tests registered through solov2.data meanwhile
    assert register_solov2_datasets() == []  # idempotent
    # A name Detectron2 registers itself stays Detectron2's; DATASETS.COCO_INSTANCES may not take one.
    assert "coco_2017_train" in DatasetCatalog.list()
    cfg = d2_cfg()
    cfg.DATASETS.COCO_INSTANCES = (("lvis_v1_val", "x.json", "images"),)  # a Detectron2 builtin name
    with pytest.raises(ValueError, match="lvis_v1_val.*Detectron2 already uses"):
        register_solov2_datasets(cfg)


def test_annotations_reach_detectron2_in_its_form(tmp_path):
    """A COCO file whose categories are the classes keeps its json_file (Detectron2 scores against it); a box-less
    annotation gets its mask's box and uncompressed RLE becomes compressed, which Detectron2's mapper needs."""
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.full((20, 30, 3), 100, np.uint8))
    mask = np.zeros((20, 30), np.uint8)
    mask[4:9, 10:16] = 1
    flat = mask.T.ravel()  # uncompressed RLE: run lengths down the columns, starting with zeros (flat[0] is 0)
    counts = np.diff(np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])).tolist()
    data = {"images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}],
            "categories": [{"id": 7, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "iscrowd": 0, "area": 30,
                             "segmentation": {"size": [20, 30], "counts": counts}}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    cfg = _tiny_cfg()
    cfg.DATASETS.COCO_INSTANCES = (("solov2_test_d2_form", str(tmp_path / "ann.json"), str(tmp_path / "images")),)
    assert register_solov2_datasets(cfg) == ["solov2_test_d2_form"]
    ann = DatasetCatalog.get("solov2_test_d2_form")[0]["annotations"][0]
    assert MetadataCatalog.get("solov2_test_d2_form").json_file == str(tmp_path / "ann.json")
    assert ann["bbox"] == [10.0, 4.0, 16.0, 9.0] and ann["bbox_mode"] is BoxMode.XYXY_ABS
    assert isinstance(ann["segmentation"]["counts"], str)
    cfg.INPUT.MASK_FORMAT = "bitmask"
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.RANDOM_FLIP = (20,), 1000, "none"
    inst = DatasetMapper(cfg, is_train=True)(DatasetCatalog.get("solov2_test_d2_form")[0])["instances"]
    assert torch.equal(inst.gt_masks.tensor[0], torch.from_numpy(mask.astype(bool)))


def test_unsupported_backbone_key_is_refused():
    cfg = d2_cfg()
    cfg.merge_from_file(str(REPO / "configs/SOLOv2/R50_3x.yaml"))
    cfg.MODEL.RESNETS.DEFORM_INTERVAL = 2
    with pytest.raises(ValueError, match="DEFORM_INTERVAL"):
        build_model(cfg)


# ------------------------------------------------------------------------------------------------ checkpoints
class _RecordingCheckpointer(DetectionCheckpointer):
    def _log_incompatible_keys(self, incompatible) -> None:
        self.incompatible = incompatible
        super()._log_incompatible_keys(incompatible)


def test_published_checkpoint_names_and_loading(published_yaml, reference_state_dict_shapes, tmp_path):
    cfg = d2_cfg()
    cfg.merge_from_file(str(published_yaml))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    assert isinstance(model, solov2.d2.SOLOv2)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == reference_state_dict_shapes

    # A checkpoint in the published layout ({"model": state_dict}); each tensor a distinct constant, stored as a
    # one-element tensor expanded to its shape so the file stays tiny.
    values = {k: 0.001 * (i + 1) for i, k in enumerate(reference_state_dict_shapes)}
    state = {k: torch.full((1,) * len(s), values[k]).expand(s) for k, s in reference_state_dict_shapes.items()}
    path = tmp_path / "SOLOv2_R50_3x.pth"
    torch.save({"model": state}, path)
    checkpointer = _RecordingCheckpointer(model)
    checkpointer.load(str(path))
    inc = checkpointer.incompatible
    assert not inc.missing_keys and not inc.unexpected_keys and not inc.incorrect_shapes
    loaded = model.state_dict()
    assert all(torch.all(loaded[k] == torch.tensor(v)) for k, v in values.items())


@pytest.mark.parametrize("name", ["R50_3x", "Light_448_R18_3x", "Light_512_DCN_R50_3x", "mmdet/Light_512_DCN_R50_3x"])
def test_state_dict_equals_the_native_models(name):
    path = str(REPO / "configs" / "SOLOv2" / f"{name}.yaml")
    cfg = d2_cfg()
    cfg.merge_from_file(path)
    cfg.MODEL.DEVICE = "cpu"
    native = get_cfg()
    native.merge_from_file(path)
    native.MODEL.DEVICE = "cpu"
    shapes = {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in solov2_build_model(native).state_dict().items()}


# ------------------------------------------------------------------------------------------------ structures
def _tiny_cfg():
    cfg = d2_cfg()
    cfg.merge_from_file(str(REPO / "configs/SOLOv2/Base-SOLOv2.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64  # Detectron2's R18 needs 64
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    s = cfg.MODEL.SOLOV2
    s.NUM_CLASSES = 3
    s.INSTANCE_IN_CHANNELS = s.MASK_IN_CHANNELS = s.INSTANCE_CHANNELS = s.NUM_KERNELS = s.NUM_MASKS = 32
    s.MASK_CHANNELS = 32
    s.NUM_INSTANCE_CONVS = 1
    s.NUM_GRIDS = [12, 10, 8, 6, 4]
    s.SCORE_THR = s.UPDATE_THR = 0.0  # keep the untrained model's detections
    return cfg


def test_any_detectron2_backbone_and_detectron2_instances_out():
    # A Detectron2 FPN padding to a square (ViTDet's constraint), given to SOLOv2.from_config explicitly.
    cfg = _tiny_cfg()
    bottom_up = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    backbone = FPN(bottom_up, ["res2", "res3", "res4", "res5"], 32, top_block=LastLevelMaxPool(), square_pad=192)
    torch.manual_seed(0)
    model = solov2.d2.SOLOv2(cfg, backbone=backbone).eval()
    assert model.backbone is backbone
    images = [torch.randint(0, 255, (3, 100, 150), dtype=torch.uint8), torch.randint(0, 255, (3, 120, 90),
                                                                                        dtype=torch.uint8)]
    assert model.preprocess_image([{"image": im} for im in images]).tensor.shape[-2:] == (192, 192)
    with torch.no_grad():
        out = model([{"image": images[0], "height": 200, "width": 300}, {"image": images[1]}])
    for o, size in zip(out, [(200, 300), (120, 90)]):
        inst = o["instances"]
        assert isinstance(inst, Instances) and isinstance(inst.pred_boxes, Boxes) and inst.image_size == size
        assert len(inst) > 0 and inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape[1:] == size
        assert torch.equal(inst.pred_boxes.tensor, BitMasks(inst.pred_masks).get_bounding_boxes().tensor)
        assert inst.scores.shape == inst.pred_classes.shape == (len(inst),)


def test_training_needs_masks():
    model = solov2.d2.SOLOv2(_tiny_cfg()).train()
    inst = Instances((64, 64), gt_boxes=Boxes(torch.tensor([[1.0, 1, 20, 20]])), gt_classes=torch.tensor([0]))
    with pytest.raises(ValueError, match="MODEL.MASK_ON True"):
        model([{"image": torch.zeros(3, 64, 64, dtype=torch.uint8), "instances": inst}])


def test_labelme_dataset_polygons_and_evaluation_in_detectron2(shared_data, tmp_path):
    """A labelme COCO export (ids from 0, a `_background_` category, polygons) through Detectron2's catalogs,
    default mapper and COCOEvaluator."""
    root = shared_data / "voc_labelme_coco"
    name = "solov2_test_voc_labelme_d2"
    cfg = _tiny_cfg()
    cfg.DATASETS.COCO_INSTANCES = ((name, str(root / "annotations.json"), str(root)),)
    register_solov2_datasets(cfg)
    dicts = DatasetCatalog.get(name)
    meta = MetadataCatalog.get(name)
    assert len(meta.thing_classes) == 20 and "_background_" not in meta.thing_classes
    assert meta.thing_dataset_id_to_contiguous_id == {i: i - 1 for i in range(1, 21)}
    assert all(a["bbox_mode"] is BoxMode.XYWH_ABS for d in dicts for a in d["annotations"])

    # Detectron2's default mapper: polygons (its default mask format) and bit masks give the same training masks.
    cfg.INPUT.MIN_SIZE_TRAIN = (200,)
    cfg.INPUT.RANDOM_FLIP = "none"
    model = solov2.d2.SOLOv2(cfg)
    for d in dicts:
        cfg.INPUT.MASK_FORMAT = "polygon"
        poly = DatasetMapper(cfg, is_train=True)(d)["instances"]
        cfg.INPUT.MASK_FORMAT = "bitmask"
        bits = DatasetMapper(cfg, is_train=True)(d)["instances"]
        assert isinstance(poly.gt_masks, PolygonMasks) and len(poly) > 0
        masks, boxes, classes = model._gt_tensors(poly)
        assert masks.dtype == torch.bool and torch.equal(masks, bits.gt_masks.tensor)
        assert torch.equal(boxes, bits.gt_boxes.tensor) and torch.equal(classes, bits.gt_classes)

    # The file declares a category that is no class, so Detectron2's COCOEvaluator gets no json_file and scores
    # against its conversion of the loaded dicts (classes mapped back to the file's ids): ground truth scores 100.
    assert not hasattr(meta, "json_file")
    evaluator = COCOEvaluator(name, output_dir=str(tmp_path), distributed=False)
    evaluator.reset()
    for d in dicts:
        masks = torch.from_numpy(np.stack([segmentation_to_bitmask(a["segmentation"], d["height"], d["width"])
                                           for a in d["annotations"]]))
        inst = Instances((d["height"], d["width"]), pred_masks=masks, pred_boxes=BitMasks(masks).get_bounding_boxes(),
                         scores=torch.ones(len(masks)),
                         pred_classes=torch.tensor([a["category_id"] for a in d["annotations"]]))
        evaluator.process([{"image_id": d["image_id"], "height": d["height"], "width": d["width"]}],
                          [{"instances": inst}])
    results = evaluator.evaluate()
    assert results["segm"]["AP"] == pytest.approx(100.0)
    assert results["bbox"]["AP"] > 95  # the file's boxes are the polygons' extents, these the masks' tight boxes


# ------------------------------------------------------------------------------------------------ pinned answers
@pytest.fixture(scope="module")
def pinned():
    return pm.load_pinned()


@pytest.fixture(scope="module")
def d2_r50():
    """The pinned R50_3x model, built by Detectron2's build_model (Detectron2's ResNet-FPN), one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = pm.build_pinned_model("r50", builder=_d2_build_from_solov2_cfg)
    # The arithmetic the record was made with: channels-last activations (on by default in eval on the CPU) round
    # differently in the last bits; test_detectron2_and_native_models_agree_exactly covers the default.
    model.channels_last = False
    yield model
    torch.set_num_threads(before)


@pytest.fixture
def solov2_frozen_bn_arithmetic(monkeypatch):
    """Detectron2's FrozenBatchNorm2d computes x * scale + bias when autograd tracks its input and F.batch_norm
    otherwise; solov2's always the former. Taking Detectron2's own first branch everywhere removes the only
    arithmetic difference between the two backbones, so that what remains is SOLOv2's code alone."""
    original = FrozenBatchNorm2d.forward

    def forward(self, x):
        if x.requires_grad:
            return original(self, x)
        with torch.enable_grad():
            return original(self, x.detach().requires_grad_()).detach()

    monkeypatch.setattr(FrozenBatchNorm2d, "forward", forward)


def _d2_inputs(monkeypatch, mask_format):
    """Make the pinned inputs Detectron2's (BitMasks or PolygonMasks) for pinned_model's record functions."""
    native = pm.pinned_inputs
    monkeypatch.setattr(pm, "pinned_inputs", lambda nc, with_gt: to_detectron2_inputs(native(nc, with_gt), mask_format))


def test_detectron2_model_gives_the_pinned_instances(d2_r50, pinned, solov2_frozen_bn_arithmetic):
    pm.assert_inference_matches(pm.record_inference(d2_r50, 80), pinned["r50"]["inference"])


def test_detectron2_and_native_models_agree_exactly(d2_r50, solov2_frozen_bn_arithmetic):
    """Same weights, same images, today's code, eval defaults (channels-last): identical classes, scores, masks."""
    native = set_norm_folding(pm.build_pinned_model("r50"), False)  # Detectron2's backbone keeps its BatchNorms
    d2_r50.channels_last = True
    try:
        got = pm.record_inference(d2_r50, 80)
    finally:
        d2_r50.channels_last = False
    want = pm.record_inference(native, 80)
    assert got == want  # classes, scores, boxes and RLE masks all identical
    assert all(len(r["classes"]) > 3 for r in want)


def test_detectron2_model_gives_the_pinned_instances_in_detectron2_arithmetic(d2_r50, pinned):
    got = pm.record_inference(d2_r50, 80)
    # F.batch_norm rounds differently in the last bits; a mask pixel on the 0.5 threshold may flip, which moves
    # that instance's maskness-weighted score by ~4e-4. Classes and masks (IoU) hold to the pinned tolerance.
    pm.assert_inference_matches(got, pinned["r50"]["inference"], score_atol=1e-3)


@pytest.fixture(scope="module")
def native_r50_training():
    """The native R50's training record on the pinned images, in this process (the same kernels as Detectron2's
    build here, whatever the CPU: exact equality between the two is meaningful, equality with the stored record,
    made on another CPU, is not)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return pm.record_training(pm.build_pinned_model("r50"), 80)
    finally:
        torch.set_num_threads(before)


def test_detectron2_model_gives_the_pinned_losses_and_gradients(d2_r50, pinned, solov2_frozen_bn_arithmetic,
                                                               native_r50_training, monkeypatch):
    _d2_inputs(monkeypatch, "bitmask")
    got = pm.record_training(d2_r50, 80)
    assert got["losses"] == native_r50_training["losses"]  # identical to the native model's in this process
    pm.assert_training_matches(got, pinned["r50"]["training"])


def test_polygon_masks_give_the_pinned_losses(d2_r50, pinned, solov2_frozen_bn_arithmetic, native_r50_training):
    # Polygons whose rasterisation is exactly the pinned masks (tests/d2_helpers.py checks that).
    inputs = to_detectron2_inputs(pm.pinned_inputs(80, with_gt=True), "polygon")
    assert all(isinstance(x["instances"].gt_masks, PolygonMasks) for x in inputs)
    d2_r50.train()
    with torch.no_grad():
        losses = {k: float(v) for k, v in d2_r50(inputs).items()}
    assert losses == native_r50_training["losses"]
    for k, v in pinned["r50"]["training"]["losses"].items():
        assert math.isclose(losses[k], v, rel_tol=1e-5), (k, losses[k], v)


def test_pinned_losses_in_detectron2_arithmetic(d2_r50, pinned):
    inputs = to_detectron2_inputs(pm.pinned_inputs(80, with_gt=True), "polygon")
    d2_r50.train()
    with torch.no_grad():
        losses = d2_r50(inputs)
    for k, v in pinned["r50"]["training"]["losses"].items():
        assert math.isclose(float(losses[k]), v, rel_tol=1e-5), (k, float(losses[k]), v)
