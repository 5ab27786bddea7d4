"""Checkpointing: atomic saves, and one loader that detects a weight file's format and converts it on load."""

from .checkpointer import Checkpointer
from .embedded import Description, embedded_description, read_description
from .converters import convert_c2_msra_resnet, convert_torchvision_resnet
from .formats import convert_weights, read_weights_file

__all__ = ["Checkpointer", "Description", "convert_c2_msra_resnet", "convert_torchvision_resnet", "convert_weights",
           "embedded_description", "read_description", "read_weights_file"]
