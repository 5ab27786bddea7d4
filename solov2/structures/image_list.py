"""ImageList: a padded batch of images that remembers each image's size."""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch.nn import functional as F


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
        if size_divisibility > 1:
            stride = size_divisibility
            max_h = (max_h + stride - 1) // stride * stride
            max_w = (max_w + stride - 1) // stride * stride
        if len(tensors) == 1:
            t = tensors[0]
            padded = F.pad(t, [0, max_w - t.shape[-1], 0, max_h - t.shape[-2]], value=pad_value).unsqueeze(0)
        else:
            shape = [len(tensors)] + list(tensors[0].shape[:-2]) + [max_h, max_w]
            padded = tensors[0].new_full(shape, pad_value)
            for i, t in enumerate(tensors):
                padded[i, ..., : t.shape[-2], : t.shape[-1]].copy_(t)
        return ImageList(padded.contiguous(), image_sizes)
