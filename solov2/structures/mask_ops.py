"""Operations on stacks of binary masks."""

from __future__ import annotations

import torch


def as_uint8(masks: torch.Tensor) -> torch.Tensor:
    """A bool tensor as 0/1 uint8: a free reinterpretation in eager mode, a cast in an exported graph."""
    # ONNX has no bit-cast of bool, and reductions and casts from uint8 are several times faster than from bool.
    return masks.to(torch.uint8) if torch.compiler.is_exporting() else masks.view(torch.uint8)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (N x 4, float) of N x H x W masks; x2/y2 are exclusive (pixel edges).

    An empty mask gets the box (0, 0, 0, 0).
    """
    # No branch on the number of masks (zero masks reduce to zero boxes), so that an exported graph keeps this.
    m = as_uint8(masks.bool())
    # max over uint8 is ~20x faster than any() over bool on CPU
    rows = m.amax(dim=2) > 0  # N x H
    cols = m.amax(dim=1) > 0  # N x W
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
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)
