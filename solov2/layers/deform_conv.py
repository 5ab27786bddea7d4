"""Deformable convolution (plain and modulated) on torchvision.ops.deform_conv2d."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.nn.modules.utils import _pair


def deform_conv2d(*args: Any, **kwargs: Any) -> torch.Tensor:
    """torchvision.ops.deform_conv2d, imported on first use.

    Importing torchvision.ops imports torch._dynamo, seconds of start-up for every command, which only models with
    deformable convolutions need.
    """
    from torchvision.ops import deform_conv2d as tv_deform_conv2d

    return tv_deform_conv2d(*args, **kwargs)

from .batch_norm import FoldsNorm, folded_conv_params


def offset_conv(in_channels: int, kernel_size: int = 3, *, stride: int = 1, padding: int = 1, dilation: int = 1,
                deformable_groups: int = 1, modulated: bool = False) -> nn.Conv2d:
    """The conv predicting a deformable conv's sampling offsets (and modulation masks), zero-initialised so the
    deformable conv starts as a regular one sampling the plain grid."""
    n_out = (3 if modulated else 2) * kernel_size * kernel_size * deformable_groups
    conv = nn.Conv2d(in_channels, n_out, kernel_size, stride=stride, padding=padding, dilation=dilation)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class DeformConv(FoldsNorm, nn.Module):
    """Deformable conv (v1; v2 "modulated" when `modulated`): forward(x, offset[, mask]).

    offset has 2*k*k*deformable_groups channels, (dy, dx) per kernel tap as torchvision orders them; the modulated
    conv's mask has k*k*deformable_groups channels in [0, 1].
    """

    modulated = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        deformable_groups: int = 1,
        bias: bool = False,
        norm: Optional[nn.Module] = None,
        activation: Optional[Callable] = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.norm = norm
        self.activation = activation
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Deformable conv with the given sampling offsets (and masks, for the modulated conv), then norm and
        activation."""
        if (mask is not None) != self.modulated:
            raise ValueError(f"{type(self).__name__} takes {'a' if self.modulated else 'no'} modulation mask")
        weight, bias = folded_conv_params(self) if self.folds_norm() else (self.weight, self.bias)
        if x.numel() == 0:
            oh = (x.shape[2] + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
            ow = (x.shape[3] + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
            return x.new_zeros(x.shape[0], self.out_channels, oh, ow)
        # torchvision's kernel computes in the input dtype; under AMP keep it in the weight's dtype.
        x = deform_conv2d(
            x.to(weight.dtype), offset.to(weight.dtype), weight, bias, stride=self.stride, padding=self.padding,
            dilation=self.dilation, mask=None if mask is None else mask.to(weight.dtype),
        )
        if self.norm is not None and not self.folds_norm():
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def forward_predicted(self, x: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
        """Apply with the raw output of this conv's `offset_conv`: the offsets, then (modulated) mask logits."""
        if not self.modulated:
            return self(x, predicted)
        n_offset = predicted.shape[1] // 3 * 2
        return self(x, predicted[:, :n_offset], predicted[:, n_offset:].sigmoid())

    def extra_repr(self) -> str:
        """Short description for printing."""
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"deformable_groups={self.deformable_groups}, bias={self.bias is not None}"
        )


class ModulatedDeformConv(DeformConv):
    """Deformable conv v2: forward(x, offset, mask); mask has k*k*deformable_groups channels."""

    modulated = True


class DeformConvWithOffset(nn.Module):
    """A deformable conv that predicts its own offsets (and masks when modulated) from its input.

    Parameters: `conv_offset` (the offset conv) and `conv` (the deformable conv). The ResNet's deformable blocks hold
    the same two pieces under Detectron2's names (`conv2_offset`, `conv2`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        deformable_groups: int = 1,
        modulated: bool = True,
        bias: bool = False,
        norm: Optional[nn.Module] = None,
        activation: Optional[Callable] = None,
    ) -> None:
        super().__init__()
        self.modulated = modulated
        self.conv_offset = offset_conv(in_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                                       deformable_groups=deformable_groups, modulated=modulated)
        cls = ModulatedDeformConv if modulated else DeformConv
        self.conv = cls(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            deformable_groups=deformable_groups, bias=bias, norm=norm, activation=activation,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict offsets (and masks), then apply the deformable conv."""
        return self.conv.forward_predicted(x, self.conv_offset(x))


__all__ = ["DeformConv", "ModulatedDeformConv", "DeformConvWithOffset", "offset_conv"]
