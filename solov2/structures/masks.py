"""BitMasks: an N x H x W bool tensor, built from polygons or COCO RLE (compressed or not)."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Sequence, Union

import numpy as np
import pycocotools.mask as mask_util
import torch

from .mask_ops import masks_to_boxes
from .boxes import Boxes

PolygonList = List[Sequence[float]]  # one instance: a list of flat [x0, y0, x1, y1, ...] rings
Segmentation = Union[PolygonList, Dict[str, Any], np.ndarray]


def polygons_to_bitmask(polygons: PolygonList, height: int, width: int) -> np.ndarray:
    """Rasterise one instance's polygons (COCO convention) into an H x W bool array."""
    if len(polygons) == 0:
        return np.zeros((height, width), dtype=bool)
    rles = mask_util.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    return mask_util.decode(mask_util.merge(rles)).astype(bool)


def rle_to_bitmask(rle: Dict[str, Any], height: int, width: int) -> np.ndarray:
    """Decode a COCO RLE dict (compressed string/bytes counts, or an uncompressed list) to H x W bool."""
    if isinstance(rle.get("counts"), list):
        rle = mask_util.frPyObjects(rle, *rle["size"])
    elif isinstance(rle.get("counts"), str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    m = mask_util.decode(rle).astype(bool)
    if m.shape != (height, width):
        raise ValueError(f"RLE mask of size {m.shape} does not match the image size {(height, width)}")
    return m


def segmentation_to_bitmask(segm: Segmentation, height: int, width: int) -> np.ndarray:
    """Any COCO segmentation (polygons, RLE dict, or an H x W array) to an H x W bool array."""
    if isinstance(segm, list):
        return polygons_to_bitmask(segm, height, width)
    if isinstance(segm, dict):
        return rle_to_bitmask(segm, height, width)
    if isinstance(segm, np.ndarray):
        if segm.shape != (height, width):
            raise ValueError(f"Mask array of shape {segm.shape} does not match the image size {(height, width)}")
        return segm.astype(bool)
    raise TypeError(f"Cannot convert a segmentation of type {type(segm)} to a mask")


class BitMasks:
    """N binary masks of one image, stored as an N x H x W bool tensor."""

    def __init__(self, tensor: Union[torch.Tensor, np.ndarray]) -> None:
        if isinstance(tensor, np.ndarray):
            tensor = torch.from_numpy(np.ascontiguousarray(tensor))
        tensor = tensor.to(dtype=torch.bool)
        if tensor.dim() != 3:
            raise ValueError(f"BitMasks need an N x H x W tensor, got shape {tuple(tensor.shape)}")
        self.tensor = tensor
        self.image_size = tensor.shape[1:]

    @property
    def device(self) -> torch.device:
        """Device of the mask tensor."""
        return self.tensor.device

    def to(self, *args: Any, **kwargs: Any) -> "BitMasks":
        """Move to a device."""
        return BitMasks(self.tensor.to(*args, **kwargs))

    def __getitem__(self, item: Union[int, slice, torch.Tensor]) -> "BitMasks":
        if isinstance(item, int):
            return BitMasks(self.tensor[item].unsqueeze(0))
        m = self.tensor[item]
        return BitMasks(m)

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield from self.tensor

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __repr__(self) -> str:
        return f"BitMasks(num_instances={len(self)}, image_size={tuple(self.image_size)})"

    def nonempty(self) -> torch.Tensor:
        """Bool vector: which masks have at least one pixel."""
        return self.tensor.flatten(1).any(dim=1)

    def area(self) -> torch.Tensor:
        """Number of pixels of each mask."""
        return self.tensor.flatten(1).sum(dim=1)

    def get_bounding_boxes(self) -> Boxes:
        """Tight boxes of the masks (zeros for an empty mask)."""
        return Boxes(masks_to_boxes(self.tensor))

    @staticmethod
    def from_segmentations(segms: List[Segmentation], height: int, width: int) -> "BitMasks":
        """Build from a list of COCO segmentations (polygons or RLE), one per instance."""
        if len(segms) == 0:
            return BitMasks(torch.zeros((0, height, width), dtype=torch.bool))
        arr = np.stack([segmentation_to_bitmask(s, height, width) for s in segms])
        return BitMasks(arr)

    @staticmethod
    def from_polygon_masks(polygons: List[PolygonList], height: int, width: int) -> "BitMasks":
        """Build from per-instance polygon lists."""
        return BitMasks.from_segmentations(list(polygons), height, width)

    @staticmethod
    def cat(bitmasks_list: List["BitMasks"]) -> "BitMasks":
        """Concatenate BitMasks of the same image size."""
        return BitMasks(torch.cat([bm.tensor for bm in bitmasks_list], dim=0))
