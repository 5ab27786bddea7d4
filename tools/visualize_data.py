#!/usr/bin/env python
"""Draw a dataset's ground truth, raw (--source annotation) or after augmentation (--source dataloader), to PNGs.

  python tools/visualize_data.py --config-file configs/quickstart/shapes_R18.yaml --source annotation \
      --output-dir vis/ --num 20
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from typing import List, Optional

import cv2
import numpy as np

from solov2.config import get_cfg
from solov2.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_train_loader,
    read_image,
    register_datasets_from_cfg,
)
from solov2.utils.logger import setup_logger
from solov2.utils.visualizer import Visualizer


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description="Visualize ground-truth annotations")
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--source", choices=["annotation", "dataloader"], default="annotation",
                   help="raw annotations, or what the training data loader produces (augmented)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--num", type=int, default=20, help="number of images to draw")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    logger = setup_logger(name="solov2")
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    register_datasets_from_cfg(cfg)
    os.makedirs(args.output_dir, exist_ok=True)
    names = list(cfg.DATASETS.TRAIN)
    metadata = MetadataCatalog.get(names[0])
    written = 0
    if args.source == "annotation":
        dicts = list(itertools.chain.from_iterable(DatasetCatalog.get(n) for n in names))
        for d in dicts[: args.num]:
            img = read_image(d["file_name"], "RGB")
            vis = Visualizer(img, metadata).draw_dataset_dict(d)
            out = os.path.join(args.output_dir, os.path.splitext(os.path.basename(d["file_name"]))[0] + ".png")
            cv2.imwrite(out, vis[:, :, ::-1])
            written += 1
    else:
        cfg.DATALOADER.NUM_WORKERS = 0
        for batch in build_detection_train_loader(cfg):
            for d in batch:
                img = d["image"].permute(1, 2, 0).numpy()
                img = img[:, :, ::-1] if cfg.INPUT.FORMAT == "BGR" else img
                inst = d["instances"]
                labels = [metadata.thing_classes[int(c)] if metadata.get("thing_classes") else str(int(c))
                          for c in inst.gt_classes]
                vis = Visualizer(np.ascontiguousarray(img), metadata).overlay_instances(
                    [m.numpy() for m in inst.gt_masks.tensor], labels)
                base = os.path.splitext(os.path.basename(d["file_name"]))[0]
                cv2.imwrite(os.path.join(args.output_dir, f"{written:04d}_{base}.png"), vis[:, :, ::-1])
                written += 1
                if written >= args.num:
                    break
            if written >= args.num:
                break
    logger.info(f"Wrote {written} images to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
