"""SOLOv2 target assignment: ground-truth instances -> per-level category grids and mask targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch
from torch.nn import functional as F


@dataclass
class LevelTargets:
    """Targets of one image on one FPN level.

    cate: S x S int64 class per cell (num_classes = background).
    pos_cells: P flat cell indices (row * S + col) of every (instance, cell) positive pair, instance-major.
    pos_instances: P indices into the image's instances (and into `masks`).
    """

    cate: torch.Tensor
    pos_cells: torch.Tensor
    pos_instances: torch.Tensor


def _floor_div(x: torch.Tensor, grid: int) -> torch.Tensor:
    """floor(x / (1 / grid)) in float64, the way the reference computes grid coordinates."""
    return torch.div(x, 1.0 / grid, rounding_mode="floor")


def downsample_masks(masks: torch.Tensor, feat_size: Tuple[int, int], stride: int = 4) -> torch.Tensor:
    """Rescale N x h x w binary masks by 1/stride (bilinear, rounded) into zero-padded N x Hf x Wf."""
    n, h, w = masks.shape
    out = masks.new_zeros((n, feat_size[0], feat_size[1]), dtype=torch.uint8)
    if n == 0:
        return out
    nh, nw = int(h / stride + 0.5), int(w / stride + 0.5)
    small = F.interpolate(masks[:, None].float(), size=(nh, nw), mode="bilinear", align_corners=False)[:, 0]
    small = (small >= 0.5).to(torch.uint8)
    hh, ww = min(nh, feat_size[0]), min(nw, feat_size[1])
    out[:, :hh, :ww] = small[:, :hh, :ww]
    return out


def assign_image_targets(
    gt_masks: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    input_size: Tuple[int, int],
    num_grids: Sequence[int],
    scale_ranges: Sequence[Tuple[float, float]],
    sigma: float,
    num_classes: int,
) -> List[LevelTargets]:
    """Assign one image's instances to grid cells on every level (no loop over cells or instances).

    gt_masks: N x h x w bool (image size); gt_boxes: N x 4 XYXY; input_size: padded (H, W) = 4 x mask features.
    An instance goes to every level whose scale range holds sqrt(box w * box h); its positive cells are the
    cells of the sigma-scaled box around its centre of mass, limited to the 3 x 3 cells around the centre's cell.
    Where instances share a cell, the later one's class wins; every (instance, cell) pair is a mask target.
    """
    device = gt_masks.device
    n = gt_masks.shape[0]
    up_h, up_w = float(input_size[0]), float(input_size[1])
    boxes = gt_boxes.to(torch.float64)
    bw = boxes[:, 2] - boxes[:, 0]
    bh = boxes[:, 3] - boxes[:, 1]
    areas = torch.sqrt(bw * bh)
    half_w = 0.5 * bw * sigma
    half_h = 0.5 * bh * sigma
    # Row/column pixel counts (exact in float32) give the centre of mass; float32 halves the transient copy
    # that a bool sum (int64) or a float64 cast would make.
    m = gt_masks.to(torch.float32)
    row_mass = m.sum(dim=2).to(torch.float64)  # N x h
    col_mass = m.sum(dim=1).to(torch.float64)  # N x w
    del m
    mass = row_mass.sum(dim=1)
    valid = mass > 0
    denom = mass.clamp(min=1)
    ys = torch.arange(gt_masks.shape[1], device=device, dtype=torch.float64)
    xs = torch.arange(gt_masks.shape[2], device=device, dtype=torch.float64)
    center_h = (row_mass * ys).sum(dim=1) / denom
    center_w = (col_mass * xs).sum(dim=1) / denom

    out: List[LevelTargets] = []
    for grid, (lo, hi) in zip(num_grids, scale_ranges):
        cate = torch.full((grid, grid), num_classes, dtype=torch.int64, device=device)
        hit = valid & (areas >= lo) & (areas <= hi)
        if n == 0 or not bool(hit.any()):
            empty = torch.zeros(0, dtype=torch.int64, device=device)
            out.append(LevelTargets(cate, empty, empty))
            continue
        idx = torch.nonzero(hit, as_tuple=False)[:, 0]
        ch, cw, hh, hw = center_h[idx], center_w[idx], half_h[idx], half_w[idx]
        coord_w = _floor_div(cw / up_w, grid)
        coord_h = _floor_div(ch / up_h, grid)
        top_box = _floor_div((ch - hh) / up_h, grid).clamp(min=0)
        down_box = _floor_div((ch + hh) / up_h, grid).clamp(max=grid - 1)
        left_box = _floor_div((cw - hw) / up_w, grid).clamp(min=0)
        right_box = _floor_div((cw + hw) / up_w, grid).clamp(max=grid - 1)
        top = torch.maximum(top_box, coord_h - 1).long()
        down = torch.minimum(down_box, coord_h + 1).long()
        left = torch.maximum(coord_w - 1, left_box).long()
        right = torch.minimum(right_box, coord_w + 1).long()
        rows = torch.arange(grid, device=device)
        in_rows = (rows[None, :] >= top[:, None]) & (rows[None, :] <= down[:, None])  # K x S
        in_cols = (rows[None, :] >= left[:, None]) & (rows[None, :] <= right[:, None])  # K x S
        region = in_rows[:, :, None] & in_cols[:, None, :]  # K x S x S
        pairs = torch.nonzero(region.reshape(len(idx), -1), as_tuple=False)  # instance-major, then row, col
        pos_inst = idx[pairs[:, 0]]
        pos_cells = pairs[:, 1]
        # The last instance covering a cell sets its class (instances in their given order).
        order = torch.arange(len(idx), device=device)[:, None, None].expand_as(region)
        last = torch.where(region, order, torch.full_like(order, -1)).amax(dim=0)  # S x S
        covered = last >= 0
        cate[covered] = gt_classes.to(device)[idx][last[covered]]
        out.append(LevelTargets(cate, pos_cells, pos_inst))
    return out
