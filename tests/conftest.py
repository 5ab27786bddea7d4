"""Shared pytest fixtures: the ../shared test data, a temporary datasets root, single-threaded runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pinned_model

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Two cores: keep intra-op threads bounded so parallel work does not thrash.
torch.set_num_threads(min(2, torch.get_num_threads()))

# pytest.ini gives every test 600 s; a slow test (several tool launches, an export in its fixture) may take longer
# on a loaded 2-core machine.
SLOW_TEST_TIMEOUT = 1800


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """Give tests marked slow SLOW_TEST_TIMEOUT unless they ask for a timeout themselves."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def reference_state_dict_shapes(shared_data: Path) -> dict:
    """{name: shape tuple} of the published R50_3x checkpoint, from ../shared/data."""
    path = shared_data / "reference_state_dict_R50_3x.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    shapes = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, shape = line.split(" ", 1)
        shapes[name] = tuple(int(s) for s in shape.strip("() ").split(",") if s.strip())
    return shapes


@pytest.fixture(autouse=True)
def _restore_solov2_logger():
    """Tools call setup_logger(), which stops 'solov2' records reaching the root logger (and caplog)."""
    import logging

    logger = logging.getLogger("solov2")
    state = (logger.propagate, list(logger.handlers), logger.level)
    yield
    logger.propagate, logger.handlers[:], logger.level = state[0], state[1], state[2]


@pytest.fixture
def one_thread():
    """Run single-threaded: on a shared 2-core machine, contended OpenMP threads make steps 10-50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small_cfg():
    """Factory of the narrow R18-FPN SOLOv2 config of tests/pinned_model.py: `small_cfg(num_classes=3)`."""

    def make(num_classes: int = 3):
        cfg = pinned_model.CONFIGS["small"]()
        cfg.MODEL.SOLOV2.NUM_CLASSES = num_classes
        return cfg

    return make
