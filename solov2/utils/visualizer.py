"""Draw instance predictions and ground truth on images with OpenCV/NumPy (no matplotlib)."""

from __future__ import annotations

import colorsys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..structures import BitMasks, Instances, segmentation_to_bitmask

__all__ = ["Visualizer", "draw_ground_truth_and_predictions", "instance_colors", "tile_mosaic"]

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


def _label_anchor(mask: np.ndarray) -> Optional[Tuple[int, int]]:
    """(x, y) where a mask's label goes: the middle of its top rows, so the label sits on the object itself
    (a box corner can be far from a person whose legs stretch sideways)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    top = int(ys.min())
    band = max(2, (int(ys.max()) - top) // 10)
    return int(np.median(xs[ys <= top + band])), top


def _free_row(x1: int, y1: int, bw: int, bh: int, h: int, placed: List[Tuple[int, int, int, int]]) -> int:
    """A top row for a bw x bh label at column x1 that covers no placed label: y1 itself, else the nearest row
    reached by stepping down past the labels in the way, else stepping up; when the column is full, the row
    where it covers the least label area."""
    for step_down in (True, False):
        y = y1
        for _ in range(len(placed) + 1):
            hit = next((p for p in placed if x1 < p[2] and p[0] < x1 + bw and y < p[3] and p[1] < y + bh), None)
            if hit is None:
                return y
            y = hit[3] if step_down else hit[1] - bh
            if y < 0 or y + bh > h:
                break
    boxes = np.array(placed, dtype=np.int64)
    ys = np.arange(0, max(1, h - bh + 1))
    dx = np.clip(np.minimum(x1 + bw, boxes[:, 2]) - np.maximum(x1, boxes[:, 0]), 0, None)
    dy = np.clip(np.minimum(ys[:, None] + bh, boxes[None, :, 3]) - np.maximum(ys[:, None], boxes[None, :, 1]), 0, None)
    cover = (dy * dx[None]).sum(axis=1)
    # Ties go to the row nearest the object.
    return int(ys[np.lexsort((np.abs(ys - y1), cover))[0]])


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
        self.line_width = max(1, int(round(np.sqrt(h * w) / 220.0)))
        # (x1, y1, x2, y2) of every label box the last draw call placed, exclusive ends; kept for layout checks.
        self.label_boxes: List[Tuple[int, int, int, int]] = []

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
        self.label_boxes = []
        n = len(masks)
        if n == 0:
            return out
        colors = list(colors) if colors is not None else instance_colors(n)
        fitted = [self._fit_mask(m) for m in masks]
        # Largest first so small objects stay visible on top.
        order = sorted(range(n), key=lambda i: -int(np.count_nonzero(fitted[i])))
        for i in order:
            m = fitted[i]
            if not m.any():
                continue
            color = np.array(colors[i], dtype=np.float32)
            region = out[m].astype(np.float32)
            out[m] = (region * (1 - self.alpha) + color * self.alpha).astype(np.uint8)
            contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            edge = tuple(int(c) for c in np.clip(color * 0.7, 0, 255))
            cv2.drawContours(out, contours, -1, edge, self.line_width, lineType=cv2.LINE_AA)
        if labels is not None:
            # Smallest first: their labels get the spot right above them, bigger objects' labels move instead.
            for i in order[::-1]:
                anchor = _label_anchor(fitted[i]) if labels[i] else None
                if anchor is not None:
                    self._draw_label(out, labels[i], anchor, colors[i], self.label_boxes)
        return out

    def _fit_mask(self, mask: np.ndarray) -> np.ndarray:
        m = np.asarray(mask).astype(bool)
        h, w = self.img.shape[:2]
        if m.shape != (h, w):
            m = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        return m

    def _fit_text(self, text: str, max_width: int) -> Tuple[str, float, int, int, int, int]:
        """(text, font scale, thickness, width, height, baseline) with the text's box at most max_width wide."""
        font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, self.font_scale, self.text_thickness
        while True:
            (tw, th), baseline = cv2.getTextSize(text, font, scale, thick)
            pad = max(2, thick + 1)
            if tw + 2 * pad <= max_width:
                return text, scale, thick, tw, th, baseline
            # Shrink to a still-readable size first; beyond that, shorten the class name.
            if scale > 0.3:
                scale = max(0.3, scale * 0.85)
                thick = max(1, int(round(scale * 1.6)))
            elif len(text) > 2:
                text = text[:-3].rstrip() + ".." if len(text) > 3 else text[:-1]
            else:
                return text, scale, thick, tw, th, baseline

    def _draw_label(
        self,
        out: np.ndarray,
        text: str,
        anchor: Tuple[int, int],
        color: Tuple[int, int, int],
        placed: List[Tuple[int, int, int, int]],
    ) -> None:
        h, w = out.shape[:2]
        text, scale, thick, tw, th, baseline = self._fit_text(text, w)
        pad = max(2, thick + 1)
        bw, bh = tw + 2 * pad, th + baseline + 2 * pad
        x1, y1 = anchor[0] - bw // 2, anchor[1] - bh  # centred just above the object's top when there is room
        if y1 < 0:
            y1 = anchor[1]
        x1 = int(np.clip(x1, 0, max(0, w - bw)))
        y1 = _free_row(x1, int(np.clip(y1, 0, max(0, h - bh))), bw, bh, h, placed)
        placed.append((x1, y1, x1 + bw, y1 + bh))
        bg = tuple(int(c * 0.55) for c in color)  # darkened instance colour: white text always readable
        cv2.rectangle(out, (x1, y1), (x1 + bw - 1, y1 + bh - 1), bg, thickness=-1)
        fg = (255, 255, 255) if _luminance(bg) < 150 else (0, 0, 0)
        cv2.putText(out, text, (x1 + pad, y1 + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, fg, thick, cv2.LINE_AA)

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


def draw_ground_truth_and_predictions(
    img_rgb: np.ndarray,
    dataset_dict: Dict[str, Any],
    predictions: Optional[Instances],
    metadata: Any = None,
    score_thr: float = 0.3,
    height: int = 320,
) -> np.ndarray:
    """One panel: the image with its ground truth (left) beside the predictions scoring >= score_thr (right).

    Both halves are scaled to `height` pixels and captioned, so panels of different images tile into a mosaic.
    """
    scale = height / max(1, img_rgb.shape[0])
    gt = Visualizer(img_rgb, metadata, scale=scale).draw_dataset_dict(dict(dataset_dict))
    if predictions is not None and len(predictions) and predictions.has("scores"):
        predictions = predictions[predictions.scores >= score_thr]
    pred = Visualizer(img_rgb, metadata, scale=scale).draw_instance_predictions(predictions) \
        if predictions is not None else Visualizer(img_rgb, metadata, scale=scale).img.copy()
    _caption(gt, "ground truth")
    shown = len(predictions) if predictions is not None else 0
    _caption(pred, f"predictions >= {score_thr:g}" + ("" if shown else " (none)"))
    gap = np.full((gt.shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([gt, gap, pred], axis=1)


def _caption(img: np.ndarray, text: str) -> None:
    """A small white-on-black caption in the top-left corner, in place."""
    scale = 0.45
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(img, (0, 0), (tw + 6, th + base + 6), (0, 0, 0), thickness=-1)
    cv2.putText(img, text, (3, th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def tile_mosaic(panels: Sequence[np.ndarray], columns: int = 2, gap: int = 8) -> np.ndarray:
    """Panels (RGB uint8, any sizes) in rows of `columns`, packed left to right with white gaps between them."""
    if not panels:
        raise ValueError("tile_mosaic needs at least one panel")
    columns = max(1, columns)
    rows = [list(panels[i:i + columns]) for i in range(0, len(panels), columns)]
    heights = [max(p.shape[0] for p in row) for row in rows]
    widths = [sum(p.shape[1] for p in row) + gap * (len(row) - 1) for row in rows]
    out = np.full((sum(heights) + gap * (len(rows) - 1), max(widths), 3), 255, np.uint8)
    y = 0
    for row, h in zip(rows, heights):
        x = 0
        for p in row:
            out[y:y + p.shape[0], x:x + p.shape[1]] = p[:, :, :3]
            x += p.shape[1] + gap
        y += h + gap
    return out
