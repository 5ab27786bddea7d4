#!/usr/bin/env python
"""Export a SOLOv2 config and its weights to one ONNX graph: BGR uint8 image in; masks, scores, classes, boxes out.

  python tools/export_onnx.py --config-file configs/SOLOv2/R50_3x.yaml --output solov2_r50.onnx \
      MODEL.WEIGHTS SOLOv2_R50_3x.pth

The graph holds the whole inference after resizing (normalisation, backbone, heads, point NMS, thresholds, maskness,
Matrix NMS, top-k, mask upsampling); run it with solov2.export.ONNXPredictor, `demo/demo.py --onnx`, or any ONNX
Runtime with inputs `image` (H x W x 3 uint8 BGR, resized to the test size) and `output_size` (int64 [h, w]).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import List, Optional

from solov2.config import get_cfg
from solov2.export import export_from_config
from solov2.utils.error_reporting import add_debug_argument, run_tool
from solov2.utils.logger import setup_logger

logger = logging.getLogger("solov2.export_onnx")


def get_parser() -> argparse.ArgumentParser:
    """The exporter's command line."""
    p = argparse.ArgumentParser(description="Export SOLOv2 to ONNX (the whole inference in one graph)")
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--output", required=True, metavar="FILE", help="the .onnx file to write")
    add_debug_argument(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides, e.g. MODEL.WEIGHTS model.pth")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; returns the exit status."""
    args = get_parser().parse_args(argv)
    setup_logger(name="solov2")
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    start = time.perf_counter()
    path = export_from_config(cfg, args.output)
    logger.info(f"Wrote {path} ({os.path.getsize(path) / 2**20:.1f} MiB) in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
