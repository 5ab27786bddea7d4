"""Test helpers that run mmdetection's own SOLOv2 (mmdet 3.x, mmengine, mmcv-lite) for parity checks.

mmcv-lite ships without its compiled-op module `mmcv._ext`, which mmdetection's model package imports for ops
SOLOv2 never calls (RoIAlign, NMS, ...). `import_mmdet_models()` puts a stand-in module there whose functions
raise when called, so a test that reaches one fails loudly instead of computing something else.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any, Dict, List, Optional

import numpy as np
import pytest
import torch

MMDET_CONFIGS = {
    # our config name -> the mmdetection 3.x config of the same published family
    "R50_3x": "solov2_r50_fpn_ms-3x_coco.py",
    "R101_3x": "solov2_r101_fpn_ms-3x_coco.py",
    "R101_DCN_3x": "solov2_r101-dcn_fpn_ms-3x_coco.py",
    "X101_DCN_3x": "solov2_x101-dcn_fpn_ms-3x_coco.py",
    "Light_448_R18_3x": "solov2-light_r18_fpn_ms-3x_coco.py",
    "Light_448_R34_3x": "solov2-light_r34_fpn_ms-3x_coco.py",
    "Light_448_R50_3x": "solov2-light_r50_fpn_ms-3x_coco.py",
    "Light_512_DCN_R50_3x": "solov2-light_r50-dcn_fpn_ms-3x_coco.py",
}


class _MissingCompiledOps(types.ModuleType):
    """Stands in for mmcv._ext: every attribute is a function that refuses to run."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def _refuse(*args: Any, **kwargs: Any) -> None:
            raise NotImplementedError(f"mmcv._ext.{name} is a compiled op that mmcv-lite does not ship")

        return _refuse


def require_mmdet() -> None:
    """Skip the calling test when mmdetection, mmengine or mmcv are not installed."""
    for name in ("mmdet", "mmengine", "mmcv"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (pip install mmdet==3.3.0 mmengine==0.10.7 mmcv-lite==2.1.0)")


def import_mmdet_models() -> Any:
    """Import mmdet.models (with the mmcv._ext stand-in when the compiled ops are absent) and register its modules."""
    require_mmdet()
    if "mmcv._ext" not in sys.modules and importlib.util.find_spec("mmcv._ext") is None:
        sys.modules["mmcv._ext"] = _MissingCompiledOps("mmcv._ext")
    import mmdet.models  # noqa: F401
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    return mmdet.models


def mmdet_config(name: str, **test_cfg: Any) -> Any:
    """mmdetection's own config file of the family `name` (ours), with test_cfg entries overridden."""
    require_mmdet()
    import os

    import mmdet
    from mmengine.config import Config

    path = os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", "solov2", MMDET_CONFIGS[name])
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None  # no pretrained download
    cfg.model.test_cfg.update(test_cfg)
    return cfg


def build_mmdet_solov2(name: str, seed: int = 0, cls_bias: float = -4.0, **test_cfg: Any) -> torch.nn.Module:
    """mmdetection's SOLOv2 of family `name` with random weights (also random BN statistics), in eval mode.

    `cls_bias` sets the category conv's bias: random weights otherwise give scores near 0.5 everywhere and
    mmdetection then computes a mask for every grid cell and class (tens of GB at 800 px).
    """
    import_mmdet_models()
    from mmdet.registry import MODELS

    cfg = mmdet_config(name, **test_cfg)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if not t.dtype.is_floating_point:
                continue
            if key.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            elif key.endswith(("running_mean", ".bias")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif key.endswith("conv_offset.weight"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.01)
            elif t.dim() == 1:  # norm scales
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            else:  # conv weights: He-like scale keeps activations of a deep random net finite
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)
        model.mask_head.conv_cls.bias.fill_(cls_bias)
    return model.eval()


def save_mmdet_checkpoint(model: torch.nn.Module, path: str) -> Dict[str, torch.Tensor]:
    """Write `model` as mmdetection 3.x writes checkpoints ({"meta", "state_dict"}); returns the state dict."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({"meta": {"mmdet_version": "3.3.0", "CLASSES": None}, "state_dict": state}, path)
    return state


def mmdet_predict(model: torch.nn.Module, bgr: np.ndarray, size: tuple) -> Dict[str, np.ndarray]:
    """mmdetection's inference on one BGR image resized keeping its ratio to fit `size` (short, long side).

    Returns {"scores", "labels", "masks" (bool N x H x W at the original size)}.
    """
    import mmcv
    from mmdet.structures import DetDataSample

    h, w = bgr.shape[:2]
    resized, scale = mmcv.imrescale(bgr, (size[1], size[0]), return_scale=True, backend="cv2")
    data = {"inputs": [torch.from_numpy(resized).permute(2, 0, 1).contiguous()],
            "data_samples": [DetDataSample(metainfo={
                "img_shape": resized.shape[:2], "ori_shape": (h, w), "scale_factor": (scale, scale),
                "pad_shape": resized.shape[:2]})]}
    with torch.no_grad():
        out = model.test_step(data)[0].pred_instances
    return {"scores": out.scores.numpy(), "labels": out.labels.numpy(), "masks": out.masks.numpy().astype(bool)}


def match_instances(ours: Dict[str, np.ndarray], theirs: Dict[str, np.ndarray], score_tol: float = 1e-3,
                    min_iou: float = 0.99, loose_below: float = 0.0) -> Dict[str, float]:
    """Match every instance of `theirs` to one of `ours` with the same class, a score within `score_tol` and the
    best mask IoU (order free among near-tied scores), and leave none of ours unmatched.

    Instances scoring below `loose_below` may go unmatched on either side: at a cut (the last kept score when
    MAX_PER_IMG instances are kept, or the final score threshold) rounding may move a near-tied one across.
    Returns {"count", "unmatched", "max_score_diff", "min_iou"}.
    """
    free: List[int] = list(range(len(ours["scores"])))
    max_diff, worst_iou, unmatched = 0.0, 1.0, 0
    for i in range(len(theirs["scores"])):
        best: Optional[tuple] = None
        for j in free:
            if ours["labels"][j] != theirs["labels"][i]:
                continue
            diff = abs(float(ours["scores"][j]) - float(theirs["scores"][i]))
            if diff > score_tol:
                continue
            a, b = ours["masks"][j], theirs["masks"][i]
            union = np.logical_or(a, b).sum()
            iou = 1.0 if union == 0 else float(np.logical_and(a, b).sum()) / float(union)
            if best is None or iou > best[1]:
                best = (j, iou, diff)
        if best is None and theirs["scores"][i] < loose_below:
            unmatched += 1
            continue
        assert best is not None, f"instance {i} (class {theirs['labels'][i]}, score {theirs['scores'][i]:.5f}) unmatched"
        j, iou, diff = best
        assert iou >= min_iou, f"instance {i}: best mask IoU {iou:.4f} < {min_iou}"
        free.remove(j)
        max_diff, worst_iou = max(max_diff, diff), min(worst_iou, iou)
    left = [float(ours["scores"][j]) for j in free]
    assert all(s < loose_below for s in left), f"{len(left)} of our instances unmatched, scores {left[:5]}"
    unmatched += len(left)
    return {"count": len(theirs["scores"]), "unmatched": unmatched, "max_score_diff": max_diff, "min_iou": worst_iou}
