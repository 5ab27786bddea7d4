"""Checkpointing: atomic saves and loading of several weight formats."""

from .checkpointer import Checkpointer
from .embedded import Description, embedded_description, read_description
from .converters import convert_c2_msra_resnet, convert_torchvision_resnet

__all__ = ["Checkpointer", "Description", "convert_c2_msra_resnet", "convert_torchvision_resnet", "embedded_description",
           "read_description"]
