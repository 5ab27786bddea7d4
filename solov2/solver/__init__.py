"""Optimizer and learning-rate schedule builders."""

from .build import (
    build_lr_multiplier,
    build_lr_scheduler,
    build_optimizer,
    get_default_optimizer_params,
    maybe_add_gradient_clipping,
    reduce_param_groups,
    scale_for_world_size,
)
from .lr_scheduler import LRMultiplier, WarmupParamScheduler

__all__ = [
    "build_lr_multiplier",
    "build_lr_scheduler",
    "build_optimizer",
    "get_default_optimizer_params",
    "maybe_add_gradient_clipping",
    "reduce_param_groups",
    "scale_for_world_size",
    "LRMultiplier",
    "WarmupParamScheduler",
]
