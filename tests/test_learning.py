"""A small SOLOv2 learns to segment and classify a handful of generated shape images (CPU, < 2 minutes)."""

import cv2
import numpy as np
import pytest
import torch

from solov2.modeling import build_model
from solov2.structures import BitMasks, Instances

pytestmark = pytest.mark.slow  # subprocess launches / trainings


SIZE = 192


def _make_images(seed=0, n_images=4):
    """Images with 1-3 non-overlapping shapes: circle (0), triangle (1), rectangle (2) on a noisy background."""
    rng = np.random.RandomState(seed)
    data = []
    for i in range(n_images):
        img = (rng.rand(SIZE, SIZE, 3) * 60 + 40).astype(np.uint8)
        masks, classes = [], []
        slots = [(48, 48), (144, 48), (48, 144), (144, 144)]
        rng.shuffle(slots)
        for k in range(1 + i % 3):
            cls = (i + k) % 3
            cy, cx = slots[k]
            r = int(rng.randint(38, 46))  # large enough that stride-4 masks can reach IoU 0.9
            m = np.zeros((SIZE, SIZE), np.uint8)
            if cls == 0:
                cv2.circle(m, (cx, cy), r, 1, -1)
            elif cls == 1:
                pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
                cv2.fillPoly(m, [pts], 1)
            else:
                cv2.rectangle(m, (cx - r, cy - r // 2), (cx + r, cy + r // 2), 1, -1)
            img[m.astype(bool)] = rng.randint(150, 255, 3)
            masks.append(m.astype(bool))
            classes.append(cls)
        bm = BitMasks(np.stack(masks))
        inst = Instances((SIZE, SIZE), gt_masks=bm, gt_boxes=bm.get_bounding_boxes(),
                         gt_classes=torch.tensor(classes))
        data.append({"image": torch.from_numpy(img.transpose(2, 0, 1).copy()), "instances": inst})
    return data


def test_small_solov2_learns_shapes(one_thread, small_cfg):
    torch.manual_seed(0)
    cfg = small_cfg(num_classes=3)
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.PIXEL_STD = [57.0, 57.0, 57.0]
    model = build_model(cfg).train()
    data = _make_images()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    for step in range(150):
        losses = model(data)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)

    model.eval()
    with torch.no_grad():
        outputs = model([{"image": d["image"]} for d in data])
    for d, out in zip(data, outputs):
        gt = d["instances"]
        pred = out["instances"]
        pred = pred[pred.scores > 0.3]
        assert len(pred) >= len(gt), f"found {len(pred)} of {len(gt)} objects"
        for k in range(len(gt)):
            g = gt.gt_masks.tensor[k]
            inter = (pred.pred_masks & g).flatten(1).sum(1).float()
            union = (pred.pred_masks | g).flatten(1).sum(1).float()
            iou = inter / union
            best = int(iou.argmax())
            assert iou[best] >= 0.9, f"mask IoU {iou[best]:.3f} for object {k}"
            assert int(pred.pred_classes[best]) == int(gt.gt_classes[k])
