"""Draw instance predictions and ground truth on images with OpenCV/NumPy (no matplotlib)."""

from __future__ import annotations

import colorsys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..structures import BitMasks, Instances, segmentation_to_bitmask

__all__ = ["Visualizer", "instance_colors"]

_GOLDEN = 0.618033988749895


def instance_colors(n: int, seed_hue: float = 0.12) -> List[Tuple[int, int, int]]:
    """`n` well-separated RGB colours (golden-ratio hue steps, alternating brightness)."""
    colors = []
    h = seed_hue
    for i in range(n):
        s = 0.75 if i % 2 == 0 else 0.95
        v = 0.95 if i % 3 != 2 else 0.8
        r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
        h += _GOLDEN
    return colors


def _luminance(c: Sequence[int]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _mask_box(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


class Visualizer:
    """Draws masks (semi-transparent fill + outline) and "class score%" labels on an RGB image."""

    def __init__(self, img_rgb: np.ndarray, metadata: Any = None, scale: float = 1.0, alpha: float = 0.5) -> None:
        img = np.asarray(img_rgb)
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        if scale != 1.0:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        self.img = np.ascontiguousarray(img[:, :, :3])
        self.scale = scale
        self.metadata = metadata
        self.alpha = alpha
        h, w = self.img.shape[:2]
        # Text and lines scale with the image so labels stay legible on large and small inputs.
        self.font_scale = float(np.clip(np.sqrt(h * w) / 750.0, 0.4, 1.8))
        self.text_thickness = max(1, int(round(self.font_scale * 1.6)))
        self.line_width = max(1, int(round(np.sqrt(h * w) / 450.0)))

    def _class_names(self) -> Optional[List[str]]:
        return getattr(self.metadata, "thing_classes", None) if self.metadata is not None else None

    def _label(self, cls: Optional[int], score: Optional[float]) -> str:
        names = self._class_names()
        text = ""
        if cls is not None:
            text = names[cls] if names is not None and 0 <= cls < len(names) else f"class {cls}"
        if score is not None:
            text = f"{text} {score * 100:.0f}%" if text else f"{score * 100:.0f}%"
        return text

    def overlay_instances(
        self,
        masks: Sequence[np.ndarray],
        labels: Optional[Sequence[str]] = None,
        colors: Optional[Sequence[Tuple[int, int, int]]] = None,
    ) -> np.ndarray:
        """Draw each mask with its colour and label; returns the RGB uint8 image."""
        out = self.img.copy()
        n = len(masks)
        if n == 0:
            return out
        colors = list(colors) if colors is not None else instance_colors(n)
        # Largest first so small objects stay visible on top.
        order = sorted(range(n), key=lambda i: -int(np.count_nonzero(masks[i])))
        for i in order:
            m = self._fit_mask(masks[i])
            if not m.any():
                continue
            color = np.array(colors[i], dtype=np.float32)
            region = out[m].astype(np.float32)
            out[m] = (region * (1 - self.alpha) + color * self.alpha).astype(np.uint8)
            contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            edge = tuple(int(c) for c in np.clip(color * 0.7, 0, 255))
            cv2.drawContours(out, contours, -1, edge, self.line_width, lineType=cv2.LINE_AA)
        if labels is not None:
            placed: List[Tuple[int, int, int, int]] = []
            for i in order[::-1]:
                if not labels[i]:
                    continue
                m = self._fit_mask(masks[i])
                box = _mask_box(m)
                if box is None:
                    continue
                self._draw_label(out, labels[i], box, colors[i], placed)
        return out

    def _fit_mask(self, mask: np.ndarray) -> np.ndarray:
        m = np.asarray(mask).astype(bool)
        h, w = self.img.shape[:2]
        if m.shape != (h, w):
            m = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        return m

    def _draw_label(
        self,
        out: np.ndarray,
        text: str,
        box: Tuple[int, int, int, int],
        color: Tuple[int, int, int],
        placed: List[Tuple[int, int, int, int]],
    ) -> None:
        h, w = out.shape[:2]
        font = cv2.FONT_HERSHEY_SIMPLEX
        (tw, th), baseline = cv2.getTextSize(text, font, self.font_scale, self.text_thickness)
        pad = max(2, self.text_thickness + 1)
        bw, bh = tw + 2 * pad, th + baseline + 2 * pad
        x1, y1 = box[0], box[1] - bh  # above the object when there is room
        if y1 < 0:
            y1 = box[1]
        x1 = int(np.clip(x1, 0, max(0, w - bw)))
        y1 = int(np.clip(y1, 0, max(0, h - bh)))
        # Shift down past labels already drawn so they never cover each other.
        for _ in range(len(placed)):
            hit = next((p for p in placed if x1 < p[2] and p[0] < x1 + bw and y1 < p[3] and p[1] < y1 + bh), None)
            if hit is None:
                break
            y1 = hit[3] + 1
            if y1 + bh > h:
                y1 = max(0, h - bh)
                break
        placed.append((x1, y1, x1 + bw, y1 + bh))
        bg = tuple(int(c * 0.55) for c in color)  # darkened instance colour: white text always readable
        cv2.rectangle(out, (x1, y1), (x1 + bw - 1, y1 + bh - 1), bg, thickness=-1)
        fg = (255, 255, 255) if _luminance(bg) < 150 else (0, 0, 0)
        cv2.putText(out, text, (x1 + pad, y1 + pad + th), font, self.font_scale, fg, self.text_thickness, cv2.LINE_AA)

    def draw_instance_predictions(self, predictions: Instances) -> np.ndarray:
        """Draw an Instances with pred_masks (and scores / pred_classes when present)."""
        n = len(predictions)
        if n == 0:
            return self.img.copy()
        masks = predictions.pred_masks
        masks = masks.tensor if isinstance(masks, BitMasks) else masks
        masks = [m for m in masks.detach().cpu().numpy()]
        classes = predictions.pred_classes.tolist() if predictions.has("pred_classes") else [None] * n
        scores = predictions.scores.tolist() if predictions.has("scores") else [None] * n
        labels = [self._label(c, s) for c, s in zip(classes, scores)]
        return self.overlay_instances(masks, labels, instance_colors(n))

    def draw_dataset_dict(self, dic: Dict[str, Any]) -> np.ndarray:
        """Draw the ground-truth annotations of a dataset dict (COCO-style segmentations)."""
        annos = [a for a in dic.get("annotations", []) if a.get("segmentation") is not None]
        h = int(dic.get("height", self.img.shape[0] / self.scale))
        w = int(dic.get("width", self.img.shape[1] / self.scale))
        masks = [segmentation_to_bitmask(a["segmentation"], h, w) for a in annos]
        labels = [self._label(a.get("category_id"), None) for a in annos]
        return self.overlay_instances(masks, labels, instance_colors(len(masks)))
