"""`solov2 train`: train or evaluate SOLOv2 with Detectron2's command line (what tools/train_net.py runs).

    solov2 train --config-file SOLOv2/R50_3x.yaml --num-gpus 8 OUTPUT_DIR training_dir/SOLOv2_R50_3x
    solov2 train --config-file SOLOv2/R50_3x.yaml --eval-only --weights model.pth
    solov2 train --config-file cfg.yaml --register-coco my_train ann/train.json images/ \
        DATASETS.TRAIN "('my_train',)" MODEL.SOLOV2.NUM_CLASSES 3
"""

from __future__ import annotations

import argparse
import datetime
import logging
from typing import Any, Dict, List, Optional

from ..checkpoint.weight_checks import weights_check_mode
from ..config import CfgNode, get_cfg
from ..engine import DefaultTrainer, default_setup, launch
from ..engine.arguments import (
    add_register_coco_argument,
    apply_register_coco,
    config_file_of,
    config_overrides,
    default_argument_parser,
)
from ..engine.defaults import evaluate_weights
from ..utils import comm
from ..utils.error_reporting import run_tool
from ..utils.events import EventStorage, TensorboardXWriter
from ..utils.plots import draw_run_plots
from .startup import process_wall_time, start_command

__all__ = ["build_parser", "main", "setup"]

logger = logging.getLogger("solov2.train_net")


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """Detectron2's training command line plus --register-coco, --weights and --output."""
    parser = default_argument_parser(prog=prog)
    add_register_coco_argument(parser)
    parser.add_argument("--weights", metavar="FILE",
                        help="initial weights for training, or the checkpoint --eval-only evaluates (MODEL.WEIGHTS)")
    parser.add_argument("--output", metavar="DIR", help="where checkpoints, logs and results go (OUTPUT_DIR)")
    return parser


def setup(args: argparse.Namespace) -> CfgNode:
    """Config from --config-file (or the one --weights holds), the overrides, --weights/--output and --register-coco;
    then default_setup."""
    config_file = config_file_of(args)
    if not config_file and getattr(args, "weights", None):
        from ..predictor import inference_config

        # A checkpoint solov2 wrote holds its config (e.g. `--eval-only --weights model_final.pth`); others need one.
        cfg, _ = inference_config(args.weights, None, config_overrides(args))
    else:
        cfg = get_cfg()
        if config_file:
            cfg.merge_from_file(config_file)
        cfg.merge_from_list(config_overrides(args))
    if getattr(args, "weights", None):
        cfg.MODEL.WEIGHTS = args.weights
    if getattr(args, "output", None):
        cfg.OUTPUT_DIR = args.output
    apply_register_coco(cfg, args)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """In every process: evaluate MODEL.WEIGHTS (--eval-only) or train, resuming from OUTPUT_DIR with --resume."""
    cfg = setup(args)
    if args.eval_only:
        with EventStorage() as storage:
            results = evaluate_weights(cfg, DefaultTrainer, resume=args.resume,
                                       weights_check=weights_check_mode(cfg, eval_only=True))
            if comm.is_main_process() and cfg.OUTPUT_DIR:
                # The evaluation's mosaic and plots as TensorBoard images; curves.png where OUTPUT_DIR was trained.
                if storage.vis_data:
                    writer = TensorboardXWriter(cfg.OUTPUT_DIR)
                    writer.write()
                    writer.close()
                draw_run_plots(cfg.OUTPUT_DIR, evaluation=False)
    else:
        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        results = trainer.train()
    if comm.is_main_process():
        # Since the process started: imports, dataset generation, training and the final evaluation.
        logger.info("Total wall time of this command: %s", datetime.timedelta(seconds=round(process_wall_time())))
    return results


def _launch(args: argparse.Namespace) -> int:
    start_command(args)
    launch(run, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
    return 0


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Parse the command line and run it on every process; returns the exit status (one ERROR line for a user error)."""
    args = build_parser(prog).parse_args(argv)
    return run_tool(_launch, args)
