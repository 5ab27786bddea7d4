"""`solov2 visualize`: draw a dataset's ground truth, raw (--source annotation) or after augmentation
(--source dataloader), or a model's predictions beside the ground truth (--source predictions), to PNGs (what
tools/visualize_data.py runs).

  solov2 visualize --config-file quickstart/shapes_R18.yaml --source annotation --output vis/ --num 20
  solov2 visualize --config-file quickstart/shapes_R18.yaml --dataset shapes_val \
      --source predictions --weights output/quickstart_shapes_R18/model_final.pth --output vis_val/

--dataset NAME (repeatable) draws any registered split; without it, DATASETS.TRAIN.

With DATALOADER.SKIP_CORRUPT_IMAGES True unreadable images are skipped and counted; otherwise the first one stops
the tool with an error naming it. A drawing never replaces a dataset image.
"""

from __future__ import annotations

import argparse
import itertools
import os
from typing import List, Optional

import cv2
import numpy as np

from ..config import check_unsupported_keys, get_cfg
from ..data import (
    DatasetCatalog,
    DatasetMapper,
    MetadataCatalog,
    build_detection_train_loader,
    read_image,
    register_datasets_from_cfg,
)
from ..data.detection_utils import SKIP_CORRUPT_HINT
from ..engine.arguments import (
    add_common_arguments,
    add_config_arguments,
    config_file_of,
    config_overrides,
)
from ..engine.predictor import DefaultPredictor
from ..utils.error_reporting import run_tool
from ..utils.errors import ConfigError, ImageReadError, OutputPathError
from ..utils.logger import setup_logger
from ..utils.paths import check_distinct_outputs, overwritten_input
from ..utils.visualizer import Visualizer, draw_ground_truth_and_predictions
from .startup import start_command

__all__ = ["build_parser", "main"]


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """Command line."""
    p = argparse.ArgumentParser(prog=prog, description="Visualize a dataset's ground truth or a model's predictions")
    add_config_arguments(p, required=True)
    p.add_argument("--source", choices=["annotation", "dataloader", "predictions"], default="annotation",
                   help="raw annotations, what the training data loader produces (augmented), or the predictions "
                   "of --weights drawn beside the ground truth")
    p.add_argument("--dataset", action="append", default=[], metavar="NAME",
                   help="a registered dataset to draw (repeatable); default: DATASETS.TRAIN")
    p.add_argument("--weights", default="", metavar="FILE",
                   help="--source predictions: the checkpoint to predict with (default: MODEL.WEIGHTS)")
    p.add_argument("--score-thr", type=float, default=0.3,
                   help="--source predictions: draw predictions scoring at least this (default 0.3)")
    p.add_argument("--output", "--output-dir", dest="output_dir", required=True, metavar="DIR",
                   help="the folder the drawings go to (--output-dir is the old spelling)")
    p.add_argument("--num", type=int, default=20, help="number of images to draw; default 20")
    add_common_arguments(p)
    return p


def _write(path: str, rgb: np.ndarray, dataset_files: set) -> None:
    """Write a drawing, refusing to replace a dataset image."""
    clash = overwritten_input([path], dataset_files)
    if clash:
        raise OutputPathError(f"--output would overwrite the dataset image '{clash[1]}' with its drawing: choose "
                              "an --output that is not the dataset's image folder")
    if not cv2.imwrite(path, rgb[:, :, ::-1]):
        raise OutputPathError(f"Could not write '{path}' (is --output writable, the disk full?)")


def _drawing_path(output_dir: str, d: dict) -> str:
    """Where --source annotation or predictions draws a dataset dict: <output_dir>/<image name>.png."""
    return os.path.join(output_dir, os.path.splitext(os.path.basename(d["file_name"]))[0] + ".png")


def _run(args: argparse.Namespace) -> int:
    start_command(args)
    logger = setup_logger(name="solov2")
    cfg = get_cfg()
    cfg.merge_from_file(config_file_of(args))
    cfg.merge_from_list(config_overrides(args))
    check_unsupported_keys(cfg)
    register_datasets_from_cfg(cfg)
    names = list(args.dataset) or list(cfg.DATASETS.TRAIN)
    if not names:
        raise ConfigError("DATASETS.TRAIN is empty: name the dataset(s) to draw with --dataset NAME")
    if args.source == "predictions":
        cfg.MODEL.WEIGHTS = args.weights or cfg.MODEL.WEIGHTS
        if not cfg.MODEL.WEIGHTS:
            raise ConfigError("--source predictions needs a model: give --weights FILE (or MODEL.WEIGHTS FILE)")
        predictor = DefaultPredictor(cfg)
    try:
        os.makedirs(args.output_dir, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"Cannot create --output '{args.output_dir}': {e.strerror or e}") from e
    metadata = MetadataCatalog.get(names[0])
    dicts = list(itertools.chain.from_iterable(DatasetCatalog.get(n) for n in names))
    dataset_files = {d["file_name"] for d in dicts}
    written = 0
    skipped: List[str] = []
    if args.source in ("annotation", "predictions"):
        check_distinct_outputs(((d["file_name"], _drawing_path(args.output_dir, d)) for d in dicts[:args.num]), "drawings")
        for d in dicts:
            if written >= args.num:
                break
            try:
                img = read_image(d["file_name"], "RGB")
            except ImageReadError as e:
                if not cfg.DATALOADER.SKIP_CORRUPT_IMAGES:
                    raise ImageReadError(f"{e}{SKIP_CORRUPT_HINT}") from e
                logger.warning(f"Skipping unreadable image: {e}")
                skipped.append(d["file_name"])
                continue
            if args.source == "predictions":
                instances = predictor(np.ascontiguousarray(img[:, :, ::-1]))["instances"].to("cpu")
                vis = draw_ground_truth_and_predictions(img, d, instances, metadata, args.score_thr,
                                                        height=max(320, img.shape[0]))
            else:
                vis = Visualizer(img, metadata).draw_dataset_dict(d)
            _write(_drawing_path(args.output_dir, d), vis, dataset_files)
            written += 1
    else:
        cfg.DATALOADER.NUM_WORKERS = 0
        cfg.DATASETS.TRAIN = tuple(names)
        mapper = DatasetMapper(cfg, True)  # in this process (no workers), so its count of skipped files is ours
        for batch in build_detection_train_loader(cfg, mapper=mapper):
            for d in batch:
                img = d["image"].permute(1, 2, 0).numpy()
                img = img[:, :, ::-1] if cfg.INPUT.FORMAT == "BGR" else img
                inst = d["instances"]
                labels = [metadata.thing_classes[int(c)] if metadata.get("thing_classes") else str(int(c))
                          for c in inst.gt_classes]
                vis = Visualizer(np.ascontiguousarray(img), metadata).overlay_instances(
                    [m.numpy() for m in inst.gt_masks.tensor], labels)
                base = os.path.splitext(os.path.basename(d["file_name"]))[0]
                _write(os.path.join(args.output_dir, f"{written:04d}_{base}.png"), vis, dataset_files)
                written += 1
                if written >= args.num:
                    break
            if written >= args.num:
                break
        skipped = sorted(mapper.skipped_files)
    logger.info(f"Wrote {written} images to {args.output_dir}")
    if skipped:
        logger.warning(f"Skipped {len(skipped)} unreadable image(s) (DATALOADER.SKIP_CORRUPT_IMAGES True): "
                       + ", ".join(f"'{f}'" for f in skipped[:5]) + (", ..." if len(skipped) > 5 else ""))
    return 0


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Entry point; returns the exit status (one ERROR line for a user error)."""
    return run_tool(_run, build_parser(prog).parse_args(argv))
