"""Redraw a run's plots from OUTPUT_DIR (metrics.json and saved evaluation results), or compare several runs.

    solov2 plot output/quickstart_shapes_R18          (or python tools/plot_metrics.py ...)
    solov2 plot output/run_a --compare output/run_b output/run_c --output compare/

Works on a finished run and on one still training (a half-written last line of metrics.json is skipped).
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Dict, List, Optional

from ..engine.arguments import add_debug_argument, add_version_argument
from ..utils.error_reporting import run_tool
from ..utils.errors import InputFileNotFoundError, OutputPathError, UserError
from ..utils.logger import setup_logger
from ..utils.plots import (
    INSTALL_HINT,
    PLOTS_DIR,
    draw_run_plots,
    evaluation_dirs,
    matplotlib_available,
    plot_pr_curves,
    plot_training_curves,
    read_metrics,
)

__all__ = ["build_parser", "main"]

logger = logging.getLogger("solov2.plot_metrics")


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Redraw training curves, PR curves and the confusion matrix of a run's OUTPUT_DIR "
        "(into OUTPUT_DIR/plots), or put several runs on one figure with --compare.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("run", metavar="OUTPUT_DIR", help="a training or --eval-only run's OUTPUT_DIR")
    p.add_argument("--compare", nargs="+", default=[], metavar="RUN",
                   help="more OUTPUT_DIRs: curves.png, pr_segm.png and pr_bbox.png with every run on one figure")
    p.add_argument("--output", "--output-dir", dest="output_dir", default=None, metavar="DIR",
                   help="where the figures go (default: OUTPUT_DIR/plots; with --compare OUTPUT_DIR/plots/compare; "
                   "--output-dir is the old spelling)")
    add_debug_argument(p)
    add_version_argument(p)
    return p


def _labels(runs: List[str]) -> List[str]:
    """Short distinct labels for runs: their folder names, or the full paths where names repeat."""
    names = [os.path.basename(os.path.normpath(r)) or r for r in runs]
    return names if len(set(names)) == len(names) else [os.path.normpath(r) for r in runs]


def _compare(runs: List[str], out_dir: str) -> List[str]:
    """curves.png and pr_<task>.png with one line (per quantity) for each run."""
    from ..evaluation.pr_curves import PRECISION_FILE, load_precision

    written: List[str] = []
    labels = _labels(runs)
    metrics = {label: read_metrics(os.path.join(run, "metrics.json"))
               for label, run in zip(labels, runs) if os.path.exists(os.path.join(run, "metrics.json"))}
    if metrics:
        path = plot_training_curves(metrics, os.path.join(out_dir, "curves.png"))
        written += [path] if path else []
    for task in ("segm", "bbox"):
        data: Dict[str, dict] = {}
        for label, run in zip(labels, runs):
            dirs = evaluation_dirs(run)
            for name, (inference_dir, _) in dirs.items():
                npz = os.path.join(inference_dir, PRECISION_FILE.format(task=task))
                if os.path.exists(npz):
                    data[f"{label}/{name}" if name else label] = load_precision(npz)
        if data:
            path = plot_pr_curves(data, task, os.path.join(out_dir, f"pr_{task}.png"))
            written += [path] if path else []
    return written


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Entry point: redraw or compare; returns the exit status (one ERROR line for a user error)."""
    return run_tool(_run, build_parser(prog).parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    setup_logger(name="solov2")
    runs = [args.run, *args.compare]
    for run in runs:
        if not os.path.isdir(run):
            raise InputFileNotFoundError(f"Run folder '{run}' does not exist")
        if not os.path.exists(os.path.join(run, "metrics.json")) and not evaluation_dirs(run):
            raise InputFileNotFoundError(
                f"'{run}' has neither metrics.json nor saved evaluation results (inference/coco_eval_segm.npz): "
                "is it a training or --eval-only run's OUTPUT_DIR?"
            )
    if not matplotlib_available():
        raise UserError(f"Plotting needs matplotlib: {INSTALL_HINT}")
    if args.compare:
        out_dir = args.output_dir if args.output_dir is not None else os.path.join(runs[0], PLOTS_DIR, "compare")
    else:
        out_dir = args.output_dir or os.path.join(runs[0], PLOTS_DIR)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"Cannot create '{out_dir}': {e.strerror or e}") from e
    if args.compare:
        written = _compare(runs, out_dir)
    else:
        written = draw_run_plots(runs[0], plots_root=out_dir)
    for path in written:
        logger.info("Wrote %s", path)
    if not written:
        logger.warning("Nothing to draw in %s", ", ".join(runs))
    return 0
