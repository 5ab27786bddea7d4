"""Checkpointing: atomic saves and loading of several weight formats."""

from .checkpointer import Checkpointer
from .converters import convert_c2_msra_resnet, convert_torchvision_resnet

__all__ = ["Checkpointer", "convert_c2_msra_resnet", "convert_torchvision_resnet"]
