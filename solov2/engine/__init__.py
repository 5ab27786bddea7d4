"""Training engine: launch, trainers and hooks, default command line and setup, DefaultPredictor."""

from .arguments import default_argument_parser
from .defaults import DefaultTrainer, create_ddp_model, default_setup, default_writers, evaluate_weights
from .hooks import CallbackHook, EvalHook, IterationTimer, LRScheduler, PeriodicCheckpointer, PeriodicWriter
from .launch import launch
from .predictor import DefaultPredictor
from .train_loop import AMPTrainer, HookBase, SimpleTrainer, TrainerBase

__all__ = [
    "DefaultPredictor",
    "DefaultTrainer",
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
    "evaluate_weights",
    "AMPTrainer",
    "CallbackHook",
    "EvalHook",
    "HookBase",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "SimpleTrainer",
    "TrainerBase",
    "launch",
]
