"""solov2's config keys in a Detectron2 config, derived from solov2's own defaults so they cannot drift apart."""

from __future__ import annotations

import copy
import logging
from typing import Any

from ..config import get_cfg as _solov2_defaults
from ..utils.errors import ConfigError

logger = logging.getLogger(__name__)


def add_solov2_config(cfg: Any) -> None:
    """Add to a Detectron2 config every key of solov2's default config that it lacks, with solov2's default."""
    if cfg.is_frozen():
        raise ValueError("add_solov2_config(cfg) needs an unfrozen config: call it before cfg.freeze()")
    # Where Detectron2 defines a key too (MODEL.DEVICE, MODEL.META_ARCHITECTURE, MODEL.MASK_ON,
    # MODEL.BACKBONE.NAME, ...), Detectron2's value is kept: importing solov2 must not change a Detectron2 user's
    # defaults, and the SOLOv2 YAML files set every such key SOLOv2 needs.
    _add_missing(cfg, _solov2_defaults(), "")


def _add_missing(dst: Any, src: Any, prefix: str) -> None:
    """Copy into `dst` the keys of `src` it lacks, recursing into nodes both have."""
    for key, value in src.items():
        full = prefix + key
        if key not in dst:
            # type(dst)(...) turns solov2's node (and every node inside it) into Detectron2's CfgNode class.
            dst[key] = type(dst)(value) if isinstance(value, dict) else copy.deepcopy(value)
        elif isinstance(value, dict) != isinstance(dst[key], dict):
            raise TypeError(
                f"Config key {full} is a {'node' if isinstance(dst[key], dict) else 'value'} in the Detectron2 "
                f"config but a {'node' if isinstance(value, dict) else 'value'} in solov2's; cannot merge them"
            )
        elif isinstance(value, dict):
            _add_missing(dst[key], value, full + ".")


def apply_solov2_data_keys(cfg: Any) -> None:
    """Give solov2-only data keys their meaning in Detectron2's DatasetMapper, or refuse what it cannot honour.

    Call it once the config is merged: INPUT.HFLIP_TRAIN False (the published SOLOv2's switch) becomes
    INPUT.RANDOM_FLIP "none", as solov2's own mapper reads it; then check_solov2_data_keys.
    """
    if not cfg.INPUT.HFLIP_TRAIN and cfg.INPUT.RANDOM_FLIP == "horizontal":
        logger.info("INPUT.HFLIP_TRAIN False: setting INPUT.RANDOM_FLIP 'none' for Detectron2's DatasetMapper")
        cfg.INPUT.RANDOM_FLIP = "none"
    check_solov2_data_keys(cfg)


def check_solov2_data_keys(cfg: Any) -> None:
    """Refuse solov2-only data keys that Detectron2's data pipeline would ignore silently as the config stands.

    Run when solov2.d2's SOLOv2 is built, so that a config merged without apply_solov2_data_keys cannot train
    with horizontal flips its INPUT.HFLIP_TRAIN False turned off, stop at a corrupt image it was told to skip, or
    evaluate every test image when TEST.MAX_IMAGES asked for the first N (Detectron2's test loader and evaluator
    have no such limit).
    """
    if not cfg.INPUT.HFLIP_TRAIN and cfg.INPUT.RANDOM_FLIP == "horizontal":
        raise ConfigError(
            "INPUT.HFLIP_TRAIN False is not read by Detectron2's DatasetMapper, which would still flip "
            "(INPUT.RANDOM_FLIP 'horizontal'): call solov2.d2.apply_solov2_data_keys(cfg) after merging the config, "
            "or set INPUT.RANDOM_FLIP none"
        )
    if cfg.DATALOADER.SKIP_CORRUPT_IMAGES:
        raise ConfigError(
            "DATALOADER.SKIP_CORRUPT_IMAGES True is honoured by solov2's own loader (tools/train_net.py), not by "
            "Detectron2's DatasetMapper; set it False or train with tools/train_net.py"
        )
    if cfg.TEST.MAX_IMAGES:
        raise ConfigError(
            f"TEST.MAX_IMAGES {cfg.TEST.MAX_IMAGES} is honoured by solov2's own test loader and evaluator "
            "(tools/train_net.py), not by Detectron2's; set it 0 or evaluate with tools/train_net.py"
        )
