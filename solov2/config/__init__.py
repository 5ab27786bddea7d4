"""Configuration: `get_cfg()` returns the full default config as an fvcore CfgNode."""

from .config import CfgNode, ConfigError, get_cfg
from .configurable import configurable

__all__ = ["CfgNode", "ConfigError", "configurable", "get_cfg"]
