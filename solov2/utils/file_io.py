"""The one PathManager (iopath) all file access goes through, and the one atomic write-then-rename."""

from __future__ import annotations

import os
import re
import uuid
from typing import IO, Any, Callable, List, Optional

from iopath.common.file_io import g_pathmgr as PathManager

__all__ = ["PathManager", "atomic_write", "pid_alive", "remove_stale_temporary_files"]

# `.<name>.<pid>.<8 hex>.tmp`: hidden, and the writer's pid tells whether a leftover is stale.
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def _tmp_name(path: str) -> str:
    """A temporary file beside `path` (same folder, so the rename is atomic) that no other writer picks."""
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: str, write: Callable[[IO[Any]], Any], mode: str = "wb",
                 check: Optional[Callable[[str], Any]] = None) -> None:
    """Write `path` all or nothing: `write(f)` fills a temporary file beside it, which is fsynced, then renamed.

    `check(tmp_path)`, if given, runs on the complete temporary file before the rename; an exception from it (or
    from `write`) leaves any earlier file at `path` untouched and removes the temporary file.
    """
    path = PathManager.get_local_path(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = _tmp_name(os.path.join(folder, os.path.basename(path)))
    # os.open with 0o666 honours the umask, so the final file gets ordinary permissions (mkstemp gives 0600).
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        # Opened by name (not from the descriptor) so that writers that look at `f.name` (onnx.save) get the path.
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it (a crash leaves old or new)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_stale_temporary_files(folder: str) -> List[str]:
    """Delete what killed atomic writes left in `folder` (temporary files of processes that no longer exist)."""
    removed: List[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TMP_RE.match(name)
        if not m:
            continue
        pid = int(m.group("pid"))
        if pid != os.getpid() and pid_alive(pid):
            continue  # another live process is writing it right now
        try:
            os.remove(os.path.join(folder, name))
            removed.append(name)
        except OSError:
            pass
    return removed
