"""Deformable convolution (plain and modulated) on torchvision.ops.deform_conv2d."""

from __future__ import annotations

import math
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


class DeformConv(FoldsNorm, nn.Module):
    """Deformable conv v1: forward(x, offset); offset has 2*k*k*deformable_groups channels."""

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

    def _conv(self, x: torch.Tensor, offset: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        weight, bias = folded_conv_params(self) if self.folds_norm() else (self.weight, self.bias)
        if x.numel() == 0:
            oh = (x.shape[2] + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
            ow = (x.shape[3] + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
            return x.new_zeros(x.shape[0], self.out_channels, oh, ow)
        # torchvision's kernel computes in the input dtype; under AMP keep it in the weight's dtype.
        x = x.to(weight.dtype)
        offset = offset.to(weight.dtype)
        if mask is not None:
            mask = mask.to(weight.dtype)
        return deform_conv2d(
            x, offset, weight, bias, stride=self.stride, padding=self.padding,
            dilation=self.dilation, mask=mask,
        )

    def _post(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None and not self.folds_norm():
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def forward(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """Deformable conv with the given sampling offsets, then norm and activation."""
        return self._post(self._conv(x, offset, None))

    def extra_repr(self) -> str:
        """Short description for printing."""
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"deformable_groups={self.deformable_groups}, bias={self.bias is not None}"
        )


class ModulatedDeformConv(DeformConv):
    """Deformable conv v2: forward(x, offset, mask); mask has k*k*deformable_groups channels."""

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Modulated deformable conv, then norm and activation."""
        return self._post(self._conv(x, offset, mask))


class DeformConvWithOffset(nn.Module):
    """A deformable conv that predicts its own offsets (and masks when modulated) from its input."""

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
        k = kernel_size * kernel_size
        n_offset = (3 if modulated else 2) * k * deformable_groups
        self.conv_offset = nn.Conv2d(
            in_channels, n_offset, kernel_size, stride=stride, padding=padding, dilation=dilation
        )
        # Start as a regular conv sampling the plain grid (zero offsets).
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)
        cls = ModulatedDeformConv if modulated else DeformConv
        self.conv = cls(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            deformable_groups=deformable_groups, bias=bias, norm=norm, activation=activation,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict offsets (and masks), then apply the deformable conv."""
        out = self.conv_offset(x)
        if self.modulated:
            k2 = out.shape[1] // 3
            offset = out[:, : 2 * k2]
            mask = out[:, 2 * k2 :].sigmoid()
            return self.conv(x, offset, mask)
        return self.conv(x, out)


__all__ = ["DeformConv", "ModulatedDeformConv", "DeformConvWithOffset"]
