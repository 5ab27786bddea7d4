"""Command-line helpers shared by the `solov2` subcommands and the tools: the config flags, both styles of config
overrides (`KEY VALUE ...` at the end, or after `--opts`), --debug, --register-coco and Detectron2's training parser."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, List, Optional

from .. import __version__

__all__ = [
    "ValuesThenOverrides",
    "add_config_arguments",
    "add_debug_argument",
    "add_opts_arguments",
    "add_register_coco_argument",
    "add_version_argument",
    "apply_register_coco",
    "config_file_of",
    "config_overrides",
    "default_argument_parser",
]

OPTS_HELP = ("config overrides as KEY VALUE pairs, e.g. SOLVER.BASE_LR 0.02 OUTPUT_DIR out/ (at the end of the "
             "command, or after --opts)")


def _default_dist_port() -> int:
    """A port in the dynamic range that differs between users, so two users' jobs on one machine do not clash."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return 49152 + uid % 16000


def add_version_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add --version (prints `solov2 <version>`)."""
    parser.add_argument("--version", action="version", version=f"solov2 {__version__}",
                        help="print solov2's version and exit")
    return parser


def add_debug_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add --debug (full tracebacks on the console for user errors too) to a tool's parser."""
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the full traceback of every error on the console (same as SOLOV2_DEBUG=1); without it an error "
        "in what you gave (config, data, weights, paths) prints one 'ERROR: ...' line and the traceback goes to the "
        "log file (OUTPUT_DIR/log.txt) where there is one",
    )
    return parser


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = False,
                         default: str = "") -> argparse.ArgumentParser:
    """Add --config-file, which takes a path or a model-zoo name (e.g. SOLOv2/R50_3x.yaml)."""
    parser.add_argument(
        "--config-file", default=default, required=required, metavar="FILE",
        help="a YAML config: a path, or the name of a config of the model zoo (`solov2 zoo` lists them, e.g. "
        "SOLOv2/R50_3x.yaml or quickstart/shapes_R18.yaml)" + (f"; default {default}" if default else ""))
    return parser


def add_opts_arguments(parser: argparse.ArgumentParser, trailing: bool = True) -> argparse.ArgumentParser:
    """Add config overrides in both styles: `--opts KEY VALUE ...` and (unless the parser has them already, as
    Detectron2's does) trailing KEY VALUE pairs; config_overrides(args) reads both."""
    parser.add_argument("--opts", dest="opts_flag", default=[], nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help=OPTS_HELP)
    if trailing:
        parser.add_argument("opts", default=[], nargs=argparse.REMAINDER, metavar="KEY VALUE", help=OPTS_HELP)
    return parser


def add_common_arguments(parser: argparse.ArgumentParser, trailing_opts: bool = True) -> argparse.ArgumentParser:
    """What every `solov2` subcommand takes besides its own flags: --debug, --version and config overrides in both
    styles (see add_opts_arguments)."""
    add_debug_argument(parser)
    add_version_argument(parser)
    return add_opts_arguments(parser, trailing=trailing_opts)


_KEY_LIKE = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)+")


class ValuesThenOverrides(argparse.Action):
    """For an option taking several values (nargs="+", e.g. --input): trailing KEY VALUE overrides right after its
    values would be taken as more values; they start at the first config key and go to config_overrides."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        """Store the values up to the first config key; keep the rest as overrides."""
        from ..config import get_cfg
        from ..config.config import all_keys

        keys = set(all_keys(get_cfg()))
        # A known key, or one spelt like a key (a misspelt key must reach the config merge, which names it).
        cut = next((i for i, v in enumerate(values) if v in keys or _KEY_LIKE.fullmatch(v)), len(values))
        if cut == 0:
            parser.error(f"{option_string} needs at least one value before the config overrides")
        setattr(namespace, self.dest, list(values[:cut]))
        setattr(namespace, "opts_after_values", list(values[cut:]))


def config_overrides(args: argparse.Namespace) -> List[str]:
    """The KEY VALUE overrides of a command line, whichever style (or both) was used, in the order given."""
    trailing = list(getattr(args, "opts_after_values", None) or []) + list(getattr(args, "opts", None) or [])
    # Trailing pairs followed by --opts and more pairs: argparse leaves the flag inside the trailing remainder.
    flagged = list(getattr(args, "opts_flag", None) or [])
    if "--opts" in trailing:
        i = trailing.index("--opts")
        trailing, flagged = trailing[:i], trailing[i + 1:] + flagged
    return trailing + flagged


def config_file_of(args: argparse.Namespace) -> str:
    """--config-file resolved to a file: the path as given when it exists, else the model zoo's config of that name."""
    from ..model_zoo import resolve_config_file

    return resolve_config_file(args.config_file) if getattr(args, "config_file", "") else ""


def add_register_coco_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add --register-coco NAME JSON_FILE IMAGE_ROOT (repeatable): COCO-format datasets without writing Python."""
    parser.add_argument(
        "--register-coco",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON_FILE", "IMAGE_ROOT"),
        help="register a COCO-format dataset under NAME (repeatable); appended to DATASETS.COCO_INSTANCES, "
        "then usable in DATASETS.TRAIN / DATASETS.TEST",
    )
    return parser


def apply_register_coco(cfg: Any, args: argparse.Namespace) -> None:
    """Append the datasets of --register-coco to the (unfrozen) config's DATASETS.COCO_INSTANCES."""
    if getattr(args, "register_coco", None):
        cfg.DATASETS.COCO_INSTANCES = tuple(tuple(x) for x in cfg.DATASETS.COCO_INSTANCES) + tuple(
            tuple(x) for x in args.register_coco
        )


def add_launch_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add --num-gpus, --num-machines, --machine-rank and --dist-url (see solov2.engine.launch)."""
    parser.add_argument(
        "--num-gpus", type=int, default=1, help="processes per machine (GPUs; CPU processes on a machine without CUDA)"
    )
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)")
    parser.add_argument(
        "--dist-url",
        default=f"tcp://127.0.0.1:{_default_dist_port()}",
        help="initialization URL for torch.distributed: tcp://<machine 0 ip>:<port> for several machines, "
        "or 'auto' for a free port on this machine",
    )
    return parser


def default_argument_parser(epilog: Optional[str] = None, prog: Optional[str] = None) -> argparse.ArgumentParser:
    """Detectron2's training command line: --config-file, --resume, --eval-only, distributed flags, KEY VALUE opts."""
    prog = prog or os.path.basename(sys.argv[0])
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train SOLOv2, or evaluate a checkpoint (--eval-only), as Detectron2's train_net.py does.",
        epilog=epilog
        or f"""
Examples:

Run on a single machine:
    $ {prog} --num-gpus 8 --config-file cfg.yaml

Change some config options:
    $ {prog} --config-file cfg.yaml MODEL.WEIGHTS /path/to/weight.pth SOLVER.BASE_LR 0.001

Run on multiple machines:
    (machine0)$ {prog} --machine-rank 0 --num-machines 2 --dist-url <URL> [--other-flags]
    (machine1)$ {prog} --machine-rank 1 --num-machines 2 --dist-url <URL> [--other-flags]
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in OUTPUT_DIR (model, optimizer, scheduler and iteration); "
        "without it MODEL.WEIGHTS is loaded and training starts at iteration 0",
    )
    parser.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS on DATASETS.TEST")
    add_launch_arguments(parser)
    add_debug_argument(parser)
    add_version_argument(parser)
    add_opts_arguments(parser)
    return parser
