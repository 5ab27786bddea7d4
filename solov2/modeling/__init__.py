"""Models: backbones, meta-architectures, SOLOv2 heads."""

from .backbone import BACKBONE_REGISTRY, Backbone, build_backbone
from .meta_arch import META_ARCH_REGISTRY, build_model

__all__ = ["BACKBONE_REGISTRY", "Backbone", "build_backbone", "META_ARCH_REGISTRY", "build_model"]
