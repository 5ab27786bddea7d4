"""`configurable`: a class built either from a config (`Cls(cfg, ...)`) or from explicit arguments (`Cls(a=..)`).

Detectron2's convention: `__init__` takes explicit keyword arguments and a `from_config(cls, cfg, ...)` classmethod
turns a config into them, so one class serves our config, a Detectron2 config and plain Python callers.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from fvcore.common.config import CfgNode as _FvCfgNode


def _is_config(x: Any) -> bool:
    """True for any fvcore CfgNode (ours and Detectron2's both derive from it)."""
    return isinstance(x, _FvCfgNode)


def configurable(init: Callable[..., None]) -> Callable[..., None]:
    """Decorate `__init__` so that `Cls(cfg, *args, **kwargs)` calls `Cls.from_config(cfg, *args, **kwargs)` first."""

    @functools.wraps(init)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        if (args and _is_config(args[0])) or _is_config(kwargs.get("cfg")):
            from_config = getattr(type(self), "from_config", None)
            if from_config is None:
                raise TypeError(f"{type(self).__name__} was given a config but has no from_config classmethod")
            explicit = from_config(*args, **kwargs)
            init(self, **explicit)
        else:
            init(self, *args, **kwargs)

    return wrapped
