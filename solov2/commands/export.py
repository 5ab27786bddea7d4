"""`solov2 export`: a model to one ONNX graph (BGR uint8 image in; masks, scores, classes, boxes out), or to a slim
inference checkpoint (weights, config and class names; no optimizer state). What tools/export_onnx.py runs.

    solov2 export --weights output/quickstart_shapes_R18/model_final.pth --output shapes.onnx
    solov2 export --weights output/quickstart_shapes_R18/model_final.pth --output shapes_slim.pth   # --format pth
    solov2 export --config-file SOLOv2/R50_3x.yaml --weights SOLOv2_R50_3x.pth --output solov2_r50.onnx

The graph holds the whole inference after resizing (normalisation, backbone, heads, point NMS, thresholds, maskness,
Matrix NMS, top-k, mask upsampling) and, in its metadata, the test size and class names; run it with
`solov2 predict --onnx`, solov2.Predictor / solov2.export.ONNXPredictor, or any ONNX Runtime with inputs `image`
(H x W x 3 uint8 BGR, resized to the test size) and `output_size` (int64 [h, w]).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from typing import List, Optional

import torch

from ..utils.file_io import atomic_write
from ..checkpoint.embedded import describe
from ..engine.arguments import (
    add_common_arguments,
    add_config_arguments,
    config_file_of,
    config_overrides,
)
from ..utils.errors import ConfigError, OutputPathError
from ..utils.error_reporting import run_tool
from ..utils.logger import setup_logger
from .startup import start_command

__all__ = ["build_parser", "main", "write_slim_checkpoint"]

logger = logging.getLogger("solov2.export")


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The exporter's command line."""
    p = argparse.ArgumentParser(prog=prog, description="Export SOLOv2 to ONNX (the whole inference in one graph), or "
                                "write a slim inference checkpoint (--format pth).")
    add_config_arguments(p)
    p.add_argument("--weights", metavar="FILE",
                   help="the checkpoint to export (MODEL.WEIGHTS); one written by solov2 needs no --config-file")
    p.add_argument("--output", required=True, metavar="FILE", help="the file to write (.onnx, or .pth for --format pth)")
    p.add_argument("--format", choices=["onnx", "pth"],
                   help="onnx: the ONNX graph; pth: weights + config + class names, no optimizer state (default: "
                   "from --output's extension, else onnx)")
    add_common_arguments(p)
    return p


def write_slim_checkpoint(cfg, class_names: Optional[List[str]], path: str) -> str:  # noqa: ANN001 - a CfgNode
    """Write MODEL.WEIGHTS's model weights with the config and class names (no optimizer or trainer state) to `path`,
    atomically; the file is all `solov2 predict --weights` and `solov2 export --weights` need."""
    from ..checkpoint import Checkpointer
    from ..checkpoint.weight_checks import weights_check_mode
    from ..modeling import build_model

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    Checkpointer(model, weights_check=weights_check_mode(cfg, eval_only=True)).load(cfg.MODEL.WEIGHTS)
    cfg.MODEL.WEIGHTS = ""  # the file itself holds the weights
    data = {"model": model.state_dict(), **describe(cfg.dump(), class_names)}
    try:
        atomic_write(path, lambda f: torch.save(data, f))
    except OSError as e:
        raise OutputPathError(f"Cannot write '{path}': {e.strerror or e}") from e
    return path


def _run(args: argparse.Namespace) -> int:
    from ..predictor import dataset_classes, inference_config

    start_command(args)
    setup_logger(name="solov2")
    fmt = args.format or ("pth" if args.output.lower().endswith((".pth", ".pt")) else "onnx")
    config_file = config_file_of(args) or None
    weights = args.weights or None
    if not weights and not config_file:
        raise ConfigError("Nothing to export: pass --weights model_final.pth (a checkpoint solov2 wrote), or "
                          "--config-file with --weights")
    cfg, description = inference_config(weights, config_file, config_overrides(args))
    class_names = description.class_names
    if class_names is None:
        class_names, _ = dataset_classes(cfg)
    start = time.perf_counter()
    if fmt == "pth":
        if not cfg.MODEL.WEIGHTS:
            raise ConfigError("--format pth writes trained weights: pass them with --weights")
        path = write_slim_checkpoint(cfg, class_names, args.output)
    else:
        from ..export import export_from_config

        path = export_from_config(cfg, args.output, class_names)
    logger.info(f"Wrote {path} ({os.path.getsize(path) / 2**20:.1f} MiB) in {time.perf_counter() - start:.0f} s")
    return 0


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Entry point; returns the exit status (one ERROR line for a user error)."""
    return run_tool(_run, build_parser(prog).parse_args(argv))
