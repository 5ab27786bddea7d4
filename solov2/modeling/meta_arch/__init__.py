"""Meta-architectures and build_model."""

from .build import META_ARCH_REGISTRY, build_model, resolve_device

__all__ = ["META_ARCH_REGISTRY", "build_model", "resolve_device"]
