"""Matrix NMS, point NMS and mask NMS against direct loop implementations of their definitions."""

import math

import pytest
import torch

from solov2.layers import mask_nms, matrix_nms, point_nms


def _loop_matrix_nms(labels, masks, scores, kernel, sigma):
    """The paper's formula, one pair at a time (masks sorted by descending score)."""
    n = len(labels)
    m = [masks[i].flatten().float() for i in range(n)]
    area = [float(x.sum()) for x in m]

    def iou(i, j):
        if labels[i] != labels[j]:
            return 0.0
        inter = float((m[i] * m[j]).sum())
        return inter / (area[i] + area[j] - inter)

    f = (lambda x: math.exp(-sigma * x * x)) if kernel == "gaussian" else (lambda x: 1 - x)
    comp = [max([iou(k, i) for k in range(i)], default=0.0) for i in range(n)]
    out = []
    for j in range(n):
        # linear: f(compensate) is 0 for a duplicate mask; the ratio is then +inf and never the minimum
        ratios = [f(iou(i, j)) / f(comp[i]) if f(comp[i]) > 0 else float("inf") for i in range(j)]
        out.append(float(scores[j]) * min(ratios, default=1.0))
    return torch.tensor(out)


def _random_case(seed, n=12, size=16):
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        y, x = torch.randint(0, size - 4, (2,), generator=g).tolist()
        h, w = torch.randint(3, 9, (2,), generator=g).tolist()
        masks[i, y : y + h, x : x + w] = True
    masks[5] = masks[3]  # identical masks (IoU 1)
    masks[8] = masks[3]  # a third copy: linear kernel's (1 - 1) / (1 - 1) must not poison the min
    labels = torch.randint(0, 3, (n,), generator=g)
    labels[5] = labels[8] = labels[3]
    scores = torch.rand(n, generator=g).sort(descending=True).values
    scores[4] = scores[3]  # a tie in score
    return labels, masks, scores


@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matrix_nms_matches_formula(kernel, seed):
    labels, masks, scores = _random_case(seed)
    areas = masks.flatten(1).sum(1).float()
    got = matrix_nms(labels, masks, areas, scores.clone(), kernel=kernel, sigma=2.0)
    want = _loop_matrix_nms(labels, masks, scores, kernel, 2.0)
    assert torch.isfinite(got).all()
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.all(got <= scores + 1e-7)
    if kernel == "linear":
        assert got[8] == 0  # the third identical copy is fully suppressed by the first one
    assert got[0] == scores[0]  # the top mask is never decayed


def test_matrix_nms_classes_do_not_interact():
    masks = torch.ones(2, 4, 4, dtype=torch.bool)
    scores = torch.tensor([0.9, 0.8])
    areas = torch.full((2,), 16.0)
    same = matrix_nms(torch.tensor([1, 1]), masks, areas, scores.clone())
    diff = matrix_nms(torch.tensor([1, 2]), masks, areas, scores.clone())
    assert torch.allclose(diff, scores)
    assert math.isclose(float(same[1]), 0.8 * math.exp(-2.0), rel_tol=1e-6)


def test_point_nms_keeps_local_maxima_only():
    heat = torch.tensor([[[[0.1, 0.9, 0.2], [0.3, 0.4, 0.8], [0.7, 0.6, 0.5]]]])
    out = point_nms(heat)
    want = torch.zeros_like(heat)
    h = heat[0, 0]
    for i in range(3):
        for j in range(3):
            # 2x2 window ending at (i, j): rows i-1..i, cols j-1..j
            win = h[max(0, i - 1) : i + 1, max(0, j - 1) : j + 1]
            if h[i, j] == win.max():
                want[0, 0, i, j] = h[i, j]
    assert torch.equal(out, want)
    assert out[0, 0, 0, 1] == 0.9 and out[0, 0, 1, 1] == 0


def test_mask_nms_greedy():
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[0, :4, :4] = True
    masks[1, :4, :3] = True  # IoU 0.75 with 0, same class -> suppressed
    masks[2, :4, :3] = True  # same as 1 but another class -> kept
    masks[3, 4:, 4:] = True
    labels = torch.tensor([0, 0, 1, 0])
    areas = masks.flatten(1).sum(1).float()
    keep = mask_nms(labels, masks, areas, torch.tensor([0.9, 0.8, 0.7, 0.6]), iou_threshold=0.5)
    assert keep.tolist() == [True, False, True, True]


def _dense_matrix_nms(labels, masks, areas, scores, kernel, sigma):
    """The previous, dense implementation (IoU of all pairs, masked to same-class ones): the blocked one's reference."""
    n = labels.shape[0]
    flat = masks.reshape(n, -1).float()
    inter = flat @ flat.t()
    a = areas.float().expand(n, n)
    iou = (inter / (a + a.t() - inter)).triu(diagonal=1)
    iou = iou * (labels[:, None] == labels[None, :]).float().triu(diagonal=1)
    compensate = iou.max(dim=0).values.expand(n, n).t()
    if kernel == "gaussian":
        decay = torch.exp(-sigma * iou**2) / torch.exp(-sigma * compensate**2)
    else:
        decay = (1 - iou) / (1 - compensate)
        decay = torch.where(compensate >= 1, torch.full_like(decay, float("inf")), decay)
    return scores * decay.min(dim=0).values


@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
@pytest.mark.parametrize("num_classes", [1, 7, 80])
def test_blocked_matrix_nms_equals_dense(kernel, num_classes):
    """Random masks of many classes, with exact duplicates (within and across classes) and tied scores."""
    g = torch.Generator().manual_seed(num_classes)
    n, h, w = 300, 24, 30
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):  # overlapping boxes of varied size, so that IoUs cover (0, 1)
        y, x = torch.randint(0, h - 6, (1,), generator=g).item(), torch.randint(0, w - 6, (1,), generator=g).item()
        bh = torch.randint(4, h - y + 1, (1,), generator=g).item()
        bw = torch.randint(4, w - x + 1, (1,), generator=g).item()
        masks[i, y : y + bh, x : x + bw] = True
    masks |= torch.rand(n, h, w, generator=g) > 0.9  # speckle
    labels = torch.randint(0, num_classes, (n,), generator=g)
    dup = torch.randint(0, n, (60,), generator=g)
    masks[dup.roll(1)] = masks[dup]  # exact copies (their labels may differ: duplicates across classes too)
    scores = torch.rand(n, generator=g).sort(descending=True).values
    scores[10:40] = scores[10]  # a run of ties
    areas = masks.flatten(1).sum(1).float()
    got = matrix_nms(labels, masks, areas, scores, kernel=kernel, sigma=2.0)
    want = _dense_matrix_nms(labels, masks, areas, scores, kernel, 2.0)
    assert torch.isfinite(got).all()
    assert torch.equal(got, want)
    assert (got < scores).sum() > n // 10  # the case really decays many masks
    # float 0/1 masks give the same answer as bool ones
    assert torch.equal(matrix_nms(labels, masks.float(), areas, scores, kernel=kernel, sigma=2.0), want)


def test_matrix_nms_empty_and_single():
    masks = torch.zeros(0, 4, 4, dtype=torch.bool)
    assert matrix_nms(torch.zeros(0, dtype=torch.long), masks, torch.zeros(0), torch.zeros(0)).shape == (0,)
    one = matrix_nms(torch.tensor([3]), torch.ones(1, 4, 4, dtype=torch.bool), torch.tensor([16.0]),
                     torch.tensor([0.7]))
    assert one.tolist() == [pytest.approx(0.7)]
