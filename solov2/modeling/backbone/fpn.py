"""Feature Pyramid Network on a ResNet: p2..p5 plus p6 by max-pooling p5."""

from __future__ import annotations

import math
from typing import Dict, List

import torch
from torch import nn
from torch.nn import functional as F

from ...layers import Conv2d, ShapeSpec, c2_xavier_fill, get_norm
from ...utils.errors import ConfigError
from .backbone import BACKBONE_REGISTRY, Backbone
from .resnet import build_resnet


class LastLevelMaxPool(nn.Module):
    """Adds p6 = max_pool2d(p5, kernel 1, stride 2): a parameter-free extra level."""

    num_levels = 1
    in_feature = "p5"

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Return [p6]."""
        return [F.max_pool2d(x, kernel_size=1, stride=2, padding=0)]


class FPN(Backbone):
    """Top-down feature pyramid with lateral 1x1 and output 3x3 convs (fpn_lateral{k}, fpn_output{k})."""

    def __init__(self, bottom_up: Backbone, in_features: List[str], out_channels: int, norm: str = "",
                 top_block: nn.Module = None, fuse_type: str = "sum") -> None:
        super().__init__()
        if not in_features:
            raise ConfigError("MODEL.FPN.IN_FEATURES is empty; set e.g. ['res2', 'res3', 'res4', 'res5']")
        if fuse_type not in ("sum", "avg"):
            raise ConfigError(f"MODEL.FPN.FUSE_TYPE must be 'sum' or 'avg', got '{fuse_type}'")
        shapes = bottom_up.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ConfigError(
                f"MODEL.FPN.IN_FEATURES {missing} are not produced by the bottom-up network "
                f"(MODEL.RESNETS.OUT_FEATURES gives {list(shapes)})"
            )
        strides = [shapes[f].stride for f in in_features]
        # Layer names (fpn_lateral{log2 stride}) and the x2 top-down path need strides doubling per level.
        if any(b != 2 * a for a, b in zip(strides, strides[1:])) or any(s & (s - 1) for s in strides):
            raise ConfigError(
                f"MODEL.FPN.IN_FEATURES {list(in_features)} have strides {strides}; the FPN needs powers of 2 "
                f"doubling level by level (MODEL.RESNETS.RES5_DILATION must be 1 with an FPN)"
            )
        in_channels = [shapes[f].channels for f in in_features]
        use_bias = norm == ""
        self.lateral_convs: List[Conv2d] = []
        self.output_convs: List[Conv2d] = []
        for ch, stride in zip(in_channels, strides):
            stage = int(math.log2(stride))
            lateral = Conv2d(ch, out_channels, 1, bias=use_bias, norm=get_norm(norm, out_channels))
            output = Conv2d(out_channels, out_channels, 3, padding=1, bias=use_bias, norm=get_norm(norm, out_channels))
            c2_xavier_fill(lateral)
            c2_xavier_fill(output)
            self.add_module(f"fpn_lateral{stage}", lateral)
            self.add_module(f"fpn_output{stage}", output)
            self.lateral_convs.append(lateral)
            self.output_convs.append(output)
        # Top-down order: coarsest first.
        self.lateral_convs = self.lateral_convs[::-1]
        self.output_convs = self.output_convs[::-1]
        self.bottom_up = bottom_up
        self.in_features = list(in_features)
        self.top_block = top_block
        self._fuse_type = fuse_type
        self._out_feature_strides: Dict[str, int] = {f"p{int(math.log2(s))}": s for s in strides}
        if top_block is not None:
            last = int(math.log2(strides[-1]))
            for k in range(top_block.num_levels):
                self._out_feature_strides[f"p{last + k + 1}"] = 2 ** (last + k + 1)
        self._out_features = list(self._out_feature_strides.keys())
        self._out_feature_channels = {k: out_channels for k in self._out_features}
        # p6 is a stride-1 pool of p5's grid, so only the bottom-up stride constrains padding.
        self._size_divisibility = strides[-1]

    @property
    def size_divisibility(self) -> int:
        """Inputs are padded to a multiple of the coarsest backbone stride (32)."""
        return self._size_divisibility

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Return {"p2": ..., ..., "p6": ...}."""
        bottom_up = self.bottom_up(x)
        feats = [bottom_up[f] for f in self.in_features[::-1]]
        prev = self.lateral_convs[0](feats[0])
        results = [self.output_convs[0](prev)]
        for feat, lateral, output in zip(feats[1:], self.lateral_convs[1:], self.output_convs[1:]):
            top_down = F.interpolate(prev, size=feat.shape[-2:], mode="nearest")
            prev = lateral(feat) + top_down
            if self._fuse_type == "avg":
                prev = prev / 2
            results.insert(0, output(prev))
        if self.top_block is not None:
            p_in = results[self._out_features.index(self.top_block.in_feature)]
            results.extend(self.top_block(p_in))
        return dict(zip(self._out_features, results))


@BACKBONE_REGISTRY.register()
def build_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """Registered builder: ResNet bottom-up + FPN (p2..p6, p6 by max-pool of p5's output)."""
    bottom_up = build_resnet(cfg, input_shape)
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
