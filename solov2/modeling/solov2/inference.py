"""SOLOv2 post-processing: category/kernel grids + mask features -> final masks, scores, classes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch.nn import functional as F

from ...layers import mask_nms, masks_to_boxes, matrix_nms, point_nms


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


class ImageDetections(NamedTuple):
    """One image's final detections, as plain tensors (wrapped into Instances by the meta-architecture)."""

    masks: torch.Tensor  # K x H x W bool, at the output size
    boxes: torch.Tensor  # K x 4 XYXY float, tight boxes of the masks (zeros for an empty mask)
    scores: torch.Tensor  # K float, descending
    classes: torch.Tensor  # K int64


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
) -> ImageDetections:
    """One image: candidates -> dynamic masks -> maskness -> NMS -> masks resized to `output_size`.

    scores: cells x C point-NMS'd probabilities; kernels: cells x E; mask_feat: E x Hf x Wf;
    input_size: the resized image (h, w) before padding; padded_size: the batch tensor's (H, W).
    """
    device = scores.device
    empty = _empty_detections(output_size, device)
    cand = scores > params.score_thr
    cand_scores = scores[cand]
    if cand_scores.numel() == 0:
        return empty
    inds = torch.nonzero(cand, as_tuple=False)
    labels = inds[:, 1]
    strides = torch.tensor(params.strides, device=device, dtype=torch.float32)[levels[inds[:, 0]]]

    # Candidates of one cell share its kernel, hence its mask: compute each cell's mask once.
    cells, cand_cell = torch.unique(inds[:, 0], return_inverse=True)
    hf, wf = mask_feat.shape[-2:]
    flat_feat = mask_feat.flatten(1)
    cell_soft, cell_areas, cell_sums = _dynamic_mask_stats(kernels[cells], flat_feat, params.mask_thr)
    areas, soft_sums = cell_areas[cand_cell], cell_sums[cand_cell]
    keep = areas > strides
    if not bool(keep.any()):
        return empty
    cand_cell, areas, soft_sums, cand_scores, labels = (
        cand_cell[keep], areas[keep], soft_sums[keep], cand_scores[keep], labels[keep])

    maskness = soft_sums / areas
    cand_scores = cand_scores * maskness

    order = torch.argsort(cand_scores, descending=True)
    if order.numel() > params.nms_pre:
        order = order[: params.nms_pre]
    cand_cell, cand_scores, labels = cand_cell[order], cand_scores[order], labels[order]
    if cell_soft is not None:
        soft = cell_soft[cand_cell]
    else:
        # Too many cells to keep all their masks: recompute the (at most NMS_PRE) survivors'.
        soft = (kernels[cells[cand_cell]] @ flat_feat).sigmoid()
    soft = soft.view(-1, hf, wf)
    binary = soft > params.mask_thr
    areas = binary.flatten(1).sum(dim=1).float()

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

    return ImageDetections(final, masks_to_boxes(final), cand_scores, labels)


# Soft masks of at most this many mask-feature pixels are held at once (256 MB of float32).
_MAX_MASK_ELEMENTS = 1 << 26


def _dynamic_mask_stats(
    kernels: torch.Tensor, flat_feat: torch.Tensor, mask_thr: float
) -> Tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Dynamic 1x1 conv of every kernel (K x E) over E x P features: (soft masks or None, binary areas, soft sums).

    The masks are computed in chunks as one matmul each; they are returned (K x P) only when they fit in one chunk,
    so an untrained or low-threshold model with thousands of candidates cannot exhaust memory.
    """
    chunk = max(1, _MAX_MASK_ELEMENTS // max(1, flat_feat.shape[1]))
    areas, sums, soft = [], [], None
    for start in range(0, kernels.shape[0], chunk):
        soft = (kernels[start : start + chunk] @ flat_feat).sigmoid()
        binary = soft > mask_thr
        areas.append(binary.sum(dim=1).float())
        sums.append((soft * binary).sum(dim=1))
    return (soft if kernels.shape[0] <= chunk else None), torch.cat(areas), torch.cat(sums)


def _empty_detections(size: Tuple[int, int], device: torch.device) -> ImageDetections:
    return ImageDetections(
        torch.zeros((0, size[0], size[1]), dtype=torch.bool, device=device),
        torch.zeros((0, 4), device=device),
        torch.zeros((0,), device=device),
        torch.zeros((0,), dtype=torch.int64, device=device),
    )
