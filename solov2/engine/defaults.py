"""What a training script needs: run setup (output folder, logging, config record, seeding), DefaultTrainer, and
the evaluation of a checkpoint (--eval-only). The command-line parsers live in solov2.engine.arguments."""

from __future__ import annotations

import argparse
import logging
import os
import weakref
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import Checkpointer
from ..checkpoint.embedded import describe
from ..checkpoint.weight_checks import weights_check_mode
from ..config import CfgNode, check_unsupported_keys
from ..data import (
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
    check_num_classes,
    register_datasets_from_cfg,
)
from ..evaluation import (
    COCOEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    evaluator_output_folder,
    inference_on_dataset,
    print_csv_format,
    verify_results,
)
from ..evaluation.mosaic import MOSAIC_FILE, MosaicEvaluator
from ..modeling import build_model
from ..solver import build_lr_scheduler, build_optimizer, scale_for_world_size
from ..utils import comm
from ..utils.cpu_runtime import malloc_tuned
from ..utils.env import collect_env_info, seed_all_rng
from ..utils.errors import ConfigError, OutputPathError, ResultsMismatchError
from ..utils.events import CommonMetricPrinter, EventWriter, JSONWriter, TensorboardXWriter, current_event_storage
from ..utils.file_io import PathManager
from ..utils.logger import log_to_files, setup_logger
from ..utils.run_lock import lock_output_dir
from . import hooks
from .arguments import add_register_coco_argument, apply_register_coco, default_argument_parser
from .train_loop import AMPTrainer, SimpleTrainer, TrainerBase

__all__ = [
    "add_register_coco_argument",
    "apply_register_coco",
    "claim_output_dir",
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
    "evaluate_weights",
    "log_run_info",
    "save_config",
    "seed_run",
    "DefaultTrainer",
]

logger = logging.getLogger(__name__)


def claim_output_dir(cfg: CfgNode) -> logging.Logger:
    """Create and lock OUTPUT_DIR (main process), and log to OUTPUT_DIR/log.txt (one file per rank) and the console.

    OUTPUT_DIR is refused when another live run uses it (see solov2.utils.run_lock) or cannot be written.
    """
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    lock_note = None
    try:
        if comm.is_main_process() and output_dir:
            PathManager.mkdirs(output_dir)
            # Before the log file is opened: a refused run must not write into the other run's log.txt.
            take_over = "TAKE_OVER_OUTPUT_DIR_LOCK" in cfg and cfg.TAKE_OVER_OUTPUT_DIR_LOCK  # absent in d2 configs
            lock_note = lock_output_dir(output_dir, take_over_remote=bool(take_over))
        setup_logger(output_dir, distributed_rank=rank, name="fvcore")
        log = setup_logger(output_dir, distributed_rank=rank)
    except OSError as e:
        if isinstance(e, OutputPathError):
            raise
        raise OutputPathError(f"Cannot write to OUTPUT_DIR '{output_dir}': {e.strerror or e}") from e
    if lock_note:
        log.warning(lock_note)
    return log


def log_run_info(cfg: CfgNode, args: Optional[argparse.Namespace]) -> None:
    """Environment, CPU run-time, command line, config file and full config: to the log files only (not the console)."""
    info = logging.INFO
    log_to_files(info, f"Rank of current process: {comm.get_rank()}. World size: {comm.get_world_size()}")
    log_to_files(info, f"Environment info:\n{collect_env_info()}")
    log_to_files(info, f"CPU run-time: malloc keeps freed memory for reuse: {malloc_tuned()}; OMP_WAIT_POLICY="
                       f"{os.environ.get('OMP_WAIT_POLICY', '(default)')}; {torch.get_num_threads()} intra-op threads")
    log_to_files(info, f"Command line arguments: {args}")
    config_file = getattr(args, "config_file", "") if args is not None else ""
    if config_file:
        from ..model_zoo import resolve_config_file

        path = resolve_config_file(config_file)
        with PathManager.open(path, "r") as f:
            log_to_files(info, f"Contents of args.config_file={path}:\n{f.read()}")
    log_to_files(info, f"Running with full config:\n{cfg.dump()}")


def save_config(cfg: CfgNode) -> Optional[str]:
    """Write the full config to OUTPUT_DIR/config.yaml (main process); returns its path (None when not written)."""
    if not (comm.is_main_process() and cfg.OUTPUT_DIR):
        return None
    path = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
    try:
        with PathManager.open(path, "w") as f:
            f.write(cfg.dump())
    except OSError as e:
        raise OutputPathError(f"Cannot write '{path}': {e.strerror or e}") from e
    log_to_files(logging.INFO, f"Full config saved to {path}")
    return path


def seed_run(cfg: CfgNode, eval_only: bool = False) -> int:
    """Seed every RNG from SEED (plus the rank, so ranks augment differently); cudnn.benchmark for training."""
    seed = seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + comm.get_rank())
    if not eval_only:
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
    return seed


def default_setup(cfg: CfgNode, args: Optional[argparse.Namespace]) -> None:
    """Claim OUTPUT_DIR and log there, check the config, log the run's details to the log file, save config.yaml, seed.

    The parts are claim_output_dir, log_run_info, save_config and seed_run. Process-wide settings (glibc malloc,
    --debug) belong to the command's start-up (solov2.commands.startup), not here.
    """
    claim_output_dir(cfg)
    check_unsupported_keys(cfg)
    log_run_info(cfg, args)
    save_config(cfg)
    seed_run(cfg, eval_only=bool(getattr(args, "eval_only", False)))


def training_class_names(cfg: CfgNode) -> Optional[List[str]]:
    """The class names of the first training dataset that knows them (None when none does)."""
    for name in cfg.DATASETS.TRAIN:
        classes = MetadataCatalog.get(name).get("thing_classes")
        if classes:
            return list(classes)
    return None


def model_summary(model: nn.Module, cfg: CfgNode) -> str:
    """One line: the model's class and size, and where its printout and the full config were written."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    line = f"Model: {type(model).__name__}, {total / 1e6:.2f} M parameters ({trainable / 1e6:.2f} M trainable)"
    config = os.path.join(cfg.OUTPUT_DIR, "config.yaml") if cfg.OUTPUT_DIR else ""
    if config and PathManager.exists(config):
        line += f"; full config in {config}, model printout and environment in {os.path.join(cfg.OUTPUT_DIR, 'log.txt')}"
    return line


def evaluate_weights(cfg: Any, trainer: Any, checkpointer_cls: Any = Checkpointer, resume: bool = False,
                     verify: Callable[[Any, Dict[str, Any]], bool] = verify_results,
                     **checkpointer_kwargs: Any) -> Dict[str, Any]:
    """--eval-only: build `trainer`'s model, load MODEL.WEIGHTS (or, with resume, OUTPUT_DIR's last checkpoint),
    evaluate it on DATASETS.TEST and check TEST.EXPECTED_RESULTS.

    `trainer` is a DefaultTrainer class (solov2's or Detectron2's) and `checkpointer_cls` the checkpointer it goes
    with (`checkpointer_kwargs` go to it, e.g. solov2's weights_check), so that tools/train_net.py and
    tools/d2_train_net.py evaluate the same way.
    """
    if not cfg.MODEL.WEIGHTS and not resume:
        logger.warning("--eval-only without MODEL.WEIGHTS: evaluating a randomly initialised model!")
    model = trainer.build_model(cfg)
    checkpointer_cls(model, save_dir=cfg.OUTPUT_DIR, **checkpointer_kwargs).resume_or_load(cfg.MODEL.WEIGHTS,
                                                                                            resume=resume)
    results = trainer.test(cfg, model)
    if comm.is_main_process() and cfg.TEST.EXPECTED_RESULTS and not verify(cfg, results):
        raise ResultsMismatchError("Evaluation results differ from TEST.EXPECTED_RESULTS (see the log)")
    return results


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
            # Every checkpoint carries its config and class names: predicting with it needs no other file.
            run_info=describe(cfg.dump(), training_class_names(cfg)),
            optimizer=optimizer,
            scheduler=self.scheduler,
            trainer=weakref.proxy(self),
            weights_check=weights_check_mode(cfg, eval_only=False),
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
            # Last, so the writers see the evaluation's results too.
            ret.append(hooks.PeriodicWriter(self.build_writers(), period=20, eval_period=cfg.TEST.EVAL_PERIOD))
            if cfg.OUTPUT_DIR:
                ret.append(hooks.PlotCurves(cfg.OUTPUT_DIR, cfg.TEST.EVAL_PERIOD))
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
        """build_model(cfg); its size on the console, its printout in the log file."""
        model = build_model(cfg)
        log_to_files(logging.INFO, f"Model:\n{model}")
        logger.info(model_summary(model, cfg))
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
            output_folder = evaluator_output_folder(cfg, dataset_name)
        evaluator_type = getattr(MetadataCatalog.get(dataset_name), "evaluator_type", None) or "coco"
        if evaluator_type != "coco":
            raise ConfigError(
                f"Dataset '{dataset_name}' asks for evaluator_type '{evaluator_type}'; only 'coco' is built in. "
                "Override DefaultTrainer.build_evaluator for other kinds."
            )
        return COCOEvaluator(
            dataset_name,
            output_dir=output_folder,
            max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
            max_images=cfg.TEST.MAX_IMAGES,
        )

    @classmethod
    def test(
        cls,
        cfg: CfgNode,
        model: nn.Module,
        evaluators: Union[DatasetEvaluator, Sequence[DatasetEvaluator], None] = None,
    ) -> Dict[str, Any]:
        """Evaluate `model` on every DATASETS.TEST; {dataset: results}, or just the results for one dataset.

        With the default evaluators, each evaluation also leaves plots in OUTPUT_DIR/plots (plots/<dataset> for
        several test sets): val_mosaic.jpg (ground truth beside predictions), pr_segm.png, pr_bbox.png,
        confusion_segm.png/.csv; inside a training run they go to TensorBoard too.
        """
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
            plots = evaluators is None and bool(cfg.OUTPUT_DIR)
            if evaluators is not None:
                evaluator = evaluators[idx]
            elif plots:
                mosaic_file = os.path.join(evaluator_output_folder(cfg, dataset_name, "plots"), MOSAIC_FILE)
                # build_detection_test_loader's dataset holds the dicts it loaded: no second read of the json.
                dicts = getattr(getattr(data_loader, "dataset", None), "items", None)
                if not isinstance(dicts, list) or (dicts and "image_id" not in dicts[0]):
                    dicts = None  # a custom loader: the evaluator reads the dataset itself
                evaluator = DatasetEvaluators([cls.build_evaluator(cfg, dataset_name),
                                               MosaicEvaluator(dataset_name, mosaic_file, dataset_dicts=dicts)])
            else:
                evaluator = cls.build_evaluator(cfg, dataset_name)
            results_i = inference_on_dataset(model, data_loader, evaluator)
            results[dataset_name] = results_i
            if comm.is_main_process():
                if not isinstance(results_i, dict):
                    raise TypeError(f"The evaluator of '{dataset_name}' returned {type(results_i).__name__}, not a dict")
                logger.info("Evaluation results for %s in csv format:", dataset_name)
                print_csv_format(results_i)
                if plots:
                    _draw_evaluation_plots(cfg, dataset_name)
        if len(results) == 1:
            return list(results.values())[0]
        return results

    @staticmethod
    def auto_scale_workers(cfg: CfgNode, num_workers: int) -> CfgNode:
        """Scale batch size, LR and schedule when SOLVER.REFERENCE_WORLD_SIZE differs from num_workers."""
        return scale_for_world_size(cfg, num_workers)


def _draw_evaluation_plots(cfg: CfgNode, dataset_name: str) -> None:
    """PR curves and confusion matrix of the evaluation just done, as PNGs and (in training) TensorBoard images.

    A drawing error is logged, never raised: the evaluation's numbers matter more than its pictures.
    """
    from ..utils.plots import draw_evaluation_plots

    plots_dir = evaluator_output_folder(cfg, dataset_name, "plots")
    try:
        written = draw_evaluation_plots(evaluator_output_folder(cfg, dataset_name), plots_dir)
    except Exception as e:  # noqa: BLE001 - see the docstring
        logger.warning("Could not draw the evaluation plots of '%s': %s: %s", dataset_name, type(e).__name__, e)
        return
    if written:
        logger.info("Evaluation plots of '%s' in %s", dataset_name, plots_dir)
    storage = current_event_storage()
    if storage is None:
        return
    import cv2

    for path in written:
        if path.endswith(".png"):
            img = cv2.imread(path, cv2.IMREAD_COLOR)
            if img is not None:
                name = os.path.splitext(os.path.basename(path))[0]
                storage.put_image(f"{dataset_name}/{name}", img[:, :, ::-1].transpose(2, 0, 1).copy())
