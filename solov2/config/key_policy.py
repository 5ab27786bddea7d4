"""Which config keys solov2 cannot honour, and the values it accepts for them (the rest are refused by name).

Every key in defaults.py is either read by the code that it configures, or listed here. Keys listed here exist so
that Detectron2 and AdelaiDet YAML files load unchanged; a value other than the supported ones would be silently
ignored, so `check_unsupported_keys` refuses it with an error naming the key and the reason. Keys a config does not
have are skipped, so a Detectron2 CfgNode (with many more keys) can be checked too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple

from ..utils.errors import ConfigError

__all__ = ["KeyRule", "UNSUPPORTED_KEYS", "IGNORED_KEYS", "check_unsupported_keys"]


@dataclass(frozen=True)
class KeyRule:
    """A key whose only supported values are `supported`; `reason` says why others cannot be honoured."""

    key: str
    supported: Tuple[Any, ...]
    reason: str


UNSUPPORTED_KEYS: Tuple[KeyRule, ...] = (
    KeyRule("VERSION", (2,), "only version-2 (current Detectron2) configs are read; there is no upgrader for older ones"),
    KeyRule("MODEL.MASK_ON", (True,), "SOLOv2 always predicts masks (boxes are derived from them)"),
    KeyRule("MODEL.KEYPOINT_ON", (False,), "SOLOv2 has no keypoint head"),
    KeyRule("MODEL.LOAD_PROPOSALS", (False,), "SOLOv2 is proposal-free: it cannot use precomputed proposals"),
    KeyRule("MODEL.BACKBONE.ANTI_ALIAS", (False,), "anti-aliased (blur-pool) ResNets are not implemented"),
    KeyRule("MODEL.SOLOV2.LOSS.FOCAL_USE_SIGMOID", (True,), "the softmax focal loss is not implemented"),
    KeyRule("INPUT.MASK_FORMAT", ("polygon", "bitmask"),
            "masks are always rasterised to bitmasks, so 'polygon' and 'bitmask' give the same result"),
    KeyRule("DATASETS.PROPOSAL_FILES_TRAIN", ((),), "SOLOv2 is proposal-free: it cannot use proposal files"),
    KeyRule("DATASETS.PROPOSAL_FILES_TEST", ((),), "SOLOv2 is proposal-free: it cannot use proposal files"),
    KeyRule("DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN", (2000,), "it only applies to proposal files, which SOLOv2 "
            "cannot use"),
    KeyRule("DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST", (1000,), "it only applies to proposal files, which SOLOv2 "
            "cannot use"),
    KeyRule("DATALOADER.REPEAT_THRESHOLD", (0.0,), "it only applies to RepeatFactorTrainingSampler, and "
            "DATALOADER.SAMPLER_TRAIN supports only TrainingSampler"),
    KeyRule("TEST.PRECISE_BN.ENABLED", (False,), "SOLOv2 uses FrozenBN and GN, which need no precise BN statistics"),
    KeyRule("TEST.PRECISE_BN.NUM_ITER", (200,), "it only applies to precise BN, which is not supported"),
    KeyRule("TEST.AUG.ENABLED", (False,), "test-time augmentation is not implemented for SOLOv2"),
    KeyRule("VIS_PERIOD", (0,), "drawing training samples to TensorBoard is not implemented; use "
            "tools/visualize_data.py --source dataloader to look at what the model is trained on"),
)

# Keys read nowhere on purpose: they have no effect in Detectron2 either, so any value is accepted.
IGNORED_KEYS: Tuple[str, ...] = ("GLOBAL.HACK",)


def _lookup(cfg: Any, key: str) -> Tuple[bool, Any]:
    """(True, value) of a dotted key, or (False, None) when the config does not have it."""
    node = cfg
    for part in key.split("."):
        try:
            if part not in node:
                return False, None
            node = node[part]
        except TypeError:  # a leaf where the key expects a node
            return False, None
    return True, node


def _same(value: Any, supported: Any) -> bool:
    """Config equality that treats lists and tuples alike and 0 like 0.0 (YAML writes either), but not 1 like True."""
    if isinstance(value, (list, tuple)) and isinstance(supported, (list, tuple)):
        return len(value) == len(supported) and all(_same(a, b) for a, b in zip(value, supported))
    if isinstance(value, bool) or isinstance(supported, bool):
        return isinstance(value, bool) and isinstance(supported, bool) and value == supported
    return bool(value == supported)


def _describe(values: Sequence[Any]) -> str:
    return " or ".join(repr(v) for v in values)


def check_unsupported_keys(cfg: Any) -> None:
    """Raise ConfigError naming every key of UNSUPPORTED_KEYS set to a value solov2 would silently ignore."""
    problems: List[str] = []
    for rule in UNSUPPORTED_KEYS:
        present, value = _lookup(cfg, rule.key)
        if present and not any(_same(value, s) for s in rule.supported):
            problems.append(
                f"{rule.key} {value!r} is not supported: {rule.reason}. Remove it or set it to {_describe(rule.supported)}."
            )
    if problems:
        # One line however many there are: a user reads the last line of the output.
        raise ConfigError(problems[0] if len(problems) == 1 else
                          f"{len(problems)} config keys are set to values solov2 cannot honour: "
                          + " ".join(f"({k}) {p}" for k, p in enumerate(problems, 1)))
