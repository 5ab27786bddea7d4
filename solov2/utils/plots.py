"""Training and evaluation plots (PNG) with matplotlib's Agg canvas: curves, PR curves, confusion matrix.

matplotlib is the optional extra `solov2[plots]`; without it every drawing function logs one line saying what to
install and returns without drawing. The figures are drawn from files a run leaves in OUTPUT_DIR (metrics.json and
the evaluator's inference/coco_eval_<task>.npz and confusion_segm.json), so tools/plot_metrics.py can redraw them
from a finished or running run. Figures are built on matplotlib.figure.Figure, never pyplot, so drawing changes no
global backend state of the process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..evaluation.confusion import CONFUSION_FILE, confusion_csv, load_confusion
from ..evaluation.mosaic import MOSAIC_FILE
from ..evaluation.pr_curves import PRECISION_FILE, ap_at, load_precision, mean_pr_curve, pr_curves

__all__ = [
    "INSTALL_HINT",
    "PLOTS_DIR",
    "draw_evaluation_plots",
    "draw_run_plots",
    "evaluation_dirs",
    "matplotlib_available",
    "plot_confusion",
    "plot_pr_curves",
    "plot_training_curves",
    "read_metrics",
]

logger = logging.getLogger(__name__)

PLOTS_DIR = "plots"
INSTALL_HINT = "pip install 'solov2[plots]' (or pip install matplotlib)"
PR_IOUS = (0.5, 0.75)
_warned_missing = False


def matplotlib_available() -> bool:
    """True when matplotlib imports; otherwise log once (per process) that plots are skipped and how to get them."""
    global _warned_missing
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if not _warned_missing:
            logger.warning("Plots skipped: matplotlib is not installed; %s", INSTALL_HINT)
            _warned_missing = True
        return False
    return True


def _figure(width: float, height: float) -> Any:
    """A Figure attached to an Agg canvas (no pyplot, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str) -> str:
    """Save a figure as PNG atomically (a running run may be redrawing it while someone looks)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def read_metrics(path: str) -> List[Dict[str, Any]]:
    """metrics.json's records, one per iteration (the last record wins where a resumed run repeated iterations).

    A torn last line (the run is writing it) is skipped; a record of the same iteration is merged into one.
    """
    by_iter: "OrderedDict[int, Dict[str, Any]]" = OrderedDict()
    if os.path.exists(path) and not os.path.isfile(path):
        # A pipe or a device (e.g. /dev/full standing in for a full disk) would be read forever.
        logger.warning("Not reading '%s': it is not a regular file", path)
        return []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "iteration" in record:
                by_iter.setdefault(int(record["iteration"]), {}).update(record)
    return [by_iter[k] for k in sorted(by_iter)]


def _series(records: Sequence[Dict[str, Any]], key: str) -> Tuple[np.ndarray, np.ndarray]:
    """(iterations, values) of one metric where it is a finite number."""
    pts = [(r["iteration"], float(r[key])) for r in records
           if isinstance(r.get(key), (int, float)) and math.isfinite(float(r[key]))]
    if not pts:
        return np.zeros(0), np.zeros(0)
    arr = np.asarray(pts, dtype=np.float64)
    return arr[:, 0], arr[:, 1]


def _keys(records: Sequence[Dict[str, Any]], pattern: str) -> List[str]:
    """Metric names matching a regular expression, in order of first appearance."""
    seen: Dict[str, None] = {}
    for r in records:
        for k in r:
            if re.search(pattern, k):
                seen.setdefault(k, None)
    return list(seen)


def plot_training_curves(runs: Dict[str, Sequence[Dict[str, Any]]], path: str) -> Optional[str]:
    """curves.png: total loss, loss terms, learning rate and mask/box AP over iterations, one colour per run.

    `runs` maps a run's label to its metrics.json records. Returns the path, or None without matplotlib.
    """
    if not matplotlib_available():
        return None
    fig = _figure(12, 8)
    (ax_total, ax_terms), (ax_lr, ax_ap) = fig.subplots(2, 2)
    compare = len(runs) > 1
    styles = ["-", "--", ":", "-."]
    for r, (label, records) in enumerate(runs.items()):
        color = f"C{r}"
        x, y = _series(records, "total_loss")
        ax_total.plot(x, y, color=color, label=label)
        for t, key in enumerate(sorted(_keys(records, r"^loss_"))):
            x, y = _series(records, key)
            if compare:
                ax_terms.plot(x, y, color=color, linestyle=styles[t % len(styles)], label=f"{label}: {key}")
            else:
                ax_terms.plot(x, y, color=f"C{t}", label=key)
        x, y = _series(records, "lr")
        ax_lr.plot(x, y, color=color, label=label)
        for key in _keys(records, r"(^|/)(segm|bbox)/AP$"):
            x, y = _series(records, key)
            task = "mask AP" if key.endswith("segm/AP") else "box AP"
            name = f"{key[:-len('/segm/AP' if 'segm' in key else '/bbox/AP')]}: " if key.count("/") > 1 else ""
            ap_color = color if compare else ("C0" if "segm" in key else "C1")
            ax_ap.plot(x, y, color=ap_color, linestyle="-" if "segm" in key else "--", marker="o",
                       label=f"{label}: {name}{task}" if compare else f"{name}{task}")
    ax_total.set_title("total loss")
    ax_terms.set_title("loss terms")
    ax_lr.set_title("learning rate")
    ax_ap.set_title("AP over iterations (evaluations)")
    ax_ap.set_ylabel("AP (%)")
    for ax in (ax_total, ax_terms, ax_lr, ax_ap):
        ax.set_xlabel("iteration")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if not ax_ap.lines:
        ax_ap.text(0.5, 0.5, "no evaluation yet\n(TEST.EVAL_PERIOD > 0 evaluates during training)",
                   ha="center", va="center", transform=ax_ap.transAxes, color="gray")
    return _save(fig, path)


def plot_pr_curves(runs: Dict[str, Dict[str, np.ndarray]], task: str, path: str) -> Optional[str]:
    """pr_<task>.png: precision-recall at IoU 0.5 and 0.75 (all areas, most detections).

    One run: a thin line per class and the class mean in black. Several runs: each run's class mean. `runs` maps a
    label to what load_precision read. Returns the path, or None without matplotlib.
    """
    if not matplotlib_available():
        return None
    fig = _figure(12, 5.5)
    axes = fig.subplots(1, len(PR_IOUS))
    for ax, iou in zip(axes, PR_IOUS):
        for r, (label, data) in enumerate(runs.items()):
            recall, curves = pr_curves(data, iou)
            if len(runs) == 1:
                show_legend = len(curves) <= 20
                for c, (name, p) in enumerate(curves.items()):
                    ax.plot(recall, p, linewidth=1, color=f"C{c % 10}" if show_legend else "0.7",
                            label=f"{name} {p.mean() * 100:.1f}" if show_legend else None)
                ax.plot(recall, mean_pr_curve(curves), linewidth=2.5, color="black",
                        label=f"all classes {ap_at(curves):.1f}")
            else:
                ax.plot(recall, mean_pr_curve(curves), linewidth=2, color=f"C{r}",
                        label=f"{label}: {ap_at(curves):.1f}")
        ax.set_title(f"{task} precision-recall at IoU {iou:g} (legend: AP{int(round(iou * 100))})")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_confusion(data: Dict[str, Any], path: str) -> Optional[str]:
    """confusion_segm.png: counts, coloured by the share of each ground-truth row. Returns the path, or None."""
    if not matplotlib_available():
        return None
    matrix = np.asarray(data["matrix"])
    rows = [*data["class_names"], "background"]
    cols = [*data["class_names"], "missed"]
    n = len(rows)
    size = min(4 + 0.45 * n, 30)
    fig = _figure(size + 1.5, size)
    ax = fig.subplots()
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the row")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=9,
                            color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), cols, rotation=90 if n > 8 else 45, ha="right" if n <= 8 else "center")
    ax.set_yticks(range(n), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(f"segm confusion ({data.get('num_images', '?')} images; mask IoU >= {data['iou_thr']:g}, "
                 f"score >= {data['score_thr']:g})")
    return _save(fig, path)


def evaluation_dirs(output_dir: str) -> Dict[str, Tuple[str, str]]:
    """{label: (inference folder, plots folder)} of a run's evaluated test sets.

    One test set: OUTPUT_DIR/inference -> OUTPUT_DIR/plots; several: inference/<name> -> plots/<name>.
    """
    inference = os.path.join(output_dir, "inference")
    plots = os.path.join(output_dir, PLOTS_DIR)
    found: Dict[str, Tuple[str, str]] = {}

    def evaluated(folder: str) -> bool:
        return any(os.path.exists(os.path.join(folder, f))
                   for f in (PRECISION_FILE.format(task="segm"), PRECISION_FILE.format(task="bbox"), CONFUSION_FILE))

    if evaluated(inference):
        found[""] = (inference, plots)
    elif os.path.isdir(inference):
        for name in sorted(os.listdir(inference)):
            if evaluated(os.path.join(inference, name)):
                found[name] = (os.path.join(inference, name), os.path.join(plots, name))
    return found


def draw_evaluation_plots(inference_dir: str, plots_dir: str) -> List[str]:
    """pr_segm.png, pr_bbox.png, confusion_segm.png and .csv from one evaluation's saved results; the paths written.

    The CSV needs no matplotlib and is always written.
    """
    written: List[str] = []
    confusion_path = os.path.join(inference_dir, CONFUSION_FILE)
    if os.path.exists(confusion_path):
        data = load_confusion(confusion_path)
        os.makedirs(plots_dir, exist_ok=True)
        csv_path = os.path.join(plots_dir, "confusion_segm.csv")
        tmp = f"{csv_path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(confusion_csv(data["matrix"], data["class_names"]))
        os.replace(tmp, csv_path)
        written.append(csv_path)
        if (p := plot_confusion(data, os.path.join(plots_dir, "confusion_segm.png"))) is not None:
            written.append(p)
    for task in ("segm", "bbox"):
        npz = os.path.join(inference_dir, PRECISION_FILE.format(task=task))
        png = os.path.join(plots_dir, f"pr_{task}.png")
        if os.path.exists(npz):
            if (p := plot_pr_curves({"": load_precision(npz)}, task, png)):
                written.append(p)
        elif os.path.exists(png):
            os.remove(png)  # the model predicted nothing this time: no curve, rather than the previous one
    return written


def draw_run_plots(output_dir: str, evaluation: bool = True, plots_root: Optional[str] = None) -> List[str]:
    """curves.png from OUTPUT_DIR/metrics.json and (with `evaluation`) every test set's evaluation plots.

    The figures go to plots_root (default OUTPUT_DIR/plots; one sub-folder per test set when there are several).
    """
    written: List[str] = []
    plots_root = plots_root or os.path.join(output_dir, PLOTS_DIR)
    metrics = os.path.join(output_dir, "metrics.json")
    if os.path.exists(metrics):
        records = read_metrics(metrics)
        if records and (p := plot_training_curves({"": records}, os.path.join(plots_root, "curves.png"))):
            written.append(p)
    if evaluation:
        for name, (inference_dir, _) in evaluation_dirs(output_dir).items():
            written += draw_evaluation_plots(inference_dir, os.path.join(plots_root, name) if name else plots_root)
    return written


def mosaic_path(plots_dir: str) -> str:
    """Where an evaluation's ground truth / prediction mosaic goes."""
    return os.path.join(plots_dir, MOSAIC_FILE)
