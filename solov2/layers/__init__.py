"""Building blocks shared by the backbone and the SOLOv2 heads."""

from .batch_norm import FrozenBatchNorm2d, NaiveSyncBatchNorm, get_norm, set_norm_folding
from .coord import COORD_CHANNELS, concat_coord, coord_features
from .deform_conv import DeformConv, DeformConvWithOffset, ModulatedDeformConv, offset_conv
from .shape_spec import ShapeSpec
from .wrappers import Conv2d, c2_msra_fill, c2_xavier_fill

__all__ = [k for k in globals().keys() if not k.startswith("_")]

from .losses import dice_loss  # noqa: E402
from .nms import mask_nms, matrix_nms, point_nms  # noqa: E402

__all__ += ["dice_loss", "mask_nms", "matrix_nms", "point_nms"]
