"""Read weight files without executing code: `.pth` via torch's weights-only unpickler, `.pkl` via a restricted one.

A pickle can name any Python callable and have it called while loading, so a shared checkpoint could run code on
the machine that loads it. Here only tensors, plain containers (dict, list, tuple, str, numbers) and numpy
arrays/dtypes/scalars are built. Bookkeeping objects that mmengine/mmcv/mmdet checkpoints carry beside the weights
(message hubs, history buffers, config dicts) become inert placeholders that keep their pickled data and run none of
those libraries' code. Anything else is refused with a CheckpointError saying which Python object the file asks for.
"""

from __future__ import annotations

import codecs
import collections
import pickle
from typing import Any, BinaryIO, List, Tuple

import numpy as np
import torch

from ..utils.errors import CheckpointError

__all__ = ["InertObject", "load_torch_file", "load_pickle_file", "UnsafeCheckpointError"]

# numpy 2 moved numpy.core to numpy._core; pickles written under either spell their own.
_multiarray = (getattr(np, "_core", None) or np.core).multiarray
# Names (module.qualname, as a pickle spells them) of the numpy functions and types that rebuild arrays, dtypes and
# scalars from their bytes.
_NUMPY_SAFE = {
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": np.dtype,
    "numpy.core.multiarray._reconstruct": _multiarray._reconstruct,
    "numpy._core.multiarray._reconstruct": _multiarray._reconstruct,
    "numpy.core.multiarray.scalar": _multiarray.scalar,
    "numpy._core.multiarray.scalar": _multiarray.scalar,
}
# numpy >= 1.25 pickles a dtype as an instance of its class, e.g. numpy.dtypes.Float32DType.
_dtypes = getattr(np, "dtypes", None)
_NUMPY_SAFE.update({f"numpy.dtypes.{name}": getattr(_dtypes, name) for name in dir(_dtypes)
                    if name.endswith("DType") and isinstance(getattr(_dtypes, name), type)})
# Python 2 pickles (the MSRA .pkl files) encode arrays' bytes as latin-1 text through _codecs.encode.
# codecs only transform data (torch's weights-only unpickler allows _codecs.encode too).
_PKL_SAFE = dict(_NUMPY_SAFE, **{"_codecs.encode": codecs.encode, "collections.OrderedDict": collections.OrderedDict})

# Packages whose checkpoints hold training bookkeeping objects next to the weights; those load as InertObject.
_INERT_PREFIXES = ("mmengine.", "mmcv.", "mmdet.")


class UnsafeCheckpointError(CheckpointError):
    """A weight file that needs Python objects built (so code run) to be loaded."""


class InertObject(dict):
    """Stands in for a bookkeeping object of another library: keeps its pickled arguments and state, runs nothing.

    A dict, so the items of a pickled dict subclass (mmengine's ConfigDict) stay readable.
    """

    _pickled_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.args = args
        self.kwargs = kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self._pickled_name}>"


def _inert_class(name: str) -> type:
    """A fresh InertObject subclass standing in for `name`."""
    return type(name.rsplit(".", 1)[-1], (InertObject,), {"_pickled_name": name, "__module__": __name__})


def _refusal(path: str, names: List[str]) -> UnsafeCheckpointError:
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return UnsafeCheckpointError(
        f"Refusing to load '{path}': it asks for the Python object(s) {shown}, and building them while loading "
        "could run arbitrary code. Weight files may hold only tensors, numpy arrays and plain containers; if you "
        "trust the file, re-save its state dict (torch.save({'model': state_dict}, 'clean.pth')) and load that"
    )


def _inert_getattr(obj: Any, name: str) -> Any:
    """getattr as mmengine's pickles use it (a method of their own class): only on an inert stand-in."""
    if not (isinstance(obj, InertObject) or (isinstance(obj, type) and issubclass(obj, InertObject))):
        raise pickle.UnpicklingError(f"global builtins.getattr applied to a {type(obj).__name__}")
    return _inert_class(f"{obj._pickled_name}.{name}")


def _allowed_globals(names: List[str]) -> Tuple[List[Tuple[Any, str]], List[str]]:
    """(safe globals to register for `names`, names that cannot be allowed)."""
    allowed: List[Tuple[Any, str]] = []
    refused: List[str] = []
    for name in names:
        if name == "builtins.getattr" and any(n.startswith(_INERT_PREFIXES) for n in names):
            allowed.append((_inert_getattr, name))  # only ever reaches the inert stand-ins (see _inert_getattr)
        elif name in _NUMPY_SAFE:
            allowed.append((_NUMPY_SAFE[name], name))
        elif name.startswith(_INERT_PREFIXES):
            allowed.append((_inert_class(name), name))
        else:
            refused.append(name)
    return allowed, refused


def load_torch_file(path: str) -> Any:
    """torch.load(path) with weights_only=True, numpy arrays and inert mm* bookkeeping; other objects refused."""
    try:
        return _torch_load(path, [(v, k) for k, v in _NUMPY_SAFE.items()])
    except pickle.UnpicklingError as e:
        first_error = e
    try:
        needed = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # a legacy (non-zip) file, which torch cannot list: report what the unpickler said
        raise _refusal(path, [_global_in_message(str(first_error))]) from first_error
    allowed, refused = _allowed_globals(needed)
    if refused or not needed:
        raise _refusal(path, refused or [_global_in_message(str(first_error))]) from first_error
    try:
        return _torch_load(path, allowed + [(v, k) for k, v in _NUMPY_SAFE.items()])
    except pickle.UnpicklingError as e:  # e.g. an inert stand-in used in a way only the real class supports
        raise _refusal(path, [_global_in_message(str(e))]) from e


def _torch_load(path: str, safe: List[Tuple[Any, str]]) -> Any:
    with torch.serialization.safe_globals(safe):
        return torch.load(path, map_location=torch.device("cpu"), weights_only=True)


def _global_in_message(message: str) -> str:
    """The global a weights-only UnpicklingError names ("Unsupported global: GLOBAL os.system ..."), else a summary."""
    for marker in ("GLOBAL ", "global "):
        if marker in message:
            return message.split(marker, 1)[1].split()[0].rstrip(".,:")
    return " ".join(message.split())[:200]


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only plain containers and numpy arrays/dtypes/scalars (what MSRA/Detectron2 .pkl weights hold)."""

    def find_class(self, module: str, name: str) -> Any:
        """Look up only allowed globals; anything else raises UnpicklingError naming it."""
        full = f"{module}.{name}"
        if full in _PKL_SAFE:
            return _PKL_SAFE[full]
        raise pickle.UnpicklingError(f"global {full} is not allowed")


def load_pickle_file(f: BinaryIO, path: str) -> Any:
    """Unpickle a .pkl weight file (latin1 for Python 2 pickles) allowing only data; others refused by name."""
    try:
        return _RestrictedUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("global "):
            raise _refusal(path, [str(e).split()[1]]) from e
        raise
