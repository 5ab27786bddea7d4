"""Convert a weight file of any supported format to ours (`{"model": state_dict}`), e.g. to skip the conversion at
every load or to hand the file to Detectron2's DetectionCheckpointer."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Collection, Dict, List, Optional, Tuple

import torch

from ..utils.errors import CheckpointError
from ..utils.file_io import atomic_write
from .formats import convert_weights, read_weights_file

logger = logging.getLogger(__name__)


def convert_checkpoint(src: str, dst: str, model: Optional[torch.nn.Module] = None) -> Tuple[str, int]:
    """Read `src` (any supported format), write it to `dst` in our format (atomically); returns (the source's
    format, the number of tensors written).

    With `model`, its parameter names place the ResNet and FPN, and the weights must fit it exactly (every model
    tensor present with its shape, nothing left over), or nothing is written.
    """
    if not os.path.isfile(src):
        raise CheckpointError(f"Checkpoint file '{src}' does not exist")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise CheckpointError(f"The output '{dst}' is the input: write the converted file elsewhere")
    model_keys: Collection[str] = model.state_dict().keys() if model is not None else ()
    state, fmt, _extra = convert_weights(read_weights_file(src), model_keys, src)
    if model is not None:
        _check_exact_fit(state, model.state_dict(), src)
    tensors: Dict[str, Any] = {k: torch.as_tensor(v) for k, v in state.items()}
    atomic_write(dst, lambda f: torch.save({"model": tensors}, f))
    return fmt, len(tensors)


def _check_exact_fit(state: Dict[str, Any], model_state: Dict[str, torch.Tensor], src: str) -> None:
    """Refuse weights that leave a model tensor unset, carry extra tensors, or differ in a shape."""
    ignored = ("num_batches_tracked",)
    missing = [k for k in model_state if k not in state and not k.endswith(ignored)]
    extra = [k for k in state if k not in model_state and not k.endswith(ignored)]
    shapes = [k for k in state if k in model_state and tuple(torch.as_tensor(state[k]).shape) != tuple(model_state[k].shape)]
    if missing or extra or shapes:
        raise CheckpointError(
            f"The weights in '{src}' do not fit the config's model: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(extra)} unexpected (e.g. {extra[:3]}), {len(shapes)} of another shape (e.g. {shapes[:3]}); "
            "is it the config of the same family?"
        )


def get_parser() -> argparse.ArgumentParser:
    """The converter's command line."""
    p = argparse.ArgumentParser(
        description="Convert a SOLOv2 weight file (mmdetection 3.x, original SOLO, Detectron2-based release, MSRA "
                    ".pkl, torchvision) to solov2's format")
    p.add_argument("input", metavar="IN", help="the weight file to read")
    p.add_argument("output", metavar="OUT", help="the .pth file to write")
    p.add_argument("--config-file", metavar="FILE", default="",
                   help="also check that the weights fit this config's model exactly")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY VALUE",
                   help="config overrides for --config-file, as in demo/demo.py")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = get_parser().parse_args(argv)
    from ..utils.logger import setup_logger

    setup_logger(name="solov2")
    model = None
    if args.config_file:
        from ..config import get_cfg
        from ..modeling import build_model

        cfg = get_cfg()
        cfg.merge_from_file(args.config_file)
        cfg.merge_from_list(args.opts)
        cfg.MODEL.DEVICE = "cpu"
        model = build_model(cfg)
    fmt, count = convert_checkpoint(args.input, args.output, model)
    logger.info(f"Converted {count} tensors from the {fmt} format in '{args.input}' to '{args.output}'")
    return 0
