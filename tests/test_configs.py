"""Every shipped config builds and runs one forward pass on CPU."""

from pathlib import Path

import pytest
import torch

from solov2.config import get_cfg
from solov2.modeling import build_model

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if not p.name.startswith("Base-"))


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO / "configs")) for p in CONFIGS])
def test_config_builds_and_runs(path):
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    size = 64 if cfg.MODEL.RESNETS.DEPTH >= 101 else 96
    with torch.no_grad():
        out = model([{"image": torch.randint(0, 255, (3, size, size + 32), dtype=torch.uint8)}])
    inst = out[0]["instances"]
    assert inst.pred_masks.shape[1:] == (size, size + 32)
    assert cfg.MODEL.SOLOV2.NUM_CLASSES == model.ins_head.cate_pred.out_channels
