"""Weight files of every supported kind: read a file's raw content, then detect its format from the keys and
convert it to our parameter names.

Two steps, each in one function: `read_weights_file(path)` returns what the file holds (a torch checkpoint or a
pickle), `convert_weights(data, model_keys)` returns `(state_dict, format_name, extra)`. Formats:

- ours, and the Detectron2-based SOLOv2 release: `{"model": state_dict, ...}` with our names (kept as they are);
- mmdetection 3.x SOLOv2: `{"meta", "state_dict"}` with `backbone.layer1...`, `neck.lateral_convs...`,
  `mask_head.cls_convs...`, `mask_head.mask_feature_head...`;
- the original SOLO release (mmdetection 1.x): `bbox_head.cate_convs`, `bbox_head.solo_cate`,
  `bbox_head.solo_kernel`, `mask_feat_head...` (renamed to mmdetection 3.x's names, then converted as those);
- MSRA Caffe2 ImageNet pickles (`R-50.pkl`) and torchvision ResNet state dicts.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Collection, Dict, List, Mapping, Optional, Tuple

import torch

from ..utils.errors import CheckpointError
from ..utils.file_io import PathManager
from .safe_load import UnsafeCheckpointError, load_pickle_file, load_torch_file
from .converters import (
    convert_c2_msra_resnet,
    convert_torchvision_resnet,
    is_c2_msra_resnet,
    is_torchvision_resnet,
    torchvision_resnet_name,
)

logger = logging.getLogger(__name__)

OURS = "solov2 (ours / Detectron2-based SOLOv2 release)"
OURS_PICKLE = "pickle with solov2 parameter names (Detectron2 style)"
MMDET3 = "mmdetection 3.x SOLOv2"
SOLO = "original SOLO release (mmdetection 1.x)"
MSRA = "MSRA Caffe2 ImageNet ResNet (.pkl)"
TORCHVISION = "torchvision ImageNet ResNet"

# The original SOLO release's names -> mmdetection 3.x's (prefix renames, applied in this order).
SOLO_TO_MMDET3: List[Tuple[str, str]] = [
    ("bbox_head.cate_convs.", "mask_head.cls_convs."),
    ("bbox_head.kernel_convs.", "mask_head.kernel_convs."),
    ("bbox_head.solo_cate.", "mask_head.conv_cls."),
    ("bbox_head.solo_kernel.", "mask_head.conv_kernel."),
    ("mask_feat_head.conv_pred.0.", "mask_head.mask_feature_head.conv_pred."),
    ("mask_feat_head.", "mask_head.mask_feature_head."),
]

# mmdetection 3.x head names (after "mask_head.") -> ours; "{i}" is a tower conv's index, {t} = 3 * i its position
# in our [conv, norm, ReLU] towers.
_MMDET3_HEAD = [
    (re.compile(r"cls_convs\.(\d+)\.(conv|gn)\.(.+)"), "ins_head.cate_tower"),
    (re.compile(r"kernel_convs\.(\d+)\.(conv|gn)\.(.+)"), "ins_head.kernel_tower"),
    (re.compile(r"mask_feature_head\.convs_all_levels\.(\d+)\.conv(\d+)\.(conv|gn)\.(.+)"), "mask_head.convs_all_levels"),
    (re.compile(r"mask_feature_head\.conv_pred\.(conv|gn)\.(.+)"), "mask_head.conv_pred"),
]
_MMDET3_PLAIN = {"conv_cls.": "ins_head.cate_pred.", "conv_kernel.": "ins_head.kernel_pred."}
_OFFSET = re.compile(r"conv_offset(?:_mask)?\.(weight|bias)$")


def read_weights_file(path: str) -> Any:
    """The raw content of a weight file, read without running code from it (see safe_load.py): a .pkl through the
    restricted unpickler (latin1, as Caffe2 wrote them), anything else through torch.load(weights_only=True) on CPU.
    Unreadable files raise a CheckpointError naming the file; unsafe ones an UnsafeCheckpointError."""
    if path.endswith(".pkl"):
        with PathManager.open(path, "rb") as f:
            try:
                return load_pickle_file(f, path)
            except UnsafeCheckpointError:
                raise
            except Exception as e:
                raise CheckpointError(f"Cannot read weight pickle '{path}': {e}") from e
    with PathManager.open(path, "rb"):  # opened first so a missing/unreadable file fails here with its own error
        try:
            return load_torch_file(PathManager.get_local_path(path))
        except UnsafeCheckpointError:
            raise
        except Exception as e:  # torch's own messages ("invalid load key", "central directory") say little
            raise CheckpointError(
                f"Cannot read checkpoint '{path}' (the file is truncated or not a PyTorch checkpoint): {e}"
            ) from e


def bottom_up_prefix(model_keys: Collection[str]) -> str:
    """Where the ResNet's `stem.conv1.weight` lives among a model's keys (FPN model, bare backbone or ResNet)."""
    for prefix in ("backbone.bottom_up.", "backbone.", ""):
        if f"{prefix}stem.conv1.weight" in model_keys:
            return prefix
    return "backbone.bottom_up."


def convert_weights(data: Any, model_keys: Collection[str], source: str = "") -> Tuple[Dict[str, Any], str, Dict[str, Any]]:
    """Detect the format of a weight file's content from its keys and convert it to our names.

    Returns (state_dict, format name, extra): extra holds the file's other entries that a resume needs (our own
    checkpoints' iteration, optimizer, scheduler...). `model_keys` (the model's state-dict keys) say where the
    ResNet and FPN sit; `source` (the file name) only goes into error messages.
    """
    where = f"'{source}'" if source else "the weight file"
    if not isinstance(data, dict):
        raise CheckpointError(f"{where} holds a {type(data).__name__}, not a dict of weights")
    prefix = bottom_up_prefix(model_keys)
    if "blobs" in data or is_c2_msra_resnet(data):
        blobs = data.get("blobs", data)
        if not isinstance(blobs, dict):
            raise CheckpointError(f"{where}: expected a dict of arrays, got a {type(blobs).__name__}")
        if is_c2_msra_resnet(blobs):
            return convert_c2_msra_resnet(blobs, prefix), MSRA, {}
        return _strip_private(blobs), OURS_PICKLE, {}
    if "model" in data:
        if not isinstance(data["model"], dict):
            raise CheckpointError(f"{where}: 'model' holds a {type(data['model']).__name__}, not a state dict")
        extra = {k: v for k, v in data.items() if k != "model"}
        if any(not isinstance(v, torch.Tensor) for v in data["model"].values()):  # numpy arrays: a pickle
            return _strip_private(data["model"]), OURS_PICKLE, extra
        return data["model"], OURS, extra
    state = data["state_dict"] if isinstance(data.get("state_dict"), dict) else data
    keys = [k[len("module."):] if k.startswith("module.") else k for k in state]
    if any(k.startswith(("bbox_head.solo_", "bbox_head.cate_convs.", "mask_feat_head.")) for k in keys):
        return convert_mmdet3_solov2(solo_to_mmdet3_names(state), prefix), SOLO, {}
    if any(k.startswith(("mask_head.cls_convs.", "mask_head.mask_feature_head.")) for k in keys):
        return convert_mmdet3_solov2(state, prefix), MMDET3, {}
    if is_torchvision_resnet(state):
        return convert_torchvision_resnet(state, prefix), TORCHVISION, {}
    return dict(state), OURS, {}


def _strip_private(blobs: Mapping[str, Any]) -> Dict[str, Any]:
    """A pickle's arrays without its `__author__`-style entries (numpy arrays become tensors in fvcore)."""
    return {k: v for k, v in blobs.items() if not k.startswith("__")}


def solo_to_mmdet3_names(state: Mapping[str, Any]) -> Dict[str, Any]:
    """The original SOLO release's parameter names -> mmdetection 3.x's (SOLO_TO_MMDET3, prefixes only)."""
    out: Dict[str, Any] = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        for old, new in SOLO_TO_MMDET3:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def _head_name(rest: str, offset_convs: Collection[str]) -> Optional[str]:
    """One mmdetection 3.x name after `mask_head.` -> ours, or None when it is not a SOLOv2 head parameter."""
    for old, new in _MMDET3_PLAIN.items():
        if rest.startswith(old):
            return new + rest[len(old):]
    for pattern, ours in _MMDET3_HEAD:
        m = pattern.fullmatch(rest)
        if not m:
            continue
        groups = m.groups()
        if ours == "mask_head.convs_all_levels":
            base, kind, tail = f"{ours}.{groups[0]}.conv{groups[1]}", groups[2], groups[3]
            conv_pos, norm_pos = f"{base}.0", f"{base}.1"
        elif ours == "mask_head.conv_pred":
            kind, tail = groups
            conv_pos, norm_pos = f"{ours}.0", f"{ours}.1"
        else:
            i, kind, tail = int(groups[0]), groups[1], groups[2]
            conv_pos, norm_pos = f"{ours}.{3 * i}", f"{ours}.{3 * i + 1}"
        if kind == "gn":
            return f"{norm_pos}.{tail}"
        off = _OFFSET.fullmatch(tail)
        if off:  # a deformable conv: its offset conv sits beside the deformable conv in ours
            return f"{conv_pos}.conv_offset.{off.group(1)}"
        deformable = rest[: len(rest) - len(tail)] in offset_convs  # "<tower>.<i>.conv." owns a conv_offset
        return f"{conv_pos}.conv.{tail}" if deformable else f"{conv_pos}.{tail}"
    return None


def convert_mmdet3_solov2(state: Mapping[str, Any], bottom_up: str) -> Dict[str, torch.Tensor]:
    """An mmdetection 3.x SOLOv2 state dict -> ours (`bottom_up` is where our ResNet sits, e.g.
    `backbone.bottom_up.`; the FPN sits in the folder above). BN's num_batches_tracked is dropped."""
    fpn = bottom_up[: -len("bottom_up.")] if bottom_up.endswith("bottom_up.") else ""
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    # The head convs that are deformable: mmdetection keeps the offset conv inside the conv ("<conv>.conv_offset").
    offset_convs = {k[len("mask_head."): k.index("conv_offset")] for k in state
                    if k.startswith("mask_head.") and "conv_offset" in k}
    out: Dict[str, torch.Tensor] = {}
    unknown: List[str] = []
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        name: Optional[str] = None
        if key.startswith("backbone."):
            rest = torchvision_resnet_name(key[len("backbone."):])
            name = None if rest is None else bottom_up + rest
        elif key.startswith("neck."):
            m = re.fullmatch(r"neck\.(lateral|fpn)_convs\.(\d+)\.conv\.(weight|bias)", key)
            if m:
                kind = "fpn_lateral" if m.group(1) == "lateral" else "fpn_output"
                name = f"{fpn}{kind}{int(m.group(2)) + 2}.{m.group(3)}"
        elif key.startswith("mask_head."):
            name = _head_name(key[len("mask_head."):], offset_convs)
        if name is None:  # kept under its own name: the loader reports it as unexpected
            unknown.append(key)
            name = key
        out[name] = torch.as_tensor(value)
    if unknown:
        logger.warning(f"{len(unknown)} tensor(s) of this mmdetection checkpoint are no SOLOv2 parameters solov2 "
                       f"knows, kept under their names: {unknown[:5]}")
    return out
