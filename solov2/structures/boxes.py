"""Boxes: an N x 4 XYXY float tensor with a few helpers."""

from __future__ import annotations

from typing import Iterator, List, Tuple, Union

import torch


class Boxes:
    """N boxes stored as an N x 4 (x1, y1, x2, y2) float tensor."""

    def __init__(self, tensor: torch.Tensor) -> None:
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.as_tensor(tensor, dtype=torch.float32)
        if tensor.numel() == 0:
            tensor = tensor.reshape((-1, 4)).to(dtype=torch.float32)
        if tensor.dim() != 2 or tensor.size(-1) != 4:
            raise ValueError(f"Boxes need an N x 4 tensor, got shape {tuple(tensor.shape)}")
        self.tensor = tensor

    def clone(self) -> "Boxes":
        """Deep copy."""
        return Boxes(self.tensor.clone())

    def to(self, *args, **kwargs) -> "Boxes":
        """Move to a device/dtype."""
        return Boxes(self.tensor.to(*args, **kwargs))

    @property
    def device(self) -> torch.device:
        """Device of the underlying tensor."""
        return self.tensor.device

    def area(self) -> torch.Tensor:
        """Area of each box."""
        b = self.tensor
        return (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)

    def clip(self, box_size: Tuple[int, int]) -> None:
        """Clip in place to an image of (height, width)."""
        h, w = box_size
        self.tensor[:, 0].clamp_(min=0, max=w)
        self.tensor[:, 1].clamp_(min=0, max=h)
        self.tensor[:, 2].clamp_(min=0, max=w)
        self.tensor[:, 3].clamp_(min=0, max=h)

    def nonempty(self, threshold: float = 0.0) -> torch.Tensor:
        """Mask of boxes whose width and height exceed `threshold`."""
        b = self.tensor
        return ((b[:, 2] - b[:, 0]) > threshold) & ((b[:, 3] - b[:, 1]) > threshold)

    def scale(self, scale_x: float, scale_y: float) -> None:
        """Scale coordinates in place."""
        self.tensor[:, 0::2] *= scale_x
        self.tensor[:, 1::2] *= scale_y

    def __getitem__(self, item: Union[int, slice, torch.Tensor]) -> "Boxes":
        if isinstance(item, int):
            return Boxes(self.tensor[item].view(1, -1))
        return Boxes(self.tensor[item])

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __repr__(self) -> str:
        return f"Boxes({self.tensor})"

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield from self.tensor

    @classmethod
    def cat(cls, boxes_list: List["Boxes"]) -> "Boxes":
        """Concatenate several Boxes."""
        if len(boxes_list) == 0:
            return cls(torch.empty(0, 4))
        return cls(torch.cat([b.tensor for b in boxes_list], dim=0))
