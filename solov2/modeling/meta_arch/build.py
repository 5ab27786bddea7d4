"""META_ARCH_REGISTRY and build_model(cfg)."""

from __future__ import annotations

import torch
from fvcore.common.registry import Registry
from torch import nn

from ...utils.errors import ConfigError

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = "Meta-architectures: classes called as cls(cfg) returning an nn.Module."


def resolve_device(device: str) -> torch.device:
    """MODEL.DEVICE to a torch.device: "" means CUDA when available, else CPU."""
    if not device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"MODEL.DEVICE is '{device}' but CUDA is not available on this machine; "
            "use MODEL.DEVICE cpu (or leave it empty to pick automatically)."
        )
    return dev


def build_model(cfg) -> nn.Module:
    """Build the model named by MODEL.META_ARCHITECTURE and move it to MODEL.DEVICE."""
    name = cfg.MODEL.META_ARCHITECTURE
    try:
        cls = META_ARCH_REGISTRY.get(name)
    except KeyError as e:
        raise ConfigError(
            f"MODEL.META_ARCHITECTURE '{name}' is not registered; known: {sorted(k for k, _ in META_ARCH_REGISTRY)}"
        ) from e
    model = cls(cfg)
    model.to(resolve_device(cfg.MODEL.DEVICE))
    return model
