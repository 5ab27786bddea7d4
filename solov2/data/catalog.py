"""DatasetCatalog (name -> function returning list[dict]) and MetadataCatalog (name -> Metadata)."""

from __future__ import annotations

import logging
from collections import UserDict
from typing import Any, Callable, Dict, List

from ..utils.errors import UnknownDatasetError

logger = logging.getLogger(__name__)


class _DatasetCatalog(UserDict):
    """A global dict of dataset name -> zero-argument function returning the dataset's list of dicts."""

    def register(self, name: str, func: Callable[[], List[Dict[str, Any]]]) -> None:
        """Register `func` under `name`; a name can be registered once."""
        if not callable(func):
            raise TypeError(f"DatasetCatalog.register('{name}', ...) needs a callable returning list[dict]")
        if name in self:
            raise KeyError(f"Dataset '{name}' is already registered")
        self[name] = func

    def get(self, name: str) -> List[Dict[str, Any]]:  # type: ignore[override]
        """Call the registered function of `name` and return its dataset dicts."""
        try:
            f = self[name]
        except KeyError as e:
            raise UnknownDatasetError(
                f"Dataset '{name}' is not registered! Available datasets are: {', '.join(sorted(self.keys()))}. "
                "Register your own with --register-coco NAME JSON_FILE IMAGE_ROOT or DATASETS.COCO_INSTANCES."
            ) from e
        return f()

    def list(self) -> List[str]:
        """Registered names."""
        return list(self.keys())

    def remove(self, name: str) -> None:
        """Unregister a dataset."""
        self.pop(name)

    def __str__(self) -> str:
        return f"DatasetCatalog(registered datasets: {', '.join(self.keys())})"

    __repr__ = __str__


DatasetCatalog = _DatasetCatalog()


class Metadata:
    """Attribute-style metadata of a dataset (thing_classes, json_file, ...); attributes can be set once."""

    def __init__(self, name: str = "", **kwargs: Any) -> None:
        object.__setattr__(self, "name", name)
        for k, v in kwargs.items():
            setattr(self, k, v)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        raise AttributeError(
            f"Attribute '{key}' does not exist in the metadata of dataset '{self.name}'. "
            f"Available keys are {list(self.__dict__.keys())}."
        )

    def __setattr__(self, key: str, val: Any) -> None:
        try:
            old = object.__getattribute__(self, key)
        except AttributeError:
            object.__setattr__(self, key, val)
            return
        if old != val:
            raise ValueError(
                f"Attribute '{key}' of dataset '{self.name}' cannot be set to a different value!\n{old} != {val}"
            )

    def as_dict(self) -> Dict[str, Any]:
        """A shallow copy of the metadata."""
        return dict(self.__dict__)

    def set(self, **kwargs: Any) -> "Metadata":
        """Set several attributes; returns self."""
        for k, v in kwargs.items():
            setattr(self, k, v)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        """An attribute or `default`."""
        return self.__dict__.get(key, default)


class _MetadataCatalog(UserDict):
    """A global dict of dataset name -> Metadata (created on first access)."""

    def get(self, name: str) -> Metadata:  # type: ignore[override]
        """Metadata of `name` (a new, empty one if none exists yet)."""
        if not name:
            raise ValueError("MetadataCatalog.get needs a dataset name")
        if name not in self:
            self[name] = Metadata(name=name)
        return self[name]

    def list(self) -> List[str]:
        """Names with metadata."""
        return list(self.keys())

    def remove(self, name: str) -> None:
        """Drop the metadata of `name`."""
        self.pop(name)


MetadataCatalog = _MetadataCatalog()
