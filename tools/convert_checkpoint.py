#!/usr/bin/env python
"""Convert a published SOLOv2 weight file to solov2's format (a thin wrapper over `solov2 convert`,
solov2/commands/convert.py).

  python tools/convert_checkpoint.py solov2_r50_fpn_3x_coco_20220512_125856-fed092d4.pth SOLOv2_R50_3x_mmdet.pth \
      --config-file configs/SOLOv2/mmdet/R50_3x.yaml

MODEL.WEIGHTS also takes the unconverted file: converting once only saves the conversion at each load.
"""

import sys

from solov2.commands.convert import main

if __name__ == "__main__":
    sys.exit(main())
