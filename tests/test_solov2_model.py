"""The SOLOv2 meta-architecture: published names, training with empty images, inference outputs."""

from pathlib import Path

import pytest
import torch

from solov2.config import get_cfg
from solov2.modeling import build_model
from solov2.structures import BitMasks, Boxes, Instances

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "SOLOv2"


@pytest.fixture
def one_thread():
    """Run single-threaded: on a shared 2-core machine, contended OpenMP threads make steps 10-50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


pytestmark = pytest.mark.usefixtures("one_thread")


def small_cfg(num_classes=3):
    """A narrow R18-FPN SOLOv2 that runs in well under a second on CPU."""
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "Base-SOLOv2.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 16
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    s = cfg.MODEL.SOLOV2
    s.NUM_CLASSES = num_classes
    s.INSTANCE_IN_CHANNELS = s.MASK_IN_CHANNELS = 32
    s.INSTANCE_CHANNELS = 32
    s.NUM_INSTANCE_CONVS = 2
    s.NUM_KERNELS = s.NUM_MASKS = 32
    s.MASK_CHANNELS = 32
    s.NUM_GRIDS = [12, 10, 8, 6, 4]
    s.FPN_SCALE_RANGES = ((1, 32), (16, 64), (32, 128), (64, 256), (128, 512))
    return cfg


def _instances(h, w, boxes, classes):
    masks = torch.zeros(len(boxes), h, w, dtype=torch.bool)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        masks[k, y1:y2, x1:x2] = True
    bm = BitMasks(masks)
    return Instances((h, w), gt_masks=bm, gt_boxes=bm.get_bounding_boxes(),
                     gt_classes=torch.tensor(classes, dtype=torch.int64))


def test_r50_state_dict_loads_strictly(reference_state_dict_shapes):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "R50_3x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    g = torch.Generator().manual_seed(0)
    state = {k: torch.rand(shape, generator=g) + 0.5 for k, shape in reference_state_dict_shapes.items()}
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.ins_head.kernel_tower[0].weight, state["ins_head.kernel_tower.0.weight"])
    assert torch.equal(model.mask_head.conv_pred[0].weight, state["mask_head.conv_pred.0.weight"])


def test_head_initialisation():
    model = build_model(small_cfg())
    bias = model.ins_head.cate_pred.bias
    assert torch.allclose(bias, torch.full_like(bias, -torch.log(torch.tensor(99.0)).item()))
    assert model.ins_head.cate_tower[0].bias is None  # GN follows
    assert abs(model.ins_head.kernel_tower[0].weight.std().item() - 0.01) < 0.002


@pytest.mark.parametrize("all_empty", [False, True])
def test_training_step_with_empty_images(all_empty):
    torch.manual_seed(0)
    model = build_model(small_cfg()).train()
    img = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    empty = _instances(96, 128, [], [])
    full = empty if all_empty else _instances(96, 128, [(10, 10, 40, 50), (60, 20, 120, 90)], [0, 2])
    losses = model([{"image": img, "instances": full}, {"image": img, "instances": empty}])
    assert set(losses) == {"loss_ins", "loss_cate"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    for name, p in model.named_parameters():
        if p.requires_grad and (name.startswith("ins_head") or name.startswith("mask_head")):
            assert p.grad is not None, name
    if not all_empty:
        assert losses["loss_ins"] > 0


def test_inference_outputs_for_batch_of_different_sizes():
    torch.manual_seed(0)
    cfg = small_cfg()
    cfg.MODEL.SOLOV2.SCORE_THR = 0.0  # untrained model: let candidates through
    cfg.MODEL.SOLOV2.UPDATE_THR = 0.0
    model = build_model(cfg).eval()
    inputs = [
        {"image": torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8), "height": 192, "width": 256},
        {"image": torch.randint(0, 255, (3, 70, 50), dtype=torch.uint8)},
    ]
    with torch.no_grad():
        out = model(inputs)
    assert len(out) == 2
    for res, size in zip(out, [(192, 256), (70, 50)]):
        inst = res["instances"]
        assert inst.image_size == size
        assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape[1:] == size
        assert isinstance(inst.pred_boxes, Boxes) and inst.pred_boxes.tensor.shape == (len(inst), 4)
        assert inst.scores.shape == (len(inst),) and inst.pred_classes.dtype == torch.int64
        assert len(inst) <= cfg.MODEL.SOLOV2.MAX_PER_IMG
        if len(inst):
            assert torch.all(inst.scores[:-1] >= inst.scores[1:])
            nonempty = inst.pred_masks.flatten(1).any(1)
            b = inst.pred_boxes.tensor[nonempty]
            assert torch.all(b[:, 2] > b[:, 0]) and torch.all(b[:, 3] > b[:, 1])


def test_inference_with_no_detections():
    cfg = small_cfg()
    cfg.MODEL.SOLOV2.SCORE_THR = 1.01
    model = build_model(cfg).eval()
    with torch.no_grad():
        inst = model([{"image": torch.zeros(3, 64, 64, dtype=torch.uint8), "height": 32, "width": 40}])[0]["instances"]
    assert len(inst) == 0
    assert inst.pred_masks.shape == (0, 32, 40) and inst.pred_masks.dtype == torch.bool
    assert inst.pred_boxes.tensor.shape == (0, 4) and inst.scores.shape == (0,)
    assert inst.pred_classes.dtype == torch.int64


def test_bad_config_values_are_named():
    cfg = small_cfg()
    cfg.MODEL.SOLOV2.NMS_TYPE = "soft"
    with pytest.raises(ValueError, match="NMS_TYPE"):
        build_model(cfg)
    cfg = small_cfg()
    cfg.MODEL.SOLOV2.NORM = "LN"
    with pytest.raises(ValueError, match="MODEL.SOLOV2.NORM"):
        build_model(cfg)


def test_dcn_heads_and_mask_nms_build_and_run():
    cfg = small_cfg()
    cfg.MODEL.SOLOV2.USE_DCN_IN_INSTANCE = True
    cfg.MODEL.SOLOV2.USE_DCN_IN_MASK = True
    cfg.MODEL.SOLOV2.TYPE_DCN = "DCNv2"
    cfg.MODEL.SOLOV2.NMS_TYPE = "mask"
    cfg.MODEL.SOLOV2.SCORE_THR = 0.0
    model = build_model(cfg).eval()
    with torch.no_grad():
        inst = model([{"image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)}])[0]["instances"]
    assert inst.pred_masks.shape[1:] == (64, 64)
    assert any("conv_offset" in n for n, _ in model.ins_head.named_parameters())
