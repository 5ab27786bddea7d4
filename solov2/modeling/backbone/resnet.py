"""ResNet / ResNeXt bottom-up backbones (basic and bottleneck blocks, optional deformable conv)."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...layers import (
    Conv2d,
    DeformConv,
    FrozenBatchNorm2d,
    ModulatedDeformConv,
    ShapeSpec,
    c2_msra_fill,
    get_norm,
    offset_conv,
)
from ...utils.errors import ConfigError
from .backbone import BACKBONE_REGISTRY, Backbone

# Blocks per stage (res2..res5) for each depth.
_DEPTH_TO_BLOCKS = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}


class CNNBlockBase(nn.Module):
    """A block with known in/out channels and stride that can be frozen."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def freeze(self) -> "CNNBlockBase":
        """Stop gradients to this block and turn its BatchNorms into FrozenBatchNorm2d."""
        for p in self.parameters():
            p.requires_grad = False
        FrozenBatchNorm2d.convert_frozen_batchnorm(self)
        return self


def _shortcut(in_channels: int, out_channels: int, stride: int, norm: str) -> Optional[Conv2d]:
    if in_channels == out_channels:
        return None
    return Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, norm=get_norm(norm, out_channels))


class BasicBlock(CNNBlockBase):
    """Two 3x3 convs with a residual connection (ResNet-18/34)."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, norm: str = "BN", **_unused) -> None:
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False,
                            norm=get_norm(norm, out_channels))
        self.conv2 = Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False,
                            norm=get_norm(norm, out_channels))
        for layer in [self.conv1, self.conv2, self.shortcut]:
            if layer is not None:
                c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual forward."""
        out = F.relu_(self.conv1(x))
        out = self.conv2(out)
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return F.relu_(out + shortcut)


class BottleneckBlock(CNNBlockBase):
    """1x1 -> 3x3 (grouped, optionally dilated or deformable) -> 1x1 with a residual connection."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bottleneck_channels: int,
        stride: int = 1,
        num_groups: int = 1,
        norm: str = "BN",
        stride_in_1x1: bool = False,
        dilation: int = 1,
        deform: bool = False,
        deform_modulated: bool = False,
        deform_num_groups: int = 1,
    ) -> None:
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)
        # MSRA weights put the stride in the 1x1 conv; torchvision/FB weights in the 3x3.
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(in_channels, bottleneck_channels, 1, stride=stride_1x1, bias=False,
                            norm=get_norm(norm, bottleneck_channels))
        self.deform = deform
        if deform:
            self.conv2_offset = offset_conv(bottleneck_channels, 3, stride=stride_3x3, padding=dilation,
                                            dilation=dilation, deformable_groups=deform_num_groups,
                                            modulated=deform_modulated)
            conv_cls = ModulatedDeformConv if deform_modulated else DeformConv
            self.conv2 = conv_cls(bottleneck_channels, bottleneck_channels, 3, stride=stride_3x3, padding=dilation,
                                  dilation=dilation, groups=num_groups, deformable_groups=deform_num_groups,
                                  bias=False, norm=get_norm(norm, bottleneck_channels))
        else:
            self.conv2 = Conv2d(bottleneck_channels, bottleneck_channels, 3, stride=stride_3x3, padding=dilation,
                                dilation=dilation, groups=num_groups, bias=False,
                                norm=get_norm(norm, bottleneck_channels))
        self.conv3 = Conv2d(bottleneck_channels, out_channels, 1, bias=False, norm=get_norm(norm, out_channels))
        for layer in [self.conv1, self.conv2, self.conv3, self.shortcut]:
            if layer is not None:
                c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual forward."""
        out = F.relu_(self.conv1(x))
        if self.deform:
            out = self.conv2.forward_predicted(out, self.conv2_offset(out))
        else:
            out = self.conv2(out)
        out = F.relu_(out)
        out = self.conv3(out)
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return F.relu_(out + shortcut)


class BasicStem(CNNBlockBase):
    """7x7 stride-2 conv + norm + ReLU, then 3x3 stride-2 max-pool (total stride 4)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: str = "BN") -> None:
        super().__init__(in_channels, out_channels, 4)
        self.conv1 = Conv2d(in_channels, out_channels, 7, stride=2, padding=3, bias=False,
                            norm=get_norm(norm, out_channels))
        c2_msra_fill(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stem forward."""
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class ResNet(Backbone):
    """A ResNet whose stages are named res2..res5 and whose outputs are chosen by name."""

    def __init__(self, stem: BasicStem, stages: List[List[CNNBlockBase]], out_features: Sequence[str],
                 freeze_at: int = 0) -> None:
        super().__init__()
        self.stem = stem
        current_stride = stem.stride
        self._out_feature_strides: Dict[str, int] = {"stem": current_stride}
        self._out_feature_channels: Dict[str, int] = {"stem": stem.out_channels}
        self.stage_names: List[str] = []
        for i, blocks in enumerate(stages):
            name = f"res{i + 2}"
            stage = nn.Sequential(*blocks)
            self.add_module(name, stage)
            self.stage_names.append(name)
            for b in blocks:
                current_stride *= b.stride
            self._out_feature_strides[name] = current_stride
            self._out_feature_channels[name] = blocks[-1].out_channels
        known = ["stem"] + self.stage_names
        for f in out_features:
            if f not in known:
                raise ConfigError(f"MODEL.RESNETS.OUT_FEATURES has '{f}'; available: {known}")
        self._out_features = list(out_features)
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int) -> "ResNet":
        """Freeze the stem (freeze_at >= 1) and the first freeze_at - 1 stages."""
        if freeze_at >= 1:
            self.stem.freeze()
        for idx, name in enumerate(self.stage_names, start=2):
            if freeze_at >= idx:
                for block in getattr(self, name).children():
                    block.freeze()
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Return the requested stage outputs."""
        if x.dim() != 4:
            raise ValueError(f"ResNet takes an N x C x H x W tensor, got shape {tuple(x.shape)}")
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs


def build_resnet(cfg, input_shape: ShapeSpec) -> ResNet:
    """Build a ResNet/ResNeXt from MODEL.RESNETS.* and MODEL.BACKBONE.FREEZE_AT."""
    r = cfg.MODEL.RESNETS
    norm = r.NORM
    depth = r.DEPTH
    if depth not in _DEPTH_TO_BLOCKS:
        raise ConfigError(f"MODEL.RESNETS.DEPTH {depth} is not supported; choose one of {sorted(_DEPTH_TO_BLOCKS)}")
    stem = BasicStem(input_shape.channels or 3, r.STEM_OUT_CHANNELS, norm)
    num_groups = r.NUM_GROUPS
    bottleneck_channels = num_groups * r.WIDTH_PER_GROUP
    in_channels = r.STEM_OUT_CHANNELS
    out_channels = r.RES2_OUT_CHANNELS
    dilation5 = r.RES5_DILATION
    deform_on = list(r.DEFORM_ON_PER_STAGE)
    if len(deform_on) != 4:
        raise ConfigError(f"MODEL.RESNETS.DEFORM_ON_PER_STAGE needs 4 entries (res2..res5), got {deform_on}")
    if dilation5 not in (1, 2):
        raise ConfigError(f"MODEL.RESNETS.RES5_DILATION must be 1 or 2, got {dilation5}")
    basic = depth in (18, 34)
    if basic:
        if out_channels != in_channels:
            raise ConfigError(
                f"ResNet-{depth} needs MODEL.RESNETS.RES2_OUT_CHANNELS == MODEL.RESNETS.STEM_OUT_CHANNELS "
                f"(got {out_channels} and {in_channels})"
            )
        if dilation5 != 1:
            raise ConfigError(f"MODEL.RESNETS.RES5_DILATION must be 1 for ResNet-{depth}")
        if any(deform_on):
            raise ConfigError(f"MODEL.RESNETS.DEFORM_ON_PER_STAGE is not supported for ResNet-{depth}")
        if num_groups != 1:
            raise ConfigError(f"MODEL.RESNETS.NUM_GROUPS must be 1 for ResNet-{depth}")
    interval = max(1, int(r.DEFORM_INTERVAL))
    # Stages after the last requested output are not built.
    max_stage = max(
        [{"stem": 1, "res2": 2, "res3": 3, "res4": 4, "res5": 5}.get(f, 5) for f in r.OUT_FEATURES] + [2]
    )
    stages: List[List[CNNBlockBase]] = []
    for stage_idx in range(2, max_stage + 1):
        dilation = dilation5 if stage_idx == 5 else 1
        first_stride = 1 if stage_idx == 2 or (stage_idx == 5 and dilation == 2) else 2
        blocks: List[CNNBlockBase] = []
        for block_idx in range(_DEPTH_TO_BLOCKS[depth][stage_idx - 2]):
            stride = first_stride if block_idx == 0 else 1
            if basic:
                block = BasicBlock(in_channels, out_channels, stride=stride, norm=norm)
            else:
                block = BottleneckBlock(
                    in_channels, out_channels, bottleneck_channels=bottleneck_channels, stride=stride,
                    num_groups=num_groups, norm=norm, stride_in_1x1=r.STRIDE_IN_1X1, dilation=dilation,
                    deform=deform_on[stage_idx - 2] and block_idx % interval == 0,
                    deform_modulated=r.DEFORM_MODULATED, deform_num_groups=r.DEFORM_NUM_GROUPS,
                )
            blocks.append(block)
            in_channels = out_channels
        stages.append(blocks)
        out_channels *= 2
        bottleneck_channels *= 2
    return ResNet(stem, stages, r.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_resnet_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """Registered builder: a plain ResNet backbone."""
    return build_resnet(cfg, input_shape)
