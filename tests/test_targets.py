"""Target assignment against a plain loop-based reading of DESIGN.md."""

import cv2
import numpy as np
import pytest
import torch

from solov2.modeling.solov2 import TargetParams, assign_image_targets, downsample_masks
from solov2.structures import BitMasks

GRIDS = [40, 36, 24, 16, 12]
RANGES = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))
SIGMA = 0.2
NUM_CLASSES = 5


def _loop_targets(masks, boxes, classes, up_size, feat_size, grids=GRIDS, ranges=RANGES, sigma=SIGMA):
    """Per level: {cell: class} (later instances overwrite) and the ordered list of (instance, cell) pairs."""
    levels = []
    for grid, (lo, hi) in zip(grids, ranges):
        cate = {}
        pairs = []
        for n in range(len(masks)):
            m = masks[n]
            if m.sum() == 0:
                continue
            x1, y1, x2, y2 = boxes[n]
            scale = float(np.sqrt((x2 - x1) * (y2 - y1)))
            if not (lo <= scale <= hi):
                continue
            ys, xs = np.nonzero(m)
            cy, cx = ys.mean(), xs.mean()
            half_h, half_w = 0.5 * (y2 - y1) * sigma, 0.5 * (x2 - x1) * sigma
            coord_w = int((cx / up_size[1]) // (1.0 / grid))
            coord_h = int((cy / up_size[0]) // (1.0 / grid))
            top_box = max(0, int(((cy - half_h) / up_size[0]) // (1.0 / grid)))
            down_box = min(grid - 1, int(((cy + half_h) / up_size[0]) // (1.0 / grid)))
            left_box = max(0, int(((cx - half_w) / up_size[1]) // (1.0 / grid)))
            right_box = min(grid - 1, int(((cx + half_w) / up_size[1]) // (1.0 / grid)))
            top, down = max(top_box, coord_h - 1), min(down_box, coord_h + 1)
            left, right = max(coord_w - 1, left_box), min(right_box, coord_w + 1)
            for i in range(top, down + 1):
                for j in range(left, right + 1):
                    cate[i * grid + j] = int(classes[n])
                    pairs.append((n, i * grid + j))
        levels.append((cate, pairs))
    return levels


def _loop_mask_target(mask, feat_size):
    h, w = mask.shape
    small = cv2.resize(mask.astype(np.uint8), (int(w / 4 + 0.5), int(h / 4 + 0.5)), interpolation=cv2.INTER_LINEAR)
    out = np.zeros(feat_size, dtype=np.uint8)
    out[: small.shape[0], : small.shape[1]] = small
    return out


def _random_instances(seed, h=300, w=420, n=14):
    rng = np.random.RandomState(seed)
    masks = np.zeros((n, h, w), dtype=bool)
    for k in range(n):
        size = int(np.exp(rng.uniform(np.log(4), np.log(min(h, w) * 0.9))))
        cy, cx = rng.randint(0, h), rng.randint(0, w)
        if k % 2:
            cv2.circle(masks[k].view(np.uint8), (cx, cy), max(2, size // 2), 1, -1)
        else:
            masks[k, max(0, cy - size // 3) : cy + size // 2, max(0, cx - size // 2) : cx + size // 3] = True
    masks[3] = False  # an empty mask is never assigned
    classes = rng.randint(0, NUM_CLASSES, n)
    boxes = BitMasks(torch.from_numpy(masks)).get_bounding_boxes().tensor.numpy()
    return masks, boxes, classes


# The published levels, and the quickstart's (smaller grids, wider centre regions, overlapping ranges).
LEVEL_SETS = {
    "published": (GRIDS, RANGES, SIGMA),
    "quickstart": ([24, 20, 16, 12, 8], ((1, 32), (16, 64), (32, 128), (64, 256), (128, 512)), 0.35),
}


@pytest.mark.parametrize("levels", sorted(LEVEL_SETS))
def test_assignment_matches_loop_reading(levels):
    grids, ranges, sigma = LEVEL_SETS[levels]
    for seed in range(8):
        masks, boxes, classes = _random_instances(seed)
        up = (320, 448)  # padded input size
        feat = (80, 112)
        got = assign_image_targets(torch.from_numpy(masks), torch.from_numpy(boxes), torch.from_numpy(classes),
                                   up, TargetParams(grids, ranges, NUM_CLASSES, sigma))
        want = _loop_targets(masks, boxes, classes, up, feat, grids, ranges, sigma)
        assert len(got) == len(grids)
        total_pairs = 0
        for lvl, (t, (cate, pairs)) in enumerate(zip(got, want)):
            grid = grids[lvl]
            want_cate = np.full(grid * grid, NUM_CLASSES)
            for cell, c in cate.items():
                want_cate[cell] = c
            assert t.cate.shape == (grid, grid) and t.cate.dtype == torch.int64
            assert np.array_equal(t.cate.flatten().numpy(), want_cate), f"seed {seed} level {lvl}"
            assert list(zip(t.pos_instances.tolist(), t.pos_cells.tolist())) == pairs
            total_pairs += len(pairs)
        assert total_pairs > 20  # the case really exercises several levels
        assert sum(len(p) > 0 for _, p in want) >= 3


def test_mask_targets_match_rescaling():
    masks, _, _ = _random_instances(7, h=301, w=419)
    feat = (80, 112)
    got = downsample_masks(torch.from_numpy(masks), feat).numpy()
    for n in range(len(masks)):
        want = _loop_mask_target(masks[n], feat)
        # bilinear ties at exactly 0.5 may round either way in OpenCV's fixed-point arithmetic
        assert (got[n] != want).sum() <= max(2, 0.02 * want.sum()), n


def test_no_instances_gives_background_only():
    t = assign_image_targets(torch.zeros((0, 64, 64), dtype=torch.bool), torch.zeros((0, 4)),
                             torch.zeros((0,), dtype=torch.int64), (64, 64),
                             TargetParams(GRIDS, RANGES, NUM_CLASSES, SIGMA))
    assert all((x.cate == NUM_CLASSES).all() and x.pos_cells.numel() == 0 for x in t)
