"""Dice loss for mask prediction."""

from __future__ import annotations

import torch


def dice_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-mask dice loss 1 - 2 sum(p t) / (sum(p^2) + 0.001 + sum(t^2) + 0.001) of N x H x W probabilities."""
    p = pred.reshape(pred.shape[0], -1)
    t = target.reshape(target.shape[0], -1).to(p.dtype)
    a = (p * t).sum(dim=1)
    b = (p * p).sum(dim=1) + 0.001
    c = (t * t).sum(dim=1) + 0.001
    return 1 - 2 * a / (b + c)
