"""Operations on stacks of binary masks."""

from __future__ import annotations

import torch


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (N x 4, float) of N x H x W masks; x2/y2 are exclusive (pixel edges).

    An empty mask gets the box (0, 0, 0, 0).
    """
    if masks.numel() == 0 or masks.shape[0] == 0:
        return torch.zeros((masks.shape[0], 4), dtype=torch.float32, device=masks.device)
    m = masks.bool()
    rows = m.any(dim=2)  # N x H
    cols = m.any(dim=1)  # N x W
    h, w = m.shape[1], m.shape[2]
    ar_h = torch.arange(h, device=m.device)
    ar_w = torch.arange(w, device=m.device)
    # first/last True index via masked min/max; empty masks give 0 after the `where` below
    y1 = torch.where(rows, ar_h, h).min(dim=1).values
    y2 = torch.where(rows, ar_h, -1).max(dim=1).values + 1
    x1 = torch.where(cols, ar_w, w).min(dim=1).values
    x2 = torch.where(cols, ar_w, -1).max(dim=1).values + 1
    boxes = torch.stack([x1, y1, x2, y2], dim=1).float()
    empty = ~rows.any(dim=1)
    boxes[empty] = 0
    return boxes
