"""`solov2 zoo`: the configs of the model zoo and, for each, the published weights that fit it (where to download
them, their format and published COCO mask AP). Use a name with --config-file anywhere, e.g. SOLOv2/R50_3x.yaml."""

from __future__ import annotations

import argparse
from typing import List, Optional

from ..engine.arguments import add_common_arguments, config_overrides
from ..model_zoo import configs_root, get_config, list_configs, published_weights
from ..utils.errors import ConfigError
from ..utils.error_reporting import run_tool
from .startup import start_command

__all__ = ["build_parser", "format_zoo", "main"]


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The zoo's command line."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    p.add_argument("--show", metavar="NAME",
                   help="print the full config of this zoo config (its _BASE_ merged, overrides applied)")
    p.add_argument("--paths", action="store_true", help="also print where each config file lies")
    add_common_arguments(p)
    return p


def format_zoo(show_paths: bool = False) -> str:
    """The table of configs and their published weights, as printed."""
    root = configs_root()
    lines = [f"Model zoo configs (use a name with --config-file; files in {root}):"]
    for name in list_configs():
        if name.endswith("Base-SOLOv2.yaml"):
            continue  # a _BASE_ of the others, not a model
        lines.append(f"  {name}" + (f"  ({root / name})" if show_paths else ""))
        weights = published_weights(name)
        if not weights:
            lines.append("      no published weights" if name.startswith("SOLOv2/") else
                         "      train it yourself (solov2 train --config-file " + name + ")")
        for w in weights:
            lines.append(f"      mask AP {w.mask_ap:.1f}  {w.file_name}  [{w.format} format] {w.source}; from {w.hosted}")
    lines.append("Weights are not downloaded: fetch the file, then pass it with --weights (or MODEL.WEIGHTS); "
                 "published checkpoints hold no config, so give --config-file with them.")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    start_command(args)
    overrides = config_overrides(args)
    if args.show:
        cfg = get_config(args.show)
        cfg.merge_from_list(overrides)
        print(cfg.dump(), end="")
        return 0
    if overrides:
        raise ConfigError(f"Config overrides {overrides} only apply with --show NAME")
    print(format_zoo(args.paths))
    return 0


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Entry point; returns the exit status."""
    return run_tool(_run, build_parser(prog).parse_args(argv))
