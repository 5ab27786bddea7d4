"""solov2's SOLOv2 registered in Detectron2's META_ARCH_REGISTRY, speaking Detectron2's structures."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import BitMasks, Boxes, ImageList, Instances, PolygonMasks
from torch import nn

from ..modeling.meta_arch import SOLOv2 as _SOLOv2
from .config import check_solov2_data_keys
from ..structures import BitMasks as _RasterisedMasks


class SOLOv2(_SOLOv2):
    """solov2's SOLOv2 with a backbone from Detectron2's BACKBONE_REGISTRY and Detectron2's inputs and Instances.

    Training inputs: Detectron2's batched dicts whose `instances` carry gt_classes, gt_boxes and gt_masks as
    BitMasks or PolygonMasks (rasterised by solov2's polygon code). Inference: Detectron2 Instances with pred_masks
    (bool, original size), pred_boxes (Boxes, tight around the masks), scores, pred_classes.
    """

    @classmethod
    def from_config(cls, cfg: Any, backbone: Optional[nn.Module] = None, **overrides: Any) -> dict:
        """solov2's arguments from MODEL.SOLOV2.*, the backbone built by Detectron2 from MODEL.BACKBONE.NAME."""
        _check_backbone_keys(cfg)
        check_solov2_data_keys(cfg)
        if backbone is None:
            backbone = build_backbone(cfg)
        return super().from_config(cfg, backbone=backbone, **overrides)

    def _batch_images(self, images: List[torch.Tensor]) -> ImageList:
        """Detectron2's ImageList, padded as the backbone asks (size divisibility, square padding for ViTDet)."""
        constraints = getattr(self.backbone, "padding_constraints", None)
        if constraints is None:  # Detectron2 versions before padding constraints existed
            return ImageList.from_tensors(images, self.backbone.size_divisibility)
        return ImageList.from_tensors(images, self.backbone.size_divisibility, padding_constraints=constraints)

    def _gt_tensors(self, instances: Instances) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masks, boxes and classes of Detectron2 ground truth; PolygonMasks are rasterised at the image size."""
        if not instances.has("gt_masks"):
            raise ValueError(
                "SOLOv2 learns from instance masks but the training instances have no gt_masks: set MODEL.MASK_ON "
                "True so that Detectron2's DatasetMapper keeps the annotations' segmentation"
            )
        masks = instances.gt_masks
        if isinstance(masks, PolygonMasks):
            h, w = instances.image_size
            instances = Instances(
                instances.image_size,
                gt_masks=_RasterisedMasks.from_polygon_masks(masks.polygons, h, w),
                gt_boxes=instances.gt_boxes,
                gt_classes=instances.gt_classes,
            )
        elif not isinstance(masks, BitMasks):
            raise TypeError(
                f"gt_masks must be Detectron2 BitMasks or PolygonMasks (INPUT.MASK_FORMAT 'bitmask' or 'polygon'), "
                f"got {type(masks).__name__}"
            )
        return super()._gt_tensors(instances)

    # Detectron2's structures for what the model returns (the native SOLOv2 wraps detections in these classes).
    instances_cls = Instances
    boxes_cls = Boxes


def _check_backbone_keys(cfg: Any) -> None:
    """Refuse solov2 backbone keys that Detectron2's backbones would ignore silently (the rest: key_policy)."""
    if int(cfg.MODEL.RESNETS.DEFORM_INTERVAL) != 1:
        raise ValueError(
            f"MODEL.RESNETS.DEFORM_INTERVAL is {cfg.MODEL.RESNETS.DEFORM_INTERVAL}, but Detectron2's ResNet puts "
            "deformable convs in every block of a deformable stage; set it to 1 or train with tools/train_net.py"
        )


def _register() -> None:
    """Put SOLOv2 in Detectron2's META_ARCH_REGISTRY, refusing to shadow another package's SOLOv2."""
    if "SOLOv2" in META_ARCH_REGISTRY:
        other = META_ARCH_REGISTRY.get("SOLOv2")
        if getattr(other, "__module__", "") != __name__:
            raise ImportError(
                f"Detectron2's META_ARCH_REGISTRY already has a 'SOLOv2' from {other.__module__} (e.g. AdelaiDet); "
                "solov2.d2 cannot be used in the same process"
            )
        return  # this module was imported again (reload); the first registration stands
    META_ARCH_REGISTRY.register(SOLOv2)


_register()
