#!/usr/bin/env python
"""SOLOv2 demo: run a model on images, folders, globs, a video or a webcam and draw the masks.

  python demo/demo.py --config-file configs/SOLOv2/R50_3x.yaml --input img1.jpg photos/ "more/*.png" \
      --output out/ --opts MODEL.WEIGHTS SOLOv2_R50_3x.pth

Outputs keep their input's file name, so the demo refuses (before writing anything) an --output that would
overwrite one of its inputs, e.g. `--input photos/ --output photos/`.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
import time
from typing import Any, List, Optional

import cv2
import numpy as np
import tqdm

from solov2.config import get_cfg
from solov2.data import MetadataCatalog, register_datasets_from_cfg
from solov2.data.detection_utils import read_image
from solov2.engine.predictor import DefaultPredictor
from solov2.export import ONNXPredictor
from solov2.evaluation.coco_evaluation import instances_to_coco_json
from solov2.evaluation.coco_conversion import contiguous_to_dataset_id_map
from solov2.utils.error_reporting import add_debug_argument, run_tool
from solov2.utils.cpu_runtime import tune_malloc
from solov2.utils.errors import ConfigError, ImageReadError, InputFileNotFoundError, OutputPathError
from solov2.utils.logger import setup_logger
from solov2.utils.paths import overwritten_input
from solov2.utils.visualizer import Visualizer

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
WINDOW_NAME = "SOLOv2"


def setup_cfg(args: argparse.Namespace):
    """Config from --config-file and --opts, with the score threshold set from --confidence-threshold."""
    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    # Maskness and Matrix NMS only lower a score, and a candidate's decay depends only on higher-scored ones, so
    # dropping candidates below the drawing threshold before post-processing changes nothing that gets drawn.
    cfg.MODEL.SOLOV2.SCORE_THR = args.confidence_threshold
    cfg.freeze()
    return cfg


def get_parser() -> argparse.ArgumentParser:
    """The demo's command line (Detectron2's demo flags plus --json)."""
    parser = argparse.ArgumentParser(
        description="SOLOv2 demo",
        epilog="Outputs are named after their inputs; an --output that would overwrite an input (e.g. --input photos/ "
        "--output photos/, or --video-input d/clip.mp4 --output d/) is refused before anything is written.",
    )
    parser.add_argument("--config-file", default="configs/quickstart/shapes_R18.yaml", metavar="FILE")
    parser.add_argument("--webcam", action="store_true", help="Take input from the webcam.")
    parser.add_argument("--video-input", help="Path to a video file.")
    parser.add_argument("--input", nargs="+", help="Image files, folders or glob patterns.")
    parser.add_argument("--output", help="A folder for the results, or a file name when there is a single input. "
                        "It must not be (or contain the results under the names of) the inputs themselves.")
    parser.add_argument("--confidence-threshold", type=float, default=0.5,
                        help="Minimum score to draw (also sets MODEL.SOLOV2.SCORE_THR).")
    parser.add_argument("--json", action="store_true", help="Also write the predictions as COCO-style JSON.")
    parser.add_argument("--onnx", metavar="FILE", help="Run this exported graph (tools/export_onnx.py) in ONNX Runtime "
                        "instead of building the PyTorch model; the config still gives the test size and class names.")
    add_debug_argument(parser)
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="KEY VALUE config overrides.")
    return parser


def expand_inputs(patterns: List[str]) -> List[str]:
    """Expand folders (their images) and globs, each file once; plain names are kept even if missing (reported later)."""
    files: List[str] = []
    for p in patterns:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTENSIONS))
        elif any(ch in p for ch in "*?["):
            found = sorted(glob.glob(os.path.expanduser(p), recursive=True))
        else:
            found = [p]
        if not found:
            logging.getLogger("solov2").warning(f"'{p}' matches no image files")
        files.extend(found)
    # A file named twice (a folder and a glob over it) would be processed twice into the same output.
    return list(dict.fromkeys(files))


def _metadata(cfg) -> Any:
    """Metadata of the config's first dataset that knows its class names (labels and JSON category ids)."""
    register_datasets_from_cfg(cfg)  # datasets named in DATASETS.COCO_INSTANCES give their class names too
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        meta = MetadataCatalog.get(name)
        if meta.get("thing_classes"):
            return meta
    return None


class Demo:
    """Runs the predictor and draws its output."""

    def __init__(self, cfg, confidence_threshold: float, onnx_path: Optional[str] = None) -> None:
        self.predictor = ONNXPredictor(cfg, onnx_path) if onnx_path else DefaultPredictor(cfg)
        self.metadata = _metadata(cfg)
        self.threshold = confidence_threshold
        self.input_format = cfg.INPUT.FORMAT

    def run(self, image_bgr: np.ndarray):
        """Predict on one BGR image; returns (kept instances, RGB visualisation)."""
        predictions = self.predictor(image_bgr)
        instances = predictions["instances"].to("cpu")
        instances = instances[instances.scores >= self.threshold]
        vis = Visualizer(image_bgr[:, :, ::-1], self.metadata).draw_instance_predictions(instances)
        return instances, vis

    def to_json(self, instances, file_name: str) -> List[dict]:
        """COCO-style results for one image, with dataset category ids and names."""
        results = instances_to_coco_json(instances, os.path.basename(file_name))
        id_map = contiguous_to_dataset_id_map(self.metadata) if self.metadata is not None else None
        names = getattr(self.metadata, "thing_classes", None) if self.metadata is not None else None
        for r in results:
            k = r["category_id"]
            r["category_name"] = names[k] if names is not None and k < len(names) else f"class {k}"
            if id_map:
                r["category_id"] = id_map.get(k, k)
            r["file_name"] = file_name
        return results


def _output_path(output: str, path: str, n_inputs: int, ext: Optional[str] = None) -> str:
    """Where the drawing of input `path` goes: `output` itself for a single input named like a file, else
    `output`/<input's name> (with `ext` instead of the input's extension when given)."""
    if n_inputs == 1 and not output.endswith(os.sep) and os.path.splitext(output)[1] and not os.path.isdir(output):
        out = output
    else:
        out = os.path.join(output, os.path.basename(path))
    if ext is not None:
        out = os.path.splitext(out)[0] + ext
    elif not os.path.splitext(out)[1]:
        out += ".png"
    return out


def plan_outputs(files: List[str], args: argparse.Namespace) -> List[List[str]]:
    """The files each input's results go to; refuses, before anything is written, to overwrite an input or to
    write two inputs' results to one file."""
    planned = []
    for path in files:
        out = _output_path(args.output, path, len(files))
        if not cv2.haveImageWriter(out):
            raise ConfigError(f"--output '{out}': OpenCV cannot write images with the extension "
                              f"'{os.path.splitext(out)[1]}'; use one of {', '.join(IMAGE_EXTENSIONS)}")
        planned.append([out] + ([os.path.splitext(out)[0] + ".json"] if args.json else []))
    clash = overwritten_input([o for outs in planned for o in outs], files)
    if clash:
        raise OutputPathError(
            f"--output '{args.output}' would overwrite the input '{clash[1]}' with its results (outputs are named "
            "after their inputs): choose another --output, neither an input nor the folder of one"
        )
    owner: dict = {}
    for path, outs in zip(files, planned):
        for o in outs:
            key = os.path.realpath(o)
            if key in owner:
                raise OutputPathError(
                    f"The inputs '{owner[key]}' and '{path}' would both write '{o}' (outputs are named after their "
                    "inputs): give inputs with distinct file names, or run the demo once per folder"
                )
            owner[key] = path
    return planned


def _make_folder(path: str) -> None:
    """Create the folder of an output file, with a readable error when that is not possible."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"Cannot create the output folder '{folder}': {e.strerror or e}") from e


def run_images(demo: Demo, files: List[str], planned: Optional[List[List[str]]], args: argparse.Namespace,
               logger: logging.Logger) -> int:
    """Process image files, writing to the `planned` outputs (plan_outputs) or to a window; returns how many failed."""
    failures: List[str] = []
    planned = planned if planned is not None else [[] for _ in files]
    for path, outs in zip(tqdm.tqdm(files, disable=len(files) < 2, desc="images"), planned):
        try:
            img = read_image(path, format="BGR")
        except Exception as e:  # unreadable input: report by name, keep going
            logger.error(f"Skipping '{path}': {e}")
            failures.append(path)
            continue
        start = time.perf_counter()
        instances, vis = demo.run(img)
        logger.info(f"{path}: {len(instances)} instances in {time.perf_counter() - start:.2f}s")
        if args.output:
            out = outs[0]
            _make_folder(out)
            if not cv2.imwrite(out, vis[:, :, ::-1]):
                logger.error(f"Could not write '{out}' (is its folder writable, the disk full?)")
                failures.append(path)
                continue
            if args.json:
                try:
                    with open(outs[1], "w") as f:
                        json.dump(demo.to_json(instances, path), f)
                except OSError as e:
                    logger.error(f"Could not write '{outs[1]}': {e.strerror or e}")
                    failures.append(path)
                    continue
        else:
            try:
                cv2.imshow(WINDOW_NAME, vis[:, :, ::-1])
                if cv2.waitKey(0) == 27:
                    break
            except cv2.error:
                raise ConfigError("This OpenCV build has no GUI (opencv-python-headless): pass --output to save "
                                  "results.") from None
    if failures:
        logger.error(f"{len(failures)} of {len(files)} inputs failed: {', '.join(failures)}")
    return len(failures)


def plan_video_output(args: argparse.Namespace) -> Optional[str]:
    """The .mp4 a video input's results go to (None: shown in a window); refuses to overwrite the input video."""
    if not (args.output and args.video_input):
        return None
    out_path = _output_path(args.output, args.video_input, 1, ext=".mp4")
    if overwritten_input([out_path], [args.video_input]):
        raise OutputPathError(
            f"--output '{args.output}' would overwrite the input video '{args.video_input}' with its results (the "
            "output is named after the input, as .mp4): choose another --output"
        )
    return out_path


def run_video(demo: Demo, source: Any, out_path: Optional[str], logger: logging.Logger) -> int:
    """Process a video file (to `out_path`, .mp4 at the source frame rate) or a webcam (0) to a window."""
    if out_path is not None:
        _make_folder(out_path)
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        cap.release()
        raise ImageReadError(f"Cannot open video input '{source}'" +
                             (": not a video OpenCV can decode" if isinstance(source, str) else " (a camera?)"))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    writer = None
    frames = 0
    try:
        for _ in tqdm.tqdm(iter(int, 1), total=total, desc="frames"):
            ok, frame = cap.read()
            if not ok:
                break
            _, vis = demo.run(frame)
            vis_bgr = np.ascontiguousarray(vis[:, :, ::-1])
            if out_path is not None:
                if writer is None:
                    h, w = vis_bgr.shape[:2]
                    writer = cv2.VideoWriter(out_path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h), True)
                    if not writer.isOpened():
                        raise OutputPathError(f"Cannot write the video '{out_path}' (is its folder writable?)")
                writer.write(vis_bgr)
            else:
                try:
                    cv2.imshow(WINDOW_NAME, vis_bgr)
                    if cv2.waitKey(1) == 27:
                        break
                except cv2.error:
                    raise ConfigError("This OpenCV build has no GUI (opencv-python-headless): --webcam needs "
                                      "opencv-python; for a video file pass --output.") from None
            frames += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        raise ImageReadError(f"No frame could be read from the video input '{source}'")
    logger.info(f"Processed {frames} frames" + (f" -> {out_path}" if out_path else ""))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; returns the process exit code."""
    args = get_parser().parse_args(argv)
    logger = setup_logger(name="solov2")
    setup_logger(name="demo")
    # Each image allocates the same large activations again: keeping freed memory mapped saves the page faults
    # (R50_3x at 800 px: 7.5 -> 6.0 s per image on 2 cores). SOLOV2_MALLOC_TUNING=0 opts out.
    tune_malloc()
    logger.info(f"Arguments: {args}")
    if not (args.input or args.webcam or args.video_input):
        raise ConfigError("Nothing to do: pass --input, --video-input or --webcam")
    if args.json and not (args.input and args.output):
        raise ConfigError("--json writes a JSON file next to each output image: it needs --input and --output")
    if args.video_input and not os.path.isfile(args.video_input):
        raise InputFileNotFoundError(f"Video input '{args.video_input}' does not exist")
    files = expand_inputs(args.input) if args.input else []
    if args.input and not files:
        raise InputFileNotFoundError(f"No input images found for {args.input}")
    # Refuse a bad --output before the model is built and before anything is written.
    planned = plan_outputs(files, args) if files and args.output else None
    video_out = plan_video_output(args)
    cfg = setup_cfg(args)
    if not cfg.MODEL.WEIGHTS and not args.onnx:
        logger.warning("MODEL.WEIGHTS is empty: the model is RANDOMLY INITIALISED and its predictions mean nothing. "
                       "Pass --opts MODEL.WEIGHTS path/to/model.pth")
    demo = Demo(cfg, args.confidence_threshold, args.onnx)
    if files:
        failed = run_images(demo, files, planned, args, logger)
        print(f"Done: {len(files) - failed} succeeded, {failed} failed")
        return 1 if failed else 0
    if args.webcam:
        return run_video(demo, 0, None, logger)
    return run_video(demo, args.video_input, video_out, logger)


if __name__ == "__main__":
    sys.exit(run_tool(main))
