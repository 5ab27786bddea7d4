"""Backbones: ResNet/ResNeXt bottom-up networks and FPN."""

from .backbone import BACKBONE_REGISTRY, Backbone, build_backbone

__all__ = ["BACKBONE_REGISTRY", "Backbone", "build_backbone"]
