#!/usr/bin/env python
"""Train or evaluate SOLOv2 with Detectron2's command line.

    python tools/train_net.py --config-file configs/SOLOv2/R50_3x.yaml --num-gpus 8 OUTPUT_DIR training_dir/SOLOv2_R50_3x
    python tools/train_net.py --config-file configs/SOLOv2/R50_3x.yaml --eval-only MODEL.WEIGHTS model.pth
    python tools/train_net.py --config-file cfg.yaml --register-coco my_train ann/train.json images/ \
        DATASETS.TRAIN "('my_train',)" MODEL.SOLOV2.NUM_CLASSES 3

A thin wrapper over `solov2 train` (solov2/commands/train.py), as Detectron2's tools are over its library: the same
code, options and output. Run `python tools/train_net.py --help` for the options.
"""

import sys

from solov2.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
