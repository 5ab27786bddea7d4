#!/usr/bin/env python
"""Redraw a run's plots from OUTPUT_DIR, or compare several runs (a thin wrapper over `solov2 plot`,
solov2/commands/plot_metrics.py).

    python tools/plot_metrics.py output/quickstart_shapes_R18
    python tools/plot_metrics.py output/run_a --compare output/run_b output/run_c --output compare/
"""

import sys

from solov2.commands.plot_metrics import main

if __name__ == "__main__":
    sys.exit(main())
