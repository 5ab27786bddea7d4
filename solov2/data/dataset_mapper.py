"""DatasetMapper: a dataset dict -> the model's input dict (image tensor + Instances)."""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any, Dict, List, Optional, Set

import numpy as np
import torch

from ..structures import BitMasks, segmentation_to_bitmask
from ..utils.errors import ConfigError, DatasetFormatError
from .detection_utils import SKIP_CORRUPT_HINT, ImageReadError, annotations_to_instances, check_image_size, read_image
from .transforms import RandomCrop, ResizeShortestEdge

logger = logging.getLogger(__name__)


class DatasetMapper:
    """Reads the image, applies resize/flip to image and masks alike, builds Instances for training.

    Training also applies INPUT.CROP (before the resize). Returns None for an unreadable image when
    DATALOADER.SKIP_CORRUPT_IMAGES is on (the loaders then skip it); otherwise such an image raises an error naming
    the file. `num_skipped` counts distinct skipped files (the training loader meets the same file every epoch).
    """

    def __init__(self, cfg, is_train: bool = True) -> None:
        self.is_train = is_train
        self.image_format = cfg.INPUT.FORMAT
        self.skip_corrupt = cfg.DATALOADER.SKIP_CORRUPT_IMAGES
        if is_train:
            self.resize = ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN,
                                             cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)
            flip = cfg.INPUT.RANDOM_FLIP if cfg.INPUT.HFLIP_TRAIN or cfg.INPUT.RANDOM_FLIP != "horizontal" else "none"
            if flip not in ("horizontal", "vertical", "none"):
                raise ConfigError(f"INPUT.RANDOM_FLIP must be 'horizontal', 'vertical' or 'none', got '{flip}'")
            self.flip = flip
        else:
            self.resize = ResizeShortestEdge((cfg.INPUT.MIN_SIZE_TEST,), cfg.INPUT.MAX_SIZE_TEST, "choice")
            self.flip = "none"
        c = cfg.INPUT.CROP
        self.crop: Optional[RandomCrop] = RandomCrop(c.TYPE, c.SIZE, c.CROP_INSTANCE) if is_train and c.ENABLED else None
        self.skipped_files: Set[str] = set()
        self._lock = threading.Lock()

    @property
    def num_skipped(self) -> int:
        """How many distinct unreadable files were skipped so far."""
        return len(self.skipped_files)

    def __call__(self, dataset_dict: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Map one dataset dict; None when the image is unreadable and skipping is enabled."""
        d = copy.copy(dataset_dict)
        try:
            image = read_image(d["file_name"], format=self.image_format)
        except ImageReadError as e:
            if not self.skip_corrupt:
                raise ImageReadError(f"{e}{SKIP_CORRUPT_HINT}") from e
            with self._lock:
                new = d["file_name"] not in self.skipped_files
                self.skipped_files.add(d["file_name"])
            if new:  # once per file: training meets it again every epoch
                logger.warning(f"Skipping unreadable image ({self.num_skipped} distinct so far): {e}")
            return None
        check_image_size(d, image)
        h, w = image.shape[:2]
        annos = d.pop("annotations", None)
        masks: List[np.ndarray] = []
        if self.is_train:
            annos = [a for a in (annos or []) if not a.get("iscrowd", 0)]
            masks = [self._mask(a, d["file_name"], h, w) for a in annos]
        crop = None
        if self.crop is not None:
            boxes = None
            if self.crop.crop_instance and masks:
                boxes = BitMasks(np.stack(masks)).get_bounding_boxes().tensor.numpy()
            crop = self.crop.get_crop(h, w, np.random, boxes)
        # np.random is seeded per worker by the loader, so augmentation is reproducible under a fixed SEED.
        flip = self.flip != "none" and np.random.rand() < 0.5
        t = self.resize.get_transform(h, w, np.random, hflip=flip and self.flip == "horizontal",
                                      vflip=flip and self.flip == "vertical", crop=crop)
        image = t.apply_image(image)
        d["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        d.setdefault("height", h)
        d.setdefault("width", w)
        if not self.is_train:
            return d
        transformed = [{"category_id": a["category_id"], "segmentation": t.apply_mask(m)} for a, m in zip(annos, masks)]
        d["instances"] = annotations_to_instances(transformed, (t.new_h, t.new_w))
        return d

    @staticmethod
    def _mask(anno: Dict[str, Any], file_name: str, h: int, w: int) -> np.ndarray:
        """An annotation's mask at the image's size; a segmentation that does not fit names its file and id."""
        try:
            return segmentation_to_bitmask(anno["segmentation"], h, w)
        except (ValueError, TypeError, KeyError) as e:
            raise DatasetFormatError(f"'{file_name}': annotation {anno.get('id', '?')}: {e}") from e
