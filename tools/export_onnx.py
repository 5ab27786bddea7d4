#!/usr/bin/env python
"""Export a SOLOv2 model to one ONNX graph (or a slim inference checkpoint with --format pth).

    python tools/export_onnx.py --config-file configs/SOLOv2/R50_3x.yaml --output solov2_r50.onnx \
        MODEL.WEIGHTS SOLOv2_R50_3x.pth
    python tools/export_onnx.py --weights output/quickstart_shapes_R18/model_final.pth --output shapes.onnx

A thin wrapper over `solov2 export` (solov2/commands/export.py), as Detectron2's tools are over its library: the same
code, options and output. Run `python tools/export_onnx.py --help` for the options.
"""

import sys

from solov2.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
