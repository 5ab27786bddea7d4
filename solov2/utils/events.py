"""Training metrics: EventStorage and writers to the console, metrics.json and TensorBoard."""

from __future__ import annotations

import datetime
import json
import logging
import os
import resource
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from fvcore.common.history_buffer import HistoryBuffer

from .file_io import PathManager
from .run_state import os_error_reason, output_write_error

_CURRENT_STORAGE_STACK: List["EventStorage"] = []


def current_event_storage() -> Optional["EventStorage"]:
    """The EventStorage of the innermost `with EventStorage(...)` block, or None outside any (e.g. --eval-only)."""
    return _CURRENT_STORAGE_STACK[-1] if _CURRENT_STORAGE_STACK else None


def get_event_storage() -> "EventStorage":
    """The EventStorage of the innermost `with EventStorage(...)` block."""
    if not _CURRENT_STORAGE_STACK:
        raise RuntimeError(
            "get_event_storage() has to be called inside a 'with EventStorage(...)' block "
            "(the trainer opens one for the whole training run)."
        )
    return _CURRENT_STORAGE_STACK[-1]


class EventStorage:
    """Per-iteration scalar metrics with history, shared by hooks and writers through a context."""

    def __init__(self, start_iter: int = 0) -> None:
        self._history: Dict[str, HistoryBuffer] = defaultdict(HistoryBuffer)
        self._smoothing_hints: Dict[str, bool] = {}
        self._latest_scalars: Dict[str, Tuple[float, int]] = {}
        self._iter = start_iter
        self._current_prefix = ""
        self._vis_data: List[Tuple[str, Any, int]] = []

    def put_scalar(self, name: str, value: Any, smoothing_hint: bool = True, cur_iter: Optional[int] = None) -> None:
        """Record `value` for metric `name` at the current (or given) iteration."""
        name = self._current_prefix + name
        cur_iter = self._iter if cur_iter is None else int(cur_iter)
        value = float(value)
        self._history[name].update(value, cur_iter)
        self._latest_scalars[name] = (value, cur_iter)
        existing = self._smoothing_hints.get(name)
        if existing is not None and existing != smoothing_hint:
            raise ValueError(f"Metric '{name}' was put with different smoothing hints")
        self._smoothing_hints[name] = smoothing_hint

    def put_scalars(self, *, smoothing_hint: bool = True, cur_iter: Optional[int] = None, **kwargs: Any) -> None:
        """Record several scalars at once: put_scalars(loss=1.0, lr=0.1)."""
        for k, v in kwargs.items():
            self.put_scalar(k, v, smoothing_hint=smoothing_hint, cur_iter=cur_iter)

    def put_image(self, name: str, img: Any) -> None:
        """Queue an image (CHW; uint8 0-255 or float 0-1) for TensorBoard at the current iteration."""
        self._vis_data.append((name, img, self._iter))

    @property
    def vis_data(self) -> List[Tuple[str, Any, int]]:
        """Queued (name, CHW image, iteration) not yet written."""
        return self._vis_data

    def clear_images(self) -> None:
        """Drop the queued images (the TensorBoard writer calls this once it has written them)."""
        self._vis_data = []

    def history(self, name: str) -> HistoryBuffer:
        """The HistoryBuffer of metric `name` (KeyError naming it when never recorded)."""
        if name not in self._history:
            raise KeyError(f"No history recorded for metric '{name}'")
        return self._history[name]

    def histories(self) -> Dict[str, HistoryBuffer]:
        """All metric histories by name."""
        return self._history

    def latest(self) -> Dict[str, Tuple[float, int]]:
        """{name: (latest value, iteration it was recorded at)}."""
        return self._latest_scalars

    def latest_with_smoothing_hint(self, window_size: int = 20) -> Dict[str, Tuple[float, int]]:
        """Like latest(), but metrics hinted for smoothing give their median over `window_size`."""
        result = {}
        for k, (v, itr) in self._latest_scalars.items():
            if self._smoothing_hints[k]:
                v = self._history[k].median(window_size)
            result[k] = (v, itr)
        return result

    def smoothing_hints(self) -> Dict[str, bool]:
        """{name: whether writers should smooth it}."""
        return self._smoothing_hints

    def step(self) -> None:
        """Advance to the next iteration (called by the trainer after each step)."""
        self._iter += 1

    @property
    def iter(self) -> int:
        """The current iteration."""
        return self._iter

    @iter.setter
    def iter(self, val: int) -> None:
        self._iter = int(val)

    def __enter__(self) -> "EventStorage":
        _CURRENT_STORAGE_STACK.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert _CURRENT_STORAGE_STACK[-1] is self
        _CURRENT_STORAGE_STACK.pop()

    @contextmanager
    def name_scope(self, name: str) -> Iterator[None]:
        """Prefix every metric recorded inside the block with `name/`."""
        old = self._current_prefix
        self._current_prefix = name.rstrip("/") + "/"
        try:
            yield
        finally:
            self._current_prefix = old


class EventWriter:
    """Base class of the writers called periodically by the trainer."""

    def write(self) -> None:
        """Write the metrics of the current storage."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files or handles."""


class _FileEventWriter(EventWriter):
    """A writer of one output file: a write that fails for the file system (disk full, ...) raises one
    OutputPathError naming `what` and `path`, and the file is left alone from then on (no cascade of errors)."""

    _failed = False

    def write(self) -> None:
        """Write what is new in the current storage; a full disk is an OutputPathError."""
        if self._failed:
            return
        try:
            self._write()
        except Exception as e:  # TensorBoard's OSError comes back from its writer thread, wrapped or later
            what, path = self._destination()
            error = output_write_error(what, path, e)
            if error is None:
                raise
            self._failed = True
            raise error from e

    def _write(self) -> None:
        raise NotImplementedError

    def _destination(self) -> Tuple[str, str]:
        """(what the file is, its path) for error messages."""
        raise NotImplementedError


class JSONWriter(_FileEventWriter):
    """Appends one JSON object per iteration (all scalars recorded at it) to a file, e.g. metrics.json."""

    def __init__(self, json_file: str, window_size: int = 20) -> None:
        self._path = json_file
        self._failed = False  # after a failed write (disk full) the file is left alone
        self._file_handle = PathManager.open(json_file, "a")
        self._window_size = window_size
        self._last_write = -1

    def _destination(self) -> Tuple[str, str]:
        return "the metrics file", self._path

    def _write(self) -> None:
        """Write every iteration that gained scalars since the previous call."""
        storage = get_event_storage()
        by_iter: Dict[int, Dict[str, float]] = defaultdict(dict)
        for k, (v, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr <= self._last_write:
                continue
            by_iter[itr][k] = v
        if by_iter:
            self._last_write = max(by_iter.keys())
        for itr, scalars in sorted(by_iter.items()):
            scalars["iteration"] = itr
            self._file_handle.write(json.dumps(scalars, sort_keys=True) + "\n")
        self._file_handle.flush()
        try:
            os.fsync(self._file_handle.fileno())
        except (AttributeError, OSError):
            pass  # not every PathManager backend is a real file

    def close(self) -> None:
        """Close metrics.json."""
        try:
            self._file_handle.close()
        except OSError:
            if not self._failed:
                raise


def _quiet_event_writer_threads() -> None:
    """Keep the event-file writer thread from printing a traceback for a failed write (a full disk): the main
    thread gets the same error at its next flush and reports it as one line."""
    import threading

    previous = threading.excepthook
    if getattr(previous, "_solov2_quiet", False):
        return

    def hook(args: Any) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and args.exc_value is not None \
                and os_error_reason(args.exc_value):
            return
        previous(args)

    hook._solov2_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class TensorboardXWriter(_FileEventWriter):
    """Writes scalars and images to TensorBoard event files (torch.utils.tensorboard) in `log_dir`."""

    def __init__(self, log_dir: str, window_size: int = 20, **kwargs: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._window_size = window_size
        self._last_write = -1
        self._failed = False  # after a failed write (disk full) the event file is left alone
        _quiet_event_writer_threads()
        try:
            self._writer = SummaryWriter(log_dir, **kwargs)
        except Exception as e:  # it writes the event file's header right away
            error = output_write_error("the TensorBoard event file in", log_dir, e)
            if error is None:
                raise
            raise error from e

    def _destination(self) -> Tuple[str, str]:
        return "the TensorBoard event file", self._writer.get_logdir()

    def _write(self) -> None:
        """Write scalars recorded since the previous call and the queued images."""
        storage = get_event_storage()
        new_last = self._last_write
        for k, (v, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr > self._last_write:
                self._writer.add_scalar(k, v, itr)
                new_last = max(new_last, itr)
        self._last_write = new_last
        for name, img, itr in storage.vis_data:
            self._writer.add_image(name, img, itr)
        storage.clear_images()
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        try:
            self._writer.close()
        except Exception as e:
            if not (self._failed or os_error_reason(e)):
                raise


def _memory_mb() -> Optional[Tuple[str, float]]:
    """("max_mem", MB of peak CUDA memory) on CUDA, ("rss", MB of peak resident memory) on CPU."""
    if torch.cuda.is_available():
        return "max_mem", torch.cuda.max_memory_allocated() / 1024.0 / 1024.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return "max_rss", peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


class CommonMetricPrinter(EventWriter):
    """Prints ETA, iteration, losses, time per iteration, data time, lr and memory to the log."""

    def __init__(self, max_iter: Optional[int] = None, window_size: int = 20) -> None:
        self.logger = logging.getLogger("solov2.utils.events")
        self._max_iter = max_iter
        self._window_size = window_size
        self._last_write: Optional[Tuple[int, float]] = None

    def _get_eta(self, storage: EventStorage) -> Optional[str]:
        if self._max_iter is None:
            return None
        iteration = storage.iter
        try:
            eta_seconds = storage.history("time").median(1000) * (self._max_iter - iteration - 1)
            storage.put_scalar("eta_seconds", eta_seconds, smoothing_hint=False)
            return str(datetime.timedelta(seconds=int(eta_seconds)))
        except KeyError:
            # No timing yet (e.g. right after a resume): estimate from wall time between writes.
            eta = None
            if self._last_write is not None:
                last_iter, last_time = self._last_write
                per_iter = (time.perf_counter() - last_time) / max(iteration - last_iter, 1)
                eta = str(datetime.timedelta(seconds=int(per_iter * (self._max_iter - iteration - 1))))
            self._last_write = (iteration, time.perf_counter())
            return eta

    def write(self) -> None:
        """Log one line for the current iteration."""
        storage = get_event_storage()
        iteration = storage.iter
        if self._max_iter is not None and iteration == self._max_iter:
            return  # the last iteration already got its line; this call comes from after_train
        hist = storage.histories()

        def median(name: str) -> Optional[float]:
            return hist[name].median(self._window_size) if name in hist else None

        data_time = median("data_time")
        iter_time = median("time")
        lr = storage.latest()["lr"][0] if "lr" in storage.latest() else None
        eta = self._get_eta(storage)
        losses = "  ".join(
            f"{k}: {h.median(self._window_size):.4g}"
            for k, h in hist.items()
            if "loss" in k and not k.startswith("validation")
        )
        parts = []
        if eta:
            parts.append(f"eta: {eta}")
        parts.append(f"iter: {iteration}")
        if losses:
            parts.append(losses)
        if iter_time is not None:
            parts.append(f"time: {iter_time:.4f}")
        if data_time is not None:
            parts.append(f"data_time: {data_time:.4f}")
        if lr is not None:
            parts.append(f"lr: {lr:.5g}")
        mem = _memory_mb()
        if mem is not None:
            parts.append(f"{mem[0]}: {mem[1]:.0f}M")
        self.logger.info("  ".join(parts))
