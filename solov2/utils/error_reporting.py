"""How command-line tools end on an error: one `ERROR: <message>` line for a UserError, a traceback for a bug.

Every tool runs its entry point through `run_tool`. Processes it starts (solov2's `launch`, or another launcher such
as Detectron2's, given `ReportUserErrors(main)`) run through `run_in_child`: a UserError there is handed to the
parent through a folder named in the environment, so it is printed once however many processes hit it. The full
traceback always goes to the log files (OUTPUT_DIR/log.txt once logging is set up), and to the console too with
`--debug` or SOLOV2_DEBUG=1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import traceback
from typing import Any, Callable, Iterator, List, Optional

from .errors import UserError, user_error_message
from .file_io import atomic_write
from .logger import log_to_files
from .run_lock import release_all_output_dirs
from .run_state import Interrupted, install_signal_handlers, interrupt_message

__all__ = [
    "DEBUG_ENV",
    "EXIT_USER_ERROR",
    "ReportUserErrors",
    "collect_child_user_errors",
    "debug_enabled",
    "enable_debug",
    "log_exception_to_files",
    "report_user_error",
    "run_in_child",
    "run_tool",
]

DEBUG_ENV = "SOLOV2_DEBUG"
# The folder where processes started by a tool leave the messages of their UserErrors for it.
CHILD_ERRORS_ENV = "SOLOV2_CHILD_ERRORS_DIR"
EXIT_USER_ERROR = 1
# The shell's statuses for a process ended by SIGINT / SIGTERM (128 + signal number).
EXIT_INTERRUPTED = 130
EXIT_SIGTERM = 143
# Set on an exception once its traceback is in the log files, so that it is not written there twice.
_LOGGED_ATTR = "_solov2_logged_to_files"


def debug_enabled() -> bool:
    """True when --debug was given or SOLOV2_DEBUG is set to a true value."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def enable_debug() -> None:
    """Full tracebacks on the console from now on, in this process and in the processes it starts (--debug)."""
    os.environ[DEBUG_ENV] = "1"  # spawned processes inherit the environment


def log_exception_to_files(e: BaseException, context: str = "") -> None:
    """Write `e`'s traceback to the log files (never the console), once per exception."""
    if getattr(e, _LOGGED_ATTR, False):
        return
    try:
        written = log_to_files(logging.ERROR, context or f"{type(e).__name__}: {user_error_message(e)}",
                               exc_info=(type(e), e, e.__traceback__))
    except UserError:  # the log file itself cannot be written (a full disk): `e` is still what the user must see
        written = False
    if written:
        try:
            setattr(e, _LOGGED_ATTR, True)
        except AttributeError:  # exceptions with __slots__ cannot be marked; at worst logged twice
            pass


def _print_error(message: str) -> None:
    sys.stdout.flush()  # so that the ERROR line comes after everything already printed
    print(f"ERROR: {message}", file=sys.stderr, flush=True)


def report_user_error(e: BaseException) -> None:
    """Traceback to the log files (and to stderr with --debug), then `ERROR: <message>` as the last line."""
    log_exception_to_files(e)
    if debug_enabled():
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
    _print_error(user_error_message(e))


@contextlib.contextmanager
def collect_child_user_errors() -> Iterator[Callable[[], List[str]]]:
    """Let the processes started inside the block report their UserErrors (see run_in_child).

    Yields a function returning their distinct messages so far, oldest first. Nested blocks share the outer
    block's folder, so a message reaches the outermost caller however deep the launcher sits.
    """
    outer = os.environ.get(CHILD_ERRORS_ENV)
    if outer:
        yield lambda: _read_child_errors(outer)
        return
    folder = tempfile.mkdtemp(prefix="solov2_child_errors_")
    os.environ[CHILD_ERRORS_ENV] = folder  # spawned processes inherit the environment
    # When one process fails, torch stops the others with a "Terminating process ... via signal SIGTERM" warning
    # each: noise next to the message that says why.
    spawn_logger = logging.getLogger("torch.multiprocessing.spawn")
    spawn_level = spawn_logger.level
    spawn_logger.setLevel(logging.ERROR)
    try:
        yield lambda: _read_child_errors(folder)
    finally:
        spawn_logger.setLevel(spawn_level)
        os.environ.pop(CHILD_ERRORS_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def _read_child_errors(folder: str) -> List[str]:
    """Distinct messages left in `folder`, in the order they were written."""
    try:
        paths = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".txt")]
    except OSError:
        return []
    messages: List[str] = []
    for path in sorted(paths, key=os.path.getmtime):
        with open(path, encoding="utf-8") as f:
            message = f.read()
        if message not in messages:
            messages.append(message)
    return messages


def _report_from_child(message: str) -> None:
    """Leave a child's UserError message for the parent; print it here when no parent collects them."""
    folder = os.environ.get(CHILD_ERRORS_ENV)
    if not folder or not os.path.isdir(folder):
        _print_error(message)
        return
    # Whole, before this process exits and its parent looks.
    atomic_write(os.path.join(folder, f"{os.getpid()}.txt"), lambda f: f.write(message), mode="w")


def run_tool(main: Callable[..., Optional[int]], *args: Any, **kwargs: Any) -> int:
    """Run a tool's entry point and return its exit status: a UserError becomes one ERROR line and status 1.

    So does a failure of processes it started when they failed on UserErrors (each distinct message once). Any
    other exception is written to the log files and re-raised, so Python prints its traceback (once).
    """
    install_signal_handlers()
    with collect_child_user_errors() as child_errors:
        try:
            code = main(*args, **kwargs)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (run_state.Interrupted): no traceback, lock released
            message = interrupt_message(e, release_all_output_dirs())
            with contextlib.suppress(UserError):  # a log file on a full disk: the console line still comes
                log_to_files(logging.WARNING, message)
            _print_error(message)
            return EXIT_SIGTERM if isinstance(e, Interrupted) else EXIT_INTERRUPTED
        except UserError as e:
            report_user_error(e)
            return EXIT_USER_ERROR
        except SystemExit as e:
            # A launcher that runs a single process in this one (Detectron2's launch with one GPU) runs
            # run_in_child here: its message waits in the folder and it exits with EXIT_USER_ERROR.
            messages = child_errors()
            if e.code != EXIT_USER_ERROR or not messages:
                raise
            for message in messages:
                _print_error(message)
            return EXIT_USER_ERROR
        except Exception as e:
            messages = child_errors()
            if not messages:
                log_exception_to_files(e)
                raise
            # The launcher's own exception ("process 1 exited with code 1", or a peer's "connection closed")
            # only says that children stopped; their messages say why.
            for message in messages:
                _print_error(message)
            return EXIT_USER_ERROR
    return int(code or 0)


def run_in_child(main: Callable[..., Any], args: Any = ()) -> None:
    """Body of a started process: a UserError is handed to the parent (which prints it) and the process exits 1.

    The traceback goes to this process's log file, and to stderr with --debug; nothing else is printed here, so
    a message that every process hits (e.g. a config error) reaches the console once.
    """
    try:
        main(*args)
    except UserError as e:
        log_exception_to_files(e)
        if debug_enabled():
            traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
        _report_from_child(user_error_message(e))
        sys.exit(EXIT_USER_ERROR)  # SystemExit passes torch's spawn wrapper untouched: no traceback is sent
    except Exception as e:
        log_exception_to_files(e)
        raise


class ReportUserErrors:
    """Wraps the function another launcher (e.g. detectron2.engine.launch) runs in each process with run_in_child.

    `launch(ReportUserErrors(main), ...)` inside `run_tool` gives that tool one ERROR line for a UserError in any
    of its processes, as solov2's own launch does.
    """

    def __init__(self, main: Callable[..., Any]) -> None:
        self.main = main

    def __call__(self, *args: Any) -> None:
        """Run the wrapped function in this process."""
        run_in_child(self.main, args)
