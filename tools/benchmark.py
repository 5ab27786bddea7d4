#!/usr/bin/env python
"""Benchmark a SOLOv2 config: inference latency / throughput, training iteration time, peak memory, Matrix NMS.

    python tools/benchmark.py --config-file configs/SOLOv2/R50_3x.yaml --input-size 800x1216 --batch-sizes 1 2 \
        --train --nms-masks 500 --output bench.json

A thin wrapper over `solov2 benchmark` (solov2/commands/benchmark.py), as Detectron2's tools are over its library: the same
code, options and output. Run `python tools/benchmark.py --help` for the options.
"""

import sys

from solov2.commands.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
