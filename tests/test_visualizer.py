"""The Visualizer draws distinct colours, outlines and legible labels inside the image."""

import numpy as np
import torch

from solov2.data import Metadata
from solov2.structures import Instances
from solov2.utils.visualizer import Visualizer, instance_colors


def _instances(masks, scores, classes):
    return Instances(masks.shape[1:], pred_masks=masks, scores=torch.tensor(scores),
                     pred_classes=torch.tensor(classes))


def test_colours_are_distinct():
    cols = np.array(instance_colors(12), dtype=float)
    d = np.linalg.norm(cols[:, None] - cols[None], axis=-1)
    assert d[~np.eye(12, dtype=bool)].min() > 30


def test_draws_masks_and_labels_inside_image():
    img = np.full((120, 160, 3), 90, np.uint8)
    masks = torch.zeros(2, 120, 160, dtype=torch.bool)
    masks[0, 0:30, 0:40] = True  # at the top-left corner: the label must stay inside
    masks[1, 60:110, 90:150] = True
    inst = _instances(masks, [0.95, 0.5], [0, 1])
    vis = Visualizer(img, Metadata(name="t", thing_classes=["circle", "square"]))
    out = vis.draw_instance_predictions(inst)
    assert out.shape == img.shape and out.dtype == np.uint8
    c0 = out[25, 30].astype(int)  # inside mask 0, below its label
    c1 = out[100, 140].astype(int)
    assert not np.array_equal(c0, c1) and not np.array_equal(c0, [90, 90, 90])
    assert np.array_equal(out[115, 5], img[115, 5])  # background untouched
    # the mask's outline is darker than its fill
    assert out[60, 120].sum() < out[80, 120].sum()
    # label text (white or black glyphs on a dark box) exists near each mask's top-left
    label0 = out[0:20, 0:80]
    assert (label0.max(axis=2) > 240).any() or (label0.max(axis=2) < 15).any()
    # label boxes: inside the image; mask 1's sits right above the mask, centred on it
    assert len(vis.label_boxes) == 2
    for x1, y1, x2, y2 in vis.label_boxes:
        assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120
    x1, y1, x2, y2 = min(vis.label_boxes, key=lambda b: -b[1])
    assert y2 == 60 and abs((x1 + x2) / 2 - 120) <= 2
    assert not np.array_equal(out[y1 + 1, x1 + 1], img[0, 0])  # its background box is drawn


def test_crowded_labels_do_not_overlap_and_stay_inside():
    img = np.zeros((100, 100, 3), np.uint8)
    masks = torch.zeros(5, 100, 100, dtype=torch.bool)
    for k in range(5):  # five objects with the same top edge next to each other, the last on the right border
        masks[k, 40:90, 20 * k : 20 * k + 20] = True
    inst = _instances(masks, [0.9, 0.8, 0.7, 0.6, 0.5], [0, 0, 0, 0, 0])
    vis = Visualizer(img, Metadata(name="t2", thing_classes=["a long class name"]))
    vis.draw_instance_predictions(inst)
    boxes = vis.label_boxes
    assert len(boxes) == 5
    for i, a in enumerate(boxes):
        assert 0 <= a[0] and a[2] <= 100 and 0 <= a[1] and a[3] <= 100
        for b in boxes[i + 1 :]:
            overlap = a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
            assert not overlap, (a, b)


def test_font_and_lines_scale_with_image_size():
    small = Visualizer(np.zeros((120, 160, 3), np.uint8))
    large = Visualizer(np.zeros((800, 1216, 3), np.uint8))
    assert large.font_scale > small.font_scale and large.line_width > small.line_width


def test_empty_predictions_return_the_image():
    img = np.random.RandomState(0).randint(0, 255, (20, 30, 3)).astype(np.uint8)
    inst = _instances(torch.zeros(0, 20, 30, dtype=torch.bool), [], [])
    inst.pred_classes = inst.pred_classes.long()
    assert np.array_equal(Visualizer(img).draw_instance_predictions(inst), img)


def test_ground_truth_dataset_dict_polygons_and_rle():
    img = np.full((50, 60, 3), 200, np.uint8)
    dic = {"height": 50, "width": 60, "annotations": [
        {"category_id": 1, "segmentation": [[5, 5, 25, 5, 25, 25, 5, 25]]},
        {"category_id": 0, "segmentation": {"size": [50, 60], "counts": [35 * 50 + 30, 10, 40, 10, 3000 - 1840]}},
    ]}
    vis = Visualizer(img, Metadata(name="t3", thing_classes=["cat", "dog"]))
    out = vis.draw_dataset_dict(dic)
    assert not np.array_equal(out[15, 15], img[15, 15])  # polygon filled
    assert not np.array_equal(out[35, 36], img[35, 36])  # RLE filled (column-major runs at x=35..36)
    assert np.array_equal(out[49, 59], img[49, 59])
    assert len(vis.label_boxes) == 2


def test_labels_spread_out_when_they_cannot_all_fit():
    img = np.zeros((40, 60, 3), np.uint8)
    masks = torch.zeros(6, 40, 60, dtype=torch.bool)
    for k in range(6):
        masks[k, 20:40, 10 * k : 10 * k + 10] = True
    vis = Visualizer(img, Metadata(name="t4", thing_classes=["x"]))
    vis.draw_instance_predictions(_instances(masks, [0.9] * 6, [0] * 6))
    tops = [b[1] for b in vis.label_boxes]
    assert len(tops) == 6 and len(set(tops)) >= 3  # stacked over the whole height, not piled on one row
    assert all(0 <= b[1] and b[3] <= 40 for b in vis.label_boxes)
