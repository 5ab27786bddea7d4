"""Normalisation layers by name: FrozenBN, BN, SyncBN, GN, or none."""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import torch
import torch.distributed as dist
from torch import nn

from ..utils.errors import ConfigError


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (buffers, never trained)."""

    _version = 3

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the frozen affine transform."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + bias.view(1, -1, 1, 1).to(x.dtype)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # Checkpoints from BatchNorm2d carry num_batches_tracked; it means nothing here.
        state_dict.pop(prefix + "num_batches_tracked", None)
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            # Very old checkpoints had no running stats; keep the identity ones.
            if prefix + "running_mean" not in state_dict:
                state_dict[prefix + "running_mean"] = torch.zeros_like(self.running_mean)
            if prefix + "running_var" not in state_dict:
                state_dict[prefix + "running_var"] = torch.ones_like(self.running_var)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        """Short description for printing."""
        return f"num_features={self.num_features}, eps={self.eps}"

    @classmethod
    def convert_frozen_batchnorm(cls, module: nn.Module) -> nn.Module:
        """Return `module` with every BatchNorm/SyncBatchNorm replaced by a FrozenBatchNorm2d."""
        if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
            res = cls(module.num_features, module.eps)
            if module.affine:
                res.weight.data = module.weight.data.clone().detach()
                res.bias.data = module.bias.data.clone().detach()
            res.running_mean.data = module.running_mean.data
            res.running_var.data = module.running_var.data
            return res
        for name, child in module.named_children():
            new_child = cls.convert_frozen_batchnorm(child)
            if new_child is not child:
                setattr(module, name, new_child)
        return module


class NaiveSyncBatchNorm(nn.BatchNorm2d):
    """SyncBN that also works on CPU/gloo: statistics averaged across ranks with all_reduce."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise with batch statistics gathered from every rank while training."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1 or not self.training:
            return super().forward(x)
        c = x.shape[1]
        mean = x.mean(dim=[0, 2, 3])
        meansqr = (x * x).mean(dim=[0, 2, 3])
        vec = torch.cat([mean, meansqr], dim=0)
        vec = vec.clone()
        dist.all_reduce(vec)
        vec = vec / dist.get_world_size()
        mean, meansqr = torch.split(vec, c)
        var = meansqr - mean * mean
        self.running_mean += self.momentum * (mean.detach() - self.running_mean)
        self.running_var += self.momentum * (var.detach() - self.running_var)
        invstd = torch.rsqrt(var + self.eps)
        scale = self.weight * invstd
        bias = self.bias - mean * scale
        return x * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


def is_foldable(norm: Optional[nn.Module]) -> bool:
    """Whether `norm` is a fixed per-channel affine map now: FrozenBN, or an eval-mode BatchNorm with running stats."""
    if isinstance(norm, FrozenBatchNorm2d):
        return True
    return (isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.track_running_stats
            and norm.running_mean is not None and norm.running_var is not None)


def fold_batchnorm(
    weight: torch.Tensor, bias: Optional[torch.Tensor], norm: nn.Module
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one conv equal to `conv(weight, bias)` followed by the foldable `norm`."""
    scale = (norm.running_var + norm.eps).rsqrt()
    if norm.weight is not None:
        scale = norm.weight * scale
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    if bias is not None:
        shift = shift + bias * scale
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))).to(weight.dtype), shift.to(weight.dtype)


def folded_conv_params(conv: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    """`conv.weight`/`conv.bias` with its foldable `conv.norm` folded in, cached until any of them changes.

    An inference-time transformation: the module's parameters, buffers and state-dict names stay as they are
    (checkpoints and training are unaffected); the folded copy is rebuilt whenever a parameter or statistic is
    replaced or changed in place through the tensor itself (load_state_dict, optimizer steps, .to()). Writes through
    `.data` bypass tensor version counters and are not seen.
    """
    norm = conv.norm
    tensors = (conv.weight, conv.bias, norm.weight, norm.bias, norm.running_mean, norm.running_var)
    if torch.compiler.is_compiling() or (torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in tensors)):
        # Traced for export (fake tensors, folded into constants later) or differentiated: fold inline.
        return fold_batchnorm(conv.weight, conv.bias, norm)
    try:
        key = tuple((t.data_ptr(), t._version) if t is not None else None for t in tensors) + (norm.eps,)
    except RuntimeError:  # inference tensors (made under inference_mode) have no version counter
        return fold_batchnorm(conv.weight, conv.bias, norm)
    cached = conv.__dict__.get("_folded_bn")
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, *fold_batchnorm(conv.weight, conv.bias, norm))
        conv.__dict__["_folded_bn"] = cached
    return cached[1], cached[2]


class FoldsNorm:
    """Mixin for a conv with a `norm` attribute: in eval mode a foldable norm is folded into the conv's weights."""

    # Per-module switch (see set_norm_folding), e.g. to measure the difference or to reproduce unfolded arithmetic.
    fold_norm = True

    def folds_norm(self) -> bool:
        """Whether the norm is folded into the conv now (eval mode, a BatchNorm with fixed statistics)."""
        return self.fold_norm and not self.training and is_foldable(self.norm)

    def train(self, mode: bool = True):
        """Set the mode; entering training drops the folded inference weights (they are rebuilt when needed)."""
        if mode:
            self.__dict__.pop("_folded_bn", None)
        return super().train(mode)


def set_norm_folding(model: nn.Module, enabled: bool) -> nn.Module:
    """Turn eval-mode folding of BatchNorms into their convs on or off for every conv in `model`; returns it."""
    for m in model.modules():
        if isinstance(m, FoldsNorm):
            m.fold_norm = enabled
            m.__dict__.pop("_folded_bn", None)
    return model


def get_norm(norm: Union[str, Callable[[int], nn.Module], None], out_channels: int) -> Optional[nn.Module]:
    """Build a normalisation layer by name ("FrozenBN", "BN", "SyncBN", "GN", "" for none)."""
    if norm is None:
        return None
    if isinstance(norm, str):
        if len(norm) == 0:
            return None
        table = {
            "BN": nn.BatchNorm2d,
            "SyncBN": NaiveSyncBatchNorm,
            "FrozenBN": FrozenBatchNorm2d,
            "GN": lambda channels: nn.GroupNorm(32, channels),
        }
        if norm not in table:
            raise ConfigError(f"Unknown norm '{norm}'; choose one of {sorted(table)} or ''.")
        norm = table[norm]
    return norm(out_channels)


__all__ = [
    "FoldsNorm", "FrozenBatchNorm2d", "NaiveSyncBatchNorm", "fold_batchnorm", "folded_conv_params", "get_norm",
    "is_foldable", "set_norm_folding",
]
