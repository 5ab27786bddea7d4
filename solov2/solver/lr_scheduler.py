"""LR schedules as fvcore param schedulers, applied per iteration by an LRMultiplier."""

from __future__ import annotations

import logging
from typing import Any, Dict, List

import torch
from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    LinearParamScheduler,
    ParamScheduler,
)

from ..utils.errors import ConfigError

logger = logging.getLogger(__name__)


class WarmupParamScheduler(CompositeParamScheduler):
    """Prepends a linear or constant warmup to a multiplier schedule."""

    def __init__(
        self,
        scheduler: ParamScheduler,
        warmup_factor: float,
        warmup_length: float,
        warmup_method: str = "linear",
        rescale_interval: bool = False,
    ) -> None:
        """warmup_length is a fraction of training; the warmup ends at the value `scheduler` has there."""
        if not 0.0 < warmup_length < 1.0:
            raise ValueError(f"warmup_length must be in (0, 1), got {warmup_length}")
        end_value = scheduler(0.0) if rescale_interval else scheduler(warmup_length)
        start_value = warmup_factor * scheduler(0.0)
        if warmup_method == "linear":
            warmup: ParamScheduler = LinearParamScheduler(start_value, end_value)
        elif warmup_method == "constant":
            warmup = ConstantParamScheduler(start_value)
        else:
            raise ConfigError(
                f"SOLVER.WARMUP_METHOD must be 'linear' or 'constant', got '{warmup_method}'"
            )
        super().__init__(
            [warmup, scheduler],
            interval_scaling=["rescaled", "rescaled" if rescale_interval else "fixed"],
            lengths=[warmup_length, 1.0 - warmup_length],
        )


class LRMultiplier(torch.optim.lr_scheduler.LRScheduler):
    """Sets each param group's lr to its base lr times `multiplier(iteration / max_iter)`; step once per iteration."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        multiplier: ParamScheduler,
        max_iter: int,
        last_iter: int = -1,
    ) -> None:
        if not isinstance(multiplier, ParamScheduler):
            raise TypeError(f"multiplier must be an fvcore ParamScheduler, got {type(multiplier).__name__}")
        if max_iter <= 0:
            raise ConfigError(f"SOLVER.MAX_ITER must be positive, got {max_iter}")
        self._multiplier = multiplier
        self._max_iter = int(max_iter)
        super().__init__(optimizer, last_epoch=last_iter)

    def state_dict(self) -> Dict[str, Any]:
        """Only what resuming needs; the multiplier is rebuilt from the config."""
        return {"base_lrs": self.base_lrs, "last_epoch": self.last_epoch}

    def get_lr(self) -> List[float]:
        """The lrs at the current iteration."""
        multiplier = self._multiplier(min(self.last_epoch / self._max_iter, 1.0))
        return [base_lr * multiplier for base_lr in self.base_lrs]
