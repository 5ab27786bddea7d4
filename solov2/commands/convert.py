"""`solov2 convert IN OUT`: convert a published SOLOv2 weight file to solov2's format (what
tools/convert_checkpoint.py runs).

    solov2 convert solov2_r50_fpn_3x_coco.pth SOLOv2_R50_3x_mmdet.pth --config-file SOLOv2/mmdet/R50_3x.yaml

Reads every format MODEL.WEIGHTS reads (mmdetection 3.x, the original SOLO release, the Detectron2-based release,
MSRA .pkl, torchvision); the format is detected from the parameter names. With --config-file the weights must fit
that config's model exactly, and the written file holds the config and the class names of its datasets, so that
`solov2 predict --weights OUT` needs no config.
"""

from __future__ import annotations

import argparse
import logging
from typing import List, Optional

from ..checkpoint.convert import convert_checkpoint
from ..checkpoint.embedded import describe
from ..engine.arguments import (
    add_common_arguments,
    add_config_arguments,
    config_file_of,
    config_overrides,
)
from ..utils.error_reporting import run_tool
from ..utils.errors import ConfigError
from ..utils.logger import setup_logger

__all__ = ["build_parser", "main", "parse_args", "run"]

logger = logging.getLogger("solov2.convert")


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The converter's command line."""
    p = argparse.ArgumentParser(
        prog=prog, description="Convert a SOLOv2 weight file (mmdetection 3.x, original SOLO, Detectron2-based "
        "release, MSRA .pkl, torchvision) to solov2's format",
        epilog="Config overrides for --config-file: KEY VALUE pairs after IN OUT, or after --opts.")
    p.add_argument("input", metavar="IN", help="the weight file to read")
    p.add_argument("output", metavar="OUT", help="the .pth file to write")
    add_config_arguments(p)
    # Trailing KEY VALUE pairs are taken by parse_args below: a REMAINDER positional after IN OUT would also swallow
    # the flags that follow them (e.g. --config-file).
    add_common_arguments(p, trailing_opts=False)
    return p


def parse_args(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> argparse.Namespace:
    """The command line, trailing KEY VALUE overrides (anywhere after IN OUT) in args.opts."""
    parser = build_parser(prog)
    args, extra = parser.parse_known_args(argv)
    unknown = [a for a in extra if a.startswith("--")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.opts = extra
    return args


def run(args: argparse.Namespace) -> int:
    """Convert; with --config-file check the fit and embed the config and class names. Raises on bad input."""
    setup_logger(name="solov2")
    model, description = None, None
    config_file = config_file_of(args)
    if config_file:
        from ..config import get_cfg
        from ..modeling import build_model
        from ..predictor import dataset_classes

        cfg = get_cfg()
        cfg.merge_from_file(config_file)
        cfg.merge_from_list(config_overrides(args))
        cfg.MODEL.DEVICE = "cpu"
        cfg.MODEL.WEIGHTS = ""
        model = build_model(cfg)
        description = describe(cfg.dump(), dataset_classes(cfg)[0])
    elif config_overrides(args):
        raise ConfigError("config overrides need --config-file (they change the config the weights are checked against)")
    fmt, count = convert_checkpoint(args.input, args.output, model, description)
    logger.info(f"Converted {count} tensors from the {fmt} format in '{args.input}' to '{args.output}'"
                + (" (config and class names embedded)" if description else ""))
    return 0


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Entry point; returns the exit status (one ERROR line for a user error)."""
    return run_tool(run, parse_args(argv, prog))
