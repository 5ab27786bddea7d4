"""Configuration: `get_cfg()` returns the full default config as an fvcore CfgNode."""

from .config import CfgNode, ConfigError, get_cfg

__all__ = ["CfgNode", "ConfigError", "get_cfg"]
