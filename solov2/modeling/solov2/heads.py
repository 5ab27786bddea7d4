"""SOLOv2 instance head (category + kernel branches over S x S grids) and unified mask-feature head.

Both follow Detectron2's pattern: explicit keyword arguments in `__init__`, and `from_config(cfg, input_shape)`
turning MODEL.SOLOV2.* (of our config or of a Detectron2 config) and the backbone's feature shapes into them.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ...config import configurable
from ...layers import COORD_CHANNELS, DeformConv, DeformConvWithOffset, ShapeSpec, concat_coord, get_norm
from ...utils.errors import ArgumentError, ConfigError

_DCN_TYPES = {"DCN": False, "DCNv2": True}  # TYPE_DCN -> modulated?


def _conv_norm_relu(in_ch: int, out_ch: int, kernel: int, norm: str, dcn_type: str = "") -> List[nn.Module]:
    """[conv, norm, ReLU] (norm omitted for ""), conv without bias when a norm follows."""
    padding = kernel // 2
    use_bias = norm == ""
    if dcn_type:
        conv: nn.Module = DeformConvWithOffset(in_ch, out_ch, kernel, padding=padding,
                                               modulated=_DCN_TYPES[dcn_type], bias=use_bias)
    else:
        conv = nn.Conv2d(in_ch, out_ch, kernel, padding=padding, bias=use_bias)
    layers = [conv]
    n = get_norm(norm, out_ch)
    if n is not None:
        layers.append(n)
    layers.append(nn.ReLU(inplace=True))
    return layers


def _init_normal(module: nn.Module, std: float = 0.01) -> None:
    """Conv weights ~ N(0, std), biases 0; then deformable offsets 0 (so DCN towers start as plain conv towers)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, DeformConv)):
            nn.init.normal_(m.weight, std=std)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias, 0)
    # A second pass: the walk above reaches each offset conv after its parent, so zeroing there would be undone.
    for m in module.modules():
        if isinstance(m, DeformConvWithOffset):
            nn.init.zeros_(m.conv_offset.weight)
            nn.init.zeros_(m.conv_offset.bias)


# A head argument -> the config key it comes from (an ArgumentError about it then names the key; see configurable).
_CONFIG_KEYS = {"norm": "MODEL.SOLOV2.NORM", "dcn_type": "MODEL.SOLOV2.TYPE_DCN",
                "pred_dcn_type": "MODEL.SOLOV2.TYPE_DCN"}


def _check_norm(norm: str) -> str:
    """The heads' norm ("" for none) if they support it, else raise naming the argument."""
    if norm == "none":
        return ""  # the published Detectron2-based configs spell "no norm" this way
    if norm not in ("GN", "BN", "SyncBN", ""):
        raise ArgumentError("norm", f"must be 'GN', 'BN', 'SyncBN', 'none' or '', got '{norm}'")
    return norm


def _check_dcn(dcn_type: str, argument: str = "dcn_type") -> str:
    """The heads' deformable conv type ("" for plain convs) if supported, else raise naming the argument."""
    if dcn_type and dcn_type not in _DCN_TYPES:
        raise ArgumentError(argument, f"must be one of {sorted(_DCN_TYPES)}, got '{dcn_type}'")
    return dcn_type


def _conv_args(c: Any, use_dcn: bool) -> Dict[str, Any]:
    """What both heads take from MODEL.SOLOV2 (`c`) for their convs: norm, coordinates, deformable conv type."""
    return {"norm": c.NORM, "use_coord": c.USE_COORD_CONV, "dcn_type": c.TYPE_DCN if use_dcn else ""}


def _input_channels(input_shape: Optional[Sequence[ShapeSpec]], key: str, features_key: str,
                    features: Sequence[str], configured: int) -> int:
    """The configured input channels, checked against the backbone's feature shapes when they are known."""
    if input_shape is not None:
        got = {f: s.channels for f, s in zip(features, input_shape)}
        wrong = {f: c for f, c in got.items() if c is not None and c != configured}
        if wrong:
            raise ConfigError(
                f"{key} is {configured} but the backbone's {features_key} {list(features)} have {got} channels; "
                f"set {key} to the backbone's output channels (MODEL.FPN.OUT_CHANNELS for an FPN)"
            )
    return configured


class SOLOv2InsHead(nn.Module):
    """Per level: coordinates appended, features resized to S x S, category and kernel towers."""

    config_keys = _CONFIG_KEYS

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        num_grids: Sequence[int],
        num_classes: int,
        num_kernels: int,
        channels: int = 512,
        num_convs: int = 4,
        norm: str = "GN",
        use_coord: bool = True,
        dcn_type: str = "",
        dcn_last_conv_only: bool = False,
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        self.num_grids = list(num_grids)
        self.num_classes = num_classes
        self.use_coord = use_coord
        norm = _check_norm(norm)
        dcn_type = _check_dcn(dcn_type)
        cate, kernel = [], []
        for i in range(num_convs):
            dcn = "" if dcn_last_conv_only and i < num_convs - 1 else dcn_type
            cate += _conv_norm_relu(in_channels if i == 0 else channels, channels, 3, norm, dcn)
            kernel_in = in_channels + (COORD_CHANNELS if use_coord else 0)
            kernel += _conv_norm_relu(kernel_in if i == 0 else channels, channels, 3, norm, dcn)
        self.cate_tower = nn.Sequential(*cate)
        self.kernel_tower = nn.Sequential(*kernel)
        self.cate_pred = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.kernel_pred = nn.Conv2d(channels, num_kernels, 3, padding=1)
        for m in [self.cate_tower, self.kernel_tower, self.cate_pred, self.kernel_pred]:
            _init_normal(m)
        nn.init.constant_(self.cate_pred.bias, -math.log((1 - prior_prob) / prior_prob))

    @classmethod
    def from_config(cls, cfg: Any, input_shape: Optional[Sequence[ShapeSpec]] = None) -> Dict[str, Any]:
        """Arguments from MODEL.SOLOV2.*; `input_shape` (one ShapeSpec per INSTANCE_IN_FEATURES) checks channels."""
        c = cfg.MODEL.SOLOV2
        return {
            "in_channels": _input_channels(input_shape, "MODEL.SOLOV2.INSTANCE_IN_CHANNELS", "INSTANCE_IN_FEATURES",
                                           c.INSTANCE_IN_FEATURES, c.INSTANCE_IN_CHANNELS),
            "num_grids": list(c.NUM_GRIDS),
            "num_classes": c.NUM_CLASSES,
            "num_kernels": c.NUM_KERNELS,
            "channels": c.INSTANCE_CHANNELS,
            "num_convs": c.NUM_INSTANCE_CONVS,
            "prior_prob": c.PRIOR_PROB,
            **_conv_args(c, c.USE_DCN_IN_INSTANCE),
            "dcn_last_conv_only": c.DCN_LAST_INSTANCE_CONV_ONLY,
        }

    def forward(self, features: List[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Return per-level category logits (N x C x S x S) and kernels (N x E x S x S)."""
        cate_preds, kernel_preds = [], []
        for feat, s in zip(features, self.num_grids):
            kernel_feat = concat_coord(feat) if self.use_coord else feat
            kernel_feat = F.interpolate(kernel_feat, size=(s, s), mode="bilinear", align_corners=False)
            cate_feat = kernel_feat[:, : feat.shape[1]]
            kernel_preds.append(self.kernel_pred(self.kernel_tower(kernel_feat)))
            cate_preds.append(self.cate_pred(self.cate_tower(cate_feat)))
        return cate_preds, kernel_preds


class SOLOv2MaskHead(nn.Module):
    """Unified mask features at the first level's stride: per-level conv(+x2 upsample) stacks summed, then 1x1 conv."""

    config_keys = _CONFIG_KEYS

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        num_levels: int,
        num_masks: int,
        channels: int = 128,
        norm: str = "GN",
        use_coord: bool = True,
        dcn_type: str = "",
        pred_dcn_type: str = "",
    ) -> None:
        super().__init__()
        norm = _check_norm(norm)
        dcn_type = _check_dcn(dcn_type)
        pred_dcn_type = _check_dcn(pred_dcn_type, "pred_dcn_type")
        self.num_levels = num_levels
        self.use_coord = use_coord
        self.convs_all_levels = nn.ModuleList()
        for i in range(num_levels):
            level = nn.Sequential()
            if i == 0:
                level.add_module("conv0", nn.Sequential(*_conv_norm_relu(in_channels, channels, 3, norm, dcn_type)))
            for j in range(i):
                first_in = in_channels + (COORD_CHANNELS if (i == num_levels - 1 and use_coord) else 0)
                level.add_module(f"conv{j}", nn.Sequential(
                    *_conv_norm_relu(first_in if j == 0 else channels, channels, 3, norm, dcn_type)))
                level.add_module(f"upsample{j}", nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.convs_all_levels.append(level)
        # The published model always ends in conv + GroupNorm + ReLU here, whatever NORM the towers use; the conv
        # has a bias only when the towers have no norm (its checkpoints have conv_pred.0.bias exactly then).
        pred_bias = norm == ""
        pred: nn.Module = (DeformConvWithOffset(channels, num_masks, 1, padding=0, modulated=_DCN_TYPES[pred_dcn_type],
                                                bias=pred_bias)
                           if pred_dcn_type else nn.Conv2d(channels, num_masks, 1, bias=pred_bias))
        self.conv_pred = nn.Sequential(pred, get_norm("GN", num_masks), nn.ReLU(inplace=True))
        _init_normal(self)

    @classmethod
    def from_config(cls, cfg: Any, input_shape: Optional[Sequence[ShapeSpec]] = None) -> Dict[str, Any]:
        """Arguments from MODEL.SOLOV2.*; `input_shape` (one ShapeSpec per MASK_IN_FEATURES) checks channels."""
        c = cfg.MODEL.SOLOV2
        return {
            "in_channels": _input_channels(input_shape, "MODEL.SOLOV2.MASK_IN_CHANNELS", "MASK_IN_FEATURES",
                                           c.MASK_IN_FEATURES, c.MASK_IN_CHANNELS),
            "num_levels": len(c.MASK_IN_FEATURES),
            "num_masks": c.NUM_MASKS,
            "channels": c.MASK_CHANNELS,
            **_conv_args(c, c.USE_DCN_IN_MASK),
            "pred_dcn_type": c.TYPE_DCN if c.USE_DCN_IN_MASK_PRED else "",
        }

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        """Return N x NUM_MASKS x H/4 x W/4 mask features."""
        out = self.convs_all_levels[0](features[0])
        for i in range(1, self.num_levels):
            x = features[i]
            if i == self.num_levels - 1 and self.use_coord:
                x = concat_coord(x)
            y = self.convs_all_levels[i](x)
            if y.shape[-2:] != out.shape[-2:]:
                # Only for inputs not padded to the backbone's divisibility.
                y = F.interpolate(y, size=out.shape[-2:], mode="bilinear", align_corners=False)
            out = out + y
        return self.conv_pred(out)
