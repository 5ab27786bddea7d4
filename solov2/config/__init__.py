"""Configuration: `get_cfg()` returns the full default config as an fvcore CfgNode."""

from .config import CfgNode, ConfigError, get_cfg
from .configurable import configurable
from .key_policy import check_unsupported_keys

__all__ = ["CfgNode", "ConfigError", "check_unsupported_keys", "configurable", "get_cfg"]
