"""The `solov2` command: `solov2 <subcommand> [options]`, each subcommand a module of solov2.commands with
`build_parser(prog)` and `main(argv, prog) -> int`. Subcommands are imported only when run, so `solov2 --version`
and `solov2 --help` answer at once."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Dict, List, Optional

from .. import __version__

# name -> (module, one-line help). A new subcommand is one line here.
SUBCOMMANDS: Dict[str, tuple] = {
    "train": ("solov2.commands.train", "train a model, or evaluate a checkpoint (--eval-only)"),
    "predict": ("solov2.commands.predict", "run a model on images, folders, a video or a webcam and draw its masks"),
    "export": ("solov2.commands.export", "export a model to ONNX, or write a slim inference checkpoint (--format pth)"),
    "benchmark": ("solov2.commands.benchmark", "time inference, a training step and Matrix NMS; report peak memory"),
    "visualize": ("solov2.commands.visualize", "draw a dataset's ground truth, raw or as the training loader gives it"),
    "zoo": ("solov2.commands.zoo", "list the configs of the model zoo and the published weights that fit them"),
    "plot": ("solov2.commands.plot_metrics", "redraw a run's curves, PR curves and confusion matrix; --compare runs"),
    "convert": ("solov2.commands.convert", "convert published weights (mmdetection, SOLO, Detectron2) to ours"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: --version, and the list of subcommands."""
    parser = argparse.ArgumentParser(
        prog="solov2", description="SOLOv2 instance segmentation: train, predict, export, benchmark, visualize, zoo, plot, convert.",
        epilog="Run `solov2 <subcommand> --help` for a subcommand's options. Every subcommand takes config overrides "
        "as KEY VALUE pairs at the end of the command, or after --opts.")
    parser.add_argument("--version", action="version", version=f"solov2 {__version__}",
                        help="print solov2's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="<subcommand>", title="subcommands")
    for name, (_, help_text) in SUBCOMMANDS.items():
        # add_help=False: the subcommand's own parser answers --help, with all its options.
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run `solov2 <subcommand> ...`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        # No subcommand: --version, --help, or a mistake argparse explains (with the list of subcommands).
        parser.parse_args(argv or ["--help"])
        parser.error("a subcommand is required")
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    return int(module.main(argv[1:], prog=f"solov2 {argv[0]}") or 0)


if __name__ == "__main__":
    sys.exit(main())
