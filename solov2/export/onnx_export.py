"""ONNX export of the whole SOLOv2 inference: BGR uint8 image (any size) -> final masks, scores, classes, boxes.

The graph holds normalisation, padding, backbone, heads, point NMS, the score threshold, maskness, Matrix NMS,
top-k and the mask upsampling; it is traced from the same `SOLOv2.network` and `postprocess_image` that eager
inference runs (torch.export-based exporter: it keeps data-dependent sizes such as the candidates of nonzero).
Resizing the image to the test size stays outside (cv2, exactly as DefaultPredictor does).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import logging
import time
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import DeformConv
from ..modeling.solov2 import flatten_image_preds, postprocess_image
from ..structures.image_list import divisible_size
from ..utils.errors import ConfigError, OutputPathError, UserError
from ..utils.file_io import atomic_write
from ..utils.paths import check_writable_output

logger = logging.getLogger(__name__)

OUTPUT_NAMES = ("masks", "scores", "classes", "boxes")
OPSET = 18
# From 65 px on, every level of the pyramid has at least 2 cells, so no image size is special to the exporter.
MIN_IMAGE_SIDE = 65
_INSTALL = 'pip install -e ".[onnx]" (or: pip install onnx onnxruntime onnxscript)'


class ExportError(ConfigError):
    """A config the ONNX export cannot represent, or an exported graph that does not fit the config (names the key)."""


class ImageSizeError(UserError, ValueError):
    """An image too small for the exported graph (MIN_IMAGE_SIDE)."""


class MissingDependencyError(UserError, ImportError):
    """An optional package (onnx, onnxruntime, onnxscript) is not installed; the message says what to install."""


def require(module: str, what: str) -> Any:
    """Import an optional dependency or raise MissingDependencyError saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(f"{what} needs the '{module}' package, which is not installed: {_INSTALL}") from e


# The config key that puts deformable convs into each part of a SOLOv2 (the mask branch's last conv has its own).
_DCN_KEYS = {"backbone": "MODEL.RESNETS.DEFORM_ON_PER_STAGE", "ins_head": "MODEL.SOLOV2.USE_DCN_IN_INSTANCE",
             "mask_head.convs_all_levels": "MODEL.SOLOV2.USE_DCN_IN_MASK",
             "mask_head.conv_pred": "MODEL.SOLOV2.USE_DCN_IN_MASK_PRED"}


def check_exportable(model: nn.Module) -> None:
    """Raise ExportError naming the config key when the model holds something the ONNX graph cannot."""
    nms_type = model.infer_params.nms_type
    if nms_type != "matrix":
        raise ExportError(
            f"MODEL.SOLOV2.NMS_TYPE '{nms_type}' cannot be exported: greedy mask NMS is a sequential loop over the "
            "candidates; export with MODEL.SOLOV2.NMS_TYPE matrix (Matrix NMS, the published default)")
    dcn = [key for part, key in _DCN_KEYS.items()
           if any(isinstance(m, DeformConv) for m in model.get_submodule(part).modules())]
    if dcn:
        raise ExportError(
            f"Deformable convolutions ({', '.join(dcn)}) cannot be exported: PyTorch's ONNX exporter has no "
            "translation of torchvision's deform_conv2d. Export a config without DCN.")


class _LogStream:
    """A stdout stand-in for torch.onnx's progress prints: their lines go to the log at DEBUG, not the console."""

    def write(self, text: str) -> int:
        """Log each non-empty line."""
        for line in text.splitlines():
            if line.strip():
                logger.debug(line)
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""


class ExportableSOLOv2(nn.Module):
    """One image's whole inference as a traceable module: (H x W x 3 BGR uint8, [out_h, out_w]) -> detections."""

    def __init__(self, model: nn.Module, input_format: str = "BGR") -> None:
        super().__init__()
        if input_format not in ("BGR", "RGB"):
            raise ExportError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got '{input_format}'")
        self.model = model
        self.rgb = input_format == "RGB"

    def forward(self, image: torch.Tensor, output_size: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Masks (K x out_h x out_w bool), scores (K), classes (K int64), boxes (K x 4) of the image."""
        x = image.permute(2, 0, 1)
        if self.rgb:
            x = x.flip(0)
        x = self.model.normalize(x)
        h, w = x.shape[-2:]
        d = self.model.backbone.size_divisibility
        # ImageList's padding rule on the symbolic sizes (ImageList.from_tensors itself reads them as ints).
        x = F.pad(x, (0, divisible_size(w, d) - w, 0, divisible_size(h, d) - h))[None]
        cate_preds, kernel_preds, mask_feats = self.model.network(x)
        scores, kernels, cell_strides = flatten_image_preds(cate_preds, kernel_preds, 0, self.model.instance_strides)
        out_h, out_w = output_size.tolist()
        # The image size as data for the crop to it after upsampling: as a size derived from the input shape, the
        # exporter would have to prove it is at most the padded size, which it cannot; as data it is a plain Slice.
        in_h, in_w = torch.stack([torch.scalar_tensor(h, dtype=torch.int64),
                                  torch.scalar_tensor(w, dtype=torch.int64)]).tolist()
        det = postprocess_image(scores, kernels, cell_strides, mask_feats[0], self.model.infer_params, (in_h, in_w),
                                tuple(x.shape[-2:]), (out_h, out_w))
        # K x out_h x out_w bool, K descending scores, K int64 classes, K x 4 boxes
        return det.masks, det.scores, det.classes, det.boxes


@contextlib.contextmanager
def _stage(what: str, note: str = "") -> Iterator[None]:
    """Log the start of an export stage and, at its end, how long it took (the whole export takes minutes)."""
    logger.info(f"ONNX export: {what}{note} ...")
    start = time.perf_counter()
    yield
    logger.info(f"ONNX export: {what} done in {time.perf_counter() - start:.1f} s")


def onnx_metadata(cfg: Any, class_names: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """What an exported file says about itself, so that ONNXPredictor needs no config: the input format, the test
    resize sizes, the score thresholds baked into the graph, the number of classes and their names (a JSON list)."""
    s = cfg.MODEL.SOLOV2
    return {
        "input_format": cfg.INPUT.FORMAT,
        "min_size_test": str(cfg.INPUT.MIN_SIZE_TEST),
        "max_size_test": str(cfg.INPUT.MAX_SIZE_TEST),
        "num_classes": str(s.NUM_CLASSES),
        "class_names": json.dumps(list(class_names) if class_names is not None else None),
        "score_thr": str(s.SCORE_THR),
        "update_thr": str(s.UPDATE_THR),
    }


def _translations() -> Dict[Any, Any]:
    """ONNX translations that run faster in ONNX Runtime than the exporter's defaults (same values)."""
    from onnxscript import opset18 as op

    def threshold(self: Any, threshold: float, value: float) -> Any:
        # F.threshold(x, t, 0) is ONNX's ThresholdedRelu; the default Where(x <= t, 0, x) was 6 ns per element.
        if value != 0:
            raise NotImplementedError("solov2's ONNX export translates F.threshold only with value 0")
        return op.ThresholdedRelu(self, alpha=threshold)

    return {torch.ops.aten.threshold.default: threshold}


def export_onnx(
    model: nn.Module, path: str, input_format: str = "BGR", metadata: Optional[Dict[str, Any]] = None,
    sample_size: Tuple[int, int] = (224, 320),
) -> str:
    """Export `model` (a SOLOv2) to one ONNX file at `path` (checked with onnx.checker); returns the path.

    Refused (ExportError naming the config key) when the model has what a graph cannot hold (check_exportable).
    A copy of the model is traced in eval mode on the CPU (the given model is left as it was), with BatchNorms folded
    into their convs. The graph's inputs are `image` (H x W x 3 uint8 BGR, any H, W >= MIN_IMAGE_SIDE) and
    `output_size` (int64 [out_h, out_w]); its outputs `masks` (K x out_h x out_w bool), `scores` (K float, descending),
    `classes` (K int64) and `boxes` (K x 4 float XYXY); K may be 0.
    """
    require("onnx", "ONNX export")  # before the slow capture, not after it
    require("onnxscript", "ONNX export")
    check_exportable(model)
    model = copy.deepcopy(model).cpu().eval()
    wrapper = ExportableSOLOv2(model, input_format).eval()
    image = torch.randint(0, 256, (*sample_size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    args = (image, torch.tensor(sample_size, dtype=torch.int64))
    side = {0: torch.export.Dim("height", min=MIN_IMAGE_SIDE, max=16384),
            1: torch.export.Dim("width", min=MIN_IMAGE_SIDE, max=16384)}
    ir_logger = logging.getLogger("onnx_ir._convenience")
    level = ir_logger.level
    ir_logger.setLevel(logging.ERROR)  # one harmless warning per empty attribute list otherwise floods the console
    try:
        with _stage("tracing the model and translating it to ONNX", " (torch.export; minutes on a CPU)"), \
                torch.no_grad(), contextlib.redirect_stdout(_LogStream()):
            program = torch.onnx.export(wrapper, args, dynamo=True, dynamic_shapes={"image": side, "output_size": None},
                                        opset_version=OPSET, output_names=list(OUTPUT_NAMES), external_data=False,
                                        custom_translation_table=_translations(), verbose=False)
        # Fold what depends only on weights (the BatchNorms folded into conv weights) into the file, whatever its size
        # (the exporter's own pass leaves tensors above 256k elements to be computed at every run).
        onnxscript = require("onnxscript", "ONNX export")
        with _stage("optimising the graph"):
            program.model = onnxscript.optimizer.optimize(program.model, input_size_limit=2**40,
                                                          output_size_limit=2**40)
    finally:
        ir_logger.setLevel(level)
    proto = program.model_proto
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if not (dims[0].dim_param and dims[1].dim_param):
        # torch.onnx falls back to capture strategies that fix the sample's size when torch.export fails
        raise RuntimeError("The exported graph has a fixed image size; the dynamic-shape capture failed (a bug)")
    meta = {"input_format": input_format}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    write_checked_onnx(proto, path)
    return path


def write_checked_onnx(proto: Any, path: str) -> None:
    """Save an ONNX ModelProto to `path`, checked with onnx.checker; all or nothing (a failure keeps the old file)."""
    onnx = require("onnx", "ONNX export")
    # Renamed into place only once checked: an interrupted or failed export never leaves a truncated file, nor
    # destroys a good file of the same name.
    try:
        with _stage("writing and checking the file (onnx.checker)"):
            atomic_write(path, lambda f: onnx.save(proto, f),
                         check=lambda tmp: onnx.checker.check_model(tmp, full_check=True))
    except OSError as e:
        raise OutputPathError(f"Cannot write the ONNX file '{path}': {e.strerror or e}") from e


def export_from_config(cfg: Any, path: str, class_names: Optional[Sequence[str]] = None) -> str:
    """Build the config's model, load MODEL.WEIGHTS and export it to `path` (see export_onnx); the file's metadata
    holds what ONNXPredictor needs besides it (onnx_metadata), `class_names` included."""
    from ..checkpoint import Checkpointer
    from ..checkpoint.weight_checks import weights_check_mode
    from ..modeling import build_model

    check_writable_output(path)  # before minutes of building and tracing
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    check_exportable(model)  # before loading weights, which may take long
    if cfg.MODEL.WEIGHTS:
        Checkpointer(model, weights_check=weights_check_mode(cfg, eval_only=True)).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: exporting a RANDOMLY INITIALISED model")
    return export_onnx(model, path, cfg.INPUT.FORMAT, metadata=onnx_metadata(cfg, class_names))
