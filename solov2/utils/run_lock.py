"""One run per OUTPUT_DIR: a lock file holding the owner's host and pid, released at exit, taken over when stale."""

from __future__ import annotations

import atexit
import errno
import logging
import os
import socket
import sys
import time
from typing import Dict, List, Optional

from .errors import OutputPathError
from .file_io import pid_alive

__all__ = ["LOCK_NAME", "lock_output_dir", "release_all_output_dirs", "release_output_dir"]

logger = logging.getLogger(__name__)

LOCK_NAME = ".solov2_run.lock"
_held: Dict[str, str] = {}  # lock path -> the content this process wrote


def _read(path: str) -> Dict[str, str]:
    """The key=value lines of a lock file ({} when it is unreadable or empty)."""
    try:
        with open(path) as f:
            return dict(line.split("=", 1) for line in f.read().splitlines() if "=" in line)
    except OSError:
        return {}


def _try_create(path: str, content: str) -> bool:
    """Create the lock file atomically; False if it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(content)
    return True


def lock_output_dir(output_dir: str, take_over_remote: bool = False) -> Optional[str]:
    """Claim `output_dir` for this process, or raise OutputPathError if a live run holds it.

    A lock left by a process that no longer exists (killed, crashed machine) is taken over; the returned message
    says so (for the caller to log once its log file is set up), else None. A lock held by a process on another
    host cannot be checked from here: it is taken over only with `take_over_remote` (config key
    TAKE_OVER_OUTPUT_DIR_LOCK), which the user sets after making sure that run has ended. Calling it again from the process
    that holds the lock does nothing.
    """
    path = os.path.join(output_dir, LOCK_NAME)
    host = socket.gethostname()
    content = f"host={host}\npid={os.getpid()}\nstarted={time.strftime('%Y-%m-%d %H:%M:%S')}\n" \
              f"command={' '.join(sys.argv)}\n"
    if path in _held:
        return None
    note = None
    for _ in range(3):  # another process may take over the same stale lock at the same moment: look again
        try:
            if _try_create(path, content):
                _held[path] = content
                if len(_held) == 1:
                    atexit.register(_release_all)
                return note
        except OSError as e:
            raise OutputPathError(f"Cannot write to OUTPUT_DIR '{output_dir}': {e.strerror or e}") from e
        owner = _read(path)
        pid_text = owner.get("pid", "")
        pid = int(pid_text) if pid_text.isdigit() else 0  # an empty lock: its writer died before writing
        if owner.get("host") == host and pid == os.getpid():
            _held[path] = content  # ours, from an earlier setup in this process
            return None
        remote = owner.get("host", host) != host
        if remote and not take_over_remote:
            raise OutputPathError(
                f"OUTPUT_DIR '{output_dir}' is in use by a run on host {owner.get('host')} (pid {pid or '?'}, started "
                f"{owner.get('started', '?')}). Use another OUTPUT_DIR; if that run has ended (e.g. a requeued job), "
                f"add TAKE_OVER_OUTPUT_DIR_LOCK True to take its lock over (or delete '{path}')."
            )
        if not remote and pid and pid_alive(pid):
            raise OutputPathError(
                f"OUTPUT_DIR '{output_dir}' is in use by another run (pid {pid}, started {owner.get('started', '?')}: "
                f"{owner.get('command', '?')}). Two runs in one folder would mix their checkpoints, logs and "
                f"config.yaml: pass another OUTPUT_DIR, or wait for that run to end."
            )
        note = (f"Taking over OUTPUT_DIR '{output_dir}' from a run that no longer exists (pid {pid or '?'}, started "
                f"{owner.get('started', '?')})") if not remote else (
                f"Taking over OUTPUT_DIR '{output_dir}' from the run on host {owner.get('host')} (pid {pid or '?'}, "
                f"started {owner.get('started', '?')}), as TAKE_OVER_OUTPUT_DIR_LOCK asks")
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OutputPathError(f"Cannot write to OUTPUT_DIR '{output_dir}': {e.strerror or e}") from e
    raise OutputPathError(f"Could not lock OUTPUT_DIR '{output_dir}': other runs keep starting in it")


def release_output_dir(output_dir: str) -> None:
    """Remove this process's lock on `output_dir` (done at exit automatically)."""
    path = os.path.join(output_dir, LOCK_NAME)
    content = _held.pop(path, None)
    if content is None:
        return
    owner = _read(path)
    if owner.get("pid") == str(os.getpid()):
        try:
            os.remove(path)
        except OSError as e:
            if e.errno != errno.ENOENT:
                logger.warning(f"Could not remove the lock file '{path}': {e}")


def _release_all() -> List[str]:
    """Release every lock this process holds (at exit, or on an interrupt); returns their OUTPUT_DIRs."""
    released = []
    for path in list(_held):
        release_output_dir(os.path.dirname(path))
        released.append(os.path.dirname(path))
    return released


release_all_output_dirs = _release_all
