#!/usr/bin/env python
"""Draw a dataset's ground truth, raw (--source annotation) or after augmentation (--source dataloader), to PNGs.

    python tools/visualize_data.py --config-file configs/quickstart/shapes_R18.yaml --source annotation \
        --output vis/ --num 20

A thin wrapper over `solov2 visualize` (solov2/commands/visualize.py), as Detectron2's tools are over its library: the same
code, options and output. Run `python tools/visualize_data.py --help` for the options.
"""

import sys

from solov2.commands.visualize import main

if __name__ == "__main__":
    sys.exit(main())
