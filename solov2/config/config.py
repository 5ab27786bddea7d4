"""CfgNode with `_BASE_` inheritance and error messages that name the offending key and file."""

from __future__ import annotations

import difflib
import logging
import os
import re
from typing import Any, Dict, List, Optional, Tuple

import yaml
from fvcore.common.config import BASE_KEY
from fvcore.common.config import CfgNode as _FvCfgNode
from iopath.common.file_io import g_pathmgr

from ..utils.errors import ConfigError

__all__ = ["CfgNode", "ConfigError", "get_cfg", "all_keys"]

logger = logging.getLogger(__name__)


class CfgNode(_FvCfgNode):
    """fvcore's CfgNode whose merge errors say which key and which file are wrong."""

    # The files whose `_BASE_` chain is being read, outermost first (to name a cycle).
    _loading: List[str] = []

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> Dict[str, Any]:
        """Read a YAML config and its `_BASE_` files with the safe loader: a Python tag or a cycle is a ConfigError.

        `allow_unsafe` is accepted for fvcore's signature and ignored: a config file never runs code.
        """
        key = os.path.realpath(filename) if isinstance(filename, str) else str(filename)
        if key in cls._loading:
            chain = cls._loading[cls._loading.index(key):] + [key]
            raise ConfigError("_BASE_ cycle: " + " -> ".join(f"'{f}'" for f in chain)
                              + "; a config cannot inherit from itself")
        cls._loading.append(key)
        try:
            return super().load_yaml_with_base(filename, allow_unsafe=False)
        except yaml.constructor.ConstructorError as e:
            mark = e.problem_mark
            where = f"line {mark.line + 1}" if mark is not None else "somewhere"
            if len(cls._loading) > 1:
                where += f" (a _BASE_ of '{cls._loading[0]}')"
            tag = str(e.problem).split("tag", 1)[-1].strip(" '") if e.problem else "?"
            raise ConfigError(
                f"Config file '{filename}' {where}: the Python tag '{tag}' is refused (a YAML tag that builds Python "
                "objects could run code); write the value as plain YAML"
            ) from None
        finally:
            cls._loading.pop()

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge a YAML file (following `_BASE_` chains) into this config; Python tags are refused, never run."""
        if not g_pathmgr.exists(cfg_filename):
            raise ConfigError(f"Config file '{cfg_filename}' does not exist.")
        try:
            loaded = self.load_yaml_with_base(cfg_filename)
        except ConfigError:
            raise
        except Exception as e:  # yaml syntax errors, missing _BASE_ files
            # yaml's messages span several lines; one line keeps the error the last thing printed.
            raise ConfigError(f"Cannot read config file '{cfg_filename}': {' '.join(str(e).split())}") from e
        loaded = type(self)(loaded)
        try:
            self.merge_from_other_cfg(loaded)
        except (KeyError, ValueError, AssertionError) as e:
            key = _key_of(e)
            culprit = _file_setting(key, cfg_filename) if key else cfg_filename
            where = f"'{culprit}'" if culprit == cfg_filename else f"'{culprit}', a _BASE_ of '{cfg_filename}'"
            raise ConfigError(f"{_describe(e, self)} (in config file {where})") from e

    def merge_from_list(self, cfg_list: List[Any]) -> None:
        """Merge KEY VALUE pairs, e.g. ["SOLVER.BASE_LR", "0.02"]."""
        flags = [str(x) for x in cfg_list[0::2] if str(x).startswith("--")]
        if flags:
            raise ConfigError(
                f"'{flags[0]}' appears among the KEY VALUE config overrides {list(cfg_list)}: it looks like a "
                "command-line option; put options before the KEY VALUE overrides"
            )
        if len(cfg_list) % 2 != 0:
            raise ConfigError(
                f"Config overrides must be KEY VALUE pairs; got an odd number of items: {cfg_list}"
            )
        for key, value in zip(cfg_list[0::2], cfg_list[1::2]):
            try:
                super().merge_from_list([key, value])
            except (KeyError, ValueError, AssertionError) as e:
                raise ConfigError(f"{_describe(e, self)} (in command-line override '{key} {value}')") from e


def all_keys(node: Any, prefix: str = "") -> List[str]:
    """Every dotted leaf key of a config, e.g. ['MODEL.DEVICE', ..., 'VERSION']."""
    keys: List[str] = []
    for k, v in node.items():
        if isinstance(v, _FvCfgNode):
            keys += all_keys(v, f"{prefix}{k}.")
        else:
            keys.append(f"{prefix}{k}")
    return keys


def suggest_keys(key: str, cfg: Any) -> List[str]:
    """Existing keys a mistyped `key` probably meant: the closest spellings, else keys with the same last part."""
    known = all_keys(cfg)
    key = key.upper()
    scored = sorted(((difflib.SequenceMatcher(None, key, k).ratio(), k) for k in known), reverse=True)
    # Only the best few: a list of loosely similar keys hides the one that was meant.
    close = [k for r, k in scored[:3] if r >= 0.7 and r >= scored[0][0] - 0.03]
    if close:
        return close
    leaf = key.rsplit(".", 1)[-1]
    if leaf in _DETECTRON2_EQUIVALENTS:
        return [_DETECTRON2_EQUIVALENTS[leaf]]
    same_leaf = [k for k in known if k.rsplit(".", 1)[-1] == leaf]
    return same_leaf if len(same_leaf) == 1 else []  # "did you mean" one of many ENABLED keys would not help


# Detectron2 keys of other meta-architectures whose SOLOv2 counterpart has another name.
_DETECTRON2_EQUIVALENTS = {
    "SCORE_THRESH_TEST": "MODEL.SOLOV2.SCORE_THR",
    "NMS_THRESH_TEST": "MODEL.SOLOV2.NMS_TYPE",
    "TOPK_CANDIDATES_TEST": "MODEL.SOLOV2.NMS_PRE",
}


def _describe(e: BaseException, cfg: Any) -> str:
    """Turn yacs' terse KeyError/ValueError text into one readable sentence (with a 'did you mean')."""
    msg = str(e.args[0] if e.args else e)
    if msg.startswith(("Non-existent config key:", "Non-existent key:")):
        key = msg.split(":", 1)[1].strip()
        text = f"Unknown config key '{key}'"
        if key.startswith("-"):
            return text + ": it looks like a command-line option; put options before the KEY VALUE overrides"
        suggestions = suggest_keys(key, cfg)
        if suggestions:
            text += "; did you mean " + " or ".join(f"'{s}'" for s in suggestions) + "?"
        return text
    m = re.match(r"Type mismatch \((.*?) vs\. (.*?)\) with values \((.*) vs\. (.*)\) for config key: (\S+)", msg,
                 re.S)
    if m:
        want, got, default, value, key = m.groups()
        want, got = _type_name(want), _type_name(got)
        hint = ""
        if want in ("tuple", "list"):
            hint = "; write it as e.g. " + ("'(1, 2)' or '(1,)'" if want == "tuple" else "'[1, 2]'")
        return f"Config key '{key}' must be of type {want} like its default {default}; got {value} (type {got}){hint}"
    return msg


def _type_name(text: str) -> str:
    """"<class 'int'>" -> "int"."""
    m = re.match(r"<class '(.*)'>", text.strip())
    return m.group(1) if m else text


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
