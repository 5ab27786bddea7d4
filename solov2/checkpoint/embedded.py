"""What a checkpoint says about itself: solov2 writes the full config (YAML text) and the class names of the training
set into every checkpoint, so that predicting with it or exporting it needs no other file."""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence

import torch

from ..utils.errors import CheckpointError, CheckpointNotFoundError

__all__ = ["CLASS_NAMES_KEY", "CONFIG_KEY", "Description", "describe", "embedded_description", "read_description"]

logger = logging.getLogger(__name__)

CONFIG_KEY = "config"  # the full config, as CfgNode.dump() writes it
CLASS_NAMES_KEY = "class_names"  # the training set's class names, index = predicted class


class Description(NamedTuple):
    """A checkpoint's embedded config (YAML text) and class names; None where it holds none (published weights)."""

    config: Optional[str]
    class_names: Optional[List[str]]


def describe(config_yaml: str, class_names: Optional[Sequence[str]]) -> Dict[str, Any]:
    """The entries to add to a checkpoint dict so that it describes itself."""
    return {CONFIG_KEY: config_yaml, CLASS_NAMES_KEY: list(class_names) if class_names is not None else None}


def embedded_description(checkpoint: Mapping[str, Any]) -> Description:
    """The config and class names a loaded checkpoint dict holds (None for each it lacks)."""
    config = checkpoint.get(CONFIG_KEY)
    names = checkpoint.get(CLASS_NAMES_KEY)
    return Description(config if isinstance(config, str) and config.strip() else None,
                       [str(n) for n in names] if isinstance(names, (list, tuple)) else None)


def read_description(path: str) -> Description:
    """The embedded config and class names of the checkpoint file `path`, read without building a model.

    Tensors are memory-mapped, not read; only plain data is unpickled (weights_only), so a file that needs more
    (a pickle of another kind) counts as holding no description, and the loader proper deals with it.
    """
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f"Checkpoint file '{path}' does not exist")
    if path.endswith(".pkl"):
        return Description(None, None)
    try:
        data = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as e:
        if "mmap" not in str(e):  # only files in torch's zip format can be memory-mapped
            return _unreadable(path, e)
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e2:  # noqa: BLE001 - any failure means: no description here
            return _unreadable(path, e2)
    except Exception as e:  # noqa: BLE001
        return _unreadable(path, e)
    return embedded_description(data) if isinstance(data, dict) else Description(None, None)


def _unreadable(path: str, e: BaseException) -> Description:
    """A file torch cannot read as plain data: truncated ones are errors, others hold no description."""
    text = str(e)
    if "central directory" in text or "invalid load key" in text or "truncated" in text.lower():
        raise CheckpointError(f"Cannot read checkpoint '{path}' (the file is truncated or not a PyTorch "
                              f"checkpoint): {' '.join(text.split())[:300]}") from e
    logger.debug("No embedded description read from %s: %s", path, e)
    return Description(None, None)
