"""SOLOv2 instance head (category + kernel branches over S x S grids) and unified mask-feature head."""

from __future__ import annotations

import math
from typing import List, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ...config import CfgNode
from ...layers import DeformConvWithOffset, concat_coord, get_norm

_DCN_TYPES = {"DCN": False, "DCNv2": True}  # TYPE_DCN -> modulated?


def _conv_norm_relu(in_ch: int, out_ch: int, kernel: int, norm: str, dcn_type: str = "") -> List[nn.Module]:
    """[conv, norm, ReLU] (norm omitted for ""), conv without bias when a norm follows."""
    padding = kernel // 2
    use_bias = norm == ""
    if dcn_type:
        if dcn_type not in _DCN_TYPES:
            raise ValueError(f"MODEL.SOLOV2.TYPE_DCN must be one of {sorted(_DCN_TYPES)}, got '{dcn_type}'")
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
    """Conv weights ~ N(0, std), biases 0, deformable offsets 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) or (hasattr(m, "weight") and m.__class__.__name__.endswith("DeformConv")):
            nn.init.normal_(m.weight, std=std)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias, 0)
        if isinstance(m, DeformConvWithOffset):
            # Offsets start at zero so a deformable tower starts as a plain conv tower.
            nn.init.zeros_(m.conv_offset.weight)
            nn.init.zeros_(m.conv_offset.bias)


def _check_norm(norm: str) -> str:
    """Return MODEL.SOLOV2.NORM if the heads support it, else raise naming the key."""
    if norm == "none":
        return ""  # the published Detectron2-based configs spell "no norm" this way
    if norm not in ("GN", "BN", "SyncBN", ""):
        raise ValueError(f"MODEL.SOLOV2.NORM must be 'GN', 'BN', 'SyncBN', 'none' or '', got '{norm}'")
    return norm


class SOLOv2InsHead(nn.Module):
    """Per level: coordinates appended, features resized to S x S, category and kernel towers."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        c = cfg.MODEL.SOLOV2
        self.num_grids = list(c.NUM_GRIDS)
        self.num_classes = c.NUM_CLASSES
        self.use_coord = c.USE_COORD_CONV
        norm = _check_norm(c.NORM)
        in_ch, ch = c.INSTANCE_IN_CHANNELS, c.INSTANCE_CHANNELS
        dcn = c.TYPE_DCN if c.USE_DCN_IN_INSTANCE else ""
        if len(self.num_grids) != len(c.INSTANCE_IN_FEATURES):
            raise ValueError(
                f"MODEL.SOLOV2.NUM_GRIDS has {len(self.num_grids)} entries but INSTANCE_IN_FEATURES has "
                f"{len(c.INSTANCE_IN_FEATURES)}"
            )
        cate, kernel = [], []
        for i in range(c.NUM_INSTANCE_CONVS):
            cate += _conv_norm_relu(in_ch if i == 0 else ch, ch, 3, norm, dcn)
            kernel += _conv_norm_relu((in_ch + 2 * self.use_coord) if i == 0 else ch, ch, 3, norm, dcn)
        self.cate_tower = nn.Sequential(*cate)
        self.kernel_tower = nn.Sequential(*kernel)
        self.cate_pred = nn.Conv2d(ch, self.num_classes, 3, padding=1)
        self.kernel_pred = nn.Conv2d(ch, c.NUM_KERNELS, 3, padding=1)
        for m in [self.cate_tower, self.kernel_tower, self.cate_pred, self.kernel_pred]:
            _init_normal(m)
        prior = c.PRIOR_PROB
        nn.init.constant_(self.cate_pred.bias, -math.log((1 - prior) / prior))

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
    """Unified mask features at stride 4: per-level conv(+x2 upsample) stacks summed, then 1x1 conv."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        c = cfg.MODEL.SOLOV2
        norm = _check_norm(c.NORM)
        self.num_levels = len(c.MASK_IN_FEATURES)
        in_ch, ch = c.MASK_IN_CHANNELS, c.MASK_CHANNELS
        dcn = c.TYPE_DCN if c.USE_DCN_IN_MASK else ""
        self.use_coord = c.USE_COORD_CONV
        self.convs_all_levels = nn.ModuleList()
        for i in range(self.num_levels):
            level = nn.Sequential()
            if i == 0:
                level.add_module("conv0", nn.Sequential(*_conv_norm_relu(in_ch, ch, 3, norm, dcn)))
            for j in range(i):
                first_in = in_ch + (2 if (i == self.num_levels - 1 and self.use_coord) else 0)
                level.add_module(f"conv{j}", nn.Sequential(*_conv_norm_relu(first_in if j == 0 else ch, ch, 3, norm, dcn)))
                level.add_module(f"upsample{j}", nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.convs_all_levels.append(level)
        self.conv_pred = nn.Sequential(*_conv_norm_relu(ch, c.NUM_MASKS, 1, norm))
        _init_normal(self)

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
