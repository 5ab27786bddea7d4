"""Non-maximum suppression for masks: point NMS on category maps, Matrix NMS and greedy mask NMS."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def point_nms(heat: torch.Tensor, kernel: int = 2) -> torch.Tensor:
    """Keep a cell's score only where it equals the local max (kernel x kernel max-pool, stride 1).

    `heat` is N x C x H x W; the pooled map is padded by 1 and cropped to its top-left H x W.
    """
    hmax = F.max_pool2d(heat, (kernel, kernel), stride=1, padding=1)
    keep = (hmax[:, :, : heat.shape[2], : heat.shape[3]] == heat).to(heat.dtype)
    return heat * keep


def _mask_iou_same_class(labels: torch.Tensor, masks: torch.Tensor, areas: torch.Tensor) -> torch.Tensor:
    """Upper-triangular (i < j) IoU of sorted masks, zero between different classes."""
    n = labels.shape[0]
    flat = masks.reshape(n, -1).float()
    inter = flat @ flat.t()
    areas = areas.float().expand(n, n)
    iou = (inter / (areas + areas.t() - inter)).triu(diagonal=1)
    same = (labels[:, None] == labels[None, :]).float().triu(diagonal=1)
    return iou * same


def matrix_nms(
    labels: torch.Tensor,
    masks: torch.Tensor,
    areas: torch.Tensor,
    scores: torch.Tensor,
    kernel: str = "gaussian",
    sigma: float = 2.0,
) -> torch.Tensor:
    """Matrix NMS (SOLOv2): decayed scores of masks that are already sorted by descending score.

    decay[j] = min over i < j of f(IoU[i, j]) / f(compensate[i]), compensate[i] = max over k < i of IoU[k, i],
    IoU only between masks of the same class; f(x) = exp(-sigma x^2) ("gaussian") or 1 - x ("linear").
    """
    n = labels.shape[0]
    if n == 0:
        return scores
    decay_iou = _mask_iou_same_class(labels, masks, areas)
    compensate = decay_iou.max(dim=0).values.expand(n, n).t()  # row i holds compensate[i]
    if kernel == "gaussian":
        decay = torch.exp(-sigma * decay_iou**2) / torch.exp(-sigma * compensate**2)
    elif kernel == "linear":
        decay = (1 - decay_iou) / (1 - compensate)
        # A mask identical to an earlier one (compensate 1) would give 0/0 = NaN against a third copy; the
        # earlier copy already decays that one, so the duplicate's own terms must not count (+inf).
        decay = torch.where(compensate >= 1, torch.full_like(decay, float("inf")), decay)
    else:
        raise ValueError(f"MODEL.SOLOV2.NMS_KERNEL must be 'gaussian' or 'linear', got '{kernel}'")
    # Entries with i >= j are f(0)/f(compensate[i]) >= 1 and row 0 is <= 1, so the plain column min is the
    # min over i < j (and 1 for the first mask).
    coefficient = decay.min(dim=0).values
    return scores * coefficient


def mask_nms(
    labels: torch.Tensor, masks: torch.Tensor, areas: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.5
) -> torch.Tensor:
    """Greedy mask NMS on score-sorted masks: bool keep-vector; a mask goes if a kept one of its class overlaps > thr."""
    n = labels.shape[0]
    keep = torch.ones(n, dtype=torch.bool, device=labels.device)
    if n == 0:
        return keep
    iou = _mask_iou_same_class(labels, masks, areas)
    # Sequential by nature (a suppressed mask suppresses nothing); n <= NMS_PRE keeps this loop short.
    iou_cpu = (iou > iou_threshold).cpu()
    keep_cpu = torch.ones(n, dtype=torch.bool)
    for i in range(n):
        if keep_cpu[i]:
            keep_cpu &= ~iou_cpu[i]
    return keep_cpu.to(labels.device)
