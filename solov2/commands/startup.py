"""A command's process start-up: what applies to the whole process, and so belongs to commands, not to library
functions a user may call from a notebook (glibc malloc settings, the debug switch)."""

from __future__ import annotations

import argparse
import os
import time

from ..utils.cpu_runtime import tune_malloc
from ..utils.error_reporting import enable_debug

__all__ = ["process_wall_time", "start_command"]

_IMPORTED_AT = time.perf_counter()


def start_command(args: argparse.Namespace) -> None:
    """After parsing: --debug for this process and those it starts, and glibc malloc tuning (SOLOV2_MALLOC_TUNING=0
    opts out), before anything large is allocated."""
    if getattr(args, "debug", False):
        enable_debug()
    # Each training step or image allocates the same large tensors again: keeping freed memory mapped saves the
    # page faults (R50_3x at 800 px: 7.5 -> 6.0 s per image on 2 cores).
    tune_malloc()


def process_wall_time() -> float:
    """Seconds since this process started (imports included); since this module was imported where /proc is absent."""
    try:
        with open("/proc/self/stat") as f:
            # Field 22 is the start time in clock ticks since boot; the command name (field 2) may hold spaces.
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED_AT
