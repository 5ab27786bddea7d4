"""Detectron2's DetectionCheckpointer, reading `.pkl` weights without executing code (solov2.checkpoint.safe_load)."""

from __future__ import annotations

from typing import Any, Dict

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from ..checkpoint.safe_load import load_pickle_file

__all__ = ["SafeDetectionCheckpointer"]


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose `.pkl` files go through the restricted unpickler (containers and numpy only).

    `.pth` files already load with torch's weights-only unpickler (torch >= 2.6 default) in Detectron2.
    """

    def _load_file(self, filename: str) -> Dict[str, Any]:
        """A .pkl read safely, laid out as Detectron2 expects; other files as Detectron2 reads them."""
        if not filename.endswith(".pkl"):
            return super()._load_file(filename)
        with PathManager.open(filename, "rb") as f:
            data = load_pickle_file(f, filename)
        if "model" in data and "__author__" in data:  # a Detectron2 model-zoo pickle: our names already
            return data
        blobs = data.get("blobs", data)
        # Caffe2 pickles: momentum blobs are optimizer state, not weights; names are matched heuristically.
        weights = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
        return {"model": weights, "__author__": "Caffe2", "matching_heuristics": True}
