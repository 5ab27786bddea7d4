"""How command-line tools end on an error: one `ERROR: <message>` line for a UserError, a traceback for a bug.

Every tool runs its entry point through `run_tool`; `launch` runs each spawned process's function through
`run_in_child`, which hands a UserError's message to the parent so that it is printed once however many processes
hit it. The full traceback always goes to the log files (OUTPUT_DIR/log.txt once logging is set up), and to the
console too with `--debug` or SOLOV2_DEBUG=1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import Any, Callable, Optional

from .errors import UserError, user_error_message
from .logger import log_to_files

__all__ = [
    "DEBUG_ENV",
    "EXIT_USER_ERROR",
    "add_debug_argument",
    "debug_enabled",
    "log_exception_to_files",
    "report_user_error",
    "run_in_child",
    "run_tool",
]

DEBUG_ENV = "SOLOV2_DEBUG"
EXIT_USER_ERROR = 1
# Set on an exception once its traceback is in the log files, so that it is not written there twice.
_LOGGED_ATTR = "_solov2_logged_to_files"


def debug_enabled() -> bool:
    """True when --debug was given or SOLOV2_DEBUG is set to a true value."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


class _DebugAction(argparse.Action):
    """--debug: set SOLOV2_DEBUG=1 as soon as it is parsed, so processes spawned later inherit it."""

    def __init__(self, option_strings: Any, dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("default", False)
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        os.environ[DEBUG_ENV] = "1"
        setattr(namespace, self.dest, True)


def add_debug_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add --debug (full tracebacks on the console for user errors too) to a tool's parser."""
    parser.add_argument(
        "--debug",
        action=_DebugAction,
        help=f"print the full traceback of every error on the console (same as {DEBUG_ENV}=1); without it an "
        "error in what you gave (config, data, weights, paths) prints one 'ERROR: ...' line and the traceback "
        "goes only to OUTPUT_DIR/log.txt",
    )
    return parser


def log_exception_to_files(e: BaseException, context: str = "") -> None:
    """Write `e`'s traceback to the log files (never the console), once per exception."""
    if getattr(e, _LOGGED_ATTR, False):
        return
    written = log_to_files(logging.ERROR, context or f"{type(e).__name__}: {user_error_message(e)}",
                           exc_info=(type(e), e, e.__traceback__))
    if written:
        try:
            setattr(e, _LOGGED_ATTR, True)
        except AttributeError:  # exceptions with __slots__ cannot be marked; at worst logged twice
            pass


def report_user_error(e: BaseException) -> None:
    """Traceback to the log files (and to stderr with --debug), then `ERROR: <message>` as the last line."""
    log_exception_to_files(e)
    if debug_enabled():
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
    sys.stdout.flush()
    print(f"ERROR: {user_error_message(e)}", file=sys.stderr, flush=True)


def run_tool(main: Callable[..., Optional[int]], *args: Any, **kwargs: Any) -> int:
    """Run a tool's entry point and return its exit status: a UserError becomes one ERROR line and status 1.

    Any other exception is written to the log files and re-raised, so Python prints its traceback (once).
    """
    try:
        code = main(*args, **kwargs)
    except UserError as e:
        report_user_error(e)
        return EXIT_USER_ERROR
    except Exception as e:
        log_exception_to_files(e)
        raise
    return int(code or 0)


def run_in_child(main: Callable[..., Any], args: Any, report: Callable[[str], None]) -> None:
    """Body of a spawned process: a UserError goes to `report` (the parent prints it) and the process exits 1.

    The traceback goes to this process's log file, and to stderr with --debug; nothing else is printed here, so
    a message that every process hits (e.g. a config error) reaches the console once, from the parent.
    """
    try:
        main(*args)
    except UserError as e:
        log_exception_to_files(e)
        if debug_enabled():
            traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
        report(user_error_message(e))
        sys.exit(EXIT_USER_ERROR)  # SystemExit passes torch's spawn wrapper untouched: no traceback is sent
    except Exception as e:
        log_exception_to_files(e)
        raise
