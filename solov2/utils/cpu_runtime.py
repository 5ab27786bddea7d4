"""Process-wide CPU run-time settings: glibc malloc tuning (changes how memory is managed, not what is computed).

OpenMP's wait policy is left to the user (OMP_WAIT_POLICY): PASSIVE helps only when other processes compete for
the cores; on an idle 2-core machine it made a quickstart iteration 0.58 -> 0.78 s, so it is not set here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from typing import Dict, Optional

logger = logging.getLogger(__name__)

# mallopt() parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# glibc's own environment variables for the same settings; when a user sets one, their choice wins.
_GLIBC_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
# mallopt(M_TRIM_THRESHOLD, -1) disables trimming: freed memory at the top of the heap stays in the process.
_NO_TRIM = -1
# Set to 0 to leave malloc alone (e.g. to compare, or when another allocator is preloaded).
MALLOC_TUNING_ENV = "SOLOV2_MALLOC_TUNING"

_applied: Dict[str, bool] = {}


def _glibc() -> Optional[ctypes.CDLL]:
    """The C library when it is glibc (which has mallopt), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):  # musl and other C libraries have no gnu_get_libc_version/mallopt
        return None
    return libc


def tune_malloc() -> bool:
    """Make glibc keep freed memory for reuse instead of returning large blocks to the kernel; True if applied.

    By default glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh mmap and unmaps it
    on free, so each training step page-faults its large activations and gradients in again, zero-filled by the
    kernel: on R50_3x at 800 px that was ~3 million page faults and a fifth of the CPU time per step, in the
    kernel. Serving all blocks from the heap and never trimming it keeps the pages mapped across steps. Skipped
    when SOLOV2_MALLOC_TUNING=0, when the user set glibc's MALLOC_* variables, or without glibc.
    """
    if "malloc" in _applied:
        return _applied["malloc"]
    ok = False
    if os.environ.get(MALLOC_TUNING_ENV, "1") == "0":
        logger.info("%s=0: leaving glibc malloc's settings alone", MALLOC_TUNING_ENV)
    elif any(k in os.environ for k in _GLIBC_MALLOC_ENV):
        logger.info("glibc MALLOC_* environment variables are set: leaving malloc's settings to them")
    else:
        libc = _glibc()
        if libc is not None:
            # Both documented in mallopt(3): 0 mmapped blocks at a time disables mmap for large requests.
            ok = libc.mallopt(_M_TRIM_THRESHOLD, _NO_TRIM) == 1
            ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and ok
    _applied["malloc"] = ok
    return ok


def malloc_tuned() -> bool:
    """Whether tune_malloc() has changed glibc malloc's settings in this process."""
    return _applied.get("malloc", False)
