"""ONNXPredictor: DefaultPredictor's call and output, running an exported SOLOv2 graph in ONNX Runtime."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ..data.transforms import GeometricTransform, shortest_edge_size
from ..structures import Boxes, Instances
from ..utils.errors import InputFileNotFoundError
from .onnx_export import MIN_IMAGE_SIDE, ExportError, ImageSizeError, require


class ONNXPredictor:
    """Runs a graph written by `export_onnx` (tools/export_onnx.py) on one BGR image; no PyTorch model is built.

    Call with an H x W x 3 uint8 image in BGR order, like DefaultPredictor: the image is resized so its short side is
    INPUT.MIN_SIZE_TEST (long side at most INPUT.MAX_SIZE_TEST); the graph does the rest, and the predictions come
    back as {"instances": Instances} in the image's size. `num_threads` sets ONNX Runtime's intra-op threads.
    """

    def __init__(self, cfg: Any, onnx_path: str, num_threads: Optional[int] = None,
                 providers: Optional[List[str]] = None) -> None:
        ort = require("onnxruntime", "ONNXPredictor")
        self.min_size = cfg.INPUT.MIN_SIZE_TEST
        self.max_size = cfg.INPUT.MAX_SIZE_TEST
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        if not os.path.isfile(onnx_path):
            raise InputFileNotFoundError(f"ONNX model '{onnx_path}' does not exist (write one with tools/export_onnx.py)")
        try:
            self.session = ort.InferenceSession(onnx_path, options, providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # ORT reports a corrupt file as one of several error types
            raise ExportError(f"Cannot load the ONNX model '{onnx_path}': {e}") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        exported = meta.get("input_format")
        if exported is not None and exported != cfg.INPUT.FORMAT:
            raise ExportError(
                f"'{onnx_path}' was exported for INPUT.FORMAT {exported} but the config says {cfg.INPUT.FORMAT}: "
                "export again with this config, or use the config it was exported with")
        classes = meta.get("num_classes")
        if classes is not None and int(classes) != cfg.MODEL.SOLOV2.NUM_CLASSES:
            raise ExportError(
                f"'{onnx_path}' predicts {classes} classes but MODEL.SOLOV2.NUM_CLASSES is "
                f"{cfg.MODEL.SOLOV2.NUM_CLASSES}: use the config it was exported with")

    def __call__(self, original_image: np.ndarray) -> Dict[str, Any]:
        """Predict on one BGR uint8 image; returns {"instances": Instances} in the image's size."""
        if original_image.ndim != 3 or original_image.shape[2] != 3:
            raise ValueError(f"ONNXPredictor takes an H x W x 3 BGR image, got shape {original_image.shape}")
        h, w = original_image.shape[:2]
        image = original_image
        if self.min_size > 0:
            nh, nw = shortest_edge_size(h, w, self.min_size, self.max_size)
            image = GeometricTransform(h, w, nh, nw).apply_image(image)
        if min(image.shape[:2]) < MIN_IMAGE_SIDE:
            raise ImageSizeError(
                f"The exported graph takes images of at least {MIN_IMAGE_SIDE} px per side; this one is "
                f"{image.shape[0]} x {image.shape[1]} after resizing to INPUT.MIN_SIZE_TEST {self.min_size} "
                f"(INPUT.MAX_SIZE_TEST {self.max_size}). Run such images with DefaultPredictor.")
        masks, scores, classes, boxes = self.session.run(
            None, {"image": np.ascontiguousarray(image, dtype=np.uint8), "output_size": np.array([h, w], np.int64)})
        inst = Instances((h, w), pred_masks=torch.from_numpy(masks), pred_boxes=Boxes(torch.from_numpy(boxes)),
                         scores=torch.from_numpy(scores), pred_classes=torch.from_numpy(classes))
        return {"instances": inst}
