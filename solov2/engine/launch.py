"""Start one training process per GPU (or per requested CPU process) with torch.distributed."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from datetime import timedelta
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..utils import comm
from ..utils.error_reporting import collect_child_user_errors, run_in_child
from ..utils.errors import ConfigError, UserError
from ..utils.run_state import install_signal_handlers

__all__ = ["DEFAULT_TIMEOUT", "launch", "find_free_port"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)


def find_free_port() -> int:
    """A TCP port on this machine that is free right now."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("", 0))
    port = sock.getsockname()[1]
    sock.close()
    # The port could be taken again before init_process_group binds it; in practice this is rare.
    return int(port)


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Sequence[Any] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """Run `main_func(*args)` in num_gpus_per_machine processes on each of num_machines machines.

    One process (and no torch.distributed) when the world size is 1. On a machine without CUDA the
    processes use the gloo backend on CPU, so `--num-gpus N` also works there. A UserError in any process is
    raised here again (once, with that process's message) after the processes have ended.
    """
    if num_gpus_per_machine < 1 or num_machines < 1:
        raise ConfigError(
            f"--num-gpus ({num_gpus_per_machine}) and --num-machines ({num_machines}) must be at least 1"
        )
    if not 0 <= machine_rank < num_machines:
        raise ConfigError(f"--machine-rank {machine_rank} must be in [0, {num_machines})")
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        main_func(*args)
        return

    if dist_url is None or dist_url == "auto":
        if num_machines != 1:
            raise ConfigError(
                "--dist-url auto only works on one machine; for several machines pass "
                "--dist-url tcp://<ip of machine 0>:<port>, the same on every machine."
            )
        dist_url = f"tcp://127.0.0.1:{find_free_port()}"
    if num_machines > 1 and dist_url.startswith("tcp://127.0.0.1"):
        logger.warning(
            "--dist-url %s points to localhost but %d machines are used: other machines cannot reach it.",
            dist_url,
            num_machines,
        )
    if torch.cuda.is_available() and num_gpus_per_machine > torch.cuda.device_count():
        raise ConfigError(
            f"--num-gpus {num_gpus_per_machine} but only {torch.cuda.device_count()} CUDA devices are visible"
        )

    with collect_child_user_errors() as child_errors:
        try:
            context = mp.start_processes(
                _distributed_worker,
                nprocs=num_gpus_per_machine,
                args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, tuple(args), timeout),
                daemon=False,
                start_method="spawn",
                join=False,
            )
            try:
                # join() raises in the parent when a child fails (an exception or a non-zero exit status).
                while not context.join():
                    pass
            finally:
                _remove_error_files(context.error_files)
        except Exception:
            messages = child_errors()
            if not messages:
                raise
            # The processes that failed only because a peer left ("connection closed by peer") failed because of
            # these user errors: report the cause, once, instead of their tracebacks.
            raise UserError(" | ".join(messages)) from None


def _remove_error_files(paths: Sequence[Optional[str]]) -> None:
    """Delete the files in which torch's spawned children pickled their exceptions (torch reads, never removes them)."""
    for path in paths:
        if path:
            # Absent when that child did not raise; a stray file (a /tmp cleaner's race) is not worth an error.
            with contextlib.suppress(OSError):
                os.remove(path)


def _distributed_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: Sequence[Any],
    timeout: timedelta,
) -> None:
    """Body of each spawned process: join the process group, then run main_func (UserErrors go to the parent)."""
    install_signal_handlers()  # SIGTERM unwinds (atexit releases rank 0's OUTPUT_DIR lock) instead of killing
    has_gpu = torch.cuda.is_available()
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    backend = "nccl" if has_gpu else "gloo"
    if has_gpu:
        torch.cuda.set_device(local_rank)
    else:
        # CPU processes share the cores; one pool of threads each would oversubscribe them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_gpus_per_machine))
    try:
        dist.init_process_group(
            backend=backend,
            init_method=dist_url,
            world_size=world_size,
            rank=global_rank,
            timeout=timeout,
        )
    except Exception as e:
        raise RuntimeError(
            f"Rank {global_rank} could not join the process group at {dist_url} ({backend}): {e}"
        ) from e

    num_machines = world_size // num_gpus_per_machine
    # Every rank must create every group, in the same order, even those it is not part of.
    for i in range(num_machines):
        ranks = list(range(i * num_gpus_per_machine, (i + 1) * num_gpus_per_machine))
        group = dist.new_group(ranks)
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group

    comm.synchronize()
    try:
        run_in_child(main_func, args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
