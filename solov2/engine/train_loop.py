"""The training loop: TrainerBase with hooks, SimpleTrainer (SGD step) and AMPTrainer (mixed precision)."""

from __future__ import annotations

import logging
import math
import time
import weakref
from typing import Any, Dict, Iterable, List, Mapping, Optional

import torch
from torch import nn

from ..utils import comm
from ..utils.error_reporting import log_exception_to_files
from ..utils.errors import NonFiniteLossError
from ..utils.events import EventStorage, get_event_storage
from ..utils.run_state import activity

__all__ = ["HookBase", "TrainerBase", "SimpleTrainer", "AMPTrainer"]

logger = logging.getLogger(__name__)


class HookBase:
    """Code run around training and each iteration; `self.trainer` is set by register_hooks."""

    trainer: "TrainerBase"

    def before_train(self) -> None:
        """Called once before the first iteration."""

    def after_train(self) -> None:
        """Called once after the last iteration (also when training stops on an error)."""

    def before_step(self) -> None:
        """Called before each iteration."""

    def after_step(self) -> None:
        """Called after each iteration."""

    def state_dict(self) -> Dict[str, Any]:
        """State to checkpoint (none by default)."""
        return {}


class TrainerBase:
    """Runs iterations start_iter..max_iter-1 and calls the registered hooks around them."""

    def __init__(self) -> None:
        self._hooks: List[HookBase] = []
        self.iter: int = 0
        self.start_iter: int = 0
        self.max_iter: int = 0
        self.storage: EventStorage

    def register_hooks(self, hooks: Iterable[Optional[HookBase]]) -> None:
        """Append hooks (None entries are skipped); they run in registration order."""
        for h in hooks:
            if h is None:
                continue
            if not isinstance(h, HookBase):
                raise TypeError(f"Hooks must be HookBase instances, got {type(h).__name__}")
            # A weak proxy: hooks must not keep the trainer alive (trainer -> hook -> trainer cycle).
            h.trainer = weakref.proxy(self)
            self._hooks.append(h)

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run the training loop from start_iter to max_iter."""
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        describe = lambda: f"training at iteration {self.iter} of {max_iter}"  # noqa: E731
        with EventStorage(start_iter) as self.storage, activity(describe):
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                # After the loop iter == max_iter, which hooks use to tell a finished run from a failed one.
                self.iter += 1
            except Exception as e:
                # To the log files only: whoever catches the exception shows it (a command-line tool as one ERROR
                # line or a traceback), so printing it here too would show it twice.
                log_exception_to_files(e, f"Exception during training at iteration {self.iter}:")
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        """Run the hooks' before_train."""
        for h in self._hooks:
            h.before_train()

    def after_train(self) -> None:
        """Run the hooks' after_train."""
        self.storage.iter = self.iter
        for h in self._hooks:
            h.after_train()

    def before_step(self) -> None:
        """Run the hooks' before_step."""
        self.storage.iter = self.iter
        for h in self._hooks:
            h.before_step()

    def after_step(self) -> None:
        """Run the hooks' after_step."""
        for h in self._hooks:
            h.after_step()

    def run_step(self) -> None:
        """One iteration; subclasses implement it."""
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        """Iteration and the hooks' states, for checkpoints."""
        ret: Dict[str, Any] = {"iteration": self.iter}
        hooks_state = {}
        for h in self._hooks:
            sd = h.state_dict()
            if sd:
                hooks_state[type(h).__qualname__] = sd
        if hooks_state:
            ret["hooks"] = hooks_state
        return ret

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the iteration and the hooks' states."""
        self.iter = int(state_dict["iteration"])
        for key, value in state_dict.get("hooks", {}).items():
            for h in self._hooks:
                if type(h).__qualname__ == key and hasattr(h, "load_state_dict"):
                    h.load_state_dict(value)
                    break
            else:
                logger.warning("Cannot find the hook '%s' whose state is in the checkpoint; its state is not restored.", key)


class SimpleTrainer(TrainerBase):
    """One iteration = next batch, forward to a dict of losses, backward of their sum, optimizer step."""

    def __init__(self, model: nn.Module, data_loader: Iterable, optimizer: torch.optim.Optimizer) -> None:
        super().__init__()
        model.train()
        self.model = model
        self.data_loader = data_loader
        self._data_loader_iter_obj: Optional[Any] = None
        self.optimizer = optimizer

    @property
    def _data_loader_iter(self) -> Any:
        # Created on first use so that building the trainer does not start loader workers.
        if self._data_loader_iter_obj is None:
            self._data_loader_iter_obj = iter(self.data_loader)
        return self._data_loader_iter_obj

    def _next_batch(self) -> tuple:
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        return data, time.perf_counter() - start

    def _losses(self, data: Any) -> Dict[str, torch.Tensor]:
        loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        if not isinstance(loss_dict, Mapping) or not loss_dict:
            raise TypeError(
                f"In training mode the model must return a non-empty dict of losses, got {type(loss_dict).__name__}"
            )
        return dict(loss_dict)

    def run_step(self) -> None:
        """Forward, check losses are finite, backward, step."""
        assert self.model.training, "SimpleTrainer: the model was switched to eval mode"
        data, data_time = self._next_batch()
        loss_dict = self._losses(data)
        self._write_metrics(loss_dict, data_time)
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad(set_to_none=True)
        losses.backward()
        self.optimizer.step()

    def _write_metrics(self, loss_dict: Mapping[str, torch.Tensor], data_time: float) -> None:
        """Record losses (averaged over ranks) and data time; stop on a non-finite loss on any rank."""
        metrics = {k: float(v.detach().float().cpu().item()) for k, v in loss_dict.items()}
        metrics["data_time"] = data_time
        # Every rank sees every rank's values, so all of them raise together instead of deadlocking.
        all_metrics = comm.all_gather(metrics)
        loss_names = [k for k in metrics if k != "data_time"]
        mean_losses = {k: sum(m[k] for m in all_metrics) / len(all_metrics) for k in loss_names}
        bad_ranks = [r for r, m in enumerate(all_metrics) if not all(math.isfinite(m[k]) for k in loss_names)]
        if bad_ranks:
            local = {k: v for k, v in metrics.items() if k != "data_time"}
            detail = ""
            if len(all_metrics) > 1:
                detail = " (non-finite on " + "; ".join(
                    f"rank {r}: " + ", ".join(f"{k}={all_metrics[r][k]}" for k in loss_names) for r in bad_ranks
                ) + ")"
            raise NonFiniteLossError(
                f"Loss became infinite or NaN at iteration={self.iter}! loss_dict = {local}{detail}. "
                "Try a lower SOLVER.BASE_LR, a longer SOLVER.WARMUP_ITERS or SOLVER.CLIP_GRADIENTS.ENABLED True."
            )
        storage = get_event_storage()
        storage.put_scalar("data_time", max(m["data_time"] for m in all_metrics))
        storage.put_scalar("total_loss", sum(mean_losses.values()))
        if len(mean_losses) > 1 or "total_loss" not in mean_losses:
            storage.put_scalars(**mean_losses)


class AMPTrainer(SimpleTrainer):
    """SimpleTrainer under autocast: float16 + GradScaler on CUDA, bfloat16 (no scaler needed) on CPU."""

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable,
        optimizer: torch.optim.Optimizer,
        grad_scaler: Optional[torch.amp.GradScaler] = None,
    ) -> None:
        super().__init__(model, data_loader, optimizer)
        param = next(model.parameters(), None)
        self.device_type = param.device.type if param is not None else "cpu"
        if self.device_type == "cuda":
            self.dtype = torch.float16
            self.grad_scaler: Optional[torch.amp.GradScaler] = grad_scaler or torch.amp.GradScaler("cuda")
        elif self.device_type == "cpu":
            # bfloat16 has float32's exponent range, so losses cannot underflow and need no scaling.
            self.dtype = torch.bfloat16
            self.grad_scaler = None
            logger.warning(
                "SOLVER.AMP.ENABLED on CPU: autocast to bfloat16. Unless the CPU has native bfloat16 "
                "(AVX512-BF16 / AMX) this is usually slower than float32; it mainly saves memory."
            )
        else:
            raise ValueError(
                f"SOLVER.AMP.ENABLED is only supported on CUDA and CPU, the model is on '{self.device_type}'"
            )

    def run_step(self) -> None:
        """Forward under autocast, scaled backward (CUDA), step."""
        assert self.model.training, "AMPTrainer: the model was switched to eval mode"
        data, data_time = self._next_batch()
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            loss_dict = self._losses(data)
        loss_dict = {k: v.float() for k, v in loss_dict.items()}
        self._write_metrics(loss_dict, data_time)
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad(set_to_none=True)
        if self.grad_scaler is None:
            losses.backward()
            self.optimizer.step()
        else:
            self.grad_scaler.scale(losses).backward()
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()

    def state_dict(self) -> Dict[str, Any]:
        """Adds the GradScaler's state."""
        ret = super().state_dict()
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores the GradScaler's state too."""
        super().load_state_dict(state_dict)
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
