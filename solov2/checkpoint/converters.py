"""Map foreign weight files onto our parameter names: MSRA Caffe2 pickles and torchvision ResNets."""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch

logger = logging.getLogger(__name__)

BN_EPS = 1e-5  # FrozenBatchNorm2d's eps: running_var = 1 - eps makes scale == weight exactly


def _c2_name(name: str) -> str:
    """One Caffe2 MSRA blob name -> our ResNet name (without prefix)."""
    if name == "conv1_w":
        return "stem.conv1.weight"
    m = re.fullmatch(r"res_conv1_bn_([sb]|rm|riv)", name)
    if m:
        return "stem.conv1.norm." + {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}[m.group(1)]
    m = re.fullmatch(r"res(\d)_(\d+)_branch(1|2a|2b|2c)_(w|b|bn_s|bn_b|bn_rm|bn_riv)", name)
    if not m:
        raise KeyError(name)
    stage, block, branch, kind = m.groups()
    layer = {"1": "shortcut", "2a": "conv1", "2b": "conv2", "2c": "conv3"}[branch]
    suffix = {"w": "weight", "b": "bias", "bn_s": "norm.weight", "bn_b": "norm.bias",
              "bn_rm": "norm.running_mean", "bn_riv": "norm.running_var"}[kind]
    return f"res{stage}.{block}.{layer}.{suffix}"


def convert_c2_msra_resnet(blobs: Mapping[str, Any], prefix: str) -> Dict[str, torch.Tensor]:
    """MSRA ImageNet pickle blobs -> {prefix + our name: tensor}; BN given as scale/bias gets identity stats."""
    out: Dict[str, torch.Tensor] = {}
    skipped = []
    for k, v in blobs.items():
        if k.endswith("_momentum") or k.startswith("fc") or k.startswith("__") or not isinstance(v, (np.ndarray, torch.Tensor)):
            continue
        try:
            name = _c2_name(k)
        except KeyError:
            skipped.append(k)
            continue
        out[prefix + name] = torch.as_tensor(np.asarray(v)).clone()
    for k in list(out.keys()):
        if k.endswith("norm.weight"):
            base = k[: -len("weight")]
            n = out[k].shape[0]
            out.setdefault(base + "running_mean", torch.zeros(n))
            out.setdefault(base + "running_var", torch.ones(n) - BN_EPS)
    if skipped:
        logger.warning(f"MSRA pickle: {len(skipped)} blob(s) not part of a ResNet were ignored: {skipped[:8]}")
    return out


_TV_BN = re.compile(r"bn(\d)\.(weight|bias|running_mean|running_var)$")


def torchvision_resnet_name(key: str) -> Optional[str]:
    """One torchvision/mmdetection ResNet parameter name -> ours (without prefix); None for fc and unknown keys.

    mmdetection's deformable 3x3 conv keeps its offset conv inside (`layerS.B.conv2.conv_offset.*`, named
    `conv_offset_mask` by old releases, or `conv2_offset` beside it): ours is Detectron2's `resS+1.B.conv2_offset`.
    """
    if key == "conv1.weight":
        return "stem.conv1.weight"
    if key.startswith("bn1."):
        return "stem.conv1.norm." + key[len("bn1."):]
    m = re.fullmatch(r"layer(\d)\.(\d+)\.(.+)", key)
    if not m:
        return None
    stage, block, rest = int(m.group(1)) + 1, m.group(2), m.group(3)
    off = re.fullmatch(r"conv2(?:\.conv_offset(?:_mask)?|_offset)\.(weight|bias)", rest)
    if off:
        return f"res{stage}.{block}.conv2_offset.{off.group(1)}"
    rest = rest.replace("downsample.0.", "shortcut.").replace("downsample.1.", "shortcut.norm.")
    bn = _TV_BN.match(rest)
    if bn:
        rest = f"conv{bn.group(1)}.norm.{bn.group(2)}"
    return f"res{stage}.{block}.{rest}"


def convert_torchvision_resnet(state: Mapping[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    """torchvision ResNet state dict -> {prefix + our name: tensor} (fc and num_batches_tracked dropped)."""
    out: Dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith("fc.") or k.endswith("num_batches_tracked"):
            continue
        name = torchvision_resnet_name(k)
        if name is None:
            logger.warning(f"torchvision weights: ignoring unknown key '{k}'")
            continue
        out[prefix + name] = torch.as_tensor(v)
    logger.warning(
        "Loaded torchvision ImageNet weights: they expect RGB input (INPUT.FORMAT RGB), torchvision's "
        "PIXEL_MEAN [123.675, 116.28, 103.53] / PIXEL_STD [58.395, 57.12, 57.375] and MODEL.RESNETS.STRIDE_IN_1X1 False."
    )
    return out


def is_torchvision_resnet(state: Mapping[str, Any]) -> bool:
    """Whether a flat state dict looks like torchvision's ResNet."""
    return "conv1.weight" in state and any(k.startswith("layer1.0.") for k in state)


def is_c2_msra_resnet(blobs: Mapping[str, Any]) -> bool:
    """Whether a dict of arrays uses the MSRA Caffe2 ResNet blob names (conv1_w, res2_0_branch2a_w, ...)."""
    return "conv1_w" in blobs or any(re.fullmatch(r"res\d_\d+_branch\w+", k) for k in blobs)
