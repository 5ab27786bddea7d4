"""SOLOv2 post-processing: category/kernel grids + mask features -> final masks, scores, classes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

import torch
from torch.nn import functional as F

from ...layers import mask_nms, masks_to_boxes, matrix_nms, point_nms
from ...structures import Boxes, Instances


@dataclass
class InferenceParams:
    """Thresholds and limits of SOLOv2 inference (MODEL.SOLOV2.*)."""

    strides: List[int]
    score_thr: float = 0.1
    mask_thr: float = 0.5
    nms_pre: int = 500
    update_thr: float = 0.05
    max_per_img: int = 100
    nms_type: str = "matrix"
    nms_kernel: str = "gaussian"
    nms_sigma: float = 2.0


def flatten_image_preds(
    cate_preds: List[torch.Tensor], kernel_preds: List[torch.Tensor], img: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image `img`'s point-NMS'd scores (cells x C), kernels (cells x E) and level index per cell."""
    scores = torch.cat([point_nms(p[img : img + 1].sigmoid())[0].permute(1, 2, 0).reshape(-1, p.shape[1])
                        for p in cate_preds])
    kernels = torch.cat([k[img].permute(1, 2, 0).reshape(-1, k.shape[1]) for k in kernel_preds])
    level = torch.cat([torch.full((p.shape[2] * p.shape[3],), i, dtype=torch.int64, device=p.device)
                       for i, p in enumerate(cate_preds)])
    return scores, kernels, level


def postprocess_image(
    scores: torch.Tensor,
    kernels: torch.Tensor,
    levels: torch.Tensor,
    mask_feat: torch.Tensor,
    params: InferenceParams,
    input_size: Tuple[int, int],
    padded_size: Tuple[int, int],
    output_size: Tuple[int, int],
) -> Instances:
    """One image: candidates -> dynamic masks -> maskness -> NMS -> masks resized to `output_size`.

    scores: cells x C point-NMS'd probabilities; kernels: cells x E; mask_feat: E x Hf x Wf;
    input_size: the resized image (h, w) before padding; padded_size: the batch tensor's (H, W).
    """
    device = scores.device
    empty = _empty_instances(output_size, device)
    cand = scores > params.score_thr
    cand_scores = scores[cand]
    if cand_scores.numel() == 0:
        return empty
    inds = torch.nonzero(cand, as_tuple=False)
    labels = inds[:, 1]
    kern = kernels[inds[:, 0]]
    strides = torch.tensor(params.strides, device=device, dtype=torch.float32)[levels[inds[:, 0]]]

    hf, wf = mask_feat.shape[-2:]
    soft = (kern @ mask_feat.flatten(1)).view(-1, hf, wf).sigmoid()  # dynamic 1x1 conv for all candidates
    binary = soft > params.mask_thr
    areas = binary.flatten(1).sum(dim=1).float()
    keep = areas > strides
    if not bool(keep.any()):
        return empty
    soft, binary, areas, cand_scores, labels = soft[keep], binary[keep], areas[keep], cand_scores[keep], labels[keep]

    maskness = (soft * binary.float()).flatten(1).sum(dim=1) / areas
    cand_scores = cand_scores * maskness

    order = torch.argsort(cand_scores, descending=True)
    if order.numel() > params.nms_pre:
        order = order[: params.nms_pre]
    soft, binary, areas, cand_scores, labels = soft[order], binary[order], areas[order], cand_scores[order], labels[order]

    if params.nms_type == "matrix":
        cand_scores = matrix_nms(labels, binary, areas, cand_scores, kernel=params.nms_kernel, sigma=params.nms_sigma)
        keep = cand_scores >= params.update_thr
    elif params.nms_type == "mask":
        keep = mask_nms(labels, binary, areas, cand_scores, iou_threshold=params.mask_thr)
    else:
        raise ValueError(f"MODEL.SOLOV2.NMS_TYPE must be 'matrix' or 'mask', got '{params.nms_type}'")
    if not bool(keep.any()):
        return empty
    soft, cand_scores, labels = soft[keep], cand_scores[keep], labels[keep]

    order = torch.argsort(cand_scores, descending=True)
    if order.numel() > params.max_per_img:
        order = order[: params.max_per_img]
    soft, cand_scores, labels = soft[order], cand_scores[order], labels[order]

    # The reference writes ceil(input_h / feature_h); that is the same 4 for any single image taller than 96 px,
    # but in a batch of mixed sizes a small image's input_h would give a wrong scale, so use the padded height
    # the features were computed from.
    ratio = math.ceil(padded_size[0] / hf)
    up = F.interpolate(soft[None], size=(hf * ratio, wf * ratio), mode="bilinear", align_corners=False)
    up = up[:, :, : input_size[0], : input_size[1]]
    final = F.interpolate(up, size=output_size, mode="bilinear", align_corners=False)[0] > params.mask_thr

    result = Instances(output_size)
    result.pred_masks = final
    result.pred_boxes = Boxes(masks_to_boxes(final))
    result.scores = cand_scores
    result.pred_classes = labels
    return result


def _empty_instances(size: Tuple[int, int], device: torch.device) -> Instances:
    r = Instances(size)
    r.pred_masks = torch.zeros((0, size[0], size[1]), dtype=torch.bool, device=device)
    r.pred_boxes = Boxes(torch.zeros((0, 4), device=device))
    r.scores = torch.zeros((0,), device=device)
    r.pred_classes = torch.zeros((0,), dtype=torch.int64, device=device)
    return r
