"""Normalised coordinate channels (CoordConv) for location-aware heads."""

from __future__ import annotations

import torch


def coord_features(x: torch.Tensor) -> torch.Tensor:
    """Return N x 2 x H x W coordinates for `x` (N x C x H x W): x then y, each linspace(-1, 1)."""
    n, _, h, w = x.shape
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    coord = torch.stack([xx, yy], dim=0).unsqueeze(0)
    return coord.expand(n, -1, -1, -1)


def concat_coord(x: torch.Tensor) -> torch.Tensor:
    """Append the two coordinate channels to `x`."""
    return torch.cat([x, coord_features(x)], dim=1)
