"""Output-path checks shared by the tools: never write over an input file."""

from __future__ import annotations

import os
from typing import Dict, Iterable, Optional, Tuple

__all__ = ["same_file", "overwritten_input"]


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
