"""Checkpointing: atomic saves, and one loader that detects a weight file's format and converts it on load."""

from .checkpointer import Checkpointer
from .converters import convert_c2_msra_resnet, convert_torchvision_resnet
from .formats import convert_weights, read_weights_file

__all__ = ["Checkpointer", "convert_c2_msra_resnet", "convert_torchvision_resnet", "convert_weights",
           "read_weights_file"]
