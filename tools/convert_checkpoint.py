#!/usr/bin/env python
"""Convert a published SOLOv2 weight file to solov2's format (`{"model": state_dict}` with solov2's names).

  python tools/convert_checkpoint.py solov2_r50_fpn_3x_coco_20220512_125856-fed092d4.pth SOLOv2_R50_3x_mmdet.pth \
      --config-file configs/SOLOv2/mmdet/R50_3x.yaml

Reads every format MODEL.WEIGHTS reads (mmdetection 3.x, the original SOLO release, the Detectron2-based release,
MSRA .pkl, torchvision); the format is detected from the parameter names. With --config-file the weights must fit
that config's model exactly. MODEL.WEIGHTS also takes the unconverted file: converting once only saves the
conversion at each load.
"""

from __future__ import annotations

import sys

from solov2.checkpoint.convert import main
from solov2.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
