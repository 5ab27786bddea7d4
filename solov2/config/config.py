"""CfgNode with `_BASE_` inheritance and error messages that name the offending key and file."""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Dict, List, Optional, Tuple

import yaml
from fvcore.common.config import BASE_KEY
from fvcore.common.config import CfgNode as _FvCfgNode
from iopath.common.file_io import g_pathmgr

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """Raised when a config file or override cannot be merged (unknown key, wrong type, bad file)."""


class CfgNode(_FvCfgNode):
    """fvcore's CfgNode whose merge errors say which key and which file are wrong."""

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = True) -> None:
        """Merge a YAML file (following `_BASE_` chains) into this config."""
        if not g_pathmgr.exists(cfg_filename):
            raise ConfigError(f"Config file '{cfg_filename}' does not exist.")
        try:
            loaded = self.load_yaml_with_base(cfg_filename, allow_unsafe=allow_unsafe)
        except Exception as e:  # yaml syntax errors, missing _BASE_ files
            raise ConfigError(f"Cannot read config file '{cfg_filename}': {e}") from e
        loaded = type(self)(loaded)
        try:
            self.merge_from_other_cfg(loaded)
        except (KeyError, ValueError, AssertionError) as e:
            key = _key_of(e)
            culprit = _file_setting(key, cfg_filename) if key else cfg_filename
            where = f"'{culprit}'" if culprit == cfg_filename else f"'{culprit}', a _BASE_ of '{cfg_filename}'"
            raise ConfigError(f"{_describe(e)} (in config file {where})") from e

    def merge_from_list(self, cfg_list: List[Any]) -> None:
        """Merge KEY VALUE pairs, e.g. ["SOLVER.BASE_LR", "0.02"]."""
        if len(cfg_list) % 2 != 0:
            raise ConfigError(
                f"Config overrides must be KEY VALUE pairs; got an odd number of items: {cfg_list}"
            )
        for key, value in zip(cfg_list[0::2], cfg_list[1::2]):
            try:
                super().merge_from_list([key, value])
            except (KeyError, ValueError, AssertionError) as e:
                raise ConfigError(f"{_describe(e)} (in command-line override '{key} {value}')") from e


def _describe(e: BaseException) -> str:
    """Turn yacs' terse KeyError/ValueError text into one readable sentence."""
    msg = e.args[0] if e.args else str(e)
    msg = str(msg)
    if msg.startswith("Non-existent config key:"):
        key = msg.split(":", 1)[1].strip()
        return f"Unknown config key '{key}'"
    return msg


def _key_of(e: BaseException) -> Optional[str]:
    """The dotted config key a yacs merge error is about, if its message names one."""
    m = re.search(r"config key:\s*(\S+)", str(e.args[0]) if e.args else str(e))
    return m.group(1) if m else None


def _base_chain(filename: str) -> List[Tuple[str, Dict[str, Any]]]:
    """(file, raw YAML dict) for `filename` and its `_BASE_` files, lowest precedence first."""
    with g_pathmgr.open(filename, "r") as f:
        raw = yaml.safe_load(f) or {}
    bases = raw.get(BASE_KEY, [])
    chain: List[Tuple[str, Dict[str, Any]]] = []
    for base in [bases] if isinstance(bases, str) else bases:
        base = os.path.expanduser(base)
        if not base.startswith(("/", "https://", "http://")):
            base = os.path.join(os.path.dirname(filename), base)  # relative to the including file, as fvcore does
        chain += _base_chain(base)
    return chain + [(filename, raw)]


def _file_setting(key: str, filename: str) -> str:
    """Which file of `filename`'s `_BASE_` chain sets `key` last (so is to blame); `filename` if unsure."""
    try:
        chain = _base_chain(filename)
    except Exception:  # only used to improve an error message; never hide the original error
        return filename
    for name, raw in reversed(chain):
        node: Any = raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return name
    return filename


def get_cfg() -> CfgNode:
    """Return a fresh copy of the default config (every key the project uses)."""
    from .defaults import _C

    return _C.clone()
