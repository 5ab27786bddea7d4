"""DefaultPredictor: one BGR image in, predictions in that image's size out."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch

from ..checkpoint import Checkpointer
from ..data.transforms import GeometricTransform, shortest_edge_size
from ..modeling import build_model
from ..utils.errors import ConfigError


class DefaultPredictor:
    """Builds the model from a config, loads MODEL.WEIGHTS and runs single-image inference.

    Call with an H x W x 3 uint8 image in BGR order (OpenCV's); the image is resized so its short side is
    INPUT.MIN_SIZE_TEST (long side at most INPUT.MAX_SIZE_TEST) and channels are flipped for INPUT.FORMAT RGB.
    """

    def __init__(self, cfg) -> None:
        if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise ConfigError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got '{cfg.INPUT.FORMAT}'")
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg).eval()
        if cfg.MODEL.WEIGHTS:
            Checkpointer(self.model).load(cfg.MODEL.WEIGHTS)
        self.min_size = cfg.INPUT.MIN_SIZE_TEST
        self.max_size = cfg.INPUT.MAX_SIZE_TEST
        self.input_format = cfg.INPUT.FORMAT

    def __call__(self, original_image: np.ndarray) -> Dict[str, Any]:
        """Predict on one BGR uint8 image; returns {"instances": Instances} in the image's size."""
        if original_image.ndim != 3 or original_image.shape[2] != 3:
            raise ValueError(f"DefaultPredictor takes an H x W x 3 BGR image, got shape {original_image.shape}")
        with torch.inference_mode():
            image = original_image[:, :, ::-1] if self.input_format == "RGB" else original_image
            h, w = image.shape[:2]
            if self.min_size > 0:
                nh, nw = shortest_edge_size(h, w, self.min_size, self.max_size)
                image = GeometricTransform(h, w, nh, nw).apply_image(image)
            tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
            return self.model([{"image": tensor, "height": h, "width": w}])[0]
