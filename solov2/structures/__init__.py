"""Data structures passed between stages: ImageList, Instances, BitMasks, Boxes."""

from .boxes import Boxes
from .image_list import ImageList
from .instances import Instances
from .mask_ops import masks_to_boxes
from .masks import BitMasks, polygons_to_bitmask, rle_to_bitmask, segmentation_to_bitmask

__all__ = [k for k in globals().keys() if not k.startswith("_")]
