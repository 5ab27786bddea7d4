"""SOLOv2 post-processing: category/kernel grids + mask features -> final masks, scores, classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, NamedTuple, Sequence, Tuple

import torch
from torch.nn import functional as F

from ...layers import mask_nms, matrix_nms, point_nms
from ...structures import masks_to_boxes
from ...utils.errors import ArgumentError

NMS_TYPES = ("matrix", "mask")
NMS_KERNELS = ("gaussian", "linear")


@dataclass
class InferenceParams:
    """Thresholds and limits of SOLOv2 inference (MODEL.SOLOV2.* in SOLOv2.from_config)."""

    score_thr: float = 0.1
    mask_thr: float = 0.5
    nms_pre: int = 500
    update_thr: float = 0.05
    max_per_img: int = 100
    nms_type: str = "matrix"
    nms_kernel: str = "gaussian"
    nms_sigma: float = 2.0

    def __post_init__(self) -> None:
        for name, allowed in (("nms_type", NMS_TYPES), ("nms_kernel", NMS_KERNELS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ArgumentError(name, f"must be {' or '.join(repr(a) for a in allowed)}, got '{value}'")


class ImageDetections(NamedTuple):
    """One image's final detections, as plain tensors (wrapped into Instances by the meta-architecture)."""

    masks: torch.Tensor  # K x H x W bool, at the output size
    boxes: torch.Tensor  # K x 4 XYXY float, tight boxes of the masks (zeros for an empty mask)
    scores: torch.Tensor  # K float, descending
    classes: torch.Tensor  # K int64


def flatten_image_preds(
    cate_preds: List[torch.Tensor], kernel_preds: List[torch.Tensor], img: int, strides: Sequence[int]
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image `img`'s point-NMS'd scores (cells x C), kernels (cells x E) and its level's stride per cell (float)."""
    scores = torch.cat([point_nms(p[img : img + 1].sigmoid())[0].permute(1, 2, 0).reshape(-1, p.shape[1])
                        for p in cate_preds])
    kernels = torch.cat([k[img].permute(1, 2, 0).reshape(-1, k.shape[1]) for k in kernel_preds])
    cell_strides = torch.cat([torch.full((p.shape[2] * p.shape[3],), float(s), dtype=torch.float32, device=p.device)
                              for p, s in zip(cate_preds, strides)])
    return scores, kernels, cell_strides


def postprocess_image(
    scores: torch.Tensor,
    kernels: torch.Tensor,
    cell_strides: torch.Tensor,
    mask_feat: torch.Tensor,
    params: InferenceParams,
    input_size: Tuple[Any, Any],
    padded_size: Tuple[Any, Any],
    output_size: Tuple[Any, Any],
) -> ImageDetections:
    """One image: candidates -> dynamic masks -> maskness -> NMS -> masks resized to `output_size`.

    scores: cells x C point-NMS'd probabilities; kernels: cells x E; cell_strides: cells (flatten_image_preds gives
    all three); mask_feat: E x Hf x Wf;
    input_size: the resized image (h, w) before padding; padded_size: the batch tensor's (H, W).
    Written with tensor operations only (no branch on a data-dependent value), so that the ONNX export traces this
    same function into the graph; zero candidates flow through as empty tensors.
    """
    num_classes = scores.shape[1]
    hf, wf = mask_feat.shape[-2:]
    flat_feat = mask_feat.reshape(mask_feat.shape[0], -1)

    cand = scores > params.score_thr
    inds = torch.nonzero(cand)
    cand_cells, labels = inds[:, 0], inds[:, 1]
    cand_scores = scores[cand_cells, labels]

    # Candidates of one cell share its kernel, hence its mask: each candidate cell's mask statistics once.
    cell_has_cand = cand.any(dim=1)
    cell_areas, cell_sums = _candidate_cell_stats(kernels, cell_has_cand, flat_feat, params.mask_thr)
    cell_rank = torch.cumsum(cell_has_cand.to(torch.int64), 0) - 1  # a cell's row in cell_areas / cell_sums
    areas, soft_sums = cell_areas[cell_rank[cand_cells]], cell_sums[cell_rank[cand_cells]]
    keep = torch.nonzero(areas > cell_strides[cand_cells])[:, 0]
    cand_cells, labels, cand_scores = cand_cells[keep], labels[keep], cand_scores[keep]
    cand_scores = cand_scores * (soft_sums[keep] / areas[keep])  # maskness

    order = torch.argsort(cand_scores, descending=True)[: params.nms_pre]
    cand_cells, cand_scores, labels = cand_cells[order], cand_scores[order], labels[order]
    # The (at most NMS_PRE) survivors' masks, recomputed rather than kept for every candidate cell above.
    soft = (kernels[cand_cells] @ flat_feat).sigmoid()
    binary = soft > params.mask_thr
    areas = torch.count_nonzero(binary, dim=1).to(torch.float32)  # sum() would first copy the bools to int64

    if params.nms_type == "matrix":
        cand_scores = matrix_nms(labels, binary, areas, cand_scores, kernel=params.nms_kernel,
                                 sigma=params.nms_sigma, num_classes=num_classes)
        keep = cand_scores >= params.update_thr
    else:  # "mask" (InferenceParams allows only these two)
        keep = mask_nms(labels, binary.view(-1, hf, wf), areas, cand_scores, iou_threshold=params.mask_thr)
    keep = torch.nonzero(keep)[:, 0]
    final = keep[torch.argsort(cand_scores[keep], descending=True)[: params.max_per_img]]
    masks = _upsample_masks(soft[final].view(-1, hf, wf), params.mask_thr, input_size, padded_size, output_size)
    return ImageDetections(masks, masks_to_boxes(masks), cand_scores[final], labels[final])


# The candidate cells' masks are computed this many pixel ranges at a time: it bounds memory when an untrained or
# low-threshold model makes every cell a candidate (3872 cells x 1/8 of an 800 x 1216 image: 118 MB) while the mask
# features are read once (1.6x faster than ranges of 64 cells, which re-read them). PyTorch measured 4 to 64 ranges
# alike; ONNX Runtime runs the R50 full pipeline ~5 % faster with 32 (its MatMul and the passes after it on smaller
# blocks), so an exported graph unrolls 32.
_PIXEL_RANGES = 8
_PIXEL_RANGES_EXPORT = 32


def _candidate_cell_stats(
    kernels: torch.Tensor, cell_has_cand: torch.Tensor, flat_feat: torch.Tensor, mask_thr: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Binary area and soft sum of the dynamic mask of every cell with a candidate (in cell order).

    The number of ranges is fixed (their size follows the image), so an exported graph unrolls the same loop.
    """
    cell_kernels = kernels[torch.nonzero(cell_has_cand)[:, 0]]
    ranges = _PIXEL_RANGES_EXPORT if torch.compiler.is_exporting() else _PIXEL_RANGES
    step = (flat_feat.shape[1] + ranges - 1) // ranges
    areas = sums = cell_kernels.new_zeros(cell_kernels.shape[0])
    for i in range(ranges):
        # soft * (soft > thr) in one pass; its ceil is then exactly the binary mask (0, or 1 on (thr, 1] for
        # 0 <= thr < 1): cheap float passes instead of a bool mask, its sum and a float-by-bool product.
        soft = torch.sigmoid_(cell_kernels @ flat_feat[:, i * step : (i + 1) * step])
        soft = F.threshold(soft, mask_thr, 0.0, inplace=True)
        sums = sums + soft.sum(dim=1)
        areas = areas + soft.ceil_().sum(dim=1)
    return areas, sums


def _upsample_masks(
    soft: torch.Tensor,
    mask_thr: float,
    input_size: Tuple[Any, Any],
    padded_size: Tuple[Any, Any],
    output_size: Tuple[Any, Any],
) -> torch.Tensor:
    """K x Hf x Wf soft masks -> K x output_size bool: up to the padded input, crop, resize, threshold."""
    hf, wf = soft.shape[-2:]
    # The reference writes ceil(input_h / feature_h); that is the same 4 for any single image taller than 96 px,
    # but in a batch of mixed sizes a small image's input_h would give a wrong scale, so use the padded height
    # the features were computed from.
    ratio = -(-padded_size[0] // hf)  # ceil division, written so that an exporter can simplify 32k / 8k to 4
    # One zero mask more, so that interpolation never gets an empty batch (it rejects one); dropped below.
    soft = torch.cat([soft, soft.new_zeros(1, hf, wf)])
    up = F.interpolate(soft[None], size=(hf * ratio, wf * ratio), mode="bilinear", align_corners=False)
    up = up[:, :, : input_size[0], : input_size[1]]
    # Resizing to the same size is an exact copy (every source offset is 0); skip it where the sizes are known
    # (an exported graph takes the output size as an input, so it always resizes).
    if torch.compiler.is_exporting() or tuple(up.shape[-2:]) != tuple(output_size):
        up = F.interpolate(up, size=output_size, mode="bilinear", align_corners=False)
    return up[0, :-1] > mask_thr
