"""Checkpointer: atomic saves, and loading of our, published SOLOv2, MSRA pickle and torchvision weights."""

from __future__ import annotations

import logging
import os
import pickle
import uuid
from typing import Any, BinaryIO, Callable, Dict, List, Optional

import torch
from fvcore.common.checkpoint import Checkpointer as _FvCheckpointer
from fvcore.common.checkpoint import _IncompatibleKeys

from ..utils import comm
from ..utils.file_io import PathManager
from .converters import convert_c2_msra_resnet, convert_torchvision_resnet, is_c2_msra_resnet, is_torchvision_resnet

REMOTE_PREFIXES = ("detectron2://", "http://", "https://", "s3://", "gs://")


def _atomic_write(path: str, write: Callable[[BinaryIO], Any]) -> None:
    """Write via a temporary file in the same folder, fsync, then rename over `path`."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    # os.open with 0o666 honours the umask, so the final file gets ordinary permissions (mkstemp gives 0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class Checkpointer(_FvCheckpointer):
    """fvcore's Checkpointer with atomic saves (main process only) and weight-format conversion on load."""

    def __init__(self, model: torch.nn.Module, save_dir: str = "", *, save_to_disk: Optional[bool] = None,
                 **checkpointables: Any) -> None:
        is_main = comm.is_main_process()
        super().__init__(model, save_dir, save_to_disk=is_main if save_to_disk is None else save_to_disk,
                         **checkpointables)
        self.path_manager = PathManager
        self.logger = logging.getLogger(__name__)

    # ------------------------------------------------------------------ saving
    def save(self, name: str, **kwargs: Any) -> None:
        """Save model and checkpointables to <save_dir>/<name>.pth atomically, then tag it as last."""
        if not self.save_dir or not self.save_to_disk:
            return
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        _atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Point `last_checkpoint` at a saved file (written atomically, after the file itself)."""
        _atomic_write(os.path.join(self.save_dir, "last_checkpoint"), lambda f: f.write(last_filename_basename.encode()))

    # ------------------------------------------------------------------ loading
    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        """Load weights (and checkpointables) from a local file; remote paths get a clear error."""
        if path and path.startswith(REMOTE_PREFIXES) and not os.path.isfile(path):
            raise FileNotFoundError(
                f"MODEL.WEIGHTS '{path}' is a remote file and solov2 does not download weights; download it "
                f"yourself and pass the local file: MODEL.WEIGHTS /path/to/{os.path.basename(path)}"
            )
        if path and not os.path.isfile(path):
            raise FileNotFoundError(f"Checkpoint file '{path}' does not exist")
        return super().load(path, checkpointables)

    def _bottom_up_prefix(self) -> str:
        """Where the ResNet's `stem.conv1.weight` lives in this model (FPN model, bare backbone or ResNet)."""
        keys = self.model.state_dict().keys()
        for prefix in ("backbone.bottom_up.", "backbone.", ""):
            if f"{prefix}stem.conv1.weight" in keys:
                return prefix
        return "backbone.bottom_up."

    def _load_file(self, filename: str) -> Dict[str, Any]:
        """Read any supported format and return {"model": state_dict with our names, ...}."""
        if filename.endswith(".pkl"):
            with PathManager.open(filename, "rb") as f:
                try:
                    data = pickle.load(f, encoding="latin1")
                except Exception as e:
                    raise ValueError(f"Cannot read weight pickle '{filename}': {e}") from e
            return self._from_pickle(filename, data)
        with PathManager.open(filename, "rb") as f:
            try:
                data = torch.load(f, map_location=torch.device("cpu"), weights_only=False)
            except Exception as e:
                raise ValueError(f"Cannot read checkpoint '{filename}': {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"Checkpoint '{filename}' holds a {type(data).__name__}, not a dict")
        if "model" in data:
            if not isinstance(data["model"], dict):
                raise ValueError(f"Checkpoint '{filename}': 'model' holds a {type(data['model']).__name__}, "
                                 f"not a state dict")
            return data  # ours, or a published SOLOv2 checkpoint ({"model": state_dict})
        if "state_dict" in data and isinstance(data["state_dict"], dict):
            data = data["state_dict"]
        if is_torchvision_resnet(data):
            self.logger.info(f"Converting torchvision ResNet weights from {filename}")
            return {"model": convert_torchvision_resnet(data, self._bottom_up_prefix())}
        return {"model": data}

    def _from_pickle(self, filename: str, data: Any) -> Dict[str, Any]:
        """A .pkl's content -> {"model": state_dict}: MSRA Caffe2 blobs are renamed, our names kept."""
        if not isinstance(data, dict):
            raise ValueError(f"'{filename}' holds a {type(data).__name__}, not a dict of weights")
        if "blobs" in data:
            blobs = data["blobs"]
        elif "model" in data and isinstance(data["model"], dict):
            blobs = data["model"]
        else:
            blobs = data
        if not isinstance(blobs, dict):
            raise ValueError(f"'{filename}': expected a dict of arrays, got a {type(blobs).__name__}")
        if is_c2_msra_resnet(blobs):
            self.logger.info(
                f"Converting MSRA Caffe2 ResNet weights from {filename}; they expect BGR 0-255 input with "
                f"MODEL.PIXEL_STD [1, 1, 1] and MODEL.RESNETS.STRIDE_IN_1X1 True (the defaults)"
            )
            return {"model": convert_c2_msra_resnet(blobs, self._bottom_up_prefix())}
        # A Detectron2-style pickle already using our parameter names (numpy arrays become tensors in fvcore).
        self.logger.info(f"Reading weights with our parameter names from {filename}")
        return {"model": {k: v for k, v in blobs.items() if not k.startswith("__")}}

    def _log_incompatible_keys(self, incompatible: _IncompatibleKeys) -> None:
        """Log missing, unexpected and shape-mismatched keys as one table (mismatched ones were skipped)."""
        rows = [("shape mismatch (skipped)", k, f"checkpoint {tuple(a)} vs model {tuple(b)}")
                for k, a, b in incompatible.incorrect_shapes]
        rows += [("missing in checkpoint", k, "") for k in incompatible.missing_keys]
        rows += [("unexpected in checkpoint", k, "") for k in incompatible.unexpected_keys]
        if not rows:
            self.logger.info("All model parameters were loaded from the checkpoint")
            return
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        lines = [f"{'status':<{w0}}  {'key':<{w1}}  detail", "-" * (w0 + w1 + 10)]
        lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
        level = logging.WARNING if incompatible.incorrect_shapes or incompatible.missing_keys else logging.INFO
        self.logger.log(level, "Checkpoint does not match the model exactly:\n" + "\n".join(lines))
