"""SOLOv2 meta-architecture: backbone + instance head + mask-feature head, Detectron2-style inputs/outputs."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Union

import torch
from torch import nn
from torch.nn import functional as F

from ...config import CfgNode
from ...structures import ImageList, Instances
from ..backbone import build_backbone
from ..solov2 import (
    InferenceParams,
    SOLOv2InsHead,
    SOLOv2MaskHead,
    assign_image_targets,
    downsample_masks,
    flatten_image_preds,
    postprocess_image,
    solov2_losses,
)
from .build import META_ARCH_REGISTRY, resolve_device

logger = logging.getLogger(__name__)

MASK_STRIDE = 4  # the mask features live at stride 4 (p2)


@META_ARCH_REGISTRY.register()
class SOLOv2(nn.Module):
    """SOLOv2: Dynamic and Fast Instance Segmentation (NeurIPS 2020)."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        c = cfg.MODEL.SOLOV2
        self.device = resolve_device(cfg.MODEL.DEVICE)
        self.instance_in_features = list(c.INSTANCE_IN_FEATURES)
        self.mask_in_features = list(c.MASK_IN_FEATURES)
        self.num_grids = list(c.NUM_GRIDS)
        self.scale_ranges = [tuple(r) for r in c.FPN_SCALE_RANGES]
        self.sigma = c.SIGMA
        self.num_classes = c.NUM_CLASSES
        if len(self.scale_ranges) != len(self.num_grids) or len(c.FPN_INSTANCE_STRIDES) != len(self.num_grids):
            raise ValueError(
                "MODEL.SOLOV2.FPN_SCALE_RANGES, FPN_INSTANCE_STRIDES and NUM_GRIDS need one entry per level of "
                f"INSTANCE_IN_FEATURES; got {len(self.scale_ranges)}, {len(c.FPN_INSTANCE_STRIDES)}, {len(self.num_grids)}"
            )
        if c.NMS_TYPE not in ("matrix", "mask"):
            raise ValueError(f"MODEL.SOLOV2.NMS_TYPE must be 'matrix' or 'mask', got '{c.NMS_TYPE}'")
        if c.NMS_KERNEL not in ("gaussian", "linear"):
            raise ValueError(f"MODEL.SOLOV2.NMS_KERNEL must be 'gaussian' or 'linear', got '{c.NMS_KERNEL}'")
        if not c.LOSS.FOCAL_USE_SIGMOID:
            raise ValueError("MODEL.SOLOV2.LOSS.FOCAL_USE_SIGMOID False (softmax focal loss) is not supported")
        self.loss_cfg = c.LOSS
        self.infer_params = InferenceParams(
            strides=list(c.FPN_INSTANCE_STRIDES), score_thr=c.SCORE_THR, mask_thr=c.MASK_THR, nms_pre=c.NMS_PRE,
            update_thr=c.UPDATE_THR, max_per_img=c.MAX_PER_IMG, nms_type=c.NMS_TYPE, nms_kernel=c.NMS_KERNEL,
            nms_sigma=c.NMS_SIGMA,
        )

        self.backbone = build_backbone(cfg)
        shapes = self.backbone.output_shape()
        for f in self.instance_in_features + self.mask_in_features:
            if f not in shapes:
                raise ValueError(f"MODEL.SOLOV2 wants feature '{f}' but the backbone gives {list(shapes)}")
        self.ins_head = SOLOv2InsHead(cfg)
        self.mask_head = SOLOv2MaskHead(cfg)

        self.register_buffer("pixel_mean", torch.tensor(cfg.MODEL.PIXEL_MEAN).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(cfg.MODEL.PIXEL_STD).view(-1, 1, 1), False)
        self.to(self.device)

    # ------------------------------------------------------------------ helpers
    def preprocess_image(self, batched_inputs: List[Dict[str, Any]]) -> ImageList:
        """Normalise and pad the images into an ImageList."""
        images = [(x["image"].to(self.pixel_mean.device).float() - self.pixel_mean) / self.pixel_std
                  for x in batched_inputs]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def _instance_features(self, features: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
        """[p2..p6] -> p2 halved and p6 resized to p5, giving strides 8, 8, 16, 32, 32."""
        feats = [features[f] for f in self.instance_in_features]
        if len(feats) == 5:
            feats[0] = F.interpolate(feats[0], scale_factor=0.5, mode="bilinear", align_corners=False)
            feats[4] = F.interpolate(feats[4], size=feats[3].shape[-2:], mode="bilinear", align_corners=False)
        return feats

    def forward(self, batched_inputs: List[Dict[str, Any]]) -> Union[Dict[str, torch.Tensor], List[Dict[str, Instances]]]:
        """Training: {"loss_ins", "loss_cate"}; inference: [{"instances": Instances}] per image."""
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        cate_preds, kernel_preds = self.ins_head(self._instance_features(features))
        mask_feats = self.mask_head([features[f] for f in self.mask_in_features])
        if self.training:
            return self.losses(batched_inputs, images, cate_preds, kernel_preds, mask_feats)
        return self.inference(batched_inputs, images, cate_preds, kernel_preds, mask_feats)

    def losses(
        self,
        batched_inputs: List[Dict[str, Any]],
        images: ImageList,
        cate_preds: List[torch.Tensor],
        kernel_preds: List[torch.Tensor],
        mask_feats: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        """Assign targets per image and compute the focal + dice losses."""
        if any("instances" not in x for x in batched_inputs):
            raise ValueError("SOLOv2 training needs an 'instances' field (gt_classes, gt_masks, gt_boxes) in every input")
        padded = tuple(images.tensor.shape[-2:])
        feat_size = tuple(mask_feats.shape[-2:])
        targets, mask_targets = [], []
        for x in batched_inputs:
            inst: Instances = x["instances"].to(self.pixel_mean.device)
            masks = inst.gt_masks.tensor if hasattr(inst.gt_masks, "tensor") else inst.gt_masks
            boxes = inst.gt_boxes.tensor if hasattr(inst.gt_boxes, "tensor") else inst.gt_boxes
            targets.append(assign_image_targets(masks, boxes, inst.gt_classes, padded, self.num_grids,
                                                self.scale_ranges, self.sigma, self.num_classes))
            mask_targets.append(downsample_masks(masks, feat_size, MASK_STRIDE))
        c = self.loss_cfg
        return solov2_losses(cate_preds, kernel_preds, mask_feats, targets, mask_targets, self.num_classes,
                             c.FOCAL_ALPHA, c.FOCAL_GAMMA, c.FOCAL_WEIGHT, c.DICE_WEIGHT)

    @torch.no_grad()
    def inference(
        self,
        batched_inputs: List[Dict[str, Any]],
        images: ImageList,
        cate_preds: List[torch.Tensor],
        kernel_preds: List[torch.Tensor],
        mask_feats: torch.Tensor,
    ) -> List[Dict[str, Instances]]:
        """Post-process every image to its original size."""
        results = []
        padded = tuple(images.tensor.shape[-2:])
        for i, x in enumerate(batched_inputs):
            in_h, in_w = images.image_sizes[i]
            out_size = (int(x.get("height", in_h)), int(x.get("width", in_w)))
            scores, kernels, levels = flatten_image_preds(cate_preds, kernel_preds, i)
            inst = postprocess_image(scores, kernels, levels, mask_feats[i], self.infer_params,
                                     (in_h, in_w), padded, out_size)
            results.append({"instances": inst})
        return results
