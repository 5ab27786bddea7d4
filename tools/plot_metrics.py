#!/usr/bin/env python
"""Redraw a run's plots (curves, PR curves, confusion matrix) from its OUTPUT_DIR; --compare puts runs on one figure.

    python tools/plot_metrics.py output/quickstart_shapes_R18
    python tools/plot_metrics.py output/run_a --compare output/run_b
"""

import sys

from solov2.commands.plot_metrics import main
from solov2.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
