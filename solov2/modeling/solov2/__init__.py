"""SOLOv2 heads, target assignment, losses and post-processing."""

from .heads import SOLOv2InsHead, SOLOv2MaskHead
from .inference import ImageDetections, InferenceParams, flatten_image_preds, postprocess_image
from .loss import LossParams, solov2_losses
from .targets import LevelTargets, TargetParams, assign_image_targets, downsample_masks

__all__ = [k for k in globals().keys() if not k.startswith("_")]
