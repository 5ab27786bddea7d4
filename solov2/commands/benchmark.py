"""`solov2 benchmark`: inference latency / throughput, training iteration time, peak memory, Matrix NMS of a config
(what tools/benchmark.py runs).

  solov2 benchmark --config-file SOLOv2/R50_3x.yaml --input-size 800x1216 --batch-sizes 1 2 \
      --train --nms-masks 500 --output bench.json
  solov2 benchmark --config-file SOLOv2/R50_3x.yaml --batch-sizes 1 --backend onnxruntime

Inference is timed for the whole pipeline from a uint8 image at the input size to masks at that size: normalisation,
network, post-processing. --backend onnxruntime exports the same model (tools/export_onnx.py's graph) and times
ONNX Runtime on it with as many intra-op threads as PyTorch uses.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from contextlib import nullcontext
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from ..config import get_cfg
from ..engine.arguments import (
    add_common_arguments,
    add_config_arguments,
    config_file_of,
    config_overrides,
)
from ..layers import matrix_nms, set_norm_folding
from ..modeling import build_model
from ..solver import build_optimizer
from ..structures import BitMasks, Instances
from ..utils.cpu_runtime import malloc_tuned
from ..utils.error_reporting import run_tool
from ..utils.errors import ConfigError, OutputPathError
from .startup import start_command

__all__ = ["build_parser", "format_table", "main", "run"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], Any], warmup: int, iters: int, device: torch.device) -> List[float]:
    """Wall times (s) of `iters` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def _random_gt(h: int, w: int, n: int, num_classes: int, g: torch.Generator) -> Instances:
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    for k in range(n):
        bh = int(torch.randint(h // 16, h // 2, (1,), generator=g))
        bw = int(torch.randint(w // 16, w // 2, (1,), generator=g))
        y = int(torch.randint(0, h - bh, (1,), generator=g))
        x = int(torch.randint(0, w - bw, (1,), generator=g))
        masks[k, y : y + bh, x : x + bw] = True
    bm = BitMasks(masks)
    return Instances((h, w), gt_masks=bm, gt_boxes=bm.get_bounding_boxes(),
                     gt_classes=torch.randint(0, num_classes, (n,), generator=g))


def _synthetic_batches(h: int, w: int, bs: int, num_classes: int, g: torch.Generator) -> Iterator[List[Dict[str, Any]]]:
    """The same in-memory batch of random images with 8 random box-shaped instances each, forever."""
    batch = [{"image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g),
              "instances": _random_gt(h, w, 8, num_classes, g)} for _ in range(bs)]
    while True:
        yield batch


def _time_training(cfg: Any, model: torch.nn.Module, args: argparse.Namespace, h: int, w: int,
                   g: torch.Generator, device: torch.device) -> Dict[str, Any]:
    """Median data time (waiting for the next batch) and step time (forward, backward, optimizer step).

    --train-data dataset loads DATASETS.TRAIN through the training loader as train_net does (reading, decoding,
    augmenting, building Instances); synthetic reuses one random batch of --input-size, so there is no data time.
    """
    model.train()
    bs = args.train_batch_size
    if args.train_data == "dataset":
        from solov2.data import build_detection_train_loader, register_datasets_from_cfg

        cfg = cfg.clone()
        cfg.defrost()
        cfg.SOLVER.IMS_PER_BATCH = bs
        register_datasets_from_cfg(cfg)
        batches: Iterator[List[Dict[str, Any]]] = iter(build_detection_train_loader(cfg))
    else:
        batches = _synthetic_batches(h, w, bs, cfg.MODEL.SOLOV2.NUM_CLASSES, g)
    # The configured optimizer (clipping, AdamW or SGD) at a tiny LR: its cost counts, diverging would not help.
    opt = build_optimizer(cfg, model)
    for group in opt.param_groups:
        group["lr"] = 1e-6
    # float16 training needs loss scaling; timing it without would flatter AMP.
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and device.type == "cuda")
    data_times, step_times = [], []
    warmup, iters = max(1, args.warmup // 2), max(2, args.iters // 2)
    for i in range(warmup + iters):
        start = time.perf_counter()
        batch = next(batches)
        loaded = time.perf_counter()
        with _autocast(device, args.amp):
            losses = model(batch)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        _sync(device)
        if i >= warmup:
            data_times.append(loaded - start)
            step_times.append(time.perf_counter() - loaded)
    measured_data = args.train_data == "dataset"
    data_med = statistics.median(data_times) if measured_data else None
    step_med = statistics.median(step_times)
    sizes = [tuple(x["image"].shape[-2:]) for x in batch]
    return {"batch_size": bs, "data": args.train_data, "malloc_tuned": malloc_tuned(),
            "last_batch_sizes_hw": [list(s) for s in sizes],
            "data_time_median_s": data_med, "step_time_median_s": step_med,
            "iter_time_median_s": step_med + (data_med or 0.0)}


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Run the requested measurements and return them as a dict."""
    cfg = get_cfg()
    config_file = config_file_of(args)
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(config_overrides(args))
    cfg.MODEL.DEVICE = args.device
    h, w = _parse_size(args.input_size)
    torch.manual_seed(0)
    # Timing does not depend on the weights' values, so nothing is loaded.
    model = build_model(cfg)
    if args.candidates == "full":
        # A random model's category scores sit at PRIOR_PROB (below SCORE_THR), which would leave post-processing
        # with nothing to do; logits near 0 give every cell ~0.5, so it handles NMS_PRE candidates as a trained
        # model does on a crowded image (the worst case).
        with torch.no_grad():
            model.ins_head.cate_pred.bias.zero_()
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss0 = _peak_rss_mb()
    result: Dict[str, Any] = {
        "config": args.config_file, "input_size": [h, w], "device": str(device), "amp": args.amp,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "weights": "random init", "candidates": args.candidates, "inference": [],
    }
    g = torch.Generator().manual_seed(0)
    model.eval()
    # The eval-mode speedups, each of which can be turned off to measure it.
    set_norm_folding(model, not args.no_fold_bn)
    model.channels_last = not args.no_channels_last
    result.update(backend=args.backend, fold_bn=not args.no_fold_bn, channels_last=not args.no_channels_last,
                  malloc_tuned=malloc_tuned())
    session = _onnx_session(model, cfg, args, result) if args.backend == "onnxruntime" else None
    for bs in args.batch_sizes:
        batch = [{"image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)} for _ in range(bs)]

        detections: List[int] = []

        def infer() -> None:
            if session is not None:  # the graph takes one H x W x 3 image: the batch's images one after another
                size = np.array([h, w], dtype=np.int64)
                detections[:] = [len(session.run(None, {"image": x, "output_size": size})[1]) for x in hwc_images]
                return
            with torch.inference_mode(), _autocast(device, args.amp):
                out = model(batch)
            detections[:] = [len(o["instances"]) for o in out]

        hwc_images = [np.ascontiguousarray(x["image"].permute(1, 2, 0).numpy()) for x in batch]
        times = _time(infer, args.warmup, args.iters, device)
        med = statistics.median(times)
        result["inference"].append({"batch_size": bs, "latency_median_s": med, "latency_min_s": min(times),
                                    "images_per_s": bs / med, "instances_per_image": detections})
    if args.train:
        result["train"] = _time_training(cfg, model, args, h, w, g, device)
    if args.nms_masks > 0:
        n = args.nms_masks
        hf, wf = h // 4, w // 4
        masks = torch.rand(n, hf, wf, generator=g).to(device) > 0.5
        labels = torch.randint(0, args.nms_classes, (n,), generator=g).to(device)
        scores = torch.rand(n, generator=g).sort(descending=True).values.to(device)
        areas = masks.flatten(1).sum(1).float()
        times = _time(lambda: matrix_nms(labels, masks, areas, scores), args.warmup, args.iters, device)
        result["matrix_nms"] = {"num_masks": n, "num_classes": args.nms_classes, "mask_size": [hf, wf],
                                "time_median_s": statistics.median(times)}
    if device.type == "cuda":
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        # Peak RSS of the process, and how much it grew after the model was built (activations, NMS, training).
        result["peak_memory_mb"] = _peak_rss_mb()
        result["peak_memory_delta_mb"] = _peak_rss_mb() - rss0
    return result


def _onnx_session(model: torch.nn.Module, cfg: Any, args: argparse.Namespace, result: Dict[str, Any]) -> Any:
    """Export `model` to a temporary ONNX file and open it in ONNX Runtime with PyTorch's number of threads."""
    from solov2.export import export_onnx
    from solov2.export.onnx_export import require

    if args.device != "cpu" or args.amp:
        raise ConfigError("--backend onnxruntime runs on the CPU in float32: drop --device and --amp")
    ort = require("onnxruntime", "--backend onnxruntime")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        start = time.perf_counter()
        export_onnx(model, path, cfg.INPUT.FORMAT)
        result["onnx_export_s"] = time.perf_counter() - start
        result["onnx_file_mb"] = os.path.getsize(path) / 2**20
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    result["onnxruntime"] = ort.__version__
    return session


def _parse_size(text: str) -> Tuple[int, int]:
    """'800x1216' -> (800, 1216)."""
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--input-size must be HxW, e.g. 800x1216; got '{text}'") from None
    if h < 32 or w < 32:
        raise ConfigError(f"--input-size {text} is too small: both sides must be at least 32 pixels")
    return h, w


def format_table(r: Dict[str, Any]) -> str:
    """A markdown table of the results, under a line saying what was measured where."""
    rows = []
    for x in r["inference"]:
        bs = x["batch_size"]
        rows.append((f"inference batch {bs}: latency (median)", f"{x['latency_median_s'] * 1000:.1f} ms"))
        rows.append((f"inference batch {bs}: throughput", f"{x['images_per_s']:.2f} img/s"))
        rows.append((f"inference batch {bs}: instances / image", ", ".join(map(str, x["instances_per_image"]))))
    if "train" in r:
        t = r["train"]
        bs = t["batch_size"]
        if t["data_time_median_s"] is None:
            rows.append((f"training data time, batch {bs}", "not measured (synthetic batch; --train-data dataset)"))
        else:
            rows.append((f"training data time, batch {bs} ({t['data']})", f"{t['data_time_median_s'] * 1000:.1f} ms"))
        rows.append((f"training step time, batch {bs}", f"{t['step_time_median_s'] * 1000:.1f} ms"))
        rows.append((f"training iteration, batch {bs}", f"{t['iter_time_median_s'] * 1000:.1f} ms"))
    if "matrix_nms" in r:
        m = r["matrix_nms"]
        rows.append((f"Matrix NMS, {m['num_masks']} masks of {m['mask_size'][0]}x{m['mask_size'][1]}, "
                     f"{m['num_classes']} classes", f"{m['time_median_s'] * 1000:.2f} ms"))
    if "onnx_export_s" in r:
        rows.append(("ONNX export (once): time; file size", f"{r['onnx_export_s']:.0f} s; {r['onnx_file_mb']:.1f} MiB"))
    if "peak_memory_delta_mb" in r:
        rows.append(("peak memory (process RSS; growth after model build)",
                     f"{r['peak_memory_mb']:.0f} MiB; +{r['peak_memory_delta_mb']:.0f} MiB"))
    else:
        rows.append(("peak memory (CUDA max allocated)", f"{r['peak_memory_mb']:.0f} MiB"))
    w0 = max(len(a) for a, _ in rows)
    w1 = max(len("value"), *(len(b) for _, b in rows))
    head = (f"{r['config']} @ {r['input_size'][0]}x{r['input_size'][1]} on {r['device']}"
            f"{' (AMP)' if r['amp'] else ''}, {r['threads']} threads, candidates: {r['candidates']}, "
            f"backend: {r['backend']}" + ("" if r["backend"] != "pytorch" else
                                          f" (BN folded: {r['fold_bn']}, channels-last: {r['channels_last']})")
            + f", malloc tuned: {r.get('malloc_tuned', False)}")
    lines = [head, f"| {'what':<{w0}} | {'value':<{w1}} |", f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|"]
    lines += [f"| {a:<{w0}} | {b:<{w1}} |" for a, b in rows]
    return "\n".join(lines)


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """Command line of the benchmark."""
    p = argparse.ArgumentParser(prog=prog, description="Benchmark SOLOv2 speed and memory (random weights: timing "
                                "does not depend on their values; SOLOV2_MALLOC_TUNING=0 measures without the malloc "
                                "tuning the commands apply)")
    add_config_arguments(p, default="SOLOv2/R50_3x.yaml")
    p.add_argument("--input-size", default="800x1216", help="HxW of the (already resized) input; default 800x1216")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2], help="inference batch sizes; default 1 2")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--amp", action="store_true", help="autocast (float16 on CUDA, bfloat16 on CPU)")
    p.add_argument("--iters", type=int, default=5, help="timed iterations per measurement (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations before each measurement")
    p.add_argument("--train", action="store_true", help="also time a training iteration")
    p.add_argument("--train-batch-size", type=int, default=2, help="images per timed training step")
    p.add_argument("--train-data", choices=["synthetic", "dataset"], default="synthetic",
                   help="synthetic: one random batch of --input-size, reused (step time only); dataset: batches of "
                        "DATASETS.TRAIN from the training loader, as train_net loads them (data time and step time)")
    p.add_argument("--nms-masks", type=int, default=0, help="time Matrix NMS on this many masks")
    p.add_argument("--nms-classes", type=int, default=5, help="spread the --nms-masks over this many classes")
    p.add_argument("--backend", choices=["pytorch", "onnxruntime"], default="pytorch",
                   help="run inference in PyTorch, or export it to ONNX and run it in ONNX Runtime (CPU)")
    p.add_argument("--no-fold-bn", action="store_true",
                   help="PyTorch: keep BatchNorms as separate layers in eval mode (to measure the folding)")
    p.add_argument("--no-channels-last", action="store_true",
                   help="PyTorch on CPU: keep the default memory layout in eval mode (to measure channels-last)")
    p.add_argument("--candidates", choices=["full", "model"], default="full",
                   help="full: post-processing gets NMS_PRE candidates (worst case, like a trained model on a busy "
                        "image); model: the random model's own scores (nearly no candidates, post-processing ~free)")
    p.add_argument("--output", metavar="FILE", help="write the results as JSON here")
    add_common_arguments(p)
    return p


def _run(args: argparse.Namespace) -> int:
    start_command(args)
    result = run(args)
    print(format_table(result))
    if args.output:
        try:
            with open(args.output, "w") as f:
                json.dump(result, f, indent=2)
        except OSError as e:
            raise OutputPathError(f"Cannot write --output '{args.output}': {e.strerror or e}") from e
    return 0


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Entry point; returns the exit status (one ERROR line for a user error)."""
    return run_tool(_run, build_parser(prog).parse_args(argv))
