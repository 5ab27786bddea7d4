"""What a training script needs: the command-line parser, process setup, and DefaultTrainer."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import Checkpointer
from ..config import CfgNode, check_unsupported_keys
from ..data import (
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
    check_num_classes,
    register_datasets_from_cfg,
)
from ..evaluation import COCOEvaluator, DatasetEvaluator, inference_on_dataset, print_csv_format, verify_results
from ..modeling import build_model
from ..solver import build_lr_scheduler, build_optimizer, scale_for_world_size
from ..utils import comm
from ..utils.error_reporting import add_debug_argument
from ..utils.cpu_runtime import tune_malloc
from ..utils.env import collect_env_info, seed_all_rng
from ..utils.errors import ConfigError, OutputPathError, ResultsMismatchError
from ..utils.events import CommonMetricPrinter, EventWriter, JSONWriter, TensorboardXWriter
from ..utils.file_io import PathManager
from ..utils.logger import setup_logger
from ..utils.run_lock import lock_output_dir
from . import hooks
from .train_loop import AMPTrainer, SimpleTrainer, TrainerBase

__all__ = [
    "add_register_coco_argument",
    "apply_register_coco",
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
    "DefaultTrainer",
]

logger = logging.getLogger(__name__)


def _default_dist_port() -> int:
    """A port in the dynamic range that differs between users, so two users' jobs on one machine do not clash."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return 49152 + uid % 16000


def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """Detectron2's training command line: --config-file, --resume, --eval-only, distributed flags, KEY VALUE opts."""
    parser = argparse.ArgumentParser(
        epilog=epilog
        or f"""
Examples:

Run on a single machine:
    $ {sys.argv[0]} --num-gpus 8 --config-file cfg.yaml

Change some config options:
    $ {sys.argv[0]} --config-file cfg.yaml MODEL.WEIGHTS /path/to/weight.pth SOLVER.BASE_LR 0.001

Run on multiple machines:
    (machine0)$ {sys.argv[0]} --machine-rank 0 --num-machines 2 --dist-url <URL> [--other-flags]
    (machine1)$ {sys.argv[0]} --machine-rank 1 --num-machines 2 --dist-url <URL> [--other-flags]
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in OUTPUT_DIR (model, optimizer, scheduler and iteration); "
        "without it MODEL.WEIGHTS is loaded and training starts at iteration 0",
    )
    parser.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS on DATASETS.TEST")
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
    add_debug_argument(parser)
    parser.add_argument(
        "opts",
        help="Modify config options at the end of the command: space-separated KEY VALUE pairs, "
        "e.g. SOLVER.BASE_LR 0.02 OUTPUT_DIR out/",
        default=None,
        nargs=argparse.REMAINDER,
    )
    return parser


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


def default_setup(cfg: CfgNode, args: Optional[argparse.Namespace]) -> None:
    """Claim OUTPUT_DIR, set up logging, check the config, log environment, args and config, save config.yaml, seed.

    OUTPUT_DIR is refused when another live run uses it (see solov2.utils.run_lock) or cannot be written. Also tunes
    glibc malloc (solov2.utils.cpu_runtime.tune_malloc) before anything large is allocated.
    """
    malloc_tuned = tune_malloc()
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    lock_note = None
    try:
        if comm.is_main_process() and output_dir:
            PathManager.mkdirs(output_dir)
            # Before the log file is opened: a refused run must not write into the other run's log.txt.
            lock_note = lock_output_dir(output_dir)
        setup_logger(output_dir, distributed_rank=rank, name="fvcore")
        log = setup_logger(output_dir, distributed_rank=rank)
    except OSError as e:
        if isinstance(e, OutputPathError):
            raise
        raise OutputPathError(f"Cannot write to OUTPUT_DIR '{output_dir}': {e.strerror or e}") from e
    if lock_note:
        log.warning(lock_note)
    check_unsupported_keys(cfg)

    log.info("Rank of current process: %d. World size: %d", rank, comm.get_world_size())
    log.info("Environment info:\n%s", collect_env_info())
    log.info(
        "CPU run-time: malloc keeps freed memory for reuse: %s; OMP_WAIT_POLICY=%s; %d intra-op threads",
        malloc_tuned, os.environ.get("OMP_WAIT_POLICY", "(default)"), torch.get_num_threads(),
    )
    log.info("Command line arguments: %s", args)
    config_file = getattr(args, "config_file", "") if args is not None else ""
    if config_file:
        with PathManager.open(config_file, "r") as f:
            log.info("Contents of args.config_file=%s:\n%s", config_file, f.read())
    log.info("Running with full config:\n%s", cfg.dump())
    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, "config.yaml")
        try:
            with PathManager.open(path, "w") as f:
                f.write(cfg.dump())
        except OSError as e:
            raise OutputPathError(f"Cannot write '{path}': {e.strerror or e}") from e
        log.info("Full config saved to %s", path)

    # Different ranks get different seeds so their augmentations differ.
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    if not getattr(args, "eval_only", False):
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK


def default_writers(output_dir: str, max_iter: Optional[int] = None) -> List[EventWriter]:
    """Console printer, OUTPUT_DIR/metrics.json and TensorBoard event files in OUTPUT_DIR."""
    PathManager.mkdirs(output_dir)
    return [
        CommonMetricPrinter(max_iter),
        JSONWriter(os.path.join(output_dir, "metrics.json")),
        TensorboardXWriter(output_dir),
    ]


def create_ddp_model(model: nn.Module, **kwargs: Any) -> nn.Module:
    """Wrap in DistributedDataParallel when there is more than one process; otherwise return the model."""
    if comm.get_world_size() == 1:
        return model
    if "device_ids" not in kwargs and next(model.parameters()).is_cuda:
        kwargs["device_ids"] = [comm.get_local_rank()]
    return DistributedDataParallel(model, **kwargs)


class DefaultTrainer(TrainerBase):
    """Builds model, optimizer, LR schedule, loaders, checkpointer and hooks from a config, then trains.

    Subclass and override the build_* class methods to change one part.
    """

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        if not logging.getLogger("solov2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())
        register_datasets_from_cfg(cfg)
        check_num_classes(cfg)
        check_unsupported_keys(cfg)
        if cfg.SOLVER.CHECKPOINT_PERIOD <= 0:
            raise ConfigError(f"SOLVER.CHECKPOINT_PERIOD must be positive, got {cfg.SOLVER.CHECKPOINT_PERIOD}")

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        # broadcast_buffers False: FrozenBN/GN have no running statistics to keep in sync.
        model = create_ddp_model(model, broadcast_buffers=False)
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = Checkpointer(
            model,
            cfg.OUTPUT_DIR,
            optimizer=optimizer,
            scheduler=self.scheduler,
            trainer=weakref.proxy(self),
        )
        self.start_iter = 0
        self.max_iter = int(cfg.SOLVER.MAX_ITER)
        self.cfg = cfg
        self._last_eval_results: Dict[str, Any] = {}
        self.register_hooks(self.build_hooks())

    @property
    def model(self) -> nn.Module:
        """The (possibly DDP-wrapped) model being trained."""
        return self._trainer.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer."""
        return self._trainer.optimizer

    @property
    def data_loader(self) -> Any:
        """The training data loader."""
        return self._trainer.data_loader

    def resume_or_load(self, resume: bool = True) -> None:
        """With resume and a checkpoint in OUTPUT_DIR: restore everything and continue; else load MODEL.WEIGHTS."""
        self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            # The checkpoint was written after iteration self.iter finished.
            self.start_iter = self.iter + 1
            logger.info("Resuming training from iteration %d", self.start_iter)

    def build_hooks(self) -> List[Optional[hooks.HookBase]]:
        """Timer, LR schedule, checkpoints (rank 0), evaluation, writers (rank 0), in that order."""
        cfg = self.cfg
        ret: List[Optional[hooks.HookBase]] = [
            hooks.IterationTimer(),
            hooks.LRScheduler(self.optimizer, self.scheduler),
        ]
        if comm.is_main_process():
            ret.append(hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD))

        def test_and_save_results() -> Dict[str, Any]:
            self._last_eval_results = self.test(self.cfg, self.model)
            return self._last_eval_results

        # After the checkpointer, so the final checkpoint exists even if evaluation fails.
        ret.append(hooks.EvalHook(cfg.TEST.EVAL_PERIOD, test_and_save_results))
        if comm.is_main_process():
            # Last, so the writers see the evaluation's results too. Writers keep only the latest value of
            # each metric, so they must write at every evaluation iteration or results would be overwritten.
            period = math.gcd(20, cfg.TEST.EVAL_PERIOD) if cfg.TEST.EVAL_PERIOD > 0 else 20
            ret.append(hooks.PeriodicWriter(self.build_writers(), period=period))
        return ret

    def build_writers(self) -> List[EventWriter]:
        """The metric writers (see default_writers)."""
        return default_writers(self.cfg.OUTPUT_DIR, self.max_iter)

    def train(self) -> Dict[str, Any]:
        """Train from start_iter to SOLVER.MAX_ITER; returns the last evaluation's results."""
        super().train(self.start_iter, self.max_iter)
        if self.cfg.TEST.EXPECTED_RESULTS and comm.is_main_process():
            if not verify_results(self.cfg, self._last_eval_results):
                raise ResultsMismatchError("Evaluation results differ from TEST.EXPECTED_RESULTS (see the log)")
        return self._last_eval_results

    def run_step(self) -> None:
        """One iteration of the wrapped SimpleTrainer/AMPTrainer."""
        self._trainer.iter = self.iter
        self._trainer.run_step()

    def state_dict(self) -> Dict[str, Any]:
        """Iteration, hook states and (AMP) grad-scaler state."""
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore what state_dict saved."""
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])

    @classmethod
    def build_model(cls, cfg: CfgNode) -> nn.Module:
        """build_model(cfg), logged."""
        model = build_model(cfg)
        logger.info("Model:\n%s", model)
        return model

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        """solver.build_optimizer."""
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg: CfgNode, optimizer: torch.optim.Optimizer) -> Any:
        """solver.build_lr_scheduler."""
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> Any:
        """build_detection_train_loader(cfg)."""
        return build_detection_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str) -> Any:
        """build_detection_test_loader(cfg, dataset_name)."""
        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None) -> DatasetEvaluator:
        """COCOEvaluator writing to OUTPUT_DIR/inference (one sub-folder per dataset when there are several)."""
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
            if len(cfg.DATASETS.TEST) > 1:
                output_folder = os.path.join(output_folder, dataset_name)
        evaluator_type = getattr(MetadataCatalog.get(dataset_name), "evaluator_type", None) or "coco"
        if evaluator_type != "coco":
            raise ConfigError(
                f"Dataset '{dataset_name}' asks for evaluator_type '{evaluator_type}'; only 'coco' is built in. "
                "Override DefaultTrainer.build_evaluator for other kinds."
            )
        return COCOEvaluator(
            dataset_name, output_dir=output_folder, max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE
        )

    @classmethod
    def test(
        cls,
        cfg: CfgNode,
        model: nn.Module,
        evaluators: Union[DatasetEvaluator, Sequence[DatasetEvaluator], None] = None,
    ) -> Dict[str, Any]:
        """Evaluate `model` on every DATASETS.TEST; {dataset: results}, or just the results for one dataset."""
        register_datasets_from_cfg(cfg)
        if isinstance(evaluators, DatasetEvaluator):
            evaluators = [evaluators]
        if evaluators is not None and len(evaluators) != len(cfg.DATASETS.TEST):
            raise ValueError(
                f"{len(evaluators)} evaluators given for {len(cfg.DATASETS.TEST)} datasets in DATASETS.TEST"
            )
        results: Dict[str, Any] = OrderedDict()
        for idx, dataset_name in enumerate(cfg.DATASETS.TEST):
            data_loader = cls.build_test_loader(cfg, dataset_name)
            evaluator = evaluators[idx] if evaluators is not None else cls.build_evaluator(cfg, dataset_name)
            results_i = inference_on_dataset(model, data_loader, evaluator)
            results[dataset_name] = results_i
            if comm.is_main_process():
                if not isinstance(results_i, dict):
                    raise TypeError(f"The evaluator of '{dataset_name}' returned {type(results_i).__name__}, not a dict")
                logger.info("Evaluation results for %s in csv format:", dataset_name)
                print_csv_format(results_i)
        if len(results) == 1:
            return list(results.values())[0]
        return results

    @staticmethod
    def auto_scale_workers(cfg: CfgNode, num_workers: int) -> CfgNode:
        """Scale batch size, LR and schedule when SOLVER.REFERENCE_WORLD_SIZE differs from num_workers."""
        return scale_for_world_size(cfg, num_workers)
