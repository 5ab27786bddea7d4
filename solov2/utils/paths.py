"""Path checks shared by the tools: never write over an input file, never read what is not a regular file, and
find out that an output cannot be written before the work that produces it."""

from __future__ import annotations

import logging
import os
import stat
import uuid
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import OutputPathError

__all__ = ["check_distinct_outputs", "check_writable_output", "regular_files", "same_file", "overwritten_input"]


def _file_id(path: str) -> Optional[Tuple[int, int]]:
    """(device, inode) of an existing file, else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file (after symlinks; hard links and case-insensitive names when both exist)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    ida = _file_id(a)
    return ida is not None and ida == _file_id(b)


def overwritten_input(outputs: Iterable[str], inputs: Iterable[str]) -> Optional[Tuple[str, str]]:
    """The first (output, input) pair where writing the output would replace the input, or None."""
    inputs = list(inputs)
    by_real: Dict[str, str] = {os.path.realpath(p): p for p in inputs}
    by_id: Dict[Tuple[int, int], str] = {}
    for p in inputs:
        file_id = _file_id(p)
        if file_id is not None:
            by_id.setdefault(file_id, p)
    for out in outputs:
        real = os.path.realpath(out)
        if real in by_real:
            return out, by_real[real]
        file_id = _file_id(out)  # hard links, case-insensitive file systems: the same file under another name
        if file_id is not None and file_id in by_id:
            return out, by_id[file_id]
    return None


def _kind(mode: int) -> str:
    """A file type in words."""
    for test, name in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def regular_files(paths: Sequence[str], logger: Optional[logging.Logger] = None) -> Tuple[List[str], List[str]]:
    """(paths to read, paths skipped): pipes, devices and sockets are skipped by name (reading one may block
    forever); paths that do not exist are kept, for the reader to report."""
    kept: List[str] = []
    skipped: List[str] = []
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            kept.append(path)
            continue
        if stat.S_ISREG(mode):
            kept.append(path)
            continue
        skipped.append(path)
        if logger is not None:
            logger.error(f"Skipping '{path}': it is {_kind(mode)}, not an image file")
    return kept, skipped


def check_distinct_outputs(pairs: Iterable[Tuple[str, str]], what: str = "outputs") -> None:
    """Refuse (before anything is written) two inputs whose (input, output) pairs name the same output file."""
    owner: Dict[str, str] = {}
    for source, out in pairs:
        key = os.path.realpath(out)
        if key in owner and owner[key] != source:
            raise OutputPathError(
                f"'{owner[key]}' and '{source}' would both be written to '{out}' ({what} are named after their "
                "inputs' file names): give inputs with distinct file names, or write them in separate runs"
            )
        owner[key] = source


def check_writable_output(path: str) -> None:
    """Refuse an output file that cannot be written (missing permission, a folder, a read-only disk) now, before
    minutes of work that would end in the write."""
    if os.path.isdir(path):
        raise OutputPathError(f"Output '{path}' is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.exists(existing):  # the nearest part of the path that exists must be a folder
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputPathError(f"Cannot write the output '{path}': '{existing}' is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.probe")
        with open(probe, "wb"):
            pass
        os.remove(probe)
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise PermissionError(13, "permission denied")
    except OSError as e:
        raise OutputPathError(f"Cannot write the output '{path}': {e.strerror or e}") from e
