"""Training hooks: timing, LR scheduling, periodic checkpoints, evaluation and metric writers."""

from __future__ import annotations

import datetime
import logging
import math
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch
from fvcore.common.checkpoint import PeriodicCheckpointer as _FvPeriodicCheckpointer

from ..utils import comm
from ..utils.events import EventWriter
from ..utils.logger import flatten_results
from .train_loop import HookBase

__all__ = [
    "CallbackHook",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "EvalHook",
    "PeriodicWriter",
    "PlotCurves",
]

logger = logging.getLogger(__name__)


class CallbackHook(HookBase):
    """A hook made of plain functions, each called with the trainer."""

    def __init__(
        self,
        *,
        before_train: Optional[Callable] = None,
        after_train: Optional[Callable] = None,
        before_step: Optional[Callable] = None,
        after_step: Optional[Callable] = None,
    ) -> None:
        self._before_train = before_train
        self._after_train = after_train
        self._before_step = before_step
        self._after_step = after_step

    def before_train(self) -> None:
        """Call the before_train function."""
        if self._before_train:
            self._before_train(self.trainer)

    def after_train(self) -> None:
        """Call the after_train function."""
        if self._after_train:
            self._after_train(self.trainer)

    def before_step(self) -> None:
        """Call the before_step function."""
        if self._before_step:
            self._before_step(self.trainer)

    def after_step(self) -> None:
        """Call the after_step function."""
        if self._after_step:
            self._after_step(self.trainer)


class IterationTimer(HookBase):
    """Records the time of each iteration ("time") and logs the total training time at the end."""

    def __init__(self, warmup_iter: int = 3) -> None:
        self._warmup_iter = warmup_iter
        self._step_start = 0.0
        self._train_start = 0.0
        self._timed_time = 0.0
        self._timed_iters = 0

    def before_train(self) -> None:
        """Start the clock."""
        self._train_start = time.perf_counter()
        self._timed_time = 0.0
        self._timed_iters = 0

    def before_step(self) -> None:
        """Start timing one iteration."""
        self._step_start = time.perf_counter()

    def after_step(self) -> None:
        """Record the iteration's time; the first few are left out of the average (warm-up)."""
        elapsed = time.perf_counter() - self._step_start
        if self.trainer.iter >= self.trainer.start_iter + self._warmup_iter:
            self._timed_time += elapsed
            self._timed_iters += 1
        self.trainer.storage.put_scalar("time", elapsed)

    def after_train(self) -> None:
        """Log total and per-iteration training time."""
        total = time.perf_counter() - self._train_start
        if self._timed_iters > 0:
            logger.info(
                "Overall training speed: %d iterations in %s (%.4f s / it)",
                self._timed_iters,
                str(datetime.timedelta(seconds=int(self._timed_time))),
                self._timed_time / self._timed_iters,
            )
        logger.info(
            "Total training time: %s (%s on hooks and the first iterations)",
            str(datetime.timedelta(seconds=int(total))),
            str(datetime.timedelta(seconds=int(total - self._timed_time))),
        )


class LRScheduler(HookBase):
    """Records the learning rate ("lr") and steps the LR scheduler after every iteration."""

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        self._optimizer = optimizer
        self._scheduler = scheduler
        # The largest group is the one whose lr users care about (the rest are biases/norms).
        self._group_index = max(
            range(len(optimizer.param_groups)), key=lambda i: len(optimizer.param_groups[i]["params"])
        )

    def after_step(self) -> None:
        """Log the lr used for this iteration, then move to the next."""
        lr = self._optimizer.param_groups[self._group_index]["lr"]
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self._scheduler.step()


class PeriodicCheckpointer(_FvPeriodicCheckpointer, HookBase):
    """Saves model_{iter:07d}.pth every `period` iterations and model_final.pth after the last one."""

    def before_train(self) -> None:
        """Learn max_iter from the trainer."""
        self.max_iter = self.trainer.max_iter

    def after_step(self) -> None:
        """Save when this iteration is due."""
        self.step(self.trainer.iter)


class EvalHook(HookBase):
    """Runs `eval_function` every `eval_period` iterations and after the last one; results go to the storage."""

    def __init__(self, eval_period: int, eval_function: Callable[[], Any], eval_after_train: bool = True) -> None:
        self._period = int(eval_period)
        self._func = eval_function
        self._eval_after_train = eval_after_train
        self.latest_results: Optional[Mapping[str, Any]] = None

    def _do_eval(self) -> None:
        results = self._func()
        if results:
            if not isinstance(results, Mapping):
                raise TypeError(f"The evaluation function must return a dict, got {type(results).__name__}")
            self.latest_results = results
            flat = flatten_results(dict(results))
            scalars: Dict[str, float] = {}
            for k, v in flat.items():
                try:
                    value = float(v)
                except (TypeError, ValueError) as e:
                    raise ValueError(f"Evaluation result '{k}' = {v!r} is not a number") from e
                if math.isfinite(value):
                    scalars[k] = value
            self.trainer.storage.put_scalars(**scalars, smoothing_hint=False)
        # Ranks wait here so none starts the next iteration while rank 0 is still scoring.
        comm.synchronize()

    def after_step(self) -> None:
        """Evaluate when due (the last iteration is left to after_train)."""
        next_iter = self.trainer.iter + 1
        if self._period > 0 and next_iter % self._period == 0 and next_iter != self.trainer.max_iter:
            self._do_eval()

    def after_train(self) -> None:
        """Evaluate the final model, unless training stopped early (an error or an interrupt, even in the last
        iteration: trainer.iter reaches max_iter only when every iteration, and its checkpoint, completed)."""
        if self._eval_after_train and self.trainer.iter >= self.trainer.max_iter:
            self._do_eval()
        # Drop the closure: it holds the data loaders and the model.
        del self._func


class PeriodicWriter(HookBase):
    """Calls the writers every `period` iterations, at every evaluation, after the last iteration; closes them at the end.

    Writers keep only each metric's latest value, so the iterations where EvalHook stores results (every
    `eval_period`, 0 for none) are written too: otherwise a later evaluation could overwrite them unwritten.
    """

    def __init__(self, writers: Sequence[EventWriter], period: int = 20, eval_period: int = 0) -> None:
        for w in writers:
            if not isinstance(w, EventWriter):
                raise TypeError(f"Writers must be EventWriter instances, got {type(w).__name__}")
        self._writers: List[EventWriter] = list(writers)
        self._periods = [p for p in (period, eval_period) if p > 0]

    def after_step(self) -> None:
        """Write when due."""
        next_iter = self.trainer.iter + 1
        if any(next_iter % p == 0 for p in self._periods) or next_iter == self.trainer.max_iter:
            for writer in self._writers:
                writer.write()

    def after_train(self) -> None:
        """Write what the evaluation after training added, then close."""
        for writer in self._writers:
            writer.write()
            writer.close()


class PlotCurves(HookBase):
    """Redraws OUTPUT_DIR/plots/curves.png from metrics.json after each periodic evaluation and after training.

    Registered after PeriodicWriter, which writes metrics.json at every evaluation iteration. A drawing error is
    logged, never raised: a plot must not end a training run.
    """

    def __init__(self, output_dir: str, eval_period: int) -> None:
        self._output_dir = output_dir
        self._period = int(eval_period)

    def _draw(self) -> None:
        from ..utils.plots import draw_run_plots

        try:
            draw_run_plots(self._output_dir, evaluation=False)
        except Exception as e:  # noqa: BLE001 - see the class docstring
            logger.warning("Could not draw the training curves: %s: %s", type(e).__name__, e)

    def after_step(self) -> None:
        """Redraw when an evaluation ran at this iteration."""
        next_iter = self.trainer.iter + 1
        if self._period > 0 and next_iter % self._period == 0 and next_iter != self.trainer.max_iter:
            self._draw()

    def after_train(self) -> None:
        """Redraw with the whole run."""
        self._draw()
