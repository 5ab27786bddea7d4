"""SOLOv2 target assignment: ground-truth instances -> per-level category grids and mask targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import torch
from torch.nn import functional as F

from ...utils.errors import ArgumentError


@dataclass(frozen=True)
class TargetParams:
    """Which grid cells of which levels a ground-truth instance is assigned to (MODEL.SOLOV2.* in SOLOv2.from_config).

    num_grids: S per level; scale_ranges: (low, high) of sqrt(box area) per level; sigma scales the centre region;
    num_classes is the background class of the category targets.
    """

    num_grids: Tuple[int, ...]
    scale_ranges: Tuple[Tuple[float, float], ...]
    num_classes: int
    sigma: float = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_grids", tuple(int(g) for g in self.num_grids))
        object.__setattr__(self, "scale_ranges", tuple(tuple(r) for r in self.scale_ranges))
        if len(self.scale_ranges) != len(self.num_grids):
            raise ArgumentError("scale_ranges", f"needs one entry per level of num_grids ({len(self.num_grids)}); "
                                f"got {len(self.scale_ranges)}")


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
    params: TargetParams,
) -> List[LevelTargets]:
    """Assign one image's instances to grid cells on every level (no loop over cells, instances or levels).

    gt_masks: N x h x w bool (image size); gt_boxes: N x 4 XYXY; input_size: padded (H, W) = 4 x mask features.
    An instance goes to every level whose scale range holds sqrt(box w * box h); its positive cells are the
    cells of the sigma-scaled box around its centre of mass, limited to the 3 x 3 cells around the centre's cell.
    Where instances share a cell, the later one's class wins; every (instance, cell) pair is a mask target.
    """
    num_grids, scale_ranges, sigma, num_classes = params.num_grids, params.scale_ranges, params.sigma, params.num_classes
    device = gt_masks.device
    num_levels = len(num_grids)
    up_h, up_w = float(input_size[0]), float(input_size[1])
    boxes = gt_boxes.to(torch.float64)
    bw = boxes[:, 2] - boxes[:, 0]
    bh = boxes[:, 3] - boxes[:, 1]
    areas = torch.sqrt(bw * bh)
    # Row/column pixel counts (exact in float32) give the centre of mass; a float32 copy sums 2-3x faster than
    # the bool masks themselves (count_nonzero, sum) and is half the size of an int64 or float64 one.
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

    # Every (level, instance) pair whose level takes the instance, level-major: the order of the per-level loop.
    lo = torch.tensor([float(r[0]) for r in scale_ranges], dtype=torch.float64, device=device)
    hi = torch.tensor([float(r[1]) for r in scale_ranges], dtype=torch.float64, device=device)
    hit = valid[None, :] & (areas[None, :] >= lo[:, None]) & (areas[None, :] <= hi[:, None])  # L x N
    lvl, idx = torch.nonzero(hit, as_tuple=True)
    grids = torch.tensor([int(g) for g in num_grids], dtype=torch.int64, device=device)
    grid = grids[lvl]
    # 1 / grid in float64, as the per-level Python float division gives it, so cells match the reference exactly.
    cell = 1.0 / grid.to(torch.float64)
    ch, cw = center_h[idx], center_w[idx]
    hh, hw = (0.5 * bh * sigma)[idx], (0.5 * bw * sigma)[idx]
    last_cell = (grid - 1).to(torch.float64)
    coord_w = torch.div(cw / up_w, cell, rounding_mode="floor")
    coord_h = torch.div(ch / up_h, cell, rounding_mode="floor")
    top_box = torch.div((ch - hh) / up_h, cell, rounding_mode="floor").clamp(min=0)
    down_box = torch.minimum(torch.div((ch + hh) / up_h, cell, rounding_mode="floor"), last_cell)
    left_box = torch.div((cw - hw) / up_w, cell, rounding_mode="floor").clamp(min=0)
    right_box = torch.minimum(torch.div((cw + hw) / up_w, cell, rounding_mode="floor"), last_cell)
    top = torch.maximum(top_box, coord_h - 1).long()
    down = torch.minimum(down_box, coord_h + 1).long()
    left = torch.maximum(coord_w - 1, left_box).long()
    right = torch.minimum(right_box, coord_w + 1).long()
    # Regions on the largest grid; a smaller level's region stays inside its own S x S corner.
    s_max = max(int(g) for g in num_grids) if num_levels else 0
    rows = torch.arange(s_max, device=device)
    in_rows = (rows[None, :] >= top[:, None]) & (rows[None, :] <= down[:, None])  # K x S_max
    in_cols = (rows[None, :] >= left[:, None]) & (rows[None, :] <= right[:, None])  # K x S_max
    region = in_rows[:, :, None] & in_cols[:, None, :]  # K x S_max x S_max
    pair, r, c = torch.nonzero(region, as_tuple=True)  # pair-major (level, instance), then row, col
    pair_lvl = lvl[pair]
    pos_cells = r * grids[pair_lvl] + c
    pos_inst = idx[pair]

    # The last instance covering a cell sets its class (instances in their given order, per level).
    flat = (pair_lvl * s_max + r) * s_max + c
    last = torch.full((num_levels * s_max * s_max,), -1, dtype=torch.int64, device=device)
    last.scatter_reduce_(0, flat, pos_inst, reduce="amax")
    classes = torch.cat([gt_classes.to(device=device, dtype=torch.int64),
                         torch.tensor([num_classes], dtype=torch.int64, device=device)])
    cate_all = classes[last].view(num_levels, s_max, s_max)  # -1 (no instance) picks the background class

    per_level = torch.bincount(pair_lvl, minlength=num_levels).tolist()
    out: List[LevelTargets] = []
    for g, cells, insts, cate in zip(num_grids, pos_cells.split(per_level), pos_inst.split(per_level),
                                     cate_all.unbind(0)):
        out.append(LevelTargets(cate[:g, :g].contiguous(), cells, insts))
    return out
