"""Environment helpers: seeding every RNG and a summary of library versions for the log."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import platform
import random
import sys
from datetime import datetime
from typing import List, Optional, Tuple

import numpy as np
import torch
from tabulate import tabulate

logger = logging.getLogger(__name__)


def seed_all_rng(seed: Optional[int] = None) -> int:
    """Seed Python, NumPy and torch RNGs; a None or negative seed picks a random one. Returns the seed."""
    if seed is None or seed < 0:
        seed = (
            os.getpid()
            + int(datetime.now().strftime("%S%f"))
            + int.from_bytes(os.urandom(2), "big")
        ) % (2**31)
        logger.info("Using a generated random seed %d", seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    random.seed(seed)
    return int(seed)


def _version_of(module_name: str) -> str:
    """`module.__version__`, or why it is unavailable."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return "not installed"
    except Exception as e:  # a broken install should not stop training from starting
        return f"failed to import ({type(e).__name__}: {e})"
    version = getattr(module, "__version__", None)
    if version is None:
        # Some packages (pycocotools) only record their version in the install metadata.
        try:
            version = importlib.metadata.version(module_name)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown version"
    return str(version)


def collect_env_info() -> str:
    """A table of platform, Python, torch/CUDA and library versions, for the start of every log."""
    rows: List[Tuple[str, str]] = [
        ("sys.platform", sys.platform),
        ("Platform", platform.platform()),
        ("Python", sys.version.replace("\n", " ")),
        ("numpy", np.__version__),
        ("solov2", _version_of("solov2")),
        ("PyTorch", f"{torch.__version__} @{os.path.dirname(torch.__file__)}"),
        ("PyTorch debug build", str(torch.version.debug)),
        ("torchvision", _version_of("torchvision")),
        ("fvcore", _version_of("fvcore")),
        ("iopath", _version_of("iopath")),
        ("pycocotools", _version_of("pycocotools")),
        ("cv2", _version_of("cv2")),
        ("tensorboard", _version_of("tensorboard")),
    ]
    cuda_ok = torch.cuda.is_available()
    rows.append(("CUDA available", str(cuda_ok)))
    rows.append(("CUDA (torch built with)", str(torch.version.cuda)))
    if cuda_ok:
        rows.append(("cuDNN", str(torch.backends.cudnn.version())))
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            rows.append((f"GPU {i}", f"{props.name} ({props.total_memory / 1024**3:.1f} GiB)"))
    rows.append(("CPU threads (torch)", str(torch.get_num_threads())))
    rows.append(("CPU count", str(os.cpu_count())))
    return tabulate(rows)
