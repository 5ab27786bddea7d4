"""ONNXPredictor: DefaultPredictor's call and output, running an exported SOLOv2 graph in ONNX Runtime."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

from ..data.detection_utils import as_bgr_image, resize_for_test
from ..structures import Boxes, Instances
from ..utils.errors import InputFileNotFoundError
from .onnx_export import MIN_IMAGE_SIDE, ExportError, ImageSizeError, require


class ONNXPredictor:
    """Runs a graph written by `export_onnx` (`solov2 export`) on one BGR image; no PyTorch model is built.

    `ONNXPredictor("m.onnx")` reads the test size (and the class names, `class_names`) from the file's metadata;
    `ONNXPredictor(cfg, "m.onnx")` takes them from a config instead, which must match the export. Call with an
    H x W x 3 uint8 image in BGR order, or an image file's path, like DefaultPredictor: the image is resized so its
    short side is INPUT.MIN_SIZE_TEST (long side at most INPUT.MAX_SIZE_TEST); the graph does the rest, and the
    predictions come back as {"instances": Instances} in the image's size. `num_threads` sets ONNX Runtime's
    intra-op threads.
    """

    def __init__(self, source: Any, onnx_path: Optional[str] = None, num_threads: Optional[int] = None,
                 providers: Optional[List[str]] = None) -> None:
        cfg = None
        if isinstance(source, (str, os.PathLike)):
            if onnx_path is not None:
                raise TypeError("ONNXPredictor(path) or ONNXPredictor(cfg, path), not two paths")
            onnx_path = os.fspath(source)
        else:
            cfg = source
            if onnx_path is None:
                raise TypeError("ONNXPredictor(cfg, path) needs the path of the ONNX file")
        ort = require("onnxruntime", "ONNXPredictor")
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        if not os.path.isfile(onnx_path):
            raise InputFileNotFoundError(f"ONNX model '{onnx_path}' does not exist (write one with `solov2 export`)")
        try:
            self.session = ort.InferenceSession(onnx_path, options, providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # ORT reports a corrupt file as one of several error types
            raise ExportError(f"Cannot load the ONNX model '{onnx_path}': {e}") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        names = json.loads(meta["class_names"]) if meta.get("class_names") else None
        self.class_names: Optional[List[str]] = [str(n) for n in names] if names else None
        # The score threshold baked into the graph: nothing below it comes out.
        self.score_thresh = max(float(meta.get("score_thr", 0.0)), float(meta.get("update_thr", 0.0)))
        if cfg is None:
            if "min_size_test" not in meta:
                raise ExportError(f"'{onnx_path}' holds no test size in its metadata (exported by an older solov2): "
                                  "pass the config it was exported with, ONNXPredictor(cfg, path) / --config-file")
            self.min_size = int(meta["min_size_test"])
            self.max_size = int(meta["max_size_test"])
            return
        self.min_size = cfg.INPUT.MIN_SIZE_TEST
        self.max_size = cfg.INPUT.MAX_SIZE_TEST
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

    def __call__(self, original_image: Union[np.ndarray, str, "os.PathLike[str]"]) -> Dict[str, Any]:
        """Predict on one BGR uint8 image (or image file); returns {"instances": Instances} in the image's size."""
        original_image = as_bgr_image(original_image, "ONNXPredictor")
        h, w = original_image.shape[:2]
        image = resize_for_test(original_image, self.min_size, self.max_size, "ONNXPredictor")
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
