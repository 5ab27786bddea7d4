#!/usr/bin/env python
"""Train or evaluate SOLOv2 inside Detectron2: its DefaultTrainer, DatasetMapper, COCOEvaluator, checkpointer, launch.

The model is solov2's SOLOv2 (registered by `import solov2.d2`) on a Detectron2 backbone; datasets are solov2's
(builtin shapes splits, DATASETS.COCO_INSTANCES, --register-coco) loaded by solov2's COCO loader. Needs Detectron2:

    python tools/d2_train_net.py --config-file configs/SOLOv2/R50_3x.yaml --num-gpus 8
    python tools/d2_train_net.py --config-file configs/SOLOv2/R50_3x.yaml --eval-only MODEL.WEIGHTS SOLOv2_R50_3x.pth
    python tools/d2_train_net.py --config-file cfg.yaml --register-coco my_train ann/train.json images/ \
        DATASETS.TRAIN "('my_train',)" MODEL.SOLOV2.NUM_CLASSES 3
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, Optional

import torch

import solov2.d2  # noqa: F401  (registers SOLOv2 and solov2's datasets in Detectron2; says how to install it)
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from solov2.d2 import add_solov2_config, apply_solov2_data_keys, register_solov2_datasets
from solov2.d2.checkpoint import SafeDetectionCheckpointer
from solov2.data import check_num_classes
from solov2.commands.startup import start_command
from solov2.engine.arguments import (
    add_debug_argument,
    add_opts_arguments,
    add_register_coco_argument,
    apply_register_coco,
    config_file_of,
    config_overrides,
)
from solov2.engine.defaults import evaluate_weights
from solov2.evaluation import evaluator_output_folder
from solov2.solver import build_optimizer
from solov2.utils.error_reporting import ReportUserErrors, run_tool

class Trainer(DefaultTrainer):
    """Detectron2's DefaultTrainer with COCO evaluation and solov2's optimizer (SOLVER.OPTIMIZER SGD or ADAMW)."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        # Detectron2 builds a DetectionCheckpointer; this subclass only reads .pkl weights without running code.
        self.checkpointer.__class__ = SafeDetectionCheckpointer

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None) -> DatasetEvaluator:
        """Detectron2's COCOEvaluator (segm + bbox) writing to OUTPUT_DIR/inference[/dataset]."""
        if output_folder is None:
            output_folder = evaluator_output_folder(cfg, dataset_name)
        return COCOEvaluator(dataset_name, output_dir=output_folder, max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
        """solov2's optimizer builder: Detectron2's own would train SGD whatever SOLVER.OPTIMIZER says."""
        return build_optimizer(cfg, model)


def argument_parser() -> argparse.ArgumentParser:
    """Detectron2's default_argument_parser plus --register-coco, --debug and --opts, as in tools/train_net.py."""
    parser = add_debug_argument(add_register_coco_argument(default_argument_parser()))
    return add_opts_arguments(parser, trailing=False)  # Detectron2's parser has the trailing KEY VALUE pairs


def setup(args: argparse.Namespace) -> CfgNode:
    """Detectron2's get_cfg + solov2's keys, the config file, KEY VALUE overrides, --register-coco; default_setup."""
    cfg = get_cfg()
    add_solov2_config(cfg)
    if args.config_file:
        cfg.merge_from_file(args.config_file, allow_unsafe=False)  # a config file never runs code
    cfg.merge_from_list(config_overrides(args))
    apply_register_coco(cfg, args)
    apply_solov2_data_keys(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    # default_setup logs Detectron2's and fvcore's records; solov2's (dataset loading, warnings) go to the same places.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="solov2", abbrev_name="solov2")
    return cfg


def main(args: argparse.Namespace) -> Dict[str, Any]:
    """Evaluate MODEL.WEIGHTS (--eval-only) or train, resuming from OUTPUT_DIR with --resume."""
    cfg = setup(args)
    # In every process: launch() starts the workers afresh, so each needs the registrations.
    register_solov2_datasets(cfg)
    if args.eval_only:
        return evaluate_weights(cfg, Trainer, SafeDetectionCheckpointer, resume=args.resume, verify=verify_results)

    check_num_classes(cfg)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def invoke_main() -> None:
    """Parse the command line and launch main on every process."""
    args = argument_parser().parse_args()
    start_command(args)
    # A zoo name becomes its file here: Detectron2's default_setup reads args.config_file itself.
    args.config_file = config_file_of(args)
    print("Command Line Args:", args)
    # Each process hands a UserError to this one, which prints it once as an ERROR line (see solov2.utils.error_reporting).
    launch(
        ReportUserErrors(main),
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    sys.exit(run_tool(invoke_main))
