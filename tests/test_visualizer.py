"""The Visualizer draws distinct colours, outlines and legible labels inside the image."""

import numpy as np
import torch

from solov2.data import Metadata
from solov2.structures import Instances
from solov2.utils.visualizer import Visualizer, instance_colors


def test_colours_are_distinct():
    cols = np.array(instance_colors(12), dtype=float)
    d = np.linalg.norm(cols[:, None] - cols[None], axis=-1)
    assert d[~np.eye(12, dtype=bool)].min() > 30


def test_draws_masks_and_labels_inside_image():
    img = np.full((120, 160, 3), 90, np.uint8)
    masks = torch.zeros(2, 120, 160, dtype=torch.bool)
    masks[0, 0:30, 0:40] = True  # at the top-left corner: the label must stay inside
    masks[1, 60:110, 90:150] = True
    inst = Instances((120, 160), pred_masks=masks, scores=torch.tensor([0.95, 0.5]),
                     pred_classes=torch.tensor([0, 1]))
    out = Visualizer(img, Metadata(name="t", thing_classes=["circle", "square"])).draw_instance_predictions(inst)
    assert out.shape == img.shape and out.dtype == np.uint8
    c0 = out[15, 30].astype(int)  # inside mask 0, away from the label box at its top
    c1 = out[100, 140].astype(int)
    assert not np.array_equal(c0, c1) and not np.array_equal(c0, [90, 90, 90])
    assert np.array_equal(out[115, 5], img[115, 5])  # background untouched
    # label text (white or black glyphs on a dark box) exists near each mask's top-left
    label0 = out[0:20, 0:80]
    assert (label0.max(axis=2) > 240).any() or (label0.max(axis=2) < 15).any()


def test_empty_predictions_return_the_image():
    img = np.random.RandomState(0).randint(0, 255, (20, 30, 3)).astype(np.uint8)
    inst = Instances((20, 30), pred_masks=torch.zeros(0, 20, 30, dtype=torch.bool), scores=torch.zeros(0),
                     pred_classes=torch.zeros(0, dtype=torch.int64))
    assert np.array_equal(Visualizer(img).draw_instance_predictions(inst), img)
