"""Geometric augmentations applied identically to an image and its masks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import cv2
import numpy as np


def shortest_edge_size(h: int, w: int, short: int, max_size: int) -> Tuple[int, int]:
    """Output (h, w) when the short side is resized to `short` and the long side capped at `max_size`."""
    scale = short / min(h, w)
    newh, neww = h * scale, w * scale
    if max(newh, neww) > max_size > 0:
        s = max_size / max(newh, neww)
        newh, neww = newh * s, neww * s
    return int(newh + 0.5), int(neww + 0.5)


@dataclass
class GeometricTransform:
    """A resize to (new_h, new_w) followed by optional horizontal/vertical flips."""

    h: int
    w: int
    new_h: int
    new_w: int
    hflip: bool = False
    vflip: bool = False

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """Resize (bilinear) and flip an H x W x C image."""
        if (self.new_h, self.new_w) != (self.h, self.w):
            img = cv2.resize(img, (self.new_w, self.new_h), interpolation=cv2.INTER_LINEAR)
        return self._flip(img)

    def apply_mask(self, mask: np.ndarray) -> np.ndarray:
        """Resize (nearest) and flip an H x W bool mask."""
        if (self.new_h, self.new_w) != (self.h, self.w):
            mask = cv2.resize(mask.astype(np.uint8), (self.new_w, self.new_h), interpolation=cv2.INTER_NEAREST)
        return self._flip(mask).astype(bool)

    def _flip(self, a: np.ndarray) -> np.ndarray:
        if self.hflip:
            a = a[:, ::-1]
        if self.vflip:
            a = a[::-1]
        return np.ascontiguousarray(a)


class ResizeShortestEdge:
    """Resize the short side to a size drawn from `short_edge_length` ("choice") or a range ("range")."""

    def __init__(self, short_edge_length: Sequence[int], max_size: int, sample_style: str = "choice") -> None:
        if isinstance(short_edge_length, int):
            short_edge_length = (short_edge_length, short_edge_length)
        if sample_style not in ("choice", "range"):
            raise ValueError(f"INPUT.MIN_SIZE_TRAIN_SAMPLING must be 'choice' or 'range', got '{sample_style}'")
        if sample_style == "range" and len(short_edge_length) != 2:
            raise ValueError(f"INPUT.MIN_SIZE_TRAIN with 'range' sampling needs (min, max), got {short_edge_length}")
        self.short = tuple(int(s) for s in short_edge_length)
        self.max_size = int(max_size)
        self.sample_style = sample_style

    def sample(self, rng: np.random.RandomState) -> int:
        """Draw a short-side length."""
        if self.sample_style == "range":
            return int(rng.randint(self.short[0], self.short[1] + 1))
        return int(self.short[rng.randint(len(self.short))])

    def get_transform(self, h: int, w: int, rng: np.random.RandomState, hflip: bool = False,
                      vflip: bool = False) -> GeometricTransform:
        """The transform for an h x w image."""
        nh, nw = shortest_edge_size(h, w, self.sample(rng), self.max_size)
        return GeometricTransform(h, w, nh, nw, hflip, vflip)
