"""What a command is doing and what it has safely on disk, so that an interrupt or a full disk ends in one line.

Long-running parts announce themselves (`activity`), writers of durable files register a note saying what is intact
(`add_safe_note`). `run_tool` turns Ctrl-C and SIGTERM (`install_signal_handlers`) into one `ERROR:` line from
these, and failed writes of logs, metrics, events and results become an OutputPathError naming the path
(`output_write_error`) whose message ends with the same notes.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import threading
from typing import Callable, Dict, Iterator, List, Optional

from .errors import OutputPathError

__all__ = [
    "Interrupted",
    "activity",
    "add_safe_note",
    "current_activity",
    "install_signal_handlers",
    "os_error_reason",
    "output_write_error",
    "what_is_safe",
]

_activities: List[Callable[[], str]] = []
_safe_notes: Dict[str, Callable[[], Optional[str]]] = {}

_ERRNO_REASONS = {
    errno.ENOSPC: "no space left on device (the disk is full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the folder is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "an input/output error (a failing disk or network file system?)",
}


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM (and Ctrl-C is a KeyboardInterrupt): the run stops where it is."""

    def __init__(self, signal_name: str = "SIGTERM") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


@contextlib.contextmanager
def activity(describe: Callable[[], str]) -> Iterator[None]:
    """Within the block, an interrupt message says `describe()` was interrupted (innermost block wins)."""
    _activities.append(describe)
    try:
        yield
    except KeyboardInterrupt as e:
        if not hasattr(e, "_solov2_activity"):  # the innermost block says what was interrupted
            with contextlib.suppress(Exception):
                e._solov2_activity = describe()  # type: ignore[attr-defined]
        raise
    finally:
        _activities.remove(describe)


def current_activity() -> str:
    """What the command is doing right now, e.g. 'training at iteration 4 of 6'."""
    for describe in reversed(_activities):
        with contextlib.suppress(Exception):
            return describe()
    return "the command"


def add_safe_note(key: str, note: Callable[[], Optional[str]]) -> None:
    """Register (or replace, by key) a function saying what is intact on disk, e.g. the last checkpoint."""
    _safe_notes[key] = note


def what_is_safe() -> str:
    """The registered notes as sentences ('' when there are none)."""
    texts = []
    for note in list(_safe_notes.values()):
        with contextlib.suppress(Exception):
            text = note()
            if text:
                texts.append(text.rstrip(".") + ".")
    return " ".join(texts)


def _exception_chain(e: BaseException) -> Iterator[BaseException]:
    """e, then its causes and contexts (torch.save wraps the OSError of a failed write in a RuntimeError)."""
    seen = set()
    x: Optional[BaseException] = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        yield x
        x = x.__cause__ or x.__context__


def os_error_reason(e: BaseException) -> Optional[str]:
    """A readable reason when `e` comes from the file system (disk full, read-only, ...), else None."""
    for x in _exception_chain(e):
        if isinstance(x, OSError) and x.errno:
            return _ERRNO_REASONS.get(x.errno, x.strerror or str(x))
    return None


def output_write_error(what: str, path: str, e: BaseException) -> Optional[OutputPathError]:
    """An OutputPathError for a failed write of `what` at `path` (None when `e` is not the file system's doing)."""
    reason = os_error_reason(e)
    if reason is None:
        return None
    safe = what_is_safe()
    return OutputPathError(f"Could not write {what} '{path}': {reason}. {safe}".rstrip())


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def install_signal_handlers() -> None:
    """SIGTERM raises Interrupted in the main thread (so cleanups run), as Ctrl-C raises KeyboardInterrupt."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupted)


def interrupt_message(e: KeyboardInterrupt, released: List[str]) -> str:
    """One line: which signal interrupted what, and what is intact on disk."""
    how = f"by {e.signal_name}" if isinstance(e, Interrupted) else "by Ctrl-C"
    what = getattr(e, "_solov2_activity", None) or current_activity()
    parts = [f"Interrupted {how} during {what}; no evaluation or results follow."]
    safe = what_is_safe()
    if safe:
        parts.append(safe)
    if released:
        parts.append("Released the lock on OUTPUT_DIR " + ", ".join(f"'{d}'" for d in released) + ".")
    return " ".join(parts)
