"""Every shipped config builds and runs one forward pass on CPU, and the model-zoo configs carry the published
hyper-parameters of their SOLOv2 variant."""

from collections import Counter
from pathlib import Path

import pytest
import torch

from solov2.config import get_cfg
from solov2.modeling import build_model

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if not p.name.startswith("Base-"))

MS_TRAIN = (640, 672, 704, 736, 768, 800)
LIGHT_TRAIN = (352, 384, 416, 448, 480, 512)
SCHED_1X = {"SOLVER.STEPS": (60000, 80000), "SOLVER.MAX_ITER": 90000}
SCHED_3X = {"SOLVER.STEPS": (210000, 250000), "SOLVER.MAX_ITER": 270000}
FULL_HEAD = {"MODEL.SOLOV2.NUM_INSTANCE_CONVS": 4, "MODEL.SOLOV2.INSTANCE_CHANNELS": 512,
             "MODEL.SOLOV2.NUM_KERNELS": 256, "MODEL.SOLOV2.NUM_MASKS": 256,
             "MODEL.SOLOV2.FPN_SCALE_RANGES": ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048)),
             "INPUT.MIN_SIZE_TEST": 800, "INPUT.MAX_SIZE_TEST": 1333}
LIGHT_HEAD = {"MODEL.SOLOV2.INSTANCE_CHANNELS": 256, "MODEL.SOLOV2.NUM_KERNELS": 128, "MODEL.SOLOV2.NUM_MASKS": 128,
              "INPUT.MIN_SIZE_TRAIN": LIGHT_TRAIN}
LIGHT_448 = {**LIGHT_HEAD, "MODEL.SOLOV2.NUM_INSTANCE_CONVS": 2,
             "MODEL.SOLOV2.FPN_SCALE_RANGES": ((1, 56), (28, 112), (56, 224), (112, 448), (224, 896)),
             "INPUT.MIN_SIZE_TEST": 448, "INPUT.MAX_SIZE_TEST": 768, "MODEL.SOLOV2.USE_DCN_IN_INSTANCE": False}
DCN_V2 = {"MODEL.RESNETS.DEFORM_ON_PER_STAGE": [False, True, True, True], "MODEL.RESNETS.DEFORM_MODULATED": True,
          "MODEL.SOLOV2.USE_DCN_IN_INSTANCE": True, "MODEL.SOLOV2.TYPE_DCN": "DCNv2"}

# The original SOLOv2 release's settings per variant (see the README model zoo).
PUBLISHED = {
    "R50_1x": {**FULL_HEAD, **SCHED_1X, "MODEL.RESNETS.DEPTH": 50, "INPUT.MIN_SIZE_TRAIN": (800,)},
    "R50_3x": {**FULL_HEAD, **SCHED_3X, "MODEL.RESNETS.DEPTH": 50, "INPUT.MIN_SIZE_TRAIN": MS_TRAIN},
    "R101_3x": {**FULL_HEAD, **SCHED_3X, "MODEL.RESNETS.DEPTH": 101, "INPUT.MIN_SIZE_TRAIN": MS_TRAIN},
    "R101_DCN_3x": {**FULL_HEAD, **SCHED_3X, **DCN_V2, "MODEL.RESNETS.DEPTH": 101, "INPUT.MIN_SIZE_TRAIN": MS_TRAIN},
    "X101_DCN_3x": {**FULL_HEAD, **SCHED_3X, **DCN_V2, "MODEL.RESNETS.DEPTH": 101, "INPUT.MIN_SIZE_TRAIN": MS_TRAIN,
                    "MODEL.RESNETS.NUM_GROUPS": 64, "MODEL.RESNETS.WIDTH_PER_GROUP": 4,
                    "MODEL.RESNETS.STRIDE_IN_1X1": False},
    "Light_448_R18_3x": {**LIGHT_448, **SCHED_3X, "MODEL.RESNETS.DEPTH": 18, "MODEL.RESNETS.RES2_OUT_CHANNELS": 64},
    "Light_448_R34_3x": {**LIGHT_448, **SCHED_3X, "MODEL.RESNETS.DEPTH": 34, "MODEL.RESNETS.RES2_OUT_CHANNELS": 64},
    "Light_448_R50_3x": {**LIGHT_448, **SCHED_3X, "MODEL.RESNETS.DEPTH": 50, "MODEL.RESNETS.RES2_OUT_CHANNELS": 256},
    "Light_512_DCN_R50_3x": {
        **LIGHT_HEAD, **SCHED_3X, "MODEL.RESNETS.DEPTH": 50, "MODEL.SOLOV2.NUM_INSTANCE_CONVS": 3,
        "MODEL.RESNETS.DEFORM_ON_PER_STAGE": [False, True, True, True], "MODEL.SOLOV2.USE_DCN_IN_INSTANCE": True,
        "MODEL.SOLOV2.FPN_SCALE_RANGES": ((1, 64), (32, 128), (64, 256), (128, 512), (256, 2048)),
        "INPUT.MIN_SIZE_TEST": 512, "INPUT.MAX_SIZE_TEST": 852},
}
# Deformable convs (kind, count per part of the built model): one per res3-res5 block, every conv of the two
# towers, and for DCNv2 the mask branch's 3x3 convs (1 + 1 + 2 + 3); the mmdetection/SOLO forms also the mask
# branch's last 1x1 conv (R101/X101-DCN) or only the last conv of each tower (light DCN).
DEFORMABLE = {
    "SOLOv2/R101_DCN_3x": ("ModulatedDeformConv", {"bottom_up": 4 + 23 + 3, "ins_head": 2 * 4, "mask_head": 7}),
    "SOLOv2/X101_DCN_3x": ("ModulatedDeformConv", {"bottom_up": 4 + 23 + 3, "ins_head": 2 * 4, "mask_head": 7}),
    "SOLOv2/Light_512_DCN_R50_3x": ("DeformConv", {"bottom_up": 4 + 6 + 3, "ins_head": 2 * 3}),
    "SOLOv2/mmdet/R101_DCN_3x": ("ModulatedDeformConv", {"bottom_up": 4 + 23 + 3, "ins_head": 2 * 4, "mask_head": 8}),
    "SOLOv2/mmdet/X101_DCN_3x": ("ModulatedDeformConv", {"bottom_up": 4 + 23 + 3, "ins_head": 2 * 4, "mask_head": 8}),
    "SOLOv2/mmdet/Light_512_DCN_R50_3x": ("DeformConv", {"bottom_up": 4 + 6 + 3, "ins_head": 2}),
}
# The mmdetection 3.x / original SOLO forms (configs/SOLOv2/mmdet/): the family's settings, plus what their weights
# need (stride in the 3x3 conv, RGB input normalised by the ImageNet statistics) and their DCN layout.
MMDET_INPUT = {"MODEL.RESNETS.STRIDE_IN_1X1": False, "INPUT.FORMAT": "RGB",
               "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53], "MODEL.PIXEL_STD": [58.395, 57.12, 57.375]}
MMDET = {name: {**PUBLISHED[name], **MMDET_INPUT} for name in PUBLISHED if name != "R50_1x"}
MMDET["R101_DCN_3x"]["MODEL.SOLOV2.USE_DCN_IN_MASK_PRED"] = True
MMDET["X101_DCN_3x"]["MODEL.SOLOV2.USE_DCN_IN_MASK_PRED"] = True
MMDET["Light_512_DCN_R50_3x"]["MODEL.SOLOV2.DCN_LAST_INSTANCE_CONV_ONLY"] = True
for _name in ("R101_DCN_3x", "X101_DCN_3x", "Light_512_DCN_R50_3x"):
    PUBLISHED[_name].setdefault("MODEL.SOLOV2.USE_DCN_IN_MASK_PRED", False)
    PUBLISHED[_name]["MODEL.SOLOV2.DCN_LAST_INSTANCE_CONV_ONLY"] = False
EXPECTED = {**{f"SOLOv2/{k}": v for k, v in PUBLISHED.items()}, **{f"SOLOv2/mmdet/{k}": v for k, v in MMDET.items()}}


def _load(path: Path):
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    return cfg


def _value(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def test_every_published_variant_has_a_config():
    rel = {p.relative_to(REPO / "configs").with_suffix("").as_posix() for p in CONFIGS}
    assert set(EXPECTED) <= rel


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_published_hyper_parameters(name):
    cfg = _load(REPO / "configs" / f"{name}.yaml")
    for key, expected in EXPECTED[name].items():
        value = _value(cfg, key)
        value = [float(v) for v in value] if key.startswith("MODEL.PIXEL") else value
        value = list(value) if isinstance(expected, list) else value
        if isinstance(expected, tuple):
            value = tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in value)
        assert value == expected, f"{name}: {key} is {value}, published {expected}"
    # Torchvision-style (stride in the 3x3 conv) weights expect RGB input normalised by the torchvision statistics.
    if not cfg.MODEL.RESNETS.STRIDE_IN_1X1:
        assert cfg.INPUT.FORMAT == "RGB" and list(cfg.MODEL.PIXEL_STD) == [58.395, 57.120, 57.375]


# Deformable convolutions run 3-5x slower on CPU than plain ones: those configs take 15-40 s each here.
@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if "DCN" in p.name else p for p in CONFIGS],
                         ids=[str(p.relative_to(REPO / "configs")) for p in CONFIGS])
def test_config_builds_and_runs(path):
    cfg = _load(path)
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    # The instance head's cost is set by its grids (40x40 ... 12x12), not the image: small inputs are enough.
    size = 64 if cfg.MODEL.RESNETS.DEPTH >= 101 else 96
    with torch.no_grad():
        out = model([{"image": torch.randint(0, 255, (3, size, size + 32), dtype=torch.uint8), "height": size + 4,
                      "width": size + 40}])
    inst = out[0]["instances"]
    assert inst.image_size == (size + 4, size + 40)
    assert inst.pred_masks.shape[1:] == (size + 4, size + 40) and inst.pred_masks.dtype == torch.bool
    assert len(inst.scores) == len(inst.pred_classes) == len(inst.pred_boxes) == len(inst)
    assert model.ins_head.cate_pred.out_channels == cfg.MODEL.SOLOV2.NUM_CLASSES
    kinds = Counter()
    parts = Counter()
    for name, m in model.named_modules():
        if type(m).__name__ in ("DeformConv", "ModulatedDeformConv"):
            kinds[type(m).__name__] += 1
            parts[name.split(".")[1] if name.startswith("backbone") else name.split(".")[0]] += 1
    kind, expected = DEFORMABLE.get(path.relative_to(REPO / "configs").with_suffix("").as_posix(), (None, {}))
    assert dict(parts) == expected
    assert set(kinds) == ({kind} if kind else set())
