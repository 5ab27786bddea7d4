"""`configurable`: a class or function called either with a config (`Cls(cfg, ...)`) or with explicit arguments.

Detectron2's convention: `__init__` takes explicit keyword arguments and a `from_config(cls, cfg, ...)` classmethod
turns a config into them, so one class serves our config, a Detectron2 config and plain Python callers. Called with a
config, the arguments `from_config` accepts go to it and every other keyword argument overrides (or adds to) what
it returns: `SOLOv2(cfg, sigma=0.3)` is the config's model with SIGMA 0.3.

Modules check only their own arguments (raising ArgumentError, which names the argument); a class built from a config
maps its arguments to config keys in a `config_keys` dict, so that the same check reports the key a user can change.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

from fvcore.common.config import CfgNode as _FvCfgNode

from ..utils.errors import ArgumentError, ConfigError

__all__ = ["configurable", "naming_config_keys"]


@contextlib.contextmanager
def naming_config_keys(keys: Mapping[str, str]) -> Iterator[None]:
    """Re-raise an ArgumentError about an argument in `keys` (argument -> config key) as a ConfigError naming the key."""
    try:
        yield
    except ArgumentError as e:
        if e.argument not in keys:
            raise
        raise ConfigError(f"{keys[e.argument]} {e.problem}") from e


def _is_config(x: Any) -> bool:
    """True for any fvcore CfgNode (ours and Detectron2's both derive from it)."""
    return isinstance(x, _FvCfgNode)


def _called_with_config(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bool:
    """Whether a call passes a config as its first positional argument or as `cfg=`."""
    return bool(args and _is_config(args[0])) or _is_config(kwargs.get("cfg"))


def _explicit_args(from_config: Callable[..., Dict[str, Any]], args: Tuple[Any, ...],
                   kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Call `from_config` with the arguments it takes; the other keyword arguments override its result."""
    params = inspect.signature(from_config).parameters
    if next(iter(params), None) != "cfg":
        raise TypeError(f"{from_config.__qualname__} must take the config as its first argument, named 'cfg'")
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return from_config(*args, **kwargs)
    taken = {k: v for k, v in kwargs.items() if k in params}
    extra = {k: v for k, v in kwargs.items() if k not in params}
    explicit = from_config(*args, **taken)
    explicit.update(extra)
    return explicit


def configurable(init: Optional[Callable[..., Any]] = None, *,
                 from_config: Optional[Callable[..., Dict[str, Any]]] = None) -> Any:
    """Decorate a class's `__init__` (its class has `from_config`), or a function with `from_config=` given.

    `@configurable` on `__init__`: `Cls(cfg, *args, **kwargs)` builds from `Cls.from_config`. On a function:
    `@configurable(from_config=f)` makes `fn(cfg, ...)` call `fn(**f(cfg, ...))`. A call without a config passes
    its arguments through unchanged.
    """
    if init is not None:
        if from_config is not None:
            raise TypeError("configurable on __init__ takes the class's own from_config classmethod, not from_config=")

        @functools.wraps(init)
        def wrapped_init(self: Any, *args: Any, **kwargs: Any) -> None:
            if not _called_with_config(args, kwargs):
                init(self, *args, **kwargs)
                return
            cls_from_config = getattr(type(self), "from_config", None)
            if cls_from_config is None:
                raise TypeError(f"{type(self).__name__} was given a config but has no from_config classmethod")
            if not inspect.ismethod(cls_from_config):
                raise TypeError(f"{type(self).__name__}.from_config must be a classmethod")
            with naming_config_keys(getattr(type(self), "config_keys", {})):
                init(self, **_explicit_args(cls_from_config, args, kwargs))

        return wrapped_init

    if from_config is None:
        raise TypeError("configurable on a function needs from_config=, e.g. @configurable(from_config=my_from_config)")
    if not callable(from_config):
        raise TypeError("from_config must be a function")

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if _called_with_config(args, kwargs):
                return fn(**_explicit_args(from_config, args, kwargs))
            return fn(*args, **kwargs)

        wrapped.from_config = from_config  # type: ignore[attr-defined]
        return wrapped

    return decorator
