"""ResNet/FPN backbones: output names, strides, channels, and the published parameter names."""

import pytest
import torch

from solov2.config import get_cfg
from solov2.modeling import build_backbone


def _fpn_cfg(depth=50, **resnets):
    cfg = get_cfg()
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.RESNETS.DEPTH = depth
    for k, v in resnets.items():
        setattr(cfg.MODEL.RESNETS, k, v)
    return cfg


@pytest.mark.parametrize(
    "depth,extra",
    [
        (18, {"RES2_OUT_CHANNELS": 64}),
        (50, {}),
        (101, {}),
        (101, {"NUM_GROUPS": 32, "WIDTH_PER_GROUP": 8, "STRIDE_IN_1X1": False}),
        (50, {"DEFORM_ON_PER_STAGE": [False, True, True, True], "DEFORM_MODULATED": True}),
        (50, {"DEFORM_ON_PER_STAGE": [False, False, True, True], "DEFORM_MODULATED": False}),
    ],
    ids=["R18", "R50", "R101", "X101-32x8d", "R50-DCNv2", "R50-DCNv1"],
)
def test_fpn_outputs(depth, extra):
    torch.manual_seed(0)
    bb = build_backbone(_fpn_cfg(depth, **extra)).eval()
    shapes = bb.output_shape()
    assert list(shapes) == ["p2", "p3", "p4", "p5", "p6"]
    assert [s.stride for s in shapes.values()] == [4, 8, 16, 32, 64]
    assert all(s.channels == 256 for s in shapes.values())
    assert bb.size_divisibility == 32
    with torch.no_grad():
        out = bb(torch.randn(1, 3, 64, 96))
    for name, t in out.items():
        assert t.shape[1] == 256
        st = shapes[name].stride
        assert t.shape[-2:] == (-(-64 // st), -(-96 // st)), name
        assert torch.isfinite(t).all()
    if extra.get("DEFORM_ON_PER_STAGE"):
        names = [n for n, _ in bb.named_parameters()]
        for stage, deform in zip(["res2", "res3", "res4", "res5"], extra["DEFORM_ON_PER_STAGE"]):
            assert any(f"{stage}.0.conv2_offset" in n for n in names) == deform, stage


def test_bottom_up_channels_and_freeze():
    bb = build_backbone(_fpn_cfg(50))
    bu = bb.bottom_up.output_shape()
    assert [bu[f].channels for f in ["res2", "res3", "res4", "res5"]] == [256, 512, 1024, 2048]
    # FREEZE_AT 2: stem and res2 frozen, res3 trainable
    assert not any(p.requires_grad for p in bb.bottom_up.stem.parameters())
    assert not any(p.requires_grad for p in bb.bottom_up.res2.parameters())
    assert all(p.requires_grad for p in bb.bottom_up.res3.parameters())


def test_narrow_resnet18_and_bad_config():
    cfg = _fpn_cfg(18, STEM_OUT_CHANNELS=16, RES2_OUT_CHANNELS=16)
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    out = build_backbone(cfg)(torch.randn(2, 3, 64, 64))
    assert out["p2"].shape == (2, 32, 16, 16)
    with pytest.raises(ValueError, match="RES2_OUT_CHANNELS"):
        build_backbone(_fpn_cfg(18, RES2_OUT_CHANNELS=256))
    with pytest.raises(ValueError, match="DEPTH"):
        build_backbone(_fpn_cfg(77))


def test_r50_fpn_names_match_reference(reference_state_dict_shapes):
    bb = build_backbone(_fpn_cfg(50))
    ours = {"backbone." + k: tuple(v.shape) for k, v in bb.state_dict().items()}
    ref = {k: v for k, v in reference_state_dict_shapes.items() if k.startswith("backbone.")}
    assert set(ours) == set(ref)
    assert all(ours[k] == ref[k] for k in ref)


def _narrow_r50(**resnets):
    """A bottleneck ResNet-50 with few channels so building and running it is quick."""
    base = {"STEM_OUT_CHANNELS": 16, "RES2_OUT_CHANNELS": 32, "WIDTH_PER_GROUP": 8}
    base.update(resnets)
    return _fpn_cfg(50, **base)


def test_deform_interval_and_modulated_offsets():
    cfg = _narrow_r50(DEFORM_ON_PER_STAGE=[False, True, False, True], DEFORM_MODULATED=True, DEFORM_INTERVAL=2)
    bb = build_backbone(cfg)
    bu = bb.bottom_up
    # res3 has 4 blocks: with interval 2 blocks 0 and 2 are deformable; res4 has none.
    assert [hasattr(b, "conv2_offset") for b in bu.res3] == [True, False, True, False]
    assert not any(hasattr(b, "conv2_offset") for b in bu.res4)
    off = bu.res3[0].conv2_offset
    assert off.weight.shape == (27, 16, 3, 3)  # 18 offsets + 9 modulation masks, bottleneck width 16 in res3
    assert torch.count_nonzero(off.weight) == 0 and torch.count_nonzero(off.bias) == 0
    out = bb(torch.randn(1, 3, 64, 64))
    assert out["p3"].shape == (1, 256, 8, 8)


def test_freeze_levels_convert_batchnorm():
    from solov2.layers import FrozenBatchNorm2d

    cfg = _narrow_r50(NORM="BN")
    cfg.MODEL.BACKBONE.FREEZE_AT = 3
    bu = build_backbone(cfg).bottom_up
    assert isinstance(bu.stem.conv1.norm, FrozenBatchNorm2d)
    assert isinstance(bu.res3[0].conv1.norm, FrozenBatchNorm2d) and not bu.res3[0].conv1.weight.requires_grad
    assert isinstance(bu.res4[0].conv1.norm, torch.nn.BatchNorm2d) and bu.res4[0].conv1.weight.requires_grad
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    bu = build_backbone(cfg).bottom_up
    assert all(p.requires_grad for p in bu.parameters())
    assert isinstance(bu.stem.conv1.norm, torch.nn.BatchNorm2d)


def test_stride_in_1x1_dilation_and_plain_resnet():
    cfg = _narrow_r50(STRIDE_IN_1X1=True)
    bu = build_backbone(cfg).bottom_up
    assert bu.res3[0].conv1.stride == (2, 2) and bu.res3[0].conv2.stride == (1, 1)
    cfg = _narrow_r50(STRIDE_IN_1X1=False)
    bu = build_backbone(cfg).bottom_up
    assert bu.res3[0].conv1.stride == (1, 1) and bu.res3[0].conv2.stride == (2, 2)
    # A plain ResNet with a dilated res5 keeps stride 16; the FPN refuses it with the key named.
    cfg = _narrow_r50(RES5_DILATION=2)
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    plain = build_backbone(cfg)
    assert plain.output_shape()["res5"].stride == 16
    out = plain(torch.randn(1, 3, 64, 64))
    assert list(out) == ["res2", "res3", "res4", "res5"] and out["res5"].shape == (1, 256, 4, 4)
    assert plain.res5[0].conv2.dilation == (2, 2)
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    with pytest.raises(ValueError, match="RES5_DILATION"):
        build_backbone(cfg)
