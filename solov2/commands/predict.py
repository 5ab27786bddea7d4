"""`solov2 predict`: run a model on images, folders, globs, a video or a webcam and draw the masks (what
demo/demo.py runs).

    solov2 predict --weights output/quickstart_shapes_R18/model_final.pth --input photos/ --output out/
    solov2 predict --config-file SOLOv2/R50_3x.yaml --weights SOLOv2_R50_3x.pth --input img1.jpg "more/*.png" \
        --output out/ --json
    solov2 predict --onnx solov2_r50.onnx --input photos/ --output out/

A checkpoint written by solov2 holds its config and class names, and so does an exported .onnx file: neither needs
--config-file (given, it and the KEY VALUE overrides apply on top). Published checkpoints need it. Outputs keep their
input's file name, so an --output that would overwrite one of the inputs (e.g. `--input photos/ --output photos/`)
is refused before anything is written.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Any, List, Optional

import cv2
import numpy as np
import tqdm

from ..data.detection_utils import read_image
from ..engine.arguments import (
    ValuesThenOverrides,
    add_common_arguments,
    add_config_arguments,
    config_file_of,
    config_overrides,
)
from ..predictor import IMAGE_EXTENSIONS, Predictor, expand_inputs
from ..utils.errors import ConfigError, ImageReadError, InputFileNotFoundError, OutputPathError, UserError
from ..utils.error_reporting import run_tool
from ..utils.logger import setup_logger
from ..utils.paths import overwritten_input, regular_files
from .startup import start_command

__all__ = ["build_parser", "expand_inputs", "main", "plan_outputs"]

WINDOW_NAME = "SOLOv2"


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The predictor's command line (Detectron2's demo flags plus --weights, --onnx and --json)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Run SOLOv2 on images, a video or a webcam and draw its masks.",
        epilog="Outputs are named after their inputs; an --output that would overwrite an input (e.g. --input photos/ "
        "--output photos/, or --video-input d/clip.mp4 --output d/) is refused before anything is written.",
    )
    add_config_arguments(parser)
    parser.add_argument("--weights", metavar="FILE",
                        help="the checkpoint to run (MODEL.WEIGHTS); one written by solov2 needs no --config-file")
    parser.add_argument("--onnx", metavar="FILE", help="run this exported graph (`solov2 export`) in ONNX Runtime "
                        "instead of a PyTorch model; it holds its test size and class names, so no config is needed")
    parser.add_argument("--webcam", action="store_true", help="take input from the webcam")
    parser.add_argument("--video-input", metavar="FILE", help="a video file to run on")
    parser.add_argument("--input", nargs="+", metavar="PATH", action=ValuesThenOverrides,
                        help="image files, folders or glob patterns")
    parser.add_argument("--output", metavar="PATH",
                        help="a folder for the results, or a file name when there is a single input; it must not be "
                        "(or contain the results under the names of) the inputs themselves. Without it results are "
                        "shown in a window")
    parser.add_argument("--confidence-threshold", type=float, default=0.5,
                        help="minimum score of the instances drawn and saved (also sets MODEL.SOLOV2.SCORE_THR); "
                        "default 0.5")
    parser.add_argument("--json", action="store_true", help="also write each image's predictions as COCO-style JSON")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the config's MODEL.DEVICE where available)")
    add_common_arguments(parser)
    return parser


def build_predictor(args: argparse.Namespace) -> Predictor:
    """The Predictor the command line asks for: an .onnx file, a self-describing checkpoint, or config + weights."""
    opts = config_overrides(args)
    config_file = config_file_of(args)
    if args.onnx:
        if args.weights or opts or config_file:
            raise ConfigError("--onnx runs the exported file as it is: drop --weights, --config-file and overrides")
        return Predictor(args.onnx, score_thresh=args.confidence_threshold)
    if not args.weights and not config_file:
        raise ConfigError("Nothing to predict with: pass --weights model_final.pth (a checkpoint solov2 wrote), "
                          "--onnx model.onnx, or --config-file with --weights")
    source = args.weights if not config_file else config_file
    weights = None if not config_file else args.weights
    return Predictor(source, weights, device=args.device, score_thresh=args.confidence_threshold, opts=opts)


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


def run_images(predictor: Predictor, files: List[str], planned: Optional[List[List[str]]],
               args: argparse.Namespace, logger: logging.Logger) -> int:
    """Process image files, writing to the `planned` outputs (plan_outputs) or to a window; returns how many failed."""
    failures: List[str] = []
    planned = planned if planned is not None else [[] for _ in files]
    bar = tqdm.tqdm(files, disable=len(files) < 2, desc="images")
    # Per-image lines go through the progress bar (tqdm.write), which would otherwise be broken up by them.
    say = bar.write if not bar.disable else logger.info
    for path, outs in zip(bar, planned):
        try:
            img = read_image(path, format="BGR")
        except Exception as e:  # unreadable input: report by name, keep going
            logger.error(f"Skipping '{path}': {e}")
            failures.append(path)
            continue
        start = time.perf_counter()
        try:
            result = predictor.predict(img, path)
        except UserError as e:  # this image cannot be run (e.g. too small for an exported graph): name it, go on
            logger.error(f"Skipping '{path}': {e}")
            failures.append(path)
            continue
        say(f"{path}: {result!r} ({time.perf_counter() - start:.2f} s)")
        if args.output:
            try:
                result.save(outs[0])
                if args.json:
                    result.save(outs[1])
            except OutputPathError as e:
                logger.error(str(e))
                failures.append(path)
                continue
        else:
            try:
                cv2.imshow(WINDOW_NAME, result.draw()[:, :, ::-1])
                if cv2.waitKey(0) == 27:
                    break
            except cv2.error:
                raise ConfigError("This OpenCV build has no GUI (opencv-python-headless): pass --output to save "
                                  "results.") from None
    bar.close()
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


def run_video(predictor: Predictor, source: Any, out_path: Optional[str], logger: logging.Logger) -> int:
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
            vis_bgr = np.ascontiguousarray(predictor.predict(frame).draw()[:, :, ::-1])
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


def _run(args: argparse.Namespace) -> int:
    start_command(args)
    logger = setup_logger(name="solov2")
    if not (args.input or args.webcam or args.video_input):
        raise ConfigError("Nothing to do: pass --input, --video-input or --webcam")
    if args.json and not (args.input and args.output):
        raise ConfigError("--json writes a JSON file next to each output image: it needs --input and --output")
    if args.video_input and not os.path.isfile(args.video_input):
        raise InputFileNotFoundError(f"Video input '{args.video_input}' does not exist")
    files, not_regular = regular_files(expand_inputs(args.input) if args.input else [], logger)
    if args.input and not files:
        raise InputFileNotFoundError(f"No input images found for {args.input}")
    # Refuse a bad --output before the model is built and before anything is written.
    planned = plan_outputs(files, args) if files and args.output else None
    video_out = plan_video_output(args)
    predictor = build_predictor(args)
    if files:
        failed = run_images(predictor, files, planned, args, logger) + len(not_regular)
        print(f"Done: {len(files) + len(not_regular) - failed} succeeded, {failed} failed")
        return 1 if failed else 0
    if args.webcam:
        return run_video(predictor, 0, None, logger)
    return run_video(predictor, args.video_input, video_out, logger)


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Entry point; returns the exit status (one ERROR line for a user error)."""
    return run_tool(_run, build_parser(prog).parse_args(argv))
