"""Published SOLOv2 weight formats: mmdetection 3.x and the original SOLO release convert on load and give
mmdetection's own answers; DCN state dicts load strictly; a checkpoint that does not fit changes nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import pytest
import torch

from mmdet_helpers import (
    build_mmdet_solov2,
    match_instances,
    mmdet_predict,
    require_mmdet,
    save_mmdet_checkpoint,
)
from solov2.checkpoint import Checkpointer, convert_weights, read_description
from solov2.commands.convert import parse_args as convert_args
from solov2.commands.convert import run as convert_run
from solov2.checkpoint.formats import MMDET3, OURS, SOLO
from solov2.config import get_cfg
from solov2.engine.predictor import DefaultPredictor
from solov2.modeling import build_model
from solov2.utils.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]
MMDET_CONFIGS = REPO / "configs" / "SOLOv2" / "mmdet"
TEST_SIZE = (320, 533)  # small images keep mmdetection's per-candidate masks (and the test) cheap

# The original SOLO release's names, written out from mmdetection 3.x's by hand (the README's documented mapping),
# independently of solov2.checkpoint.formats.SOLO_TO_MMDET3.
MMDET3_TO_SOLO = [
    ("mask_head.cls_convs.", "bbox_head.cate_convs."),
    ("mask_head.kernel_convs.", "bbox_head.kernel_convs."),
    ("mask_head.conv_cls.", "bbox_head.solo_cate."),
    ("mask_head.conv_kernel.", "bbox_head.solo_kernel."),
    ("mask_head.mask_feature_head.conv_pred.", "mask_feat_head.conv_pred.0."),
    ("mask_head.mask_feature_head.", "mask_feat_head."),
]


def _to_solo(state):
    out = {}
    for k, v in state.items():
        for old, new in MMDET3_TO_SOLO:
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[k] = v
    return out


def _cfg(name: str, weights: str = ""):
    cfg = get_cfg()
    cfg.merge_from_file(str(MMDET_CONFIGS / f"{name}.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = weights
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = TEST_SIZE
    return cfg


def _photos(shared_data: Path, n: int):
    paths = sorted((shared_data / "voc_labelme_coco" / "JPEGImages").glob("*.jpg"))[:n]
    assert len(paths) == n, "too few photos in the shared data"
    return [cv2.imread(str(p)) for p in paths]


def _ours(predictor, image):
    inst = predictor(image)["instances"]
    return {"scores": inst.scores.numpy(), "labels": inst.pred_classes.numpy(), "masks": inst.pred_masks.numpy()}


@pytest.mark.slow
@pytest.mark.parametrize("name,images", [("R50_3x", 1), ("Light_448_R18_3x", 2)])
def test_mmdet3_checkpoint_gives_mmdetections_answers(name, images, shared_data, tmp_path, caplog):
    """Random weights saved as mmdetection writes them; its inference vs ours through MODEL.WEIGHTS."""
    mm = build_mmdet_solov2(name, cls_bias=-4.0)
    save_mmdet_checkpoint(mm, str(tmp_path / "mmdet.pth"))
    with caplog.at_level(logging.INFO, logger="solov2"):
        predictor = DefaultPredictor(_cfg(name, str(tmp_path / "mmdet.pth")))
    assert f"in the {MMDET3} format" in caplog.text
    assert "All model parameters were loaded" in caplog.text
    figures = []
    for image in _photos(shared_data, images):
        theirs = mmdet_predict(mm, image, TEST_SIZE)
        assert 10 <= len(theirs["scores"]) <= 100  # enough instances to compare, few enough to stay cheap
        # Near the cuts (the 100th score when 100 are kept, the final threshold) a near-tie may cross either way.
        cut = max(float(theirs["scores"].min()) if len(theirs["scores"]) == 100 else 0.0, 0.05) + 1e-3
        figures.append(match_instances(_ours(predictor, image), theirs, score_tol=1e-3, min_iou=0.99,
                                       loose_below=cut))
        assert figures[-1]["unmatched"] <= 2
    print(name, figures)


@pytest.mark.slow
def test_solo_format_loads_the_same_tensors(tmp_path, caplog):
    """An original-SOLO checkpoint (mmdetection 3.x's tensors under SOLO's names) gives the very same model."""
    mm = build_mmdet_solov2("Light_448_R18_3x", seed=1)
    state = save_mmdet_checkpoint(mm, str(tmp_path / "mmdet3.pth"))
    torch.save({"meta": {"mmdet_version": "1.0.0"}, "state_dict": _to_solo(state)}, tmp_path / "solo.pth")
    models = []
    for file in ("mmdet3.pth", "solo.pth"):
        model = build_model(_cfg("Light_448_R18_3x"))
        with caplog.at_level(logging.INFO, logger="solov2"):
            Checkpointer(model).load(str(tmp_path / file))
        models.append(model.eval())
    assert f"in the {SOLO} format" in caplog.text and f"in the {MMDET3} format" in caplog.text
    a, b = (m.state_dict() for m in models)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Every tensor of mmdetection's model has its counterpart (num_batches_tracked excepted): 1:1.
    assert len([k for k in state if not k.endswith("num_batches_tracked")]) == len(a)
    image = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    with torch.no_grad():
        outs = [m([{"image": image}])[0]["instances"] for m in models]
    assert torch.equal(outs[0].scores, outs[1].scores) and torch.equal(outs[0].pred_masks, outs[1].pred_masks)


def _mmdet_dcn_state(name: str):
    """mmdetection's state dict of a DCN family; the light DCN model as the original SOLO release built it (DCN v1
    in the backbone and in the last tower conv), which mmdetection 3.x has no weights of."""
    require_mmdet()
    from mmdet_helpers import import_mmdet_models, mmdet_config

    import_mmdet_models()
    from mmdet.registry import MODELS

    cfg = mmdet_config(name)
    if name == "Light_512_DCN_R50_3x":
        cfg.model.backbone.dcn = dict(type="DCN", deform_groups=1, fallback_on_stride=False)
        cfg.model.mask_head.dcn_cfg = dict(type="DCN")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    g = torch.Generator().manual_seed(0)
    return {k: (torch.randn(v.shape, generator=g) if v.dtype.is_floating_point else v) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name,solo_names", [
    pytest.param("R101_DCN_3x", False, marks=pytest.mark.slow), pytest.param("X101_DCN_3x", False, marks=pytest.mark.slow),
    ("Light_512_DCN_R50_3x", True)])
def test_dcn_state_dicts_load_strictly(name, solo_names, tmp_path):
    """Every tensor of mmdetection's DCN model lands in ours with its shape, and nothing is missing or left over."""
    state = _mmdet_dcn_state(name)
    if solo_names:
        state = _to_solo(state)
    model = build_model(_cfg(name))
    ours = model.state_dict()
    converted, fmt, _ = convert_weights({"meta": {}, "state_dict": state}, ours.keys())
    assert fmt == (SOLO if solo_names else MMDET3)
    assert set(converted) == set(ours)
    assert all(tuple(converted[k].shape) == tuple(ours[k].shape) for k in ours)
    offsets = [k for k in state if "conv_offset" in k]
    assert offsets and len(offsets) == len([k for k in ours if "offset" in k])
    torch.save({"state_dict": state}, tmp_path / "dcn.pth")
    incompatible = Checkpointer(model)._load_model(Checkpointer(model)._load_file(str(tmp_path / "dcn.pth")))
    assert not incompatible.missing_keys and not incompatible.unexpected_keys and not incompatible.incorrect_shapes
    after = model.state_dict()
    assert all(torch.equal(after[k], converted[k]) for k in after)


def _small_model():
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / "SOLOv2" / "Base-SOLOv2.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 16
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    s = cfg.MODEL.SOLOV2
    s.INSTANCE_IN_CHANNELS = s.MASK_IN_CHANNELS = s.INSTANCE_CHANNELS = s.NUM_KERNELS = s.NUM_MASKS = 32
    s.MASK_CHANNELS, s.NUM_INSTANCE_CONVS, s.NUM_CLASSES = 32, 2, 3
    return build_model(cfg)


@pytest.mark.parametrize("kind", ["unknown names", "mmdetection weights of another model"])
def test_refused_checkpoint_leaves_every_tensor_unchanged(kind, tmp_path):
    model = _small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    if kind == "unknown names":  # no version metadata: FrozenBN's loading hook would fill running_var first
        torch.save({"state_dict": {"head.fc.weight": torch.zeros(2, 2)}}, tmp_path / "w.pth")
    else:  # R18 light weights: every name converts, no shape fits the narrow model
        mm_state = {"meta": {}, "state_dict": _mmdet_dcn_state("Light_448_R18_3x")}
        torch.save(mm_state, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="fits this model"):
        Checkpointer(model).load(str(tmp_path / "w.pth"))
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before), [k for k in before if not torch.equal(after[k], before[k])]


def test_mmdet_weights_in_an_msra_config_warn(tmp_path, caplog):
    mm_state = _mmdet_dcn_state("Light_448_R50_3x")
    torch.save({"meta": {}, "state_dict": mm_state}, tmp_path / "w.pth")
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / "SOLOv2" / "Light_448_R50_3x.yaml"))
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = True
    with caplog.at_level(logging.WARNING, logger="solov2"):
        Checkpointer(build_model(cfg)).load(str(tmp_path / "w.pth"))
    assert "STRIDE_IN_1X1 False" in caplog.text and "configs/SOLOv2/mmdet" in caplog.text


def test_convert_checkpoint_writes_our_format(tmp_path):
    mm_state = _mmdet_dcn_state("Light_448_R18_3x")
    torch.save({"meta": {}, "state_dict": _to_solo(mm_state)}, tmp_path / "solo.pth")
    cfg_file = str(MMDET_CONFIGS / "Light_448_R18_3x.yaml")
    assert convert_main([str(tmp_path / "solo.pth"), str(tmp_path / "ours.pth"), "--config-file", cfg_file]) == 0
    written = torch.load(tmp_path / "ours.pth", weights_only=True)
    assert set(written) == {"model", "config", "class_names"}  # it describes itself
    assert read_description(str(tmp_path / "ours.pth")).config == written["config"]
    model = build_model(_cfg("Light_448_R18_3x"))
    assert convert_weights(written, model.state_dict().keys())[1] == OURS
    incompatible = Checkpointer(model)._load_model(Checkpointer(model)._load_file(str(tmp_path / "ours.pth")))
    assert not incompatible.missing_keys and not incompatible.unexpected_keys and not incompatible.incorrect_shapes
    direct = build_model(_cfg("Light_448_R18_3x"))
    Checkpointer(direct).load(str(tmp_path / "solo.pth"))
    a, b = model.state_dict(), direct.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Weights of another family do not fit the config: refused, nothing written.
    with pytest.raises(CheckpointError, match="do not fit the config's model"):
        convert_main([str(tmp_path / "solo.pth"), str(tmp_path / "bad.pth"), "--config-file",
                      str(MMDET_CONFIGS / "Light_448_R34_3x.yaml")])
    with pytest.raises(CheckpointError, match="do not fit the config's model"):
        convert_main([str(tmp_path / "solo.pth"), str(tmp_path / "bad.pth"), "--config-file", cfg_file,
                      "--opts", "MODEL.SOLOV2.NUM_CLASSES", "3"])
    with pytest.raises(CheckpointError, match="do not fit the config's model"):  # the other override style
        convert_main([str(tmp_path / "solo.pth"), str(tmp_path / "bad.pth"), "--config-file", cfg_file,
                      "MODEL.SOLOV2.NUM_CLASSES", "3"])
    assert not (tmp_path / "bad.pth").exists()


def convert_main(argv):
    """`solov2 convert` in this process, raising what it refuses (main() would print it as one ERROR line)."""
    return convert_run(convert_args(argv))


def test_unknown_mmdet_tensors_are_reported_not_fatal(tmp_path, caplog):
    """A tensor that is no SOLOv2 parameter (e.g. added by a training hook) is listed as unexpected; the rest loads."""
    state = _mmdet_dcn_state("Light_448_R18_3x")
    state["ema_mask_head.conv_cls.weight"] = torch.zeros(1)
    torch.save({"meta": {}, "state_dict": state}, tmp_path / "w.pth")
    model = build_model(_cfg("Light_448_R18_3x"))
    with caplog.at_level(logging.INFO, logger="solov2"):
        Checkpointer(model).load(str(tmp_path / "w.pth"))
    assert "unexpected in checkpoint" in caplog.text and "ema_mask_head.conv_cls.weight" in caplog.text
    assert torch.equal(model.ins_head.cate_pred.weight, state["mask_head.conv_cls.weight"])
