"""The one-call Python API: `Predictor(source)(image)`.

    from solov2 import Predictor
    predictor = Predictor("output/quickstart_shapes_R18/model_final.pth")   # or "m.onnx", or a config + weights
    result = predictor("photo.jpg")       # also a list of paths, a folder, a BGR numpy array or a PIL image
    print(result)                         # 3 instances: circle 0.93, triangle 0.88, rectangle 0.61
    result.masks, result.boxes, result.scores, result.classes, result.labels   # numpy arrays / class names
    result.save("photo_vis.png")          # the drawing; result.draw() returns it, result.to_coco_json() the JSON
"""

from __future__ import annotations

import glob
import logging
import os
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import yaml
import torch

from .checkpoint.embedded import Description, read_description
from .config import CfgNode, get_cfg
from .data.detection_utils import as_bgr_image
from .structures import Instances
from .utils.errors import ConfigError, OutputPathError

__all__ = ["IMAGE_EXTENSIONS", "Predictor", "Results", "expand_inputs", "inference_config"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_REPR_INSTANCES = 5  # instances named in a Results' repr; the rest are counted


class Results:
    """One image's predictions: `instances` (Instances, on the CPU, in the image's size), numpy accessors, class
    names, COCO JSON, and a drawing."""

    def __init__(self, instances: Instances, image: np.ndarray, class_names: Optional[Sequence[str]] = None,
                 path: Optional[str] = None, id_map: Optional[Dict[int, int]] = None) -> None:
        self.instances = instances
        self.image = image  # H x W x 3 uint8 BGR, as given
        self.class_names = list(class_names) if class_names is not None else None
        self.path = path
        self._id_map = id_map  # contiguous class -> the dataset's category id, for the JSON

    def __len__(self) -> int:
        return len(self.instances)

    @property
    def masks(self) -> np.ndarray:
        """N x H x W bool masks."""
        return self.instances.pred_masks.numpy().astype(bool)

    @property
    def boxes(self) -> np.ndarray:
        """N x 4 float32 boxes (x1, y1, x2, y2) around the masks."""
        return self.instances.pred_boxes.tensor.numpy().astype(np.float32)

    @property
    def scores(self) -> np.ndarray:
        """N float32 scores, descending."""
        return self.instances.scores.numpy().astype(np.float32)

    @property
    def classes(self) -> np.ndarray:
        """N int64 class indices (into class_names)."""
        return self.instances.pred_classes.numpy().astype(np.int64)

    @property
    def labels(self) -> List[str]:
        """The class name of each instance ('class K' where the names are unknown)."""
        return [self._name(int(k)) for k in self.classes]

    def _name(self, k: int) -> str:
        names = self.class_names
        return names[k] if names is not None and 0 <= k < len(names) else f"class {k}"

    def to_coco_json(self, image_id: Any = None) -> List[Dict[str, Any]]:
        """COCO results (RLE masks, XYWH boxes, scores, category ids and names; the file name when known)."""
        from .evaluation.coco_conversion import name_categories
        from .evaluation.coco_evaluation import instances_to_coco_json

        name = os.path.basename(self.path) if self.path else None
        results = instances_to_coco_json(self.instances, image_id if image_id is not None else name)
        unknown = name_categories(results, self.class_names, self._id_map)
        if unknown and self.class_names is not None:
            logging.getLogger("solov2").warning(
                f"{self.path or 'image'}: {unknown} prediction(s) of class indices the dataset has no name for are "
                "marked \"unknown_category\": true (does MODEL.SOLOV2.NUM_CLASSES match the dataset?)")
        for r in results:
            if self.path:
                r["file_name"] = self.path
        return results

    def draw(self) -> np.ndarray:
        """The image with the masks, class names and scores drawn (H x W x 3 uint8 RGB, as Detectron2's Visualizer)."""
        from .utils.visualizer import Visualizer

        metadata = SimpleNamespace(thing_classes=self.class_names) if self.class_names else None
        return Visualizer(self.image[:, :, ::-1], metadata).draw_instance_predictions(self.instances)

    def save(self, path: str) -> str:
        """Write the drawing to `path` (any image type OpenCV writes), or the COCO JSON for a .json path."""
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
            if path.lower().endswith(".json"):
                import json

                with open(path, "w") as f:
                    json.dump(self.to_coco_json(), f)
            elif not cv2.imwrite(path, np.ascontiguousarray(self.draw()[:, :, ::-1])):
                raise OutputPathError(f"Could not write '{path}' (an image type OpenCV cannot write, or the folder "
                                      "is not writable)")
        except OSError as e:
            if isinstance(e, OutputPathError):
                raise
            raise OutputPathError(f"Could not write '{path}': {e.strerror or e}") from e
        return path

    def __repr__(self) -> str:
        n = len(self)
        head = f"{n} instance{'s' if n != 1 else ''}"
        if n == 0:
            return head
        shown = ", ".join(f"{name} {score:.2f}" for name, score in
                          zip(self.labels[:_REPR_INSTANCES], self.scores[:_REPR_INSTANCES].tolist()))
        more = f", ... ({n - _REPR_INSTANCES} more)" if n > _REPR_INSTANCES else ""
        return f"{head}: {shown}{more}"


def expand_inputs(patterns: Sequence[str]) -> List[str]:
    """Folders (their images), globs and file names -> image files, each once; plain names are kept even if missing."""
    files: List[str] = []
    for p in patterns:
        p = os.fspath(p)
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTENSIONS))
        elif any(ch in p for ch in "*?["):
            found = sorted(glob.glob(os.path.expanduser(p), recursive=True))
        else:
            found = [p]
        if not found:
            logging.getLogger("solov2").warning(f"'{p}' matches no image files")
        files.extend(found)
    # A file named twice (a folder and a glob over it) would be processed twice into the same output.
    return list(dict.fromkeys(files))


def dataset_classes(cfg: CfgNode) -> Tuple[Optional[List[str]], Optional[Dict[int, int]]]:
    """Class names (and contiguous -> dataset category ids) of the config's first dataset that knows them."""
    from .data import MetadataCatalog, register_datasets_from_cfg
    from .evaluation.coco_conversion import contiguous_to_dataset_id_map

    register_datasets_from_cfg(cfg)  # datasets named in DATASETS.COCO_INSTANCES give their class names too
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        meta = MetadataCatalog.get(name)
        if meta.get("thing_classes"):
            return list(meta.thing_classes), contiguous_to_dataset_id_map(meta)
    return None, None


def inference_config(weights: Optional[str] = None, config: Any = None,
                     opts: Sequence[str] = ()) -> Tuple[CfgNode, Description]:
    """The config to run `weights` with, and what the checkpoint says about itself.

    The config a solov2 checkpoint holds, then `config` (a path, a zoo name or a CfgNode) and `opts` (KEY VALUE) on
    top, and MODEL.WEIGHTS = weights. A checkpoint without a config (published weights) needs `config`.
    """
    cfg = get_cfg()
    description = read_description(weights) if weights else Description(None, None)
    if description.config is not None:
        try:
            cfg.merge_from_other_cfg(cfg.load_cfg(description.config))
        except yaml.YAMLError as e:  # safe_load: a Python tag is refused, never run
            raise ConfigError(f"The config held by '{weights}' is not plain YAML ({' '.join(str(e).split())[:200]}): "
                              "a config that builds Python objects is refused; pass a config file (--config-file)") from e
        except (KeyError, ValueError, AssertionError) as e:
            raise ConfigError(f"The config held by '{weights}' does not fit this version of solov2 ({e}): pass "
                              "the config it was trained with (--config-file)") from e
    elif config is None:
        what = f"'{weights}' holds no config (published checkpoints and those of older versions do not)" if weights \
            else "No weights and no config given"
        raise ConfigError(f"{what}: pass the config it was trained with, e.g. --config-file SOLOv2/R50_3x.yaml "
                          "(Predictor(config, weights=...) in Python; `solov2 zoo` lists the configs)")
    if isinstance(config, CfgNode):
        cfg.merge_from_other_cfg(config)
    elif config:
        from .model_zoo import resolve_config_file

        cfg.merge_from_file(resolve_config_file(os.fspath(config)))
    cfg.merge_from_list(list(opts))
    if weights:
        cfg.MODEL.WEIGHTS = weights
    return cfg, description


class Predictor:
    """SOLOv2 in one call: `Predictor(source)(image)` -> Results (a list of them for a list of images or a folder).

    `source` is a checkpoint solov2 wrote (it holds its config and class names), an exported `.onnx` file, or a config
    (a path, a zoo name such as "SOLOv2/R50_3x.yaml", or a CfgNode) with `weights=` (e.g. a published checkpoint).
    `score_thresh` keeps the instances scoring at least that much (the answers DefaultPredictor gives, filtered at
    that score); `device` defaults to the config's where available, else the CPU; `opts` are KEY VALUE overrides.
    """

    def __init__(self, source: Any, weights: Optional[str] = None, *, device: Optional[str] = None,
                 score_thresh: float = 0.5, opts: Sequence[str] = ()) -> None:
        self.score_thresh = float(score_thresh)
        self.id_map: Optional[Dict[int, int]] = None
        path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        if path is not None and path.lower().endswith(".onnx"):
            from .export import ONNXPredictor

            if weights is not None or opts:
                raise ConfigError("An .onnx file holds its weights and config: pass neither weights nor opts with it")
            self.cfg: Optional[CfgNode] = None
            self._predictor: Any = ONNXPredictor(path)
            self.class_names = self._predictor.class_names
            if self.score_thresh < self._predictor.score_thresh:
                logger.warning(f"'{path}' was exported with a score threshold of {self._predictor.score_thresh}: "
                               f"nothing scoring less comes out of it, whatever score_thresh {self.score_thresh} says")
            return
        from .engine.predictor import DefaultPredictor

        is_checkpoint = path is not None and path.lower().endswith((".pth", ".pt", ".pkl"))
        if is_checkpoint and weights is not None:
            raise ConfigError(f"'{path}' is a checkpoint: give it alone, or a config with weights='{path}'")
        cfg, description = inference_config(path if is_checkpoint else weights,
                                            None if is_checkpoint else source, opts)
        cfg.defrost()
        if device is not None:
            cfg.MODEL.DEVICE = device
        elif cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
            cfg.MODEL.DEVICE = "cpu"
        # Maskness and Matrix NMS only lower scores, and a candidate's decay depends only on higher-scored ones, so
        # dropping candidates below the threshold before post-processing changes nothing that scores above it.
        cfg.MODEL.SOLOV2.SCORE_THR = self.score_thresh
        cfg.MODEL.SOLOV2.UPDATE_THR = min(cfg.MODEL.SOLOV2.UPDATE_THR, self.score_thresh)
        cfg.freeze()
        if not cfg.MODEL.WEIGHTS:
            logger.warning("MODEL.WEIGHTS is empty: the model is RANDOMLY INITIALISED and its predictions mean nothing")
        self.cfg = cfg
        self._predictor = DefaultPredictor(cfg)
        if description.class_names is None and cfg.MODEL.WEIGHTS and os.path.isfile(cfg.MODEL.WEIGHTS):
            description = read_description(cfg.MODEL.WEIGHTS)  # weights named in the config or an override
        self.class_names = description.class_names
        if self.class_names is None:
            self.class_names, self.id_map = dataset_classes(cfg)

    @property
    def model(self) -> Optional[torch.nn.Module]:
        """The PyTorch model (None for an ONNX file)."""
        return getattr(self._predictor, "model", None)

    def predict(self, image: Any, path: Optional[str] = None) -> Results:
        """One image (a path, a BGR numpy array or a PIL image) -> its Results."""
        if isinstance(image, (str, os.PathLike)):
            path = os.fspath(image)
        bgr = as_bgr_image(image, "Predictor")
        instances = self._predictor(bgr)["instances"].to("cpu")
        instances = instances[instances.scores >= self.score_thresh]
        return Results(instances, bgr, self.class_names, path, self.id_map)

    def __call__(self, source: Any) -> Union[Results, List[Results]]:
        """Results of one image (a file, a BGR array, a PIL image), or a list of them (a list of images, a folder)."""
        if isinstance(source, (list, tuple)):
            return [self.predict(x) for x in source]
        if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
            return [self.predict(p) for p in expand_inputs([os.fspath(source)])]
        return self.predict(source)
