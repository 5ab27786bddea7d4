"""The SOLOv2 meta-architecture: published names, training with empty images, inference outputs."""

from pathlib import Path

import pytest
import torch

from solov2.config import get_cfg
from solov2.modeling import build_model
from solov2.structures import BitMasks, Boxes, Instances

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "SOLOv2"


pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_head_initialisation(small_cfg):
    model = build_model(small_cfg())
    bias = model.ins_head.cate_pred.bias
    assert torch.allclose(bias, torch.full_like(bias, -torch.log(torch.tensor(99.0)).item()))
    assert model.ins_head.cate_tower[0].bias is None  # GN follows
    assert abs(model.ins_head.kernel_tower[0].weight.std().item() - 0.01) < 0.002


@pytest.mark.parametrize("all_empty", [False, True])
def test_training_step_with_empty_images(all_empty, small_cfg):
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


def test_inference_outputs_for_batch_of_different_sizes(small_cfg):
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


def test_inference_with_no_detections(small_cfg):
    cfg = small_cfg()
    cfg.MODEL.SOLOV2.SCORE_THR = 1.01
    model = build_model(cfg).eval()
    with torch.no_grad():
        inst = model([{"image": torch.zeros(3, 64, 64, dtype=torch.uint8), "height": 32, "width": 40}])[0]["instances"]
    assert len(inst) == 0
    assert inst.pred_masks.shape == (0, 32, 40) and inst.pred_masks.dtype == torch.bool
    assert inst.pred_boxes.tensor.shape == (0, 4) and inst.scores.shape == (0,)
    assert inst.pred_classes.dtype == torch.int64


def test_bad_config_values_are_named(small_cfg):
    cfg = small_cfg()
    cfg.MODEL.SOLOV2.NMS_TYPE = "soft"
    with pytest.raises(ValueError, match="NMS_TYPE"):
        build_model(cfg)
    cfg = small_cfg()
    cfg.MODEL.SOLOV2.NORM = "LN"
    with pytest.raises(ValueError, match="MODEL.SOLOV2.NORM"):
        build_model(cfg)
    cfg = small_cfg()
    cfg.MODEL.SOLOV2.NMS_KERNEL = "box"
    with pytest.raises(ValueError, match="NMS_KERNEL"):
        build_model(cfg)


@pytest.mark.parametrize("norm", ["none", "", "BN"])
def test_head_norm_variants(norm, small_cfg):
    """NORM "none" (the published configs' spelling) and "" mean plain convs with bias; "BN" uses BatchNorm.

    The mask head's final 1x1 conv is followed by GroupNorm whatever NORM says, as in the published model.
    """
    cfg = small_cfg()
    cfg.MODEL.SOLOV2.NORM = norm
    model = build_model(cfg)
    tower = model.ins_head.cate_tower
    conv_pred = model.mask_head.conv_pred
    assert isinstance(conv_pred[1], torch.nn.GroupNorm) and isinstance(conv_pred[2], torch.nn.ReLU)
    if norm == "BN":
        assert isinstance(tower[1], torch.nn.BatchNorm2d) and tower[0].bias is None
        assert isinstance(model.mask_head.convs_all_levels[0].conv0[1], torch.nn.BatchNorm2d)
        assert conv_pred[0].bias is None
    else:
        assert isinstance(tower[1], torch.nn.ReLU) and tower[0].bias is not None
        others = [m for m in model.mask_head.convs_all_levels.modules()]
        assert not any(isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d)) for m in others)
        assert conv_pred[0].bias is not None  # no norm in the towers: the published conv_pred.0 has a bias
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)}])[0]["instances"]
    assert out.pred_masks.shape[1:] == (64, 64)


def test_dcn_heads_and_mask_nms_build_and_run(small_cfg):
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


def test_postprocess_is_the_same_when_masks_are_chunked(monkeypatch):
    """Bounding memory (candidate cells' masks computed a range of pixels at a time) must not change any result."""
    from solov2.modeling.solov2 import InferenceParams, postprocess_image
    from solov2.modeling.solov2 import inference as inference_module

    g = torch.Generator().manual_seed(0)
    cells, classes, dim, hf, wf = 60, 4, 8, 24, 32
    scores = torch.rand(cells, classes, generator=g) * 0.6
    kernels = torch.randn(cells, dim, generator=g)
    cell_strides = torch.tensor([8.0, 16.0, 32.0])[torch.arange(cells) // 20]
    feat = torch.randn(dim, hf, wf, generator=g)
    params = InferenceParams(score_thr=0.2, nms_pre=30, max_per_img=10)
    args = (scores, kernels, cell_strides, feat, params, (90, 120), (96, 128), (45, 60))
    monkeypatch.setattr(inference_module, "_PIXEL_RANGES", 1)
    whole = postprocess_image(*args)
    monkeypatch.setattr(inference_module, "_PIXEL_RANGES", 7)  # ranges that do not divide the 24 x 32 pixels
    chunked = postprocess_image(*args)
    assert len(whole.scores) == 10  # the case really reaches MAX_PER_IMG
    assert torch.equal(whole.masks, chunked.masks)
    assert torch.allclose(whole.scores, chunked.scores) and torch.equal(whole.classes, chunked.classes)
    assert torch.equal(whole.boxes, chunked.boxes)


def _loop_postprocess(scores, kernels, cell_strides, feat, p, input_size, padded, out_size):
    """DESIGN.md's inference steps read one candidate at a time (matrix NMS via the library's own tested function)."""
    from solov2.layers import matrix_nms

    hf, wf = feat.shape[-2:]
    cands = []
    for cell in range(scores.shape[0]):
        for cls in range(scores.shape[1]):
            s = float(scores[cell, cls])
            if s <= p.score_thr:
                continue
            soft = torch.sigmoid(torch.einsum("e,ehw->hw", kernels[cell], feat))
            binary = soft > p.mask_thr
            area = int(binary.sum())
            if area <= float(cell_strides[cell]):
                continue
            maskness = float(soft[binary].sum()) / area
            cands.append((s * maskness, cls, soft, binary, area))
    cands.sort(key=lambda c: -c[0])
    cands = cands[: p.nms_pre]
    new_scores = matrix_nms(torch.tensor([c[1] for c in cands]), torch.stack([c[3] for c in cands]),
                            torch.tensor([float(c[4]) for c in cands]), torch.tensor([c[0] for c in cands]),
                            kernel=p.nms_kernel, sigma=p.nms_sigma)
    kept = [(float(s), c) for s, c in zip(new_scores, cands) if float(s) >= p.update_thr]
    kept.sort(key=lambda x: -x[0])
    kept = kept[: p.max_per_img]
    masks = []
    for _, c in kept:
        up = torch.nn.functional.interpolate(c[2][None, None], scale_factor=padded[0] // hf, mode="bilinear")
        up = up[:, :, : input_size[0], : input_size[1]]
        masks.append(torch.nn.functional.interpolate(up, size=out_size, mode="bilinear")[0, 0] > p.mask_thr)
    return [s for s, _ in kept], [c[1] for _, c in kept], masks


@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
def test_postprocess_matches_loop_reading(kernel):
    from solov2.modeling.solov2 import InferenceParams, postprocess_image

    g = torch.Generator().manual_seed(1)
    cells, classes, dim, hf, wf = 40, 3, 6, 16, 24
    scores = torch.rand(cells, classes, generator=g) * 0.5
    kernels = torch.randn(cells, dim, generator=g) * 2
    cell_strides = torch.tensor([150.0, 200.0])[torch.arange(cells) // 20]
    feat = torch.randn(dim, hf, wf, generator=g)
    feat[:, :, :8] += 1.5  # masks of varied extent so that the stride filter drops some candidates
    # 87 candidates, 54 pass the stride filter, NMS_PRE keeps 25; gaussian ends at MAX_PER_IMG, linear at UPDATE_THR
    params = InferenceParams(score_thr=0.15, nms_pre=25, update_thr=0.2, max_per_img=12, nms_kernel=kernel)
    args = (scores, kernels, cell_strides, feat, params, (60, 90), (64, 96), (30, 45))
    got = postprocess_image(*args)
    want_scores, want_classes, want_masks = _loop_postprocess(*args)
    assert 3 <= len(want_scores) and len(got.scores) == len(want_scores)
    assert torch.allclose(got.scores, torch.tensor(want_scores), atol=1e-5)
    assert got.classes.tolist() == want_classes
    mismatch = (got.masks != torch.stack(want_masks)).sum()
    assert mismatch <= 2  # only pixels at exactly the threshold may round differently
    assert got.masks.shape == (len(want_scores), 30, 45)


def test_dcn_offsets_start_at_zero(small_cfg):
    """Deformable towers start as plain conv towers: every offset conv is zero after init."""
    cfg = small_cfg()
    cfg.MODEL.SOLOV2.USE_DCN_IN_INSTANCE = True
    cfg.MODEL.SOLOV2.USE_DCN_IN_MASK = True
    model = build_model(cfg)
    offsets = [p for n, p in model.named_parameters() if "conv_offset" in n]
    assert len(offsets) > 0
    assert all(torch.count_nonzero(p) == 0 for p in offsets)


def test_built_from_explicit_arguments_equals_built_from_config(small_cfg):
    """Detectron2's pattern: the same model from `SOLOv2(cfg)` and from `SOLOv2(**SOLOv2.from_config(cfg))`."""
    from solov2.modeling.meta_arch import SOLOv2

    cfg = small_cfg()
    torch.manual_seed(0)
    a = SOLOv2(cfg)
    torch.manual_seed(0)
    args = SOLOv2.from_config(cfg)
    b = SOLOv2(**args)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert b.infer_params.max_per_img == cfg.MODEL.SOLOV2.MAX_PER_IMG and b.mask_stride == 4


@pytest.mark.parametrize("key,value,match", [
    ("MODEL.SOLOV2.INSTANCE_IN_CHANNELS", 64, "INSTANCE_IN_CHANNELS is 64 but the backbone"),
    ("MODEL.SOLOV2.MASK_IN_CHANNELS", 16, "MASK_IN_CHANNELS is 16 but the backbone"),
    ("MODEL.SOLOV2.MASK_IN_FEATURES", ["p2", "p4"], "strides must double"),
    ("MODEL.SOLOV2.INSTANCE_IN_FEATURES", ["p2", "p3", "p4", "p5", "p7"], r"INSTANCE_IN_FEATURES.*\[.p7.\]"),
    ("MODEL.SOLOV2.FPN_INSTANCE_STRIDES", [8, 8, 16, 32], "one entry per level"),
    ("MODEL.SOLOV2.FPN_INSTANCE_STRIDES", [8, 8, 16, 32, 24], "power-of-two"),
])
def test_build_time_checks_name_the_key(key, value, match, small_cfg):
    cfg = small_cfg()
    node, leaf = cfg, key.split(".")
    for part in leaf[:-1]:
        node = node[part]
    node[leaf[-1]] = value
    with pytest.raises(ValueError, match=match):
        build_model(cfg)


def test_four_instance_levels_without_p6(small_cfg):
    """The instance path is not tied to 5 levels: [p2..p5] with strides 8, 8, 16, 32 trains and infers."""
    cfg = small_cfg()
    s = cfg.MODEL.SOLOV2
    s.INSTANCE_IN_FEATURES = ["p2", "p3", "p4", "p5"]
    s.FPN_INSTANCE_STRIDES = [8, 8, 16, 32]
    s.NUM_GRIDS = [12, 10, 8, 6]
    s.FPN_SCALE_RANGES = ((1, 32), (16, 64), (32, 128), (64, 512))
    model = build_model(cfg).train()
    img = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    losses = model([{"image": img, "instances": _instances(96, 128, [(10, 10, 60, 70)], [1])}])
    assert torch.isfinite(sum(losses.values()))
    model.eval()
    with torch.no_grad():
        out = model([{"image": img}])[0]["instances"]
    assert out.pred_masks.shape[1:] == (96, 128)


@pytest.mark.parametrize("d2,own", [(100, 100), (50, 100), (100, 30)])
def test_detections_per_image_is_max_per_img(d2, own, small_cfg):
    """The model's cap is MODEL.SOLOV2.MAX_PER_IMG alone; TEST.DETECTIONS_PER_IMAGE is the COCO evaluation's maxDets."""
    cfg = small_cfg()
    cfg.TEST.DETECTIONS_PER_IMAGE = d2
    cfg.MODEL.SOLOV2.MAX_PER_IMG = own
    assert build_model(cfg).infer_params.max_per_img == own


def test_config_kwargs_are_overridden_by_explicit_ones(small_cfg):
    """Detectron2's `configurable`: `SOLOv2(cfg, sigma=0.3)` is the config's model with one argument replaced."""
    from solov2.modeling.meta_arch import SOLOv2
    from solov2.modeling.solov2 import LossParams

    cfg = small_cfg()
    model = SOLOv2(cfg, sigma=0.3, score_thr=0.25, pixel_std=[2.0, 2.0, 2.0])
    assert model.target_params.sigma == 0.3 and model.infer_params.score_thr == 0.25
    assert model.target_params.num_grids == tuple(cfg.MODEL.SOLOV2.NUM_GRIDS)
    assert model.pixel_std.flatten().tolist() == [2.0, 2.0, 2.0]
    assert SOLOv2(cfg=cfg, losses=LossParams(dice_weight=1.0)).loss_params.dice_weight == 1.0
    with pytest.raises(TypeError, match="no_such_argument"):
        SOLOv2(cfg, no_such_argument=1)


def test_argument_checks_name_the_argument_and_from_a_config_the_key(small_cfg):
    """A module checks its own arguments once; built from a config, the same check names the config key."""
    from solov2.modeling.meta_arch import SOLOv2
    from solov2.modeling.solov2 import InferenceParams
    from solov2.utils.errors import ArgumentError, ConfigError

    with pytest.raises(ArgumentError, match="^nms_kernel must be"):
        InferenceParams(nms_kernel="box")
    args = SOLOv2.from_config(small_cfg())
    args["instance_strides"] = [8, 8]
    with pytest.raises(ArgumentError, match="^instance_strides needs one entry per level"):
        SOLOv2(**args)
    with pytest.raises(ConfigError, match=r"^MODEL\.SOLOV2\.NMS_KERNEL must be"):
        SOLOv2(small_cfg(), nms_kernel="box")
