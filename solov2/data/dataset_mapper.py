"""DatasetMapper: a dataset dict -> the model's input dict (image tensor + Instances)."""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any, Dict, Optional

import numpy as np
import torch

from ..structures import segmentation_to_bitmask
from .detection_utils import ImageReadError, annotations_to_instances, check_image_size, read_image
from .transforms import ResizeShortestEdge

logger = logging.getLogger(__name__)


class DatasetMapper:
    """Reads the image, applies resize/flip to image and masks alike, builds Instances for training.

    Returns None for an unreadable image when DATALOADER.SKIP_CORRUPT_IMAGES is on (the loaders then skip it);
    otherwise such an image raises an error naming the file.
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
                raise ValueError(f"INPUT.RANDOM_FLIP must be 'horizontal', 'vertical' or 'none', got '{flip}'")
            self.flip = flip
        else:
            self.resize = ResizeShortestEdge((cfg.INPUT.MIN_SIZE_TEST,), cfg.INPUT.MAX_SIZE_TEST, "choice")
            self.flip = "none"
        self.num_skipped = 0
        self._lock = threading.Lock()

    def __call__(self, dataset_dict: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Map one dataset dict; None when the image is unreadable and skipping is enabled."""
        d = copy.copy(dataset_dict)
        try:
            image = read_image(d["file_name"], format=self.image_format)
        except ImageReadError as e:
            if not self.skip_corrupt:
                raise
            with self._lock:
                self.num_skipped += 1
            logger.warning(f"Skipping unreadable image ({self.num_skipped} so far): {e}")
            return None
        check_image_size(d, image)
        h, w = image.shape[:2]
        # np.random is seeded per worker by the loader, so augmentation is reproducible under a fixed SEED.
        flip = self.flip != "none" and np.random.rand() < 0.5
        t = self.resize.get_transform(h, w, np.random, hflip=flip and self.flip == "horizontal",
                                      vflip=flip and self.flip == "vertical")
        image = t.apply_image(image)
        d["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        d.setdefault("height", h)
        d.setdefault("width", w)
        annos = d.pop("annotations", None)
        if not self.is_train:
            return d
        annos = [a for a in (annos or []) if not a.get("iscrowd", 0)]
        transformed = []
        for a in annos:
            mask = segmentation_to_bitmask(a["segmentation"], h, w)
            transformed.append({"category_id": a["category_id"], "segmentation": t.apply_mask(mask)})
        d["instances"] = annotations_to_instances(transformed, (t.new_h, t.new_w))
        return d
