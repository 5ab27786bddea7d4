"""Checkpointer: atomic saves, and loading of our, published SOLOv2, MSRA pickle and torchvision weights."""

from __future__ import annotations

import errno
import logging
import os
import pickle
import re
import uuid
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional

import torch
from fvcore.common.checkpoint import Checkpointer as _FvCheckpointer
from fvcore.common.checkpoint import _IncompatibleKeys

from ..utils import comm
from ..utils.errors import CheckpointError, CheckpointNotFoundError, CheckpointSaveError
from ..utils.file_io import PathManager
from .converters import convert_c2_msra_resnet, convert_torchvision_resnet, is_c2_msra_resnet, is_torchvision_resnet

REMOTE_PREFIXES = ("detectron2://", "http://", "https://", "s3://", "gs://")

# The temporary file of an atomic write: .<final name>.<pid of the writer>.<random>.tmp
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")

_ERRNO_REASONS = {
    errno.ENOSPC: "no space left on device (the disk is full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the folder is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "an input/output error (a failing disk or network file system?)",
}


def _tmp_name(path: str) -> str:
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _atomic_write(path: str, write: Callable[[BinaryIO], Any]) -> None:
    """Write via a temporary file in the same folder, fsync, then rename over `path`."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = _tmp_name(os.path.join(d, os.path.basename(path)))
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


def _exception_chain(e: BaseException) -> Iterator[BaseException]:
    """e, then its causes and contexts (torch.save wraps the OSError of a failed write in a RuntimeError)."""
    seen = set()
    x: Optional[BaseException] = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        yield x
        x = x.__cause__ or x.__context__


def _os_error_reason(e: BaseException) -> Optional[str]:
    """A readable reason when `e` comes from the file system (disk full, read-only, ...), else None."""
    for x in _exception_chain(e):
        if isinstance(x, OSError) and x.errno:
            return _ERRNO_REASONS.get(x.errno, x.strerror or str(x))
    return None


def _check_optimizer_state(optimizer: torch.optim.Optimizer, path: str) -> None:
    """After loading: refuse state written by another kind of optimizer, which torch loads but fails on at step()."""
    # load_state_dict fills the hyper-parameters newer torch versions added; what is still missing is not ours.
    missing = sorted({k for g in optimizer.param_groups for k in optimizer.defaults if k not in g})
    if missing:
        # Gradient clipping subclasses the optimizer (e.g. SGDWithGradientClip): name the torch class users chose.
        name = next((c.__name__ for c in type(optimizer).__mro__ if c.__module__.startswith("torch.optim")),
                    type(optimizer).__name__)
        raise CheckpointError(
            f"The optimizer state in '{path}' was written by another optimizer than this run's "
            f"{name} (it has no {', '.join(missing)}): resume with the SOLVER.OPTIMIZER it was "
            "trained with, or start without --resume and load its weights with MODEL.WEIGHTS"
        )


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporary_files(folder: str) -> List[str]:
    """Delete what killed atomic writes left in `folder` (temporary files of processes that no longer exist)."""
    removed: List[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TMP_RE.match(name)
        if not m:
            continue
        pid = int(m.group("pid"))
        if pid != os.getpid() and _pid_alive(pid):
            continue  # another live process is writing it right now
        try:
            os.remove(os.path.join(folder, name))
            removed.append(name)
        except OSError:
            pass
    return removed


class Checkpointer(_FvCheckpointer):
    """fvcore's Checkpointer with atomic saves (main process only) and weight-format conversion on load."""

    def __init__(self, model: torch.nn.Module, save_dir: str = "", *, save_to_disk: Optional[bool] = None,
                 run_info: Optional[Dict[str, Any]] = None, **checkpointables: Any) -> None:
        """`run_info` is written into every saved file (e.g. embedded.describe(config, class names))."""
        is_main = comm.is_main_process()
        super().__init__(model, save_dir, save_to_disk=is_main if save_to_disk is None else save_to_disk,
                         **checkpointables)
        self.path_manager = PathManager
        self.logger = logging.getLogger(__name__)
        self.run_info: Dict[str, Any] = dict(run_info or {})
        if self.save_to_disk and self.save_dir:
            removed = remove_stale_temporary_files(self.save_dir)
            if removed:
                self.logger.warning(
                    f"Removed {len(removed)} temporary file(s) left in {self.save_dir} by a checkpoint save that was "
                    f"interrupted (the checkpoints themselves are intact): {', '.join(removed)}"
                )

    # ------------------------------------------------------------------ saving
    def save(self, name: str, **kwargs: Any) -> None:
        """Save model and checkpointables to <save_dir>/<name>.pth atomically, then tag it as last."""
        if not self.save_dir or not self.save_to_disk:
            return
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(self.run_info)
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        previous = self.get_checkpoint_file() if self.has_checkpoint() else ""
        try:
            _atomic_write(save_file, lambda f: torch.save(data, f))
            self.tag_last_checkpoint(basename)
        except Exception as e:
            reason = _os_error_reason(e)
            if reason is None:
                raise  # not the file system's doing: a bug, keep the traceback
            if previous and os.path.isfile(previous):
                kept = (f"The previous checkpoint '{previous}' is intact and last_checkpoint still points to it, so "
                        "--resume continues from there once the problem is fixed.")
            else:
                kept = f"No earlier checkpoint was written to '{self.save_dir}'."
            raise CheckpointSaveError(f"Could not save checkpoint '{save_file}': {reason}. {kept}") from e

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Point `last_checkpoint` at a saved file (written atomically, after the file itself)."""
        _atomic_write(os.path.join(self.save_dir, "last_checkpoint"), lambda f: f.write(last_filename_basename.encode()))

    # ------------------------------------------------------------------ loading
    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        """Load weights (and checkpointables) from a local file; remote paths get a clear error."""
        if not path:
            return super().load(path, checkpointables)  # logs that the model starts from scratch
        return self._apply(self._read(path), path, checkpointables)

    def _read(self, path: str) -> Dict[str, Any]:
        """The content of a local weights file; a missing, remote or unreadable one raises a CheckpointError."""
        if path.startswith(REMOTE_PREFIXES) and not os.path.isfile(path):
            raise CheckpointNotFoundError(
                f"MODEL.WEIGHTS '{path}' is a remote file and solov2 does not download weights; download it "
                f"yourself and pass the local file: MODEL.WEIGHTS /path/to/{os.path.basename(path)}"
            )
        if not os.path.isfile(path):
            raise CheckpointNotFoundError(f"Checkpoint file '{path}' does not exist")
        self.logger.info(f"[Checkpointer] Loading from {path} ...")
        return self._load_file(path)

    def _apply(self, checkpoint: Dict[str, Any], path: str, checkpointables: Optional[List[str]]) -> Dict[str, Any]:
        """Put a read checkpoint into the model and the checkpointables; returns what is left (e.g. iteration)."""
        self._log_incompatible_keys(self._load_model(checkpoint))
        names = list(self.checkpointables) if checkpointables is None else list(checkpointables)
        self._load_checkpointables(checkpoint, names, path)
        return checkpoint

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """Resume from last_checkpoint in save_dir when asked and present, else load `path` (weights only)."""
        if resume and self.has_checkpoint():
            last = self.get_checkpoint_file()
            try:
                checkpoint = self._read(last)
            except CheckpointError as e:
                raise type(e)(
                    f"{e}. It is the checkpoint '{os.path.join(self.save_dir, 'last_checkpoint')}' names: point that "
                    "file at an earlier model_*.pth to resume from there, or start without --resume."
                ) from e
            return self._apply(checkpoint, last, None)
        return self.load(path, checkpointables=[])

    def _load_model(self, checkpoint: Any) -> _IncompatibleKeys:
        """Load the model's weights; a checkpoint sharing no parameter with the model is refused, not ignored."""
        model_keys = set(self.model.state_dict().keys())
        ckpt_keys = set(checkpoint.get("model", {}).keys()) if isinstance(checkpoint.get("model"), dict) else set()
        if ckpt_keys and all(k.startswith("module.") for k in ckpt_keys):  # saved from a DDP model; fvcore strips it
            ckpt_keys = {k[len("module."):] for k in ckpt_keys}
        incompatible = super()._load_model(checkpoint)
        # BN's num_batches_tracked counters match in any two ResNets: they say nothing about the weights.
        loaded = {k for k in ckpt_keys & model_keys if not k.endswith("num_batches_tracked")}
        loaded -= {k for k, _, _ in incompatible.incorrect_shapes}
        if ckpt_keys and model_keys and not loaded:
            raise CheckpointError(
                f"None of the {len(ckpt_keys)} parameters in the checkpoint fits this model (checkpoint keys look "
                f"like '{sorted(ckpt_keys)[0]}', the model's like '{sorted(model_keys)[0]}'): is it a checkpoint of "
                "another kind of model?"
            )
        return incompatible

    def _load_checkpointables(self, checkpoint: Dict[str, Any], names: List[str], path: str) -> None:
        """Restore optimizer/scheduler/... state; one that does not fit this run's config names the culprit."""
        for key in names:
            if key in checkpoint:
                self.logger.info(f"Loading {key} from {path} ...")
                obj = self.checkpointables[key]
                try:
                    obj.load_state_dict(checkpoint.pop(key))
                except (ValueError, KeyError, RuntimeError, TypeError) as e:
                    raise CheckpointError(
                        f"The {key} state in '{path}' does not fit this run ({e}); was it written with another "
                        "config (optimizer, schedule, model)? Start without --resume, or use the matching config."
                    ) from e
                if isinstance(obj, torch.optim.Optimizer):
                    _check_optimizer_state(obj, path)

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
                    raise CheckpointError(f"Cannot read weight pickle '{filename}': {e}") from e
            return self._from_pickle(filename, data)
        with PathManager.open(filename, "rb") as f:
            try:
                data = torch.load(f, map_location=torch.device("cpu"), weights_only=False)
            except Exception as e:  # torch's own messages ("invalid load key", "central directory") say little
                raise CheckpointError(
                    f"Cannot read checkpoint '{filename}' (the file is truncated or not a PyTorch checkpoint): {e}"
                ) from e
        if not isinstance(data, dict):
            raise CheckpointError(f"Checkpoint '{filename}' holds a {type(data).__name__}, not a dict")
        if "model" in data:
            if not isinstance(data["model"], dict):
                raise CheckpointError(f"Checkpoint '{filename}': 'model' holds a {type(data['model']).__name__}, "
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
            raise CheckpointError(f"'{filename}' holds a {type(data).__name__}, not a dict of weights")
        if "blobs" in data:
            blobs = data["blobs"]
        elif "model" in data and isinstance(data["model"], dict):
            blobs = data["model"]
        else:
            blobs = data
        if not isinstance(blobs, dict):
            raise CheckpointError(f"'{filename}': expected a dict of arrays, got a {type(blobs).__name__}")
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
