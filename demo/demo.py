#!/usr/bin/env python
"""SOLOv2 demo: run a model on images, folders, globs, a video or a webcam and draw the masks.

    python demo/demo.py --config-file configs/SOLOv2/R50_3x.yaml --input img1.jpg photos/ "more/*.png" \
        --output out/ --opts MODEL.WEIGHTS SOLOv2_R50_3x.pth
    python demo/demo.py --weights output/quickstart_shapes_R18/model_final.pth --input photos/ --output out/

A thin wrapper over `solov2 predict` (solov2/commands/predict.py), as Detectron2's tools are over its library: the same
code, options and output. Run `python demo/demo.py --help` for the options.
"""

import sys

from solov2.commands.predict import main

if __name__ == "__main__":
    sys.exit(main())
