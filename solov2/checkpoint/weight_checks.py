"""Checks of loaded weights against the model: non-finite values, partial loads, and resumes across shape changes."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
from fvcore.common.checkpoint import _IncompatibleKeys

from ..utils.errors import CheckpointError

__all__ = ["UNEXPECTED_FRACTION", "check_finite", "check_weights_fit", "refuse_resume_message", "weights_check_mode"]

# Training may start from weights of part of the model (an ImageNet backbone), but checkpoint parameters the model
# does not have mean another model; above this fraction of the checkpoint's parameters it is refused.
UNEXPECTED_FRACTION = 0.1


def weights_check_mode(cfg: Any, eval_only: bool) -> Optional[str]:
    """The Checkpointer's weights_check for a run: None with MODEL.WEIGHTS_PARTIAL_OK, else "eval" or "train"."""
    if cfg.MODEL.get("WEIGHTS_PARTIAL_OK", False):
        return None
    return "eval" if eval_only else "train"


def _is_counted(key: str) -> bool:
    # BN's num_batches_tracked counters are not weights: a checkpoint with or without them loads the same model.
    return not key.endswith("num_batches_tracked")


def check_finite(state: Any, path: str) -> None:
    """Refuse a state dict with NaN or infinite values, naming the parameters (they would predict nothing)."""
    if not isinstance(state, dict):
        return
    bad: List[str] = []
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            finite = bool(torch.isfinite(value).all())
        elif isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
            finite = bool(np.isfinite(value).all())
        else:
            continue
        if not finite:
            bad.append(str(key))
    if bad:
        shown = ", ".join(f"'{k}'" for k in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(
            f"Checkpoint '{path}' has NaN or infinite values in {len(bad)} parameter(s): {shown}. Its training "
            "diverged; load an earlier checkpoint"
        )


def check_weights_fit(incompatible: _IncompatibleKeys, checkpoint_keys: Sequence[str], model: torch.nn.Module,
                      path: str, mode: str) -> None:
    """Refuse weights that leave the model half-loaded: in "eval" any parameter not loaded, in "train" (and
    "eval") checkpoint parameters the model lacks beyond UNEXPECTED_FRACTION. MODEL.WEIGHTS_PARTIAL_OK allows it."""
    missing = [k for k in incompatible.missing_keys if _is_counted(k)]
    mismatched = [k for k, _, _ in incompatible.incorrect_shapes]
    unexpected = [k for k in incompatible.unexpected_keys if _is_counted(k)]
    n_ckpt = max(1, sum(1 for k in checkpoint_keys if _is_counted(str(k))))
    n_model = sum(1 for k in model.state_dict() if _is_counted(k))
    problems = []
    if mode == "eval" and (missing or mismatched):
        problems.append(f"{len(missing) + len(mismatched)} of the model's {n_model} parameters are not loaded "
                        f"(e.g. '{(missing + mismatched)[0]}'), so they keep their random initial values")
    if len(unexpected) > UNEXPECTED_FRACTION * n_ckpt:
        problems.append(f"{len(unexpected)} of its {n_ckpt} parameters are not in the model (e.g. '{unexpected[0]}')")
    if problems:
        raise CheckpointError(
            f"MODEL.WEIGHTS '{path}' does not fit this model: {'; '.join(problems)}. Is it a checkpoint of another "
            "model (depth, heads, number of classes)? Use the config it was trained with, or set "
            "MODEL.WEIGHTS_PARTIAL_OK True if a partial load is intended"
        )


def refuse_resume_message(path: str, incorrect_shapes: Sequence[Tuple[str, Any, Any]]) -> str:
    """Why a resume is refused when the config changed parameter shapes (the optimizer state no longer fits)."""
    shown = "; ".join(f"'{k}' {tuple(a)} in the checkpoint vs {tuple(b)} now" for k, a, b in incorrect_shapes[:3])
    more = f" and {len(incorrect_shapes) - 3} more" if len(incorrect_shapes) > 3 else ""
    return (
        f"Cannot resume from '{path}': the config changes the shape of {len(incorrect_shapes)} parameter(s) "
        f"({shown}{more}), so its optimizer state cannot continue. Resume with the config it was trained with, or "
        f"start a new run from its weights: drop --resume, pass MODEL.WEIGHTS {path} and another OUTPUT_DIR"
    )
