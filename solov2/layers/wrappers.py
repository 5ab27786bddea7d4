"""Conv2d with optional norm and activation (the `conv.norm` parameter layout of Detectron2)."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

from .batch_norm import FoldsNorm, folded_conv_params


class Conv2d(FoldsNorm, nn.Conv2d):
    """nn.Conv2d followed by an optional `norm` module and `activation` callable."""

    def __init__(self, *args, norm: Optional[nn.Module] = None, activation: Optional[Callable] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv -> norm -> activation; in eval mode a BatchNorm is folded into the conv (one pass less)."""
        if self.folds_norm():
            weight, bias = folded_conv_params(self)
            x = F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        else:
            x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
            if self.norm is not None:
                x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def c2_msra_fill(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, relu) weights and zero bias, as Caffe2's MSRAFill."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def c2_xavier_fill(module: nn.Module) -> None:
    """Kaiming-uniform (a=1) weights and zero bias, as Caffe2's XavierFill."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)
