"""Printing evaluation results for copy-paste and checking them against TEST.EXPECTED_RESULTS."""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping

from ..utils.errors import ConfigError

__all__ = ["print_csv_format", "verify_results"]

logger = logging.getLogger(__name__)


def print_csv_format(results: Mapping[str, Any]) -> None:
    """Log each task's metrics as two comma-separated lines (names, values) for spreadsheets."""
    for task, metrics in results.items():
        if not isinstance(metrics, Mapping):
            logger.info("copypaste: %s=%s", task, metrics)
            continue
        # Per-category APs would make the line unreadable; the tables already show them.
        main = [(k, v) for k, v in metrics.items() if "-" not in k]
        logger.info("copypaste: Task: %s", task)
        logger.info("copypaste: %s", ",".join(k for k, _ in main))
        logger.info("copypaste: %s", ",".join(f"{float(v):.4f}" for _, v in main))


def verify_results(cfg: Any, results: Mapping[str, Mapping[str, float]]) -> bool:
    """Check results against TEST.EXPECTED_RESULTS ([[task, metric, expected, tolerance], ...]); log every miss."""
    expected = cfg.TEST.EXPECTED_RESULTS
    if not expected:
        return True
    ok = True
    for entry in expected:
        if len(entry) != 4:
            raise ConfigError(f"TEST.EXPECTED_RESULTS entries must be [task, metric, value, tolerance], got {entry}")
        task, metric, value, tolerance = entry
        actual = results.get(task, {}).get(metric)
        if actual is None:
            logger.error("Result check: %s/%s is missing from the results", task, metric)
            ok = False
            continue
        if not math.isfinite(actual) or abs(actual - value) > tolerance:
            logger.error("Result check failed: %s/%s = %.4f, expected %.4f +- %.4f", task, metric, actual, value, tolerance)
            ok = False
    if ok:
        logger.info("Results verification passed.")
    return ok
