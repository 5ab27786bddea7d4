"""Checkpointer: atomic saves, and loading of every weight format solov2 reads (see formats.py)."""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Dict, List, Optional

import torch
from fvcore.common.checkpoint import Checkpointer as _FvCheckpointer
from fvcore.common.checkpoint import _IncompatibleKeys

from ..utils import comm
from ..utils.errors import CheckpointError, CheckpointNotFoundError, CheckpointSaveError
from ..utils.file_io import PathManager, atomic_write, remove_stale_temporary_files
from ..utils.run_state import add_safe_note
from ..utils.run_state import os_error_reason as _os_error_reason
from .formats import MMDET3, MSRA, SOLO, convert_weights, read_weights_file
from .weight_checks import check_finite, check_weights_fit, refuse_resume_message

MMDET_PIXEL_MEAN = [123.675, 116.28, 103.53]  # RGB, as mmdetection's and torchvision's ImageNet weights expect
MMDET_PIXEL_STD = [58.395, 57.12, 57.375]

# What a format's weights expect of the config, said once when they are read.
_FORMAT_NOTES = {
    MSRA: "; they expect BGR 0-255 input with MODEL.PIXEL_STD [1, 1, 1] and MODEL.RESNETS.STRIDE_IN_1X1 True "
          "(the defaults)",
    MMDET3: ", converted to solov2's names",
    SOLO: ", converted to solov2's names",
}

REMOTE_PREFIXES = ("detectron2://", "http://", "https://", "s3://", "gs://")


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


def last_checkpoint_note(save_dir: str) -> str:
    """What an interrupt or a full disk leaves intact in `save_dir`: the checkpoint last_checkpoint names."""
    try:
        with open(os.path.join(save_dir, "last_checkpoint")) as f:
            last = os.path.join(save_dir, f.read().strip())
    except OSError:
        last = ""
    if last and os.path.isfile(last):
        return f"The last checkpoint '{last}' is intact (--resume continues from it)"
    return f"No checkpoint was saved in '{save_dir}' yet"


class Checkpointer(_FvCheckpointer):
    """fvcore's Checkpointer with atomic saves (main process only) and weight-format conversion on load."""

    def __init__(self, model: torch.nn.Module, save_dir: str = "", *, save_to_disk: Optional[bool] = None,
                 weights_check: Optional[str] = None, run_info: Optional[Dict[str, Any]] = None,
                 **checkpointables: Any) -> None:
        """weights_check: None (only log what did not load), "train" or "eval" (see check_weights_fit); `run_info`
        is written into every saved file (e.g. embedded.describe(config, class names))."""
        is_main = comm.is_main_process()
        self.weights_check = weights_check
        super().__init__(model, save_dir, save_to_disk=is_main if save_to_disk is None else save_to_disk,
                         **checkpointables)
        self.path_manager = PathManager
        self.logger = logging.getLogger(__name__)
        self.run_info: Dict[str, Any] = dict(run_info or {})
        if self.save_to_disk and self.save_dir:
            if checkpointables:  # a training run's checkpointer: say what an interrupt leaves intact
                add_safe_note("checkpoint", functools.partial(last_checkpoint_note, self.save_dir))
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
            atomic_write(save_file, lambda f: torch.save(data, f))
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
        atomic_write(os.path.join(self.save_dir, "last_checkpoint"), lambda f: f.write(last_filename_basename.encode()))

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
        check_finite(checkpoint.get("model"), path)
        ckpt_keys = list(checkpoint["model"]) if isinstance(checkpoint.get("model"), dict) else []
        incompatible = self._load_model(checkpoint)  # takes "model" out of the checkpoint
        self._log_incompatible_keys(incompatible)
        names = list(self.checkpointables) if checkpointables is None else list(checkpointables)
        resuming = any(isinstance(self.checkpointables.get(k), torch.optim.Optimizer) and k in checkpoint for k in names)
        if resuming and incompatible.incorrect_shapes:
            raise CheckpointError(refuse_resume_message(path, incompatible.incorrect_shapes))
        if self.weights_check and not resuming:
            check_weights_fit(incompatible, ckpt_keys, self.model, path, self.weights_check)
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
        """Load the model's weights; a checkpoint sharing no parameter with the model is refused before any of the
        model's tensors changes (loading itself rewrites some buffers, e.g. FrozenBN's running_var)."""
        model_state = self.model.state_dict()
        state = checkpoint.get("model", {}) if isinstance(checkpoint.get("model"), dict) else {}
        ckpt_keys = set(state)
        if ckpt_keys and all(k.startswith("module.") for k in ckpt_keys):  # saved from a DDP model; fvcore strips it
            state = {k[len("module."):]: v for k, v in state.items()}
        # BN's num_batches_tracked counters match in any two ResNets: they say nothing about the weights.
        fitting = [k for k, v in state.items() if k in model_state and not k.endswith("num_batches_tracked")
                   and tuple(getattr(v, "shape", ())) == tuple(model_state[k].shape)]
        if state and model_state and not fitting:
            raise CheckpointError(
                f"None of the {len(state)} parameters in the checkpoint fits this model (checkpoint keys look "
                f"like '{sorted(state)[0]}', the model's like '{sorted(model_state)[0]}'): is it a checkpoint of "
                "another kind of model?"
            )
        return super()._load_model(checkpoint)

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

    def _load_file(self, filename: str) -> Dict[str, Any]:
        """Read any supported format and return {"model": state_dict with our names, ...}, logging the format."""
        state, fmt, extra = convert_weights(read_weights_file(filename), self.model.state_dict().keys(), filename)
        self.logger.info(f"Weights in '{filename}' are in the {fmt} format{_FORMAT_NOTES.get(fmt, '')}")
        if fmt in (MMDET3, SOLO):
            self._warn_if_not_mmdet_input(filename)
        return {**extra, "model": state}

    def _warn_if_not_mmdet_input(self, filename: str) -> None:
        """mmdetection's ResNets stride in the 3x3 conv and take RGB input normalised by ImageNet statistics."""
        std = getattr(self.model, "pixel_std", None)
        bad_std = isinstance(std, torch.Tensor) and not torch.allclose(
            std.flatten().cpu(), torch.tensor(MMDET_PIXEL_STD, dtype=std.dtype), atol=1e-3)
        stride_in_1x1 = any(getattr(getattr(m, "conv1", None), "stride", (1,))[0] > 1 and hasattr(m, "conv3")
                            for m in self.model.modules())
        if bad_std or stride_in_1x1:
            self.logger.warning(
                f"'{filename}' holds mmdetection weights, which need MODEL.RESNETS.STRIDE_IN_1X1 False, INPUT.FORMAT "
                f"RGB, MODEL.PIXEL_MEAN {MMDET_PIXEL_MEAN} and MODEL.PIXEL_STD {MMDET_PIXEL_STD}: this model differs, "
                "so its answers will be wrong. Use a config of configs/SOLOv2/mmdet/."
            )

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
        counts = (f"{len(incompatible.missing_keys)} missing, {len(incompatible.unexpected_keys)} unexpected, "
                  f"{len(incompatible.incorrect_shapes)} of another shape")
        self.logger.warning(f"Checkpoint does not match the model exactly ({counts}):\n" + "\n".join(lines))
