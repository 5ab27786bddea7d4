"""Instances: per-image fields (boxes, masks, classes, scores) of equal length."""

from __future__ import annotations

import itertools
from typing import Any, Dict, List, Tuple, Union

import torch


class Instances:
    """A set of instances of one image: named fields that all have the same length.

    `image_size` is (height, width). Fields are set as attributes (`inst.gt_classes = t`).
    """

    def __init__(self, image_size: Tuple[int, int], **kwargs: Any) -> None:
        self._image_size = (int(image_size[0]), int(image_size[1]))
        self._fields: Dict[str, Any] = {}
        for k, v in kwargs.items():
            self.set(k, v)

    @property
    def image_size(self) -> Tuple[int, int]:
        """(height, width) of the image these instances belong to."""
        return self._image_size

    def __setattr__(self, name: str, val: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, val)
        else:
            self.set(name, val)

    def __getattr__(self, name: str) -> Any:
        if name == "_fields" or name not in self._fields:
            raise AttributeError(f"Cannot find field '{name}' in the given Instances!")
        return self._fields[name]

    def set(self, name: str, value: Any) -> None:
        """Set a field; its length must match the existing fields."""
        n = len(value)
        if len(self._fields):
            if len(self) != n:
                raise ValueError(f"Adding a field '{name}' of length {n} to Instances of length {len(self)}")
        self._fields[name] = value

    def has(self, name: str) -> bool:
        """Whether the field exists."""
        return name in self._fields

    def remove(self, name: str) -> None:
        """Delete a field."""
        del self._fields[name]

    def get(self, name: str) -> Any:
        """Return a field."""
        return self._fields[name]

    def get_fields(self) -> Dict[str, Any]:
        """All fields as a dict."""
        return self._fields

    def to(self, *args: Any, **kwargs: Any) -> "Instances":
        """Move every field that supports `.to` to a device/dtype."""
        ret = Instances(self._image_size)
        for k, v in self._fields.items():
            if hasattr(v, "to"):
                v = v.to(*args, **kwargs)
            ret.set(k, v)
        return ret

    def __getitem__(self, item: Union[int, slice, torch.Tensor]) -> "Instances":
        if type(item) is int:
            if item >= len(self) or item < -len(self):
                raise IndexError("Instances index out of range!")
            item = slice(item, None, len(self))
        ret = Instances(self._image_size)
        for k, v in self._fields.items():
            ret.set(k, v[item])
        return ret

    def __len__(self) -> int:
        for v in self._fields.values():
            return len(v)
        return 0

    def __iter__(self):
        raise NotImplementedError("`Instances` object is not iterable!")

    @staticmethod
    def cat(instance_lists: List["Instances"]) -> "Instances":
        """Concatenate Instances of the same image size."""
        assert len(instance_lists) > 0
        if len(instance_lists) == 1:
            return instance_lists[0]
        image_size = instance_lists[0].image_size
        ret = Instances(image_size)
        for k in instance_lists[0]._fields.keys():
            values = [i.get(k) for i in instance_lists]
            v0 = values[0]
            if isinstance(v0, torch.Tensor):
                values = torch.cat(values, dim=0)
            elif isinstance(v0, list):
                values = list(itertools.chain(*values))
            elif hasattr(type(v0), "cat"):
                values = type(v0).cat(values)
            else:
                raise ValueError(f"Unsupported type {type(v0)} for concatenation")
            ret.set(k, values)
        return ret

    def __repr__(self) -> str:
        s = f"Instances(num_instances={len(self)}, image_height={self._image_size[0]}, image_width={self._image_size[1]}, fields=["
        s += ", ".join(f"{k}: {v}" for k, v in self._fields.items())
        return s + "])"
