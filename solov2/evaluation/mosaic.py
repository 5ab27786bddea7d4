"""A mosaic of ground truth beside predictions for a fixed sample of evaluation images (val_mosaic.jpg, TensorBoard)."""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np

from ..utils import comm
from ..utils.events import current_event_storage
from ..utils.visualizer import draw_ground_truth_and_predictions, tile_mosaic
from .evaluator import DatasetEvaluator

__all__ = ["MosaicEvaluator", "MOSAIC_FILE", "write_jpeg"]

logger = logging.getLogger(__name__)

MOSAIC_FILE = "val_mosaic.jpg"


def write_jpeg(path: str, rgb: np.ndarray, quality: int = 90) -> None:
    """Write an RGB image as JPEG atomically (a viewer or plot_metrics may read it while a run rewrites it)."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"Could not encode the {rgb.shape} image for '{path}' as JPEG")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(buf.tobytes())
    os.replace(tmp, path)


class MosaicEvaluator(DatasetEvaluator):
    """Keeps the predictions of the dataset's first `num_images` images and draws them beside their ground truth.

    The same images at every evaluation, so the mosaics of successive evaluations show the model learning. The
    mosaic goes to `output_file` and, inside a training run (an active EventStorage), to TensorBoard as
    `tensorboard_tag`.
    """

    def __init__(
        self,
        dataset_name: str,
        output_file: str,
        num_images: int = 8,
        score_thr: float = 0.3,
        tensorboard_tag: Optional[str] = None,
        dataset_dicts: Optional[Sequence[Dict[str, Any]]] = None,
    ) -> None:
        """dataset_dicts: the dataset's dicts when the caller has them (saves loading the annotations again)."""
        from ..data import DatasetCatalog, MetadataCatalog

        self._dataset_name = dataset_name
        self._output_file = output_file
        self._score_thr = score_thr
        self._tag = tensorboard_tag or f"{dataset_name}/val_mosaic"
        self._metadata = MetadataCatalog.get(dataset_name)
        dicts = dataset_dicts if dataset_dicts is not None else DatasetCatalog.get(dataset_name)
        self._sample = {d["image_id"]: d for d in itertools.islice(dicts, num_images)}
        self._predictions: Dict[Any, Any] = {}

    def reset(self) -> None:
        """Forget the previous evaluation's predictions."""
        self._predictions = {}

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Keep the predictions of the sampled images (on CPU, the masks only at the drawing threshold)."""
        for inp, out in zip(inputs, outputs):
            if inp.get("image_id") in self._sample and "instances" in out:
                inst = out["instances"].to("cpu")
                if inst.has("scores"):
                    inst = inst[inst.scores >= self._score_thr]
                self._predictions[inp["image_id"]] = inst

    def evaluate(self) -> Dict[str, Any]:
        """Draw and write the mosaic on the main process; no metrics."""
        from ..data import read_image

        predictions = self._predictions
        if comm.get_world_size() > 1:
            gathered = comm.gather(self._predictions, dst=0)
            if not comm.is_main_process():
                return {}
            predictions = {k: v for part in gathered for k, v in part.items()}
        panels = []
        for img_id, d in self._sample.items():
            if img_id not in predictions:
                continue  # not evaluated (e.g. beyond TEST.MAX_IMAGES, or unreadable and skipped)
            img = read_image(d["file_name"], "RGB")
            panels.append(draw_ground_truth_and_predictions(img, d, predictions[img_id], self._metadata,
                                                            self._score_thr))
        if not panels:
            return {}
        mosaic = tile_mosaic(panels, columns=2)
        os.makedirs(os.path.dirname(self._output_file) or ".", exist_ok=True)
        write_jpeg(self._output_file, mosaic)
        logger.info("Wrote ground truth beside predictions of %d images of '%s' to %s", len(panels),
                    self._dataset_name, self._output_file)
        storage = current_event_storage()
        if storage is not None:
            storage.put_image(self._tag, np.ascontiguousarray(mosaic.transpose(2, 0, 1)))
        return {}
