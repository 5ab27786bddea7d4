"""DefaultPredictor: one BGR image in, predictions in that image's size out."""

from __future__ import annotations

import os
from typing import Any, Dict, Union

import numpy as np
import torch

from ..checkpoint import Checkpointer
from ..checkpoint.weight_checks import weights_check_mode
from ..data.detection_utils import as_bgr_image, resize_for_test
from ..modeling import build_model
from ..utils.errors import ConfigError


class DefaultPredictor:
    """Builds the model from a config, loads MODEL.WEIGHTS and runs single-image inference.

    Call with an H x W x 3 uint8 image in BGR order (OpenCV's), or an image file's path; the image is resized so its
    short side is INPUT.MIN_SIZE_TEST (long side at most INPUT.MAX_SIZE_TEST) and channels are flipped for
    INPUT.FORMAT RGB. Returns every instance the model keeps (down to MODEL.SOLOV2.UPDATE_THR, at most MAX_PER_IMG);
    solov2.Predictor is the one-call API with a score threshold, class names and drawing.
    """

    def __init__(self, cfg) -> None:
        if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise ConfigError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got '{cfg.INPUT.FORMAT}'")
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg).eval()
        if cfg.MODEL.WEIGHTS:
            Checkpointer(self.model, weights_check=weights_check_mode(cfg, eval_only=True)).load(cfg.MODEL.WEIGHTS)
        self.min_size = cfg.INPUT.MIN_SIZE_TEST
        self.max_size = cfg.INPUT.MAX_SIZE_TEST
        self.input_format = cfg.INPUT.FORMAT

    def __call__(self, original_image: Union[np.ndarray, str, "os.PathLike[str]"]) -> Dict[str, Any]:
        """Predict on one BGR uint8 image (or image file); returns {"instances": Instances} in the image's size."""
        original_image = as_bgr_image(original_image, "DefaultPredictor")
        with torch.inference_mode():
            image = original_image[:, :, ::-1] if self.input_format == "RGB" else original_image
            h, w = image.shape[:2]
            image = resize_for_test(image, self.min_size, self.max_size, "DefaultPredictor")
            tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
            return self.model([{"image": tensor, "height": h, "width": w}])[0]
