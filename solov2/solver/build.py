"""Optimizer (SGD or AdamW with per-parameter lr / weight decay and gradient clipping) and LR scheduler from a config."""

from __future__ import annotations

import copy
import logging
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Type

import torch
from fvcore.common.param_scheduler import CosineParamScheduler, MultiStepParamScheduler, ParamScheduler
from torch import nn

from ..utils.errors import ConfigError
from .lr_scheduler import LRMultiplier, WarmupParamScheduler

logger = logging.getLogger(__name__)

# Parameters of these layers get SOLVER.WEIGHT_DECAY_NORM (0 by default).
NORM_MODULE_TYPES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)

_CLIP_TYPES = ("value", "norm", "full_model")


def get_default_optimizer_params(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: float = 0.0,
    bias_lr_factor: float = 1.0,
    weight_decay_bias: Optional[float] = None,
    overrides: Optional[Dict[str, Dict[str, float]]] = None,
) -> List[Dict[str, Any]]:
    """Param groups: norm params get weight_decay_norm; other biases get bias lr/decay; `overrides` by param name."""
    overrides = overrides or {}
    seen: Set[nn.Parameter] = set()
    params: List[Dict[str, Any]] = []
    for module_name, module in model.named_modules():
        norm = isinstance(module, NORM_MODULE_TYPES)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue  # frozen, or shared with a module already visited
            seen.add(param)
            hyper = {"lr": base_lr, "weight_decay": weight_decay}
            if norm:
                hyper["weight_decay"] = weight_decay_norm
            elif name == "bias":
                hyper["lr"] = base_lr * bias_lr_factor
                if weight_decay_bias is not None:
                    hyper["weight_decay"] = weight_decay_bias
            full_name = f"{module_name}.{name}" if module_name else name
            for key in (name, full_name):
                hyper.update(overrides.get(key, {}))
            params.append({"params": [param], **hyper})
    return reduce_param_groups(params)


def reduce_param_groups(params: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Merge param groups with identical hyper-parameters (fewer groups, faster optimizer steps)."""
    merged: Dict[tuple, Dict[str, Any]] = {}
    for group in params:
        key = tuple(sorted((k, v) for k, v in group.items() if k != "params"))
        if key in merged:
            merged[key]["params"].extend(group["params"])
        else:
            merged[key] = {**group, "params": list(group["params"])}
    return list(merged.values())


def _make_clipper(clip_cfg: Any) -> Callable[[Iterable[torch.Tensor]], None]:
    """SOLVER.CLIP_GRADIENTS -> a function clipping the gradients of a list of parameters."""
    clip_type = clip_cfg.CLIP_TYPE
    value = float(clip_cfg.CLIP_VALUE)
    norm_type = float(clip_cfg.NORM_TYPE)
    if clip_type not in _CLIP_TYPES:
        raise ConfigError(
            f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE must be one of {_CLIP_TYPES}, got '{clip_type}'"
        )
    if value <= 0:
        raise ConfigError(f"SOLVER.CLIP_GRADIENTS.CLIP_VALUE must be positive, got {value}")

    if clip_type == "value":
        return lambda ps: torch.nn.utils.clip_grad_value_(list(ps), value)
    if clip_type == "norm":

        def clip_each_norm(ps: Iterable[torch.Tensor]) -> None:
            # "norm" bounds every parameter tensor's own gradient norm.
            for p in ps:
                torch.nn.utils.clip_grad_norm_(p, value, norm_type)

        return clip_each_norm
    return lambda ps: torch.nn.utils.clip_grad_norm_(list(ps), value, norm_type)


def maybe_add_gradient_clipping(cfg: Any, optimizer_cls: Type[torch.optim.Optimizer]) -> Type[torch.optim.Optimizer]:
    """Return `optimizer_cls`, or a subclass whose step() first clips gradients per SOLVER.CLIP_GRADIENTS."""
    clip_cfg = cfg.SOLVER.CLIP_GRADIENTS
    if not clip_cfg.ENABLED:
        return optimizer_cls
    clipper = _make_clipper(clip_cfg)

    def step(self: torch.optim.Optimizer, closure: Optional[Callable] = None) -> Any:
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        clipper(params)
        return optimizer_cls.step(self, closure)

    return type(optimizer_cls.__name__ + "WithGradientClip", (optimizer_cls,), {"step": step})


def build_optimizer(cfg: Any, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (SOLVER.OPTIMIZER "SGD") or AdamW ("ADAMW") over the model's trainable parameters, per SOLVER.*."""
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    if not params:
        raise ConfigError("The model has no trainable parameters (all frozen?); nothing to optimise.")
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "SGD":
        optimizer_cls: Type[torch.optim.Optimizer] = torch.optim.SGD
        kwargs = {"momentum": cfg.SOLVER.MOMENTUM, "nesterov": cfg.SOLVER.NESTEROV}
    elif name == "ADAMW":
        optimizer_cls, kwargs = torch.optim.AdamW, {"betas": tuple(cfg.SOLVER.BETAS)}
    else:
        raise ConfigError(f"SOLVER.OPTIMIZER must be 'SGD' or 'ADAMW', got '{cfg.SOLVER.OPTIMIZER}'")
    optimizer_cls = maybe_add_gradient_clipping(cfg, optimizer_cls)
    return optimizer_cls(params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY, **kwargs)


def build_lr_multiplier(cfg: Any) -> ParamScheduler:
    """The LR multiplier over training progress (0..1) for SOLVER.LR_SCHEDULER_NAME, with warmup."""
    name = cfg.SOLVER.LR_SCHEDULER_NAME
    max_iter = int(cfg.SOLVER.MAX_ITER)
    if name == "WarmupMultiStepLR":
        steps = [int(s) for s in cfg.SOLVER.STEPS if s < max_iter]
        if len(steps) != len(cfg.SOLVER.STEPS):
            logger.warning(
                "SOLVER.STEPS %s contains values >= SOLVER.MAX_ITER (%d); they are ignored.",
                tuple(cfg.SOLVER.STEPS),
                max_iter,
            )
        if sorted(set(steps)) != steps:
            raise ConfigError(f"SOLVER.STEPS must be strictly increasing, got {tuple(cfg.SOLVER.STEPS)}")
        scheduler: ParamScheduler = MultiStepParamScheduler(
            values=[cfg.SOLVER.GAMMA**k for k in range(len(steps) + 1)],
            milestones=steps,
            num_updates=max_iter,
        )
    elif name == "WarmupCosineLR":
        end_value = cfg.SOLVER.BASE_LR_END / cfg.SOLVER.BASE_LR
        if not 0.0 <= end_value <= 1.0:
            raise ConfigError(
                f"SOLVER.BASE_LR_END ({cfg.SOLVER.BASE_LR_END}) must be between 0 and SOLVER.BASE_LR "
                f"({cfg.SOLVER.BASE_LR})"
            )
        scheduler = CosineParamScheduler(1.0, end_value)
    else:
        raise ConfigError(
            f"Unknown SOLVER.LR_SCHEDULER_NAME '{name}'; use 'WarmupMultiStepLR' or 'WarmupCosineLR'."
        )
    warmup_iters = int(cfg.SOLVER.WARMUP_ITERS)
    if warmup_iters <= 0:
        return scheduler
    if warmup_iters >= max_iter:
        raise ConfigError(
            f"SOLVER.WARMUP_ITERS ({warmup_iters}) must be smaller than SOLVER.MAX_ITER ({max_iter})"
        )
    return WarmupParamScheduler(
        scheduler,
        cfg.SOLVER.WARMUP_FACTOR,
        warmup_iters / max_iter,
        cfg.SOLVER.WARMUP_METHOD,
        cfg.SOLVER.RESCALE_INTERVAL,
    )


def build_lr_scheduler(cfg: Any, optimizer: torch.optim.Optimizer) -> LRMultiplier:
    """An LRMultiplier for `optimizer` following SOLVER.* (step it once per iteration)."""
    return LRMultiplier(optimizer, build_lr_multiplier(cfg), int(cfg.SOLVER.MAX_ITER))


def scale_for_world_size(cfg: Any, num_workers: int) -> Any:
    """Linear-scaling rule: a config tuned for SOLVER.REFERENCE_WORLD_SIZE GPUs adapted to `num_workers`."""
    old_world_size = cfg.SOLVER.REFERENCE_WORLD_SIZE
    if old_world_size == 0 or old_world_size == num_workers:
        return cfg
    cfg = copy.deepcopy(cfg)
    frozen = cfg.is_frozen()
    cfg.defrost()
    if cfg.SOLVER.IMS_PER_BATCH % old_world_size != 0:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH ({cfg.SOLVER.IMS_PER_BATCH}) must be divisible by "
            f"SOLVER.REFERENCE_WORLD_SIZE ({old_world_size})"
        )
    scale = num_workers / old_world_size
    cfg.SOLVER.IMS_PER_BATCH = int(round(cfg.SOLVER.IMS_PER_BATCH * scale))
    cfg.SOLVER.BASE_LR = cfg.SOLVER.BASE_LR * scale
    cfg.SOLVER.MAX_ITER = int(round(cfg.SOLVER.MAX_ITER / scale))
    cfg.SOLVER.WARMUP_ITERS = int(round(cfg.SOLVER.WARMUP_ITERS / scale))
    cfg.SOLVER.STEPS = tuple(int(round(s / scale)) for s in cfg.SOLVER.STEPS)
    cfg.TEST.EVAL_PERIOD = int(round(cfg.TEST.EVAL_PERIOD / scale))
    cfg.SOLVER.CHECKPOINT_PERIOD = int(round(cfg.SOLVER.CHECKPOINT_PERIOD / scale))
    cfg.SOLVER.REFERENCE_WORLD_SIZE = num_workers
    logger.info(
        "Auto-scaling the config from %d to %d workers: IMS_PER_BATCH=%d, BASE_LR=%g, MAX_ITER=%d, "
        "WARMUP_ITERS=%d, STEPS=%s",
        old_world_size,
        num_workers,
        cfg.SOLVER.IMS_PER_BATCH,
        cfg.SOLVER.BASE_LR,
        cfg.SOLVER.MAX_ITER,
        cfg.SOLVER.WARMUP_ITERS,
        cfg.SOLVER.STEPS,
    )
    if frozen:
        cfg.freeze()
    return cfg
