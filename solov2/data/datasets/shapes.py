"""The synthetic shapes dataset: COCO json + PNG images, generated deterministically on first use."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util

logger = logging.getLogger(__name__)

SHAPE_CLASSES = ["circle", "triangle", "rectangle"]
MIN_VISIBLE_AREA = 24  # pixels; objects occluded below this are left out of the annotations


def _background(rng: np.random.RandomState, h: int, w: int) -> np.ndarray:
    """A textured background: a colour gradient, blotches, a few lines and pixel noise."""
    c0, c1 = rng.randint(0, 256, 3), rng.randint(0, 256, 3)
    t = np.linspace(0, 1, w if rng.rand() < 0.5 else h)
    grad = (c0[None, :] * (1 - t[:, None]) + c1[None, :] * t[:, None])
    img = np.broadcast_to(grad[None], (h, w, 3)) if len(t) == w else np.broadcast_to(grad[:, None], (h, w, 3))
    img = img.astype(np.float32).copy()
    blotch = cv2.resize(rng.rand(max(2, h // 16), max(2, w // 16), 3).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    img += (blotch - 0.5) * 80
    for _ in range(rng.randint(0, 4)):
        p1 = (int(rng.randint(0, w)), int(rng.randint(0, h)))
        p2 = (int(rng.randint(0, w)), int(rng.randint(0, h)))
        cv2.line(img, p1, p2, tuple(float(x) for x in rng.randint(0, 256, 3)), int(rng.randint(1, 3)))
    img += rng.normal(0, 8, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw_shape(canvas: np.ndarray, cls: int, rng: np.random.RandomState, h: int, w: int) -> None:
    """Draw one filled shape of class `cls` (value 1) on a uint8 canvas."""
    size = float(np.exp(rng.uniform(np.log(8), np.log(min(h, w) * 0.45))))  # tiny to large, log-uniform
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    if cls == 0:
        cv2.circle(canvas, (int(round(cx)), int(round(cy))), max(3, int(round(size))), 1, -1, lineType=cv2.LINE_8)
    elif cls == 1:
        ang = rng.uniform(0, 2 * np.pi)
        pts = [(cx + size * np.cos(ang + k * 2 * np.pi / 3), cy + size * np.sin(ang + k * 2 * np.pi / 3))
               for k in range(3)]
        cv2.fillPoly(canvas, [np.round(np.array(pts)).astype(np.int32)], 1)
    else:
        rw, rh = size * rng.uniform(0.6, 1.4), size * rng.uniform(0.6, 1.4)
        x1, y1 = int(round(cx - rw)), int(round(cy - rh))
        cv2.rectangle(canvas, (x1, y1), (int(round(cx + rw)), int(round(cy + rh))), 1, -1)


def generate_shapes(out_dir: str, num_images: int, seed: int, image_size: Tuple[int, int] = (128, 192),
                    max_objects: int = 10) -> str:
    """Write `num_images` images and `annotations.json` (COCO, RLE masks of the visible parts) to `out_dir`."""
    rng = np.random.RandomState(seed)
    img_dir = os.path.join(out_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    ann_id = 1
    for i in range(num_images):
        h, w = int(rng.randint(image_size[0], image_size[1] + 1)), int(rng.randint(image_size[0], image_size[1] + 1))
        img = _background(rng, h, w)
        owner = np.full((h, w), -1, dtype=np.int32)
        objs: List[Tuple[int, Tuple[int, int, int]]] = []
        for k in range(int(rng.randint(1, max_objects + 1))):
            cls = int(rng.randint(len(SHAPE_CLASSES)))
            canvas = np.zeros((h, w), dtype=np.uint8)
            _draw_shape(canvas, cls, rng, h, w)
            color = tuple(int(c) for c in rng.randint(0, 256, 3))
            region = canvas.astype(bool)
            shade = rng.uniform(0.85, 1.15, size=(h, w, 1))  # a little shading so colour alone is not the cue
            img[region] = np.clip(np.array(color)[None] * shade[region], 0, 255).astype(np.uint8)
            owner[region] = k  # later objects occlude earlier ones
            objs.append((cls, color))
        file_name = f"{i:06d}.png"
        cv2.imwrite(os.path.join(img_dir, file_name), img)
        images.append({"id": i + 1, "file_name": file_name, "height": h, "width": w})
        for k, (cls, _) in enumerate(objs):
            mask = owner == k
            area = int(mask.sum())
            if area < MIN_VISIBLE_AREA:
                continue
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            x, y, bw, bh = (float(v) for v in mask_util.toBbox(rle))
            annotations.append({
                "id": ann_id, "image_id": i + 1, "category_id": cls + 1, "iscrowd": 0, "area": area,
                "bbox": [x, y, bw, bh], "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
            })
            ann_id += 1
    data = {
        "info": {"description": f"solov2 synthetic shapes, seed {seed}"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(SHAPE_CLASSES)],
    }
    json_path = os.path.join(out_dir, "annotations.json")
    with open(json_path, "w") as f:
        json.dump(data, f, sort_keys=True)
    return json_path


def ensure_shapes_split(root: str, split: str, num_images: int, seed: int,
                        image_size: Tuple[int, int] = (128, 192)) -> Tuple[str, str]:
    """Generate <root>/shapes/<split> once (atomically: temp folder + rename); returns (json_file, image_root)."""
    final = os.path.join(root, "shapes", split)
    json_file = os.path.join(final, "annotations.json")
    if not os.path.isfile(json_file):
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{split}-", dir=os.path.dirname(final))
        try:
            logger.info(f"Generating the synthetic '{split}' split ({num_images} images) in {final} ...")
            generate_shapes(tmp, num_images, seed, image_size)
            try:
                os.rename(tmp, final)
            except OSError:
                # Another process finished first; its (identical) data stays.
                if not os.path.isfile(json_file):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return json_file, os.path.join(final, "images")


# name -> (number of images, seed)
SHAPES_SPLITS: Dict[str, Tuple[int, int]] = {"shapes_train": (400, 1), "shapes_val": (50, 2)}
