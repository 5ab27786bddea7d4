"""ImageList: a padded batch of images that remembers each image's size."""

from __future__ import annotations

from typing import Any, List, Tuple

import torch
from torch.nn import functional as F


def divisible_size(size: Any, size_divisibility: int) -> Any:
    """`size` rounded up to a multiple of `size_divisibility` (unchanged for 0 or 1); a symbolic size stays symbolic."""
    if size_divisibility <= 1:
        return size
    # d * ceil(size / d) in this form, so that an exporter sees every feature size as a multiple of the same symbol
    # and can prove that the levels line up (with size + (-size % d) it specializes them).
    return (size + size_divisibility - 1) // size_divisibility * size_divisibility


class ImageList:
    """A batch tensor (N x C x Hmax x Wmax, zero padded) plus each image's (h, w) before padding."""

    def __init__(self, tensor: torch.Tensor, image_sizes: List[Tuple[int, int]]) -> None:
        self.tensor = tensor
        self.image_sizes = image_sizes

    def __len__(self) -> int:
        return len(self.image_sizes)

    def __getitem__(self, idx: int) -> torch.Tensor:
        """The un-padded image `idx`."""
        h, w = self.image_sizes[idx]
        return self.tensor[idx, ..., :h, :w]

    def to(self, *args, **kwargs) -> "ImageList":
        """Move to a device/dtype."""
        return ImageList(self.tensor.to(*args, **kwargs), self.image_sizes)

    @property
    def device(self) -> torch.device:
        """Device of the batch tensor."""
        return self.tensor.device

    @staticmethod
    def from_tensors(
        tensors: List[torch.Tensor], size_divisibility: int = 0, pad_value: float = 0.0
    ) -> "ImageList":
        """Pad C x H x W tensors to a common size (a multiple of `size_divisibility`) and stack them."""
        if len(tensors) == 0:
            raise ValueError("ImageList.from_tensors needs at least one image")
        for t in tensors:
            if t.shape[:-2] != tensors[0].shape[:-2]:
                raise ValueError(
                    f"All images must have the same number of channels; got {tuple(t.shape)} and {tuple(tensors[0].shape)}"
                )
        image_sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        max_h = max(s[0] for s in image_sizes)
        max_w = max(s[1] for s in image_sizes)
        max_h, max_w = divisible_size(max_h, size_divisibility), divisible_size(max_w, size_divisibility)
        if len(tensors) == 1:
            t = tensors[0]
            padded = F.pad(t, [0, max_w - t.shape[-1], 0, max_h - t.shape[-2]], value=pad_value).unsqueeze(0)
        else:
            shape = [len(tensors)] + list(tensors[0].shape[:-2]) + [max_h, max_w]
            padded = tensors[0].new_full(shape, pad_value)
            for i, t in enumerate(tensors):
                padded[i, ..., : t.shape[-2], : t.shape[-1]].copy_(t)
        return ImageList(padded.contiguous(), image_sizes)
