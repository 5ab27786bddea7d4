"""Dataset loaders: COCO json, builtin COCO splits, synthetic shapes."""

from .builtin import COCO_SPLITS, datasets_root, register_all_builtin
from .coco import DatasetFormatError, load_coco_json, register_coco_instances
from .shapes import SHAPE_CLASSES, ensure_shapes_split, generate_shapes

register_all_builtin()

__all__ = [k for k in globals().keys() if not k.startswith("_")]
