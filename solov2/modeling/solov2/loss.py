"""SOLOv2 losses: sigmoid focal loss on category grids, dice loss on dynamically predicted masks."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, List

import torch

with warnings.catch_warnings():
    # fvcore.nn scripts its own focal-loss variant at import time, which recent torch flags as deprecated on every
    # command's start; we use the plain function, so the warning is noise to our users.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
    from fvcore.nn import sigmoid_focal_loss

from ...layers import dice_loss
from .targets import LevelTargets


@dataclass(frozen=True)
class LossParams:
    """Weights of the SOLOv2 losses (MODEL.SOLOV2.LOSS.*): sigmoid focal loss on categories, dice loss on masks."""

    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    focal_weight: float = 1.0
    dice_weight: float = 3.0


def solov2_losses(
    cate_preds: List[torch.Tensor],
    kernel_preds: List[torch.Tensor],
    mask_feats: torch.Tensor,
    targets: List[List[LevelTargets]],
    mask_targets: List[torch.Tensor],
    params: LossParams,
) -> Dict[str, torch.Tensor]:
    """Return {"loss_ins": dice, "loss_cate": focal}.

    cate_preds / kernel_preds: per level N x C x S x S and N x E x S x S; mask_feats: N x E x Hf x Wf;
    targets[image][level] (category targets use C as background); mask_targets[image]: that image's instance masks
    at Hf x Wf (uint8).
    """
    num_classes = cate_preds[0].shape[1]
    # --- mask (dice) loss over every positive (instance, cell) pair ---
    losses_ins = []
    # unbind, not [img]: indexing's backward writes a zero-filled copy of the whole batch tensor per image.
    feats_per_image = mask_feats.unbind(0)
    kernels_per_level = [k.flatten(2).unbind(0) for k in kernel_preds]  # per level, per image: E x S*S
    for img, (img_targets, img_masks) in enumerate(zip(targets, mask_targets)):
        kernels, inst = [], []
        for lvl, t in enumerate(img_targets):
            if t.pos_cells.numel() == 0:
                continue
            kernels.append(kernels_per_level[lvl][img][:, t.pos_cells].t())
            inst.append(t.pos_instances)
        if not kernels:
            continue
        kernels_t = torch.cat(kernels)  # P x E
        feat = feats_per_image[img]
        pred = (kernels_t @ feat.flatten(1)).view(-1, *feat.shape[-2:]).sigmoid()
        losses_ins.append(dice_loss(pred, img_masks[torch.cat(inst)]))
    if losses_ins:
        loss_ins = torch.cat(losses_ins).mean() * params.dice_weight
    else:
        # Keep the graph connected so every head parameter gets a (zero) gradient.
        loss_ins = (sum(k.sum() for k in kernel_preds) + mask_feats.sum()) * 0.0

    # --- category (focal) loss over all cells and classes ---
    flat_logits = torch.cat([p.permute(0, 2, 3, 1).reshape(-1, num_classes) for p in cate_preds])
    flat_labels = torch.cat(
        [torch.cat([t[lvl].cate.flatten() for t in targets]) for lvl in range(len(cate_preds))]
    )
    num_pos = (flat_labels != num_classes).sum()
    onehot = torch.zeros_like(flat_logits)
    pos = flat_labels != num_classes
    onehot[pos, flat_labels[pos]] = 1.0
    loss_cate = sigmoid_focal_loss(flat_logits.float(), onehot.float(), alpha=params.focal_alpha,
                                   gamma=params.focal_gamma, reduction="sum")
    loss_cate = params.focal_weight * loss_cate / (num_pos + 1)
    return {"loss_ins": loss_ins, "loss_cate": loss_cate}
