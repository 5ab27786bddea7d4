"""Normalised coordinate channels (CoordConv) for location-aware heads."""

from __future__ import annotations

import torch

COORD_CHANNELS = 2  # what coord_features appends: x, then y



def coord_features(x: torch.Tensor) -> torch.Tensor:
    """Return N x 2 x H x W coordinates for `x` (N x C x H x W): x then y, each linspace(-1, 1)."""
    n, _, h, w = x.shape
    xs = _linspace(w, x)
    ys = _linspace(h, x)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    coord = torch.stack([xx, yy], dim=0).unsqueeze(0)
    return coord.expand(n, -1, -1, -1)


def _linspace(steps: int, like: torch.Tensor) -> torch.Tensor:
    """linspace(-1, 1, steps) in `like`'s dtype and device; in an exported graph written for a symbolic length."""
    if not torch.compiler.is_exporting():
        return torch.linspace(-1, 1, steps, device=like.device, dtype=like.dtype)
    # torch.linspace needs a concrete length. Its own formula (from both ends towards the middle), so the values
    # agree with it up to the last bit.
    i = torch.arange(steps, device=like.device, dtype=like.dtype)
    n = torch.full((), steps, device=like.device, dtype=like.dtype)
    step = 2.0 / (n - 1).clamp(min=1)  # a tensor: a symbolic max would make the exporter specialize the length
    return torch.where(i < n / 2, -1 + step * i, 1 - step * (n - 1 - i))


def concat_coord(x: torch.Tensor) -> torch.Tensor:
    """Append the two coordinate channels to `x`."""
    return torch.cat([x, coord_features(x)], dim=1)
