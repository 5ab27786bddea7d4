"""Geometric augmentations applied identically to an image and its masks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from ..utils.errors import ConfigError

# (y0, x0, height, width) of a crop window in the original image.
CropBox = Tuple[int, int, int, int]


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
    """An optional crop (of the h x w input), a resize to (new_h, new_w), then optional horizontal/vertical flips."""

    h: int
    w: int
    new_h: int
    new_w: int
    hflip: bool = False
    vflip: bool = False
    crop: Optional[CropBox] = None

    def _crop(self, a: np.ndarray) -> np.ndarray:
        if self.crop is None:
            return a
        y0, x0, ch, cw = self.crop
        return a[y0 : y0 + ch, x0 : x0 + cw]

    def _size_before_resize(self) -> Tuple[int, int]:
        return (self.crop[2], self.crop[3]) if self.crop is not None else (self.h, self.w)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """Crop, resize (bilinear) and flip an H x W x C image."""
        img = self._crop(img)
        if (self.new_h, self.new_w) != self._size_before_resize():
            img = cv2.resize(np.ascontiguousarray(img), (self.new_w, self.new_h), interpolation=cv2.INTER_LINEAR)
        return self._flip(img)

    def apply_mask(self, mask: np.ndarray) -> np.ndarray:
        """Crop, resize (nearest) and flip an H x W bool mask."""
        mask = self._crop(mask)
        if (self.new_h, self.new_w) != self._size_before_resize():
            mask = cv2.resize(np.ascontiguousarray(mask, dtype=np.uint8), (self.new_w, self.new_h),
                              interpolation=cv2.INTER_NEAREST)
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
                      vflip: bool = False, crop: Optional[CropBox] = None) -> GeometricTransform:
        """The transform for an h x w image, resizing the `crop` window of it when one is given."""
        ch, cw = (crop[2], crop[3]) if crop is not None else (h, w)
        nh, nw = shortest_edge_size(ch, cw, self.sample(rng), self.max_size)
        return GeometricTransform(h, w, nh, nw, hflip, vflip, crop)


CROP_TYPES = ("relative_range", "relative", "absolute", "absolute_range")


class RandomCrop:
    """Detectron2's INPUT.CROP: a random window of the image, taken before the resize.

    TYPE "relative": SIZE (h, w) as fractions of the image; "relative_range": fractions drawn uniformly from
    [SIZE, 1]; "absolute": SIZE (h, w) in pixels (at most the image); "absolute_range": each side drawn in pixels
    from [SIZE[0], SIZE[1]]. With CROP_INSTANCE the window is placed so that it contains the centre of a randomly
    chosen instance, so a crop never loses every object; otherwise it is placed uniformly.
    """

    def __init__(self, crop_type: str, size: Sequence[float], crop_instance: bool = True) -> None:
        if crop_type not in CROP_TYPES:
            raise ConfigError(f"INPUT.CROP.TYPE must be one of {', '.join(repr(t) for t in CROP_TYPES)}, got '{crop_type}'")
        if len(size) != 2:
            raise ConfigError(f"INPUT.CROP.SIZE needs two numbers, got {list(size)}")
        a, b = float(size[0]), float(size[1])
        if crop_type.startswith("relative") and not (0 < a <= 1 and 0 < b <= 1):
            raise ConfigError(f"INPUT.CROP.SIZE {list(size)} with TYPE '{crop_type}' must be fractions in (0, 1]")
        if crop_type.startswith("absolute") and not (a >= 1 and b >= 1 and a == int(a) and b == int(b)):
            raise ConfigError(f"INPUT.CROP.SIZE {list(size)} with TYPE '{crop_type}' must be whole pixel counts >= 1")
        if crop_type == "absolute_range" and a > b:
            raise ConfigError(f"INPUT.CROP.SIZE {list(size)} with TYPE 'absolute_range' must be (min, max)")
        self.crop_type = crop_type
        self.size = (a, b)
        self.crop_instance = bool(crop_instance)

    def crop_size(self, h: int, w: int, rng: np.random.RandomState) -> Tuple[int, int]:
        """The (height, width) of the window for an h x w image."""
        a, b = self.size
        if self.crop_type == "relative":
            ch, cw = h * a, w * b
        elif self.crop_type == "relative_range":
            ch, cw = h * rng.uniform(a, 1.0), w * rng.uniform(b, 1.0)
        elif self.crop_type == "absolute":
            ch, cw = min(a, h), min(b, w)
        else:  # absolute_range: the same pixel range for both sides
            ch = rng.randint(min(h, int(a)), min(h, int(b)) + 1)
            cw = rng.randint(min(w, int(a)), min(w, int(b)) + 1)
        return max(1, min(h, int(ch + 0.5))), max(1, min(w, int(cw + 0.5)))

    def get_crop(self, h: int, w: int, rng: np.random.RandomState,
                 boxes: Optional[np.ndarray] = None) -> CropBox:
        """A window (y0, x0, height, width) of an h x w image; `boxes` (N x 4 XYXY) are the instances' boxes."""
        ch, cw = self.crop_size(h, w, rng)
        y_lo, y_hi, x_lo, x_hi = 0, h - ch, 0, w - cw
        if self.crop_instance and boxes is not None and len(boxes):
            x1, y1, x2, y2 = boxes[rng.randint(len(boxes))]
            cy, cx = (y1 + y2) / 2.0, (x1 + x2) / 2.0
            # Top-left corners whose window [y0, y0 + ch) still holds the centre, within the image.
            y_lo, y_hi = max(0, int(np.floor(cy)) - ch + 1), min(h - ch, int(np.floor(cy)))
            x_lo, x_hi = max(0, int(np.floor(cx)) - cw + 1), min(w - cw, int(np.floor(cx)))
            y_lo, x_lo = min(y_lo, y_hi), min(x_lo, x_hi)
        return int(rng.randint(y_lo, y_hi + 1)), int(rng.randint(x_lo, x_hi + 1)), ch, cw
