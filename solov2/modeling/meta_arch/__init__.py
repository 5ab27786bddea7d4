"""Meta-architectures and build_model."""

from .build import META_ARCH_REGISTRY, build_model, resolve_device
from .solov2 import SOLOv2

__all__ = ["META_ARCH_REGISTRY", "build_model", "resolve_device", "SOLOv2"]
