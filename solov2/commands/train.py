#!/usr/bin/env python
"""Train or evaluate SOLOv2 with Detectron2's command line.

    python tools/train_net.py --config-file configs/SOLOv2/R50_3x.yaml --num-gpus 8 OUTPUT_DIR training_dir/SOLOv2_R50_3x
    python tools/train_net.py --config-file configs/SOLOv2/R50_3x.yaml --eval-only MODEL.WEIGHTS model.pth
    python tools/train_net.py --config-file cfg.yaml --register-coco my_train ann/train.json images/ \
        DATASETS.TRAIN "('my_train',)" MODEL.SOLOV2.NUM_CLASSES 3
"""

from __future__ import annotations

import time

_PROCESS_START = time.perf_counter()  # first thing, so the total wall time logged at the end includes start-up

import argparse  # noqa: E402
import datetime  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from typing import Any, Dict  # noqa: E402

from solov2.checkpoint import Checkpointer  # noqa: E402
from solov2.config import CfgNode, get_cfg  # noqa: E402
from solov2.engine import DefaultTrainer, default_argument_parser, default_setup, launch  # noqa: E402
from solov2.engine.defaults import add_register_coco_argument, apply_register_coco  # noqa: E402
from solov2.evaluation import verify_results  # noqa: E402
from solov2.utils import comm  # noqa: E402
from solov2.utils.error_reporting import run_tool  # noqa: E402
from solov2.utils.errors import ResultsMismatchError  # noqa: E402

logger = logging.getLogger("solov2.train_net")


def argument_parser() -> argparse.ArgumentParser:
    """default_argument_parser plus --register-coco for COCO-format datasets without writing Python."""
    return add_register_coco_argument(default_argument_parser())


def setup(args: argparse.Namespace) -> CfgNode:
    """Config from --config-file, KEY VALUE overrides and --register-coco; then default_setup."""
    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    apply_register_coco(cfg, args)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args: argparse.Namespace) -> Dict[str, Any]:
    """Evaluate MODEL.WEIGHTS (--eval-only) or train, resuming from OUTPUT_DIR with --resume."""
    cfg = setup(args)
    if args.eval_only:
        if not cfg.MODEL.WEIGHTS and not args.resume:
            logger.warning("--eval-only without MODEL.WEIGHTS: evaluating a randomly initialised model!")
        model = DefaultTrainer.build_model(cfg)
        Checkpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = DefaultTrainer.test(cfg, model)
        if comm.is_main_process() and not verify_results(cfg, results):
            raise ResultsMismatchError("Evaluation results differ from TEST.EXPECTED_RESULTS (see the log)")
    else:
        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        results = trainer.train()
    if comm.is_main_process():
        # Since the process started: imports, dataset generation, training and the final evaluation.
        elapsed = datetime.timedelta(seconds=round(time.perf_counter() - _PROCESS_START))
        logger.info("Total wall time of this command: %s", elapsed)
    return results


def invoke_main() -> None:
    """Parse the command line and launch main on every process."""
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    sys.exit(run_tool(invoke_main))
