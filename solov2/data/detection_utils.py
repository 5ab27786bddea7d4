"""Image reading and annotation -> Instances conversion shared by the mappers and tools."""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from PIL import Image, ImageOps

from ..structures import BitMasks, Boxes, Instances, segmentation_to_bitmask
from ..utils.errors import ConfigError, DatasetFormatError, ImageReadError
from ..utils.file_io import PathManager
from .transforms import GeometricTransform, shortest_edge_size

logger = logging.getLogger(__name__)

# Appended to an unreadable image's error where skipping it is an option.
SKIP_CORRUPT_HINT = " (DATALOADER.SKIP_CORRUPT_IMAGES True skips unreadable images)"


def _to_uint8_rgb(img: Image.Image, file_name: str) -> np.ndarray:
    """Any PIL mode (L, LA, P, RGBA, I;16, I, F, CMYK, ...) -> H x W x 3 uint8 RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        hi = arr.max() if arr.size else 0
        # 16-bit data: scale the full range down to 8 bits (not clip, which would blow out the image).
        scale = 255.0 / 65535.0 if hi > 255 else 1.0
        arr = np.clip(arr * scale, 0, 255).astype(np.uint8)
        return np.stack([arr] * 3, axis=-1)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA"):
        # Composite on white so transparent regions do not turn black.
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img.convert("RGBA"))
    return np.asarray(img.convert("RGB"))


def read_image(file_name: str, format: str = "BGR") -> np.ndarray:
    """Read an image as H x W x 3 uint8 in `format` ("BGR" or "RGB"), honouring EXIF orientation."""
    if format not in ("BGR", "RGB"):
        raise ConfigError(f"INPUT.FORMAT must be 'BGR' or 'RGB', got '{format}'")
    try:
        with PathManager.open(file_name, "rb") as f:
            img = Image.open(f)
            img.load()
    except FileNotFoundError as e:
        raise ImageReadError(f"Image file '{file_name}' does not exist") from e
    except Exception as e:  # PIL raises many types for corrupt data
        raise ImageReadError(f"Cannot read image '{file_name}': {e}") from e
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not lose the image
        logger.warning(f"Ignoring unreadable EXIF data of '{file_name}'")
    try:
        arr = _to_uint8_rgb(img, file_name)
    except Exception as e:  # a mode PIL can open but not convert
        raise ImageReadError(f"Cannot convert image '{file_name}' (mode {img.mode}) to RGB: {e}") from e
    if format == "BGR":
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(arr)


def as_bgr_image(image: Any, who: str = "The predictor") -> np.ndarray:
    """An image given as a file path, a PIL image or an H x W x 3 uint8 BGR array -> an H x W x 3 uint8 BGR array."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(os.fspath(image), format="BGR")
    if isinstance(image, Image.Image):
        return np.ascontiguousarray(_to_uint8_rgb(image, "<PIL image>")[:, :, ::-1])
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{who} takes an H x W x 3 BGR image (or a file path, or a PIL image), "
                         f"got an array of shape {image.shape}")
    return image


def resize_for_test(image: Any, min_size: int, max_size: int, who: str = "The predictor") -> np.ndarray:
    """Check an H x W x 3 image and resize it as inference does: short side to `min_size` (INPUT.MIN_SIZE_TEST, 0
    keeps the size), long side at most `max_size` (INPUT.MAX_SIZE_TEST)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{who} takes an H x W x 3 BGR image, got shape {image.shape}")
    if min_size <= 0:
        return image
    h, w = image.shape[:2]
    nh, nw = shortest_edge_size(h, w, min_size, max_size)
    return GeometricTransform(h, w, nh, nw).apply_image(image)


def check_image_size(dataset_dict: Dict[str, Any], image: np.ndarray) -> None:
    """Raise if the image's size disagrees with the height/width recorded in the annotations."""
    h, w = image.shape[:2]
    if "height" in dataset_dict and "width" in dataset_dict:
        exp = (int(dataset_dict["height"]), int(dataset_dict["width"]))
        if exp != (h, w):
            raise DatasetFormatError(
                f"Image '{dataset_dict.get('file_name')}' is {w}x{h} (WxH) but its annotation says "
                f"{exp[1]}x{exp[0]}; fix the json's width/height (or the image)"
            )


def annotations_to_instances(annos: List[Dict[str, Any]], image_size: Tuple[int, int]) -> Instances:
    """Non-crowd annotations (segmentation already in image coordinates or as masks) -> Instances.

    Masks are rasterised at `image_size`; gt_boxes are the masks' tight boxes; empty masks are dropped.
    """
    h, w = image_size
    masks, classes, boxes = [], [], []
    for a in annos:
        if a.get("iscrowd", 0):
            continue
        m = a["segmentation"]
        m = m if isinstance(m, np.ndarray) and m.dtype == bool and m.shape == (h, w) else segmentation_to_bitmask(m, h, w)
        # Boxes and emptiness from each small numpy mask: the same values as masks_to_boxes on the stacked
        # tensor, without its multi-threaded reductions, which cost ms per image when the cores are busy.
        ys = np.flatnonzero(m.any(axis=1))
        if ys.size == 0:
            continue
        xs = np.flatnonzero(m.any(axis=0))
        masks.append(m)
        classes.append(int(a["category_id"]))
        boxes.append((xs[0], ys[0], xs[-1] + 1, ys[-1] + 1))
    inst = Instances((h, w))
    if masks:
        inst.gt_masks = BitMasks(np.stack(masks))
        inst.gt_boxes = Boxes(torch.from_numpy(np.array(boxes, dtype=np.float32)))
    else:
        inst.gt_masks = BitMasks(torch.zeros((0, h, w), dtype=torch.bool))
        inst.gt_boxes = Boxes(torch.zeros((0, 4), dtype=torch.float32))
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    return inst


def filter_empty_annotations(dataset_dicts: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Drop images without a non-crowd annotation (logged)."""
    kept = [d for d in dataset_dicts if any(not a.get("iscrowd", 0) for a in d.get("annotations", []))]
    removed = len(dataset_dicts) - len(kept)
    if removed:
        logger.info(f"Removed {removed} images with no usable annotations; {len(kept)} images left")
    return kept
