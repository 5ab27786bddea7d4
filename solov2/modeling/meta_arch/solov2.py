"""SOLOv2 meta-architecture: backbone + instance head + mask-feature head, Detectron2-style inputs/outputs.

Built from explicit arguments (any backbone with `output_shape()` and `size_divisibility`, the two heads, the
target/loss/inference parameters) or from a config through `from_config`, in Detectron2's pattern. The input and
output structures are adapted in small hooks (`_batch_images`, `_gt_tensors`, `_wrap_detections`) so that
`solov2.d2` can use Detectron2's own structures without another copy of SOLOv2.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from ...config import configurable
from ...structures import Boxes, ImageList, Instances
from ...utils.errors import ConfigError
from ..backbone import build_backbone
from ..solov2 import (
    ImageDetections,
    InferenceParams,
    SOLOv2InsHead,
    SOLOv2MaskHead,
    assign_image_targets,
    downsample_masks,
    flatten_image_preds,
    postprocess_image,
    solov2_losses,
)
from .build import META_ARCH_REGISTRY

logger = logging.getLogger(__name__)

_DEFAULT_DETECTIONS_PER_IMAGE = 100  # Detectron2's TEST.DETECTIONS_PER_IMAGE default


@META_ARCH_REGISTRY.register()
class SOLOv2(nn.Module):
    """SOLOv2: Dynamic and Fast Instance Segmentation (NeurIPS 2020)."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        ins_head: nn.Module,
        mask_head: nn.Module,
        instance_in_features: Sequence[str],
        mask_in_features: Sequence[str],
        instance_strides: Sequence[int],
        num_grids: Sequence[int],
        scale_ranges: Sequence[Tuple[float, float]],
        num_classes: int,
        sigma: float = 0.2,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        focal_weight: float = 1.0,
        dice_weight: float = 3.0,
        inference: Optional[InferenceParams] = None,
        pixel_mean: Sequence[float] = (103.530, 116.280, 123.675),
        pixel_std: Sequence[float] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.ins_head = ins_head
        self.mask_head = mask_head
        self.instance_in_features = list(instance_in_features)
        self.mask_in_features = list(mask_in_features)
        self.instance_strides = [int(s) for s in instance_strides]
        self.num_grids = list(num_grids)
        self.scale_ranges = [tuple(r) for r in scale_ranges]
        self.sigma = sigma
        self.num_classes = num_classes
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.focal_weight, self.dice_weight = focal_weight, dice_weight
        self.infer_params = inference if inference is not None else InferenceParams(strides=self.instance_strides)
        # Inference on CPU in the channels-last memory layout (a switch, e.g. for benchmarking the difference).
        self.channels_last = True

        n = len(self.instance_in_features)
        if not (len(self.scale_ranges) == len(self.instance_strides) == len(self.num_grids) == n):
            raise ConfigError(
                "MODEL.SOLOV2.FPN_SCALE_RANGES, FPN_INSTANCE_STRIDES and NUM_GRIDS need one entry per level of "
                f"INSTANCE_IN_FEATURES ({n}); got {len(self.scale_ranges)}, {len(self.instance_strides)}, "
                f"{len(self.num_grids)}"
            )
        if self.infer_params.nms_type not in ("matrix", "mask"):
            raise ConfigError(f"MODEL.SOLOV2.NMS_TYPE must be 'matrix' or 'mask', got '{self.infer_params.nms_type}'")
        if self.infer_params.nms_kernel not in ("gaussian", "linear"):
            raise ConfigError(
                f"MODEL.SOLOV2.NMS_KERNEL must be 'gaussian' or 'linear', got '{self.infer_params.nms_kernel}'")

        shapes = backbone.output_shape()
        missing = [f for f in self.instance_in_features + self.mask_in_features if f not in shapes]
        if missing:
            raise ConfigError(
                f"MODEL.SOLOV2.INSTANCE_IN_FEATURES / MASK_IN_FEATURES name {missing}, but the backbone "
                f"({type(backbone).__name__}) gives {list(shapes)}"
            )
        self._feature_strides = {name: int(s.stride) for name, s in shapes.items()}
        mask_strides = [self._feature_strides[f] for f in self.mask_in_features]
        if any(b != 2 * a for a, b in zip(mask_strides, mask_strides[1:])):
            raise ConfigError(
                f"MODEL.SOLOV2.MASK_IN_FEATURES {self.mask_in_features} have strides {mask_strides}; the mask branch "
                "upsamples each level by 2 per step, so the strides must double level by level (p2..p5: 4..32)"
            )
        # Mask features (and mask targets) live at the stride of the first mask level: 4 for p2.
        self.mask_stride = mask_strides[0]
        for f, target in zip(self.instance_in_features, self.instance_strides):
            s = self._feature_strides[f]
            if target % s != 0 and s % target != 0:
                raise ConfigError(
                    f"MODEL.SOLOV2.FPN_INSTANCE_STRIDES gives {target} for '{f}', whose stride is {s}: "
                    "a level can only be resized by a power-of-two factor"
                )

        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg: Any, backbone: Optional[nn.Module] = None) -> Dict[str, Any]:
        """Arguments from a config: the backbone by MODEL.BACKBONE.NAME (unless given), heads, MODEL.SOLOV2.*."""
        c = cfg.MODEL.SOLOV2
        if not c.LOSS.FOCAL_USE_SIGMOID:
            raise ConfigError("MODEL.SOLOV2.LOSS.FOCAL_USE_SIGMOID False (softmax focal loss) is not supported")
        if backbone is None:
            backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        for key in ("INSTANCE_IN_FEATURES", "MASK_IN_FEATURES"):
            missing = [f for f in c[key] if f not in shapes]
            if missing:
                raise ConfigError(f"MODEL.SOLOV2.{key} names {missing}, but the backbone gives {list(shapes)}")
        return {
            "backbone": backbone,
            "ins_head": SOLOv2InsHead(cfg, [shapes[f] for f in c.INSTANCE_IN_FEATURES]),
            "mask_head": SOLOv2MaskHead(cfg, [shapes[f] for f in c.MASK_IN_FEATURES]),
            "instance_in_features": list(c.INSTANCE_IN_FEATURES),
            "mask_in_features": list(c.MASK_IN_FEATURES),
            "instance_strides": list(c.FPN_INSTANCE_STRIDES),
            "num_grids": list(c.NUM_GRIDS),
            "scale_ranges": [tuple(r) for r in c.FPN_SCALE_RANGES],
            "num_classes": c.NUM_CLASSES,
            "sigma": c.SIGMA,
            "focal_alpha": c.LOSS.FOCAL_ALPHA,
            "focal_gamma": c.LOSS.FOCAL_GAMMA,
            "focal_weight": c.LOSS.FOCAL_WEIGHT,
            "dice_weight": c.LOSS.DICE_WEIGHT,
            "inference": InferenceParams(
                strides=list(c.FPN_INSTANCE_STRIDES), score_thr=c.SCORE_THR, mask_thr=c.MASK_THR,
                nms_pre=c.NMS_PRE, update_thr=c.UPDATE_THR, max_per_img=_max_per_image(cfg),
                nms_type=c.NMS_TYPE, nms_kernel=c.NMS_KERNEL, nms_sigma=c.NMS_SIGMA,
            ),
            "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": list(cfg.MODEL.PIXEL_STD),
        }

    @property
    def device(self) -> torch.device:
        """The device the model's buffers are on."""
        return self.pixel_mean.device

    # ------------------------------------------------------------------ structure adaptation (overridden by d2)
    def _gt_tensors(self, instances: Any) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N x H x W bool masks, N x 4 boxes, N classes) of an image's ground truth, on the model's device."""
        inst = instances.to(self.device)
        masks = inst.gt_masks.tensor if hasattr(inst.gt_masks, "tensor") else inst.gt_masks
        boxes = inst.gt_boxes.tensor if hasattr(inst.gt_boxes, "tensor") else inst.gt_boxes
        return masks, boxes, inst.gt_classes

    def _wrap_detections(self, image_size: Tuple[int, int], det: ImageDetections) -> Any:
        """Detections -> the Instances the caller expects (pred_masks, pred_boxes, scores, pred_classes)."""
        return Instances(image_size, pred_masks=det.masks, pred_boxes=Boxes(det.boxes), scores=det.scores,
                         pred_classes=det.classes)

    def _batch_images(self, images: List[torch.Tensor]) -> ImageList:
        """Pad normalised images into one batch the backbone accepts (d2: Detectron2's padding constraints)."""
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    # ------------------------------------------------------------------ helpers
    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """A C x H x W image (any dtype, on the model's device) as the network's float input."""
        return (image.float() - self.pixel_mean) / self.pixel_std

    def preprocess_image(self, batched_inputs: List[Dict[str, Any]]) -> ImageList:
        """Normalise and pad the images into an ImageList."""
        images = [self.normalize(x["image"].to(self.device)) for x in batched_inputs]
        return self._batch_images(images)

    def network(self, images: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor], torch.Tensor]:
        """Backbone and heads on a normalised, padded batch: per-level category logits and kernels, mask features."""
        # Shapes: N x C x S x S and N x E x S x S per instance level, N x E x H/4 x W/4 mask features.
        if (self.channels_last and not self.training and images.device.type == "cpu"
                and not torch.compiler.is_exporting()):
            # Convolutions run ~1.4x faster on CPU on channels-last activations (tools/benchmark.py); every layer
            # after the first keeps the layout of its input.
            images = images.contiguous(memory_format=torch.channels_last)
        features = self.backbone(images)
        cate_preds, kernel_preds = self.ins_head(self._instance_features(features))
        mask_feats = self.mask_head([features[f] for f in self.mask_in_features])
        return cate_preds, kernel_preds, mask_feats

    def _instance_features(self, features: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
        """Resize each instance level to its FPN_INSTANCE_STRIDES stride ([p2..p6] -> strides 8, 8, 16, 32, 32).

        A level is resized to the size of the backbone feature that has the wanted stride (p6 takes p5's size,
        p2 p3's), or by the stride ratio when the backbone has no such feature.
        """
        by_stride = {s: name for name, s in self._feature_strides.items()}
        feats = []
        for name, target in zip(self.instance_in_features, self.instance_strides):
            x = features[name]
            s = self._feature_strides[name]
            if s != target:
                ref = by_stride.get(target)
                if ref is not None and ref in features:
                    x = F.interpolate(x, size=features[ref].shape[-2:], mode="bilinear", align_corners=False)
                else:
                    x = F.interpolate(x, scale_factor=s / target, mode="bilinear", align_corners=False)
            feats.append(x)
        return feats

    def forward(self, batched_inputs: List[Dict[str, Any]]) -> Union[Dict[str, torch.Tensor], List[Dict[str, Any]]]:
        """Training: {"loss_ins", "loss_cate"}; inference: [{"instances": Instances}] per image."""
        images = self.preprocess_image(batched_inputs)
        cate_preds, kernel_preds, mask_feats = self.network(images.tensor)
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
            masks, boxes, classes = self._gt_tensors(x["instances"])
            targets.append(assign_image_targets(masks, boxes, classes, padded, self.num_grids,
                                                self.scale_ranges, self.sigma, self.num_classes))
            mask_targets.append(downsample_masks(masks, feat_size, self.mask_stride))
        return solov2_losses(cate_preds, kernel_preds, mask_feats, targets, mask_targets, self.num_classes,
                             self.focal_alpha, self.focal_gamma, self.focal_weight, self.dice_weight)

    @torch.no_grad()
    def inference(
        self,
        batched_inputs: List[Dict[str, Any]],
        images: ImageList,
        cate_preds: List[torch.Tensor],
        kernel_preds: List[torch.Tensor],
        mask_feats: torch.Tensor,
    ) -> List[Dict[str, Any]]:
        """Post-process every image to its original size."""
        results = []
        padded = tuple(images.tensor.shape[-2:])
        for i, x in enumerate(batched_inputs):
            in_h, in_w = images.image_sizes[i]
            out_size = (int(x.get("height", in_h)), int(x.get("width", in_w)))
            scores, kernels, levels = flatten_image_preds(cate_preds, kernel_preds, i)
            det = postprocess_image(scores, kernels, levels, mask_feats[i], self.infer_params,
                                    (in_h, in_w), padded, out_size)
            results.append({"instances": self._wrap_detections(out_size, det)})
        return results


def _max_per_image(cfg: Any) -> int:
    """MODEL.SOLOV2.MAX_PER_IMG, or Detectron2's TEST.DETECTIONS_PER_IMAGE when only that one is changed."""
    own = int(cfg.MODEL.SOLOV2.MAX_PER_IMG)
    d2 = int(cfg.TEST.DETECTIONS_PER_IMAGE) if "TEST" in cfg and "DETECTIONS_PER_IMAGE" in cfg.TEST else own
    if d2 == _DEFAULT_DETECTIONS_PER_IMAGE or d2 == own:
        return own
    if own != _DEFAULT_DETECTIONS_PER_IMAGE:
        raise ValueError(
            f"TEST.DETECTIONS_PER_IMAGE ({d2}) and MODEL.SOLOV2.MAX_PER_IMG ({own}) both set the number of "
            "detections per image and disagree; set only one of them"
        )
    return d2
