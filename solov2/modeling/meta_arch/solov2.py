"""SOLOv2 meta-architecture: backbone + instance head + mask-feature head, Detectron2-style inputs/outputs.

Built from explicit arguments (any backbone with `output_shape()` and `size_divisibility`, the two heads, the
target/loss/inference parameter bundles) or from a config through `from_config`, in Detectron2's pattern. The
input and output structures are adapted in small hooks (`_batch_images`, `_gt_tensors`, and the `instances_cls` /
`boxes_cls` detections are wrapped in) so that `solov2.d2` can use Detectron2's own structures without another copy
of SOLOv2.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from ...config import check_unsupported_keys, configurable
from ...layers import ShapeSpec
from ...structures import Boxes, ImageList, Instances
from ...utils.errors import ArgumentError
from ..backbone import build_backbone
from ..solov2 import (
    ImageDetections,
    InferenceParams,
    LossParams,
    SOLOv2InsHead,
    SOLOv2MaskHead,
    TargetParams,
    assign_image_targets,
    downsample_masks,
    flatten_image_preds,
    postprocess_image,
    solov2_losses,
)
from .build import META_ARCH_REGISTRY

logger = logging.getLogger(__name__)

class HeadOutputs(NamedTuple):
    """What the network gives for a batch: per-level N x C x S x S category logits and N x E x S x S kernels, and
    N x E x H/4 x W/4 mask features."""

    cate_preds: List[torch.Tensor]
    kernel_preds: List[torch.Tensor]
    mask_feats: torch.Tensor


_PARAM_BUNDLES = {"targets": TargetParams, "losses": LossParams, "inference": InferenceParams}


@META_ARCH_REGISTRY.register()
class SOLOv2(nn.Module):
    """SOLOv2: Dynamic and Fast Instance Segmentation (NeurIPS 2020)."""

    # The structures detections are returned in (solov2.d2 sets Detectron2's).
    instances_cls: type = Instances
    boxes_cls: type = Boxes

    # The config key each checked argument comes from: a check of an argument (ArgumentError) names the key when the
    # model is built from a config (see `configurable`).
    config_keys = {
        "in_features": "MODEL.SOLOV2.INSTANCE_IN_FEATURES / MASK_IN_FEATURES",
        "mask_in_features": "MODEL.SOLOV2.MASK_IN_FEATURES",
        "instance_strides": "MODEL.SOLOV2.FPN_INSTANCE_STRIDES",
        "num_grids": "MODEL.SOLOV2.NUM_GRIDS",
        "scale_ranges": "MODEL.SOLOV2.FPN_SCALE_RANGES",
        "nms_type": "MODEL.SOLOV2.NMS_TYPE",
        "nms_kernel": "MODEL.SOLOV2.NMS_KERNEL",
    }

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
        targets: TargetParams,
        losses: Optional[LossParams] = None,
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
        self.target_params = targets
        self.loss_params = losses if losses is not None else LossParams()
        self.infer_params = inference if inference is not None else InferenceParams()
        # Inference on CPU in the channels-last memory layout (a switch, e.g. for benchmarking the difference).
        self.channels_last = True
        self._feature_strides = _check_levels(backbone.output_shape(), self.instance_in_features,
                                              self.mask_in_features, self.instance_strides, len(targets.num_grids))
        # Mask features (and mask targets) live at the stride of the first mask level: 4 for p2.
        self.mask_stride = self._feature_strides[self.mask_in_features[0]]
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg: Any, backbone: Optional[nn.Module] = None, **overrides: Any) -> Dict[str, Any]:
        """Arguments from a config: the backbone by MODEL.BACKBONE.NAME (unless given), heads, MODEL.SOLOV2.*.

        `overrides` replace arguments of `__init__` or single fields of its parameter bundles, e.g. `sigma=0.3`
        (TargetParams), `dice_weight=1.0` (LossParams), `score_thr=0.3` (InferenceParams).
        """
        check_unsupported_keys(cfg)  # every model built from a config passes here, ours or Detectron2's
        c = cfg.MODEL.SOLOV2
        if backbone is None:
            backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        # A feature the backbone lacks gets an unknown shape here; __init__ refuses it, naming the features.
        unknown = ShapeSpec()
        args: Dict[str, Any] = {
            "backbone": backbone,
            "ins_head": SOLOv2InsHead(cfg, [shapes.get(f, unknown) for f in c.INSTANCE_IN_FEATURES]),
            "mask_head": SOLOv2MaskHead(cfg, [shapes.get(f, unknown) for f in c.MASK_IN_FEATURES]),
            "instance_in_features": list(c.INSTANCE_IN_FEATURES),
            "mask_in_features": list(c.MASK_IN_FEATURES),
            "instance_strides": list(c.FPN_INSTANCE_STRIDES),
            "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": list(cfg.MODEL.PIXEL_STD),
        }
        fields = {
            "targets": dict(num_grids=c.NUM_GRIDS, scale_ranges=c.FPN_SCALE_RANGES, num_classes=c.NUM_CLASSES,
                            sigma=c.SIGMA),
            "losses": dict(focal_alpha=c.LOSS.FOCAL_ALPHA, focal_gamma=c.LOSS.FOCAL_GAMMA,
                           focal_weight=c.LOSS.FOCAL_WEIGHT, dice_weight=c.LOSS.DICE_WEIGHT),
            "inference": dict(score_thr=c.SCORE_THR, mask_thr=c.MASK_THR, nms_pre=c.NMS_PRE, update_thr=c.UPDATE_THR,
                              max_per_img=c.MAX_PER_IMG, nms_type=c.NMS_TYPE, nms_kernel=c.NMS_KERNEL,
                              nms_sigma=c.NMS_SIGMA),
        }
        for name, value in overrides.items():
            bundle = next((b for b, t in _PARAM_BUNDLES.items()
                           if name in {f.name for f in dataclasses.fields(t)}), None)
            if bundle is not None:
                fields[bundle][name] = value
            elif name in inspect.signature(cls.__init__).parameters:
                args[name] = value
            else:
                raise TypeError(f"{cls.__name__} has no argument or parameter named '{name}'")
        for bundle, kwargs in fields.items():
            if bundle not in args:  # a whole bundle given explicitly wins over the config's
                args[bundle] = _PARAM_BUNDLES[bundle](**kwargs)
        return args

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
        return self.instances_cls(image_size, pred_masks=det.masks, pred_boxes=self.boxes_cls(det.boxes),
                                  scores=det.scores, pred_classes=det.classes)

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

    def network(self, images: torch.Tensor) -> HeadOutputs:
        """Backbone and heads on a normalised, padded batch: per-level category logits and kernels, mask features."""
        if (self.channels_last and not self.training and images.device.type == "cpu"
                and not torch.compiler.is_exporting()):
            # Convolutions run ~1.4x faster on CPU on channels-last activations (tools/benchmark.py); every layer
            # after the first keeps the layout of its input. Not in an exported graph: ONNX tensors have no memory
            # format, so the conversion would only add a copy to the graph.
            images = images.contiguous(memory_format=torch.channels_last)
        features = self.backbone(images)
        cate_preds, kernel_preds = self.ins_head(self._instance_features(features))
        mask_feats = self.mask_head([features[f] for f in self.mask_in_features])
        return HeadOutputs(cate_preds, kernel_preds, mask_feats)

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
        outputs = self.network(images.tensor)
        if self.training:
            return self.losses(batched_inputs, images, outputs)
        return self.inference(batched_inputs, images, outputs)

    def losses(self, batched_inputs: List[Dict[str, Any]], images: ImageList,
               outputs: HeadOutputs) -> Dict[str, torch.Tensor]:
        """Assign targets per image and compute the focal + dice losses."""
        cate_preds, kernel_preds, mask_feats = outputs
        if any("instances" not in x for x in batched_inputs):
            raise ValueError("SOLOv2 training needs an 'instances' field (gt_classes, gt_masks, gt_boxes) in every input")
        padded = tuple(images.tensor.shape[-2:])
        feat_size = tuple(mask_feats.shape[-2:])
        targets, mask_targets = [], []
        for x in batched_inputs:
            masks, boxes, classes = self._gt_tensors(x["instances"])
            targets.append(assign_image_targets(masks, boxes, classes, padded, self.target_params))
            mask_targets.append(downsample_masks(masks, feat_size, self.mask_stride))
        return solov2_losses(cate_preds, kernel_preds, mask_feats, targets, mask_targets, self.loss_params)

    @torch.no_grad()
    def inference(self, batched_inputs: List[Dict[str, Any]], images: ImageList,
                  outputs: HeadOutputs) -> List[Dict[str, Any]]:
        """Post-process every image to its original size."""
        cate_preds, kernel_preds, mask_feats = outputs
        results = []
        padded = tuple(images.tensor.shape[-2:])
        for i, x in enumerate(batched_inputs):
            in_h, in_w = images.image_sizes[i]
            out_size = (int(x.get("height", in_h)), int(x.get("width", in_w)))
            scores, kernels, cell_strides = flatten_image_preds(cate_preds, kernel_preds, i, self.instance_strides)
            det = postprocess_image(scores, kernels, cell_strides, mask_feats[i], self.infer_params,
                                    (in_h, in_w), padded, out_size)
            results.append({"instances": self._wrap_detections(out_size, det)})
        return results



def _check_levels(shapes: Dict[str, Any], instance_in_features: List[str], mask_in_features: List[str],
                  instance_strides: List[int], num_grid_levels: int) -> Dict[str, int]:
    """The backbone's stride per feature, once the feature lists, strides and grids are checked to fit it."""
    n = len(instance_in_features)
    if len(instance_strides) != n:
        raise ArgumentError("instance_strides",
                            f"needs one entry per level ({n} instance levels); got {len(instance_strides)}")
    if num_grid_levels != n:
        raise ArgumentError("num_grids", f"needs one entry per level ({n} instance levels); got {num_grid_levels}")
    missing = [f for f in instance_in_features + mask_in_features if f not in shapes]
    if missing:
        raise ArgumentError("in_features", f"name {missing}, but the backbone gives {list(shapes)}")
    strides = {name: int(s.stride) for name, s in shapes.items()}
    mask_strides = [strides[f] for f in mask_in_features]
    if any(b != 2 * a for a, b in zip(mask_strides, mask_strides[1:])):
        raise ArgumentError(
            "mask_in_features", f"{mask_in_features} have strides {mask_strides}; the mask branch upsamples each "
            "level by 2 per step, so the strides must double level by level (p2..p5: 4..32)")
    for f, target in zip(instance_in_features, instance_strides):
        s = strides[f]
        if target % s != 0 and s % target != 0:
            raise ArgumentError("instance_strides", f"gives {target} for '{f}', whose stride is {s}: a level can "
                                "only be resized by a power-of-two factor")
    return strides
