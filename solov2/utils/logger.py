"""Logging setup (console + per-rank log files) and small table helpers for logged results."""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tabulate import tabulate
from termcolor import colored

from .file_io import PathManager

_PLAIN_FORMAT = "[%(asctime)s] %(name)s %(levelname)s: %(message)s"
_DATE_FORMAT = "%m/%d %H:%M:%S"


class _ColorfulFormatter(logging.Formatter):
    """Console formatter that shortens the logger name and colours warnings and errors."""

    def __init__(self, *args: Any, root_name: str, abbrev_name: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._root_name = root_name + "."
        self._abbrev_name = abbrev_name + "." if abbrev_name else ""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """Format one record with a coloured level prefix."""
        record.name = record.name.replace(self._root_name, self._abbrev_name)
        log = super().formatMessage(record)
        if record.levelno == logging.WARNING:
            prefix = colored("WARNING", "red", attrs=["blink"])
        elif record.levelno in (logging.ERROR, logging.CRITICAL):
            prefix = colored("ERROR", "red", attrs=["blink", "underline"])
        else:
            return log
        return prefix + " " + log


# Log files a write to failed (disk full, ...): every handler on them stops writing, so one failure is reported once.
_FAILED_LOG_FILES: set = set()


class _LogFileHandler(logging.StreamHandler):
    """A handler writing to a log file (OUTPUT_DIR/log.txt); told apart from console handlers by log_to_files.

    A write that fails for the file system's reasons (a full disk) raises an OutputPathError naming the file and
    what is intact, instead of logging's "--- Logging error ---" report on every later record.
    """

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record unless this file already failed."""
        if getattr(self.stream, "name", None) in _FAILED_LOG_FILES:
            return
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """A failed write of the file: stop writing it and raise one readable error (others: logging's report)."""
        from .run_state import output_write_error  # here: run_state is not needed to set up logging

        exc = sys.exc_info()[1]
        path = getattr(self.stream, "name", "?")
        error = output_write_error("the log file", str(path), exc) if exc is not None else None
        if error is None:
            super().handleError(record)
            return
        _FAILED_LOG_FILES.add(path)
        raise error from exc


def _log_file_path(output: str, distributed_rank: int) -> str:
    """OUTPUT path -> the log file of this rank (log.txt for rank 0, log.txt.rank{k} otherwise)."""
    if output.endswith(".txt") or output.endswith(".log"):
        filename = output
    else:
        filename = os.path.join(output, "log.txt")
    if distributed_rank > 0:
        filename = f"{filename}.rank{distributed_rank}"
    return filename


# Cached so that calling setup twice (e.g. from a test and from default_setup) adds no duplicate handlers.
@functools.lru_cache()
def setup_logger(
    output: Optional[str] = None,
    distributed_rank: int = 0,
    *,
    color: bool = True,
    name: str = "solov2",
    abbrev_name: Optional[str] = None,
    console_level: int = logging.DEBUG,
) -> logging.Logger:
    """Configure logger `name`: console output on rank 0 and, given `output`, a log file per rank."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    if abbrev_name is None:
        abbrev_name = "s2" if name == "solov2" else name

    plain = logging.Formatter(_PLAIN_FORMAT, datefmt=_DATE_FORMAT)
    if distributed_rank == 0:
        handler = logging.StreamHandler(stream=sys.stdout)
        handler.setLevel(console_level)
        if color:
            handler.setFormatter(
                _ColorfulFormatter(
                    colored("[%(asctime)s %(name)s]: ", "green") + "%(message)s",
                    datefmt=_DATE_FORMAT,
                    root_name=name,
                    abbrev_name=str(abbrev_name),
                )
            )
        else:
            handler.setFormatter(plain)
        logger.addHandler(handler)

    if output is not None:
        filename = _log_file_path(output, distributed_rank)
        PathManager.mkdirs(os.path.dirname(filename) or ".")
        file_handler = _LogFileHandler(_cached_log_stream(filename))
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(plain)
        logger.addHandler(file_handler)
    return logger


@functools.lru_cache(maxsize=None)
def _cached_log_stream(filename: str):  # noqa: ANN202 - an io stream
    # One open stream per file, shared by every logger that writes there, closed at exit.
    io = PathManager.open(filename, "a", buffering=1)
    atexit.register(_close_quietly, io)
    return io


def _close_quietly(stream: Any) -> None:
    """Close a log file at exit; a full disk was already reported when a write failed."""
    try:
        stream.close()
    except OSError:
        pass


def _log_file_of(handler: logging.Handler) -> Optional[str]:
    """The file a handler writes to (ours, a logging.FileHandler, or Detectron2's stream on a file), else None."""
    stream = getattr(handler, "stream", None)
    name = getattr(stream, "name", None) if isinstance(handler, logging.StreamHandler) else None
    if isinstance(handler, (_LogFileHandler, logging.FileHandler)) or (isinstance(name, str) and os.path.isfile(name)):
        return os.path.realpath(name) if isinstance(name, str) else str(id(handler))
    return None


# Loggers whose log files get the tracebacks of errors shown as one line: ours, and Detectron2's for the tools that
# run SOLOv2 inside it.
_FILE_LOGGERS = ("solov2", "detectron2")


def log_to_files(level: int, msg: str, *, exc_info: Any = None) -> bool:
    """Log to the log files (OUTPUT_DIR/log.txt, ...) only, not the console; False when there is no log file."""
    written = set()
    for name in _FILE_LOGGERS:
        logger = logging.getLogger(name)
        for h in logger.handlers:
            path = _log_file_of(h)
            if path is None or path in written or level < h.level:
                continue
            h.handle(logger.makeRecord(logger.name, level, "", 0, msg, (), exc_info))
            written.add(path)
    return bool(written)


def _caller_key() -> Tuple[str, int, str]:
    """(file, line, logger name) of the code that called the log_* helper."""
    frame = sys._getframe(2)
    while frame:
        code = frame.f_code
        if os.path.join("utils", "logger.") not in code.co_filename:
            mod_name = frame.f_globals.get("__name__", "solov2")
            return code.co_filename, frame.f_lineno, mod_name
        frame = frame.f_back  # type: ignore[assignment]
    return "", 0, "solov2"


_LOG_TIMER: Dict[Tuple[str, int], float] = {}


def log_every_n_seconds(lvl: int, msg: str, n: float = 1.0, *, name: Optional[str] = None) -> None:
    """Log `msg` at most once every `n` seconds from this call site."""
    filename, lineno, caller = _caller_key()
    key = (filename, lineno)
    last = _LOG_TIMER.get(key)
    now = time.time()
    if last is None or now - last >= n:
        logging.getLogger(name or caller).log(lvl, msg)
        _LOG_TIMER[key] = now


def create_small_table(small_dict: Dict[str, Any]) -> str:
    """A one-row table (keys as header) of a small dict, numbers with 3 decimals."""
    keys, values = tuple(zip(*small_dict.items())) if small_dict else ((), ())
    return tabulate(
        [values], headers=keys, tablefmt="pipe", floatfmt=".3f", stralign="center", numalign="center"
    )


def create_multi_column_table(
    pairs: Sequence[Tuple[str, Any]], headers: Sequence[str], columns: int = 3
) -> str:
    """A table that lays (name, value) pairs out in `columns` side-by-side column pairs."""
    columns = max(1, min(columns, len(pairs)))
    flat: List[Any] = [x for pair in pairs for x in pair]
    rows = [flat[i : i + 2 * columns] for i in range(0, len(flat), 2 * columns)]
    return tabulate(
        rows,
        headers=list(headers) * columns,
        tablefmt="pipe",
        floatfmt=".3f",
        numalign="left",
    )


def flatten_results(results: Dict[str, Any], prefix: str = "") -> Dict[str, float]:
    """Nested {task: {metric: value}} -> flat {"task/metric": value}."""
    flat: Dict[str, float] = {}
    for k, v in results.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            flat.update(flatten_results(v, key))
        else:
            flat[key] = v
    return flat

