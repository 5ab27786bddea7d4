"""Data: catalogs, COCO/builtin/synthetic datasets, mapper, samplers and loaders."""

from .build import (
    build_detection_test_loader,
    build_detection_train_loader,
    check_num_classes,
    get_detection_dataset_dicts,
    register_datasets_from_cfg,
)
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .dataset_mapper import DatasetMapper
from .datasets import DatasetFormatError, datasets_root, load_coco_json, register_coco_instances
from .detection_utils import ImageReadError, annotations_to_instances, read_image
from .samplers import InferenceSampler, TrainingSampler

__all__ = [k for k in globals().keys() if not k.startswith("_")]
