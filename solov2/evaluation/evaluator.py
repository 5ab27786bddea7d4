"""DatasetEvaluator interface and the inference loop that feeds a model's outputs to evaluators."""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections import OrderedDict
from contextlib import ExitStack, contextmanager
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import torch
from torch import nn

from ..utils import comm
from ..utils.logger import log_every_n_seconds
from ..utils.run_state import activity

__all__ = ["DatasetEvaluator", "DatasetEvaluators", "evaluator_output_folder", "inference_on_dataset",
           "inference_context"]

logger = logging.getLogger(__name__)


def evaluator_output_folder(cfg: Any, dataset_name: str, kind: str = "inference") -> str:
    """Where a dataset's evaluation files (`kind` "inference") or plots ("plots") go: OUTPUT_DIR/<kind>, one
    sub-folder per dataset when there are several."""
    folder = os.path.join(cfg.OUTPUT_DIR, kind)
    return os.path.join(folder, dataset_name) if len(cfg.DATASETS.TEST) > 1 else folder


class DatasetEvaluator:
    """Accumulates (inputs, outputs) pairs with process() and scores them with evaluate()."""

    def reset(self) -> None:
        """Forget everything processed so far (called before inference starts)."""

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Take one batch of model inputs and the matching outputs."""

    def evaluate(self) -> Optional[Dict[str, Any]]:
        """Return {task: {metric: value}}; in distributed runs non-main ranks may return None or {}."""
        return None


class DatasetEvaluators(DatasetEvaluator):
    """Several evaluators run as one; their result dicts are merged (task names must not clash)."""

    def __init__(self, evaluators: Sequence[DatasetEvaluator]) -> None:
        super().__init__()
        self._evaluators = list(evaluators)

    def reset(self) -> None:
        """Reset every evaluator."""
        for evaluator in self._evaluators:
            evaluator.reset()

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Give the batch to every evaluator."""
        for evaluator in self._evaluators:
            evaluator.process(inputs, outputs)

    def evaluate(self) -> Dict[str, Any]:
        """Merged results of every evaluator."""
        results: Dict[str, Any] = OrderedDict()
        for evaluator in self._evaluators:
            result = evaluator.evaluate()
            if comm.is_main_process() and result is not None:
                for k, v in result.items():
                    if k in results:
                        raise KeyError(f"Two evaluators produced results for the same task '{k}'")
                    results[k] = v
        return results


@contextmanager
def inference_context(model: nn.Module) -> Iterator[None]:
    """Put the model in eval mode for the block and restore its previous mode afterwards."""
    training_mode = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training_mode)


def _format_seconds(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))


def inference_on_dataset(
    model: Union[nn.Module, Any],
    data_loader: Iterable[List[Dict[str, Any]]],
    evaluator: Union[DatasetEvaluator, Sequence[DatasetEvaluator], None],
) -> Dict[str, Any]:
    """Run the model over every batch of `data_loader`, feed `evaluator`, log progress and timing, return its results.

    Timing leaves out the first few batches (warm-up) and reports total and per-image time per device.
    """
    num_devices = comm.get_world_size()
    try:
        total = len(data_loader)  # type: ignore[arg-type]
    except TypeError:
        total = None
    logger.info("Start inference on %s batches", total if total is not None else "an unknown number of")

    if evaluator is None:
        evaluator = DatasetEvaluators([])
    elif not isinstance(evaluator, DatasetEvaluator):
        evaluator = DatasetEvaluators(list(evaluator))
    evaluator.reset()

    num_warmup = min(5, total - 1) if total else 5
    start_time = time.perf_counter()
    total_data_time = total_compute_time = total_eval_time = 0.0
    num_timed = 0
    idx = -1
    skipped: List[str] = []  # unreadable images the loader skipped (DATALOADER.SKIP_CORRUPT_IMAGES)
    with ExitStack() as stack:
        if isinstance(model, nn.Module):
            stack.enter_context(inference_context(model))
        stack.enter_context(torch.no_grad())
        stack.enter_context(activity(lambda: f"evaluation at image {idx + 2} of {total or '?'}"))

        data_start = time.perf_counter()
        for idx, inputs in enumerate(data_loader):
            skipped += getattr(inputs, "skipped_files", [])
            if len(inputs) == 0:  # every image of this batch was unreadable: nothing to run
                data_start = time.perf_counter()
                continue
            total_data_time += time.perf_counter() - data_start
            if idx == num_warmup:
                start_time = time.perf_counter()
                total_data_time = total_compute_time = total_eval_time = 0.0
                num_timed = 0
            num_timed += 1

            compute_start = time.perf_counter()
            outputs = model(inputs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            total_compute_time += time.perf_counter() - compute_start

            eval_start = time.perf_counter()
            evaluator.process(inputs, outputs)
            total_eval_time += time.perf_counter() - eval_start

            per_iter = (time.perf_counter() - start_time) / max(num_timed, 1)
            if idx >= num_warmup * 2 or per_iter > 5:
                eta = _format_seconds(per_iter * (total - idx - 1)) if total else "?"
                log_every_n_seconds(
                    logging.INFO,
                    f"Inference done {idx + 1}/{total if total else '?'}. "
                    f"Dataloading: {total_data_time / num_timed:.4f} s/iter. "
                    f"Inference: {total_compute_time / num_timed:.4f} s/iter. "
                    f"Eval: {total_eval_time / num_timed:.4f} s/iter. "
                    f"Total: {per_iter:.4f} s/iter. ETA={eta}",
                    n=5,
                    name=__name__,
                )
            data_start = time.perf_counter()

    num_batches = idx + 1
    timed = num_batches - num_warmup if num_batches > num_warmup else num_batches
    total_time = time.perf_counter() - start_time
    logger.info(
        "Total inference time: %s (%.6f s / iter per device, on %d devices)",
        _format_seconds(total_time),
        total_time / max(timed, 1),
        num_devices,
    )
    logger.info(
        "Total inference pure compute time: %s (%.6f s / iter per device, on %d devices)",
        _format_seconds(total_compute_time),
        total_compute_time / max(timed, 1),
        num_devices,
    )

    results = evaluator.evaluate()
    if num_devices > 1:
        skipped = [f for files in comm.all_gather(skipped) for f in files]
    if skipped and comm.is_main_process():
        shown = ", ".join(f"'{f}'" for f in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        logger.warning(
            "Skipped %d unreadable image(s) (DATALOADER.SKIP_CORRUPT_IMAGES True): %s. They were not run through the "
            "model, so their objects count as missed.",
            len(skipped),
            shown,
        )
    # Non-main ranks get nothing back; an empty dict keeps callers' code simple.
    return results if results is not None else {}
