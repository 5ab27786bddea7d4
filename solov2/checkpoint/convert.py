"""Convert a weight file of any supported format to ours (`{"model": state_dict}`), e.g. to skip the conversion at
every load or to hand the file to Detectron2's DetectionCheckpointer."""

from __future__ import annotations

import logging
import os
from typing import Any, Collection, Dict, List, Optional, Tuple

import torch

from ..utils.errors import CheckpointError
from ..utils.file_io import atomic_write
from .formats import convert_weights, read_weights_file

logger = logging.getLogger(__name__)


def convert_checkpoint(src: str, dst: str, model: Optional[torch.nn.Module] = None,
                       description: Optional[Dict[str, Any]] = None) -> Tuple[str, int]:
    """Read `src` (any supported format), write it to `dst` in our format (atomically); returns (the source's
    format, the number of tensors written).

    With `model`, its parameter names place the ResNet and FPN, and the weights must fit it exactly (every model
    tensor present with its shape, nothing left over), or nothing is written. `description` (embedded.describe:
    the config and class names) is written beside the weights, so the file describes itself.
    """
    if not os.path.isfile(src):
        raise CheckpointError(f"Checkpoint file '{src}' does not exist")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise CheckpointError(f"The output '{dst}' is the input: write the converted file elsewhere")
    model_keys: Collection[str] = model.state_dict().keys() if model is not None else ()
    state, fmt, _extra = convert_weights(read_weights_file(src), model_keys, src)
    if model is not None:
        _check_exact_fit(state, model.state_dict(), src)
    tensors: Dict[str, Any] = {k: torch.as_tensor(v) for k, v in state.items()}
    atomic_write(dst, lambda f: torch.save({"model": tensors, **(description or {})}, f))
    return fmt, len(tensors)


def _check_exact_fit(state: Dict[str, Any], model_state: Dict[str, torch.Tensor], src: str) -> None:
    """Refuse weights that leave a model tensor unset, carry extra tensors, or differ in a shape."""
    ignored = ("num_batches_tracked",)
    missing = [k for k in model_state if k not in state and not k.endswith(ignored)]
    extra = [k for k in state if k not in model_state and not k.endswith(ignored)]
    shapes = [k for k in state if k in model_state and tuple(torch.as_tensor(state[k]).shape) != tuple(model_state[k].shape)]
    if missing or extra or shapes:
        raise CheckpointError(
            f"The weights in '{src}' do not fit the config's model: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(extra)} unexpected (e.g. {extra[:3]}), {len(shapes)} of another shape (e.g. {shapes[:3]}); "
            "is it the config of the same family?"
        )
