"""Backbone base class and BACKBONE_REGISTRY."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Dict, Optional

import torch
from fvcore.common.registry import Registry
from torch import nn

from ...layers import ShapeSpec
from ...utils.errors import ConfigError

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = "Backbones: functions/classes called as f(cfg, input_shape) returning a Backbone."


class Backbone(nn.Module, metaclass=ABCMeta):
    """A network that maps an image batch to a dict of named feature maps."""

    @abstractmethod
    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Return {feature name: N x C x H x W tensor}."""

    @property
    def size_divisibility(self) -> int:
        """Inputs are padded to a multiple of this (0: no constraint)."""
        return 0

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """{feature name: ShapeSpec(channels, stride)}."""
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }


def build_backbone(cfg, input_shape: Optional[ShapeSpec] = None) -> Backbone:
    """Build the backbone named by MODEL.BACKBONE.NAME."""
    if input_shape is None:
        input_shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
    name = cfg.MODEL.BACKBONE.NAME
    try:
        fn = BACKBONE_REGISTRY.get(name)
    except KeyError as e:
        raise ConfigError(
            f"MODEL.BACKBONE.NAME '{name}' is not a registered backbone; known: {sorted(k for k, _ in BACKBONE_REGISTRY)}"
        ) from e
    backbone = fn(cfg, input_shape)
    assert isinstance(backbone, Backbone)
    return backbone
