"""tools/d2_train_net.py: Detectron2's DefaultTrainer with its default mapper (polygons) on a tiny shapes split,
--resume from the checkpoint, then --eval-only through Detectron2's COCOEvaluator (segm and bbox AP)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("detectron2", reason="Detectron2 is not installed (CI installs ../shared/wheels/detectron2-*.whl)")

from d2_helpers import write_polygon_shapes  # noqa: E402

pytestmark = pytest.mark.slow  # subprocess launches / trainings

REPO = Path(__file__).resolve().parents[1]

# A narrow R18-FPN SOLOv2 Detectron2 can build (its R18 needs 64 res2 channels) on 64 px images.
TINY_YAML = """
_BASE_: "{base}"
MODEL:
  DEVICE: "cpu"
  WEIGHTS: ""
  RESNETS:
    DEPTH: 18
    RES2_OUT_CHANNELS: 64
    STEM_OUT_CHANNELS: 32
  FPN:
    OUT_CHANNELS: 32
  SOLOV2:
    NUM_CLASSES: 3
    INSTANCE_IN_CHANNELS: 32
    INSTANCE_CHANNELS: 32
    NUM_INSTANCE_CONVS: 1
    NUM_KERNELS: 32
    MASK_IN_CHANNELS: 32
    MASK_CHANNELS: 32
    NUM_MASKS: 32
    NUM_GRIDS: [12, 10, 8, 6, 4]
    FPN_SCALE_RANGES: ((1, 32), (16, 64), (32, 128), (64, 256), (128, 512))
INPUT:
  MASK_FORMAT: "polygon"
  MIN_SIZE_TRAIN: (64,)
  MAX_SIZE_TRAIN: 128
  MIN_SIZE_TEST: 64
  MAX_SIZE_TEST: 128
DATALOADER:
  NUM_WORKERS: 0
SOLVER:
  OPTIMIZER: "ADAMW"
  BASE_LR: 0.001
  IMS_PER_BATCH: 2
  MAX_ITER: 2
  WARMUP_ITERS: 1
  STEPS: ()
  CHECKPOINT_PERIOD: 100
TEST:
  EVAL_PERIOD: 0
SEED: 1
"""


def _run(args, cwd, expect_ok=True):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="2")
    env.pop("SOLOV2_DEBUG", None)
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "d2_train_net.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    if not expect_ok:
        return proc
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def _copypaste(log: str, task: str) -> dict:
    """The AP row Detectron2's print_csv_format logs for `task`."""
    m = re.search(rf"copypaste: Task: {task}\n.*copypaste: ([\w,]+)\n.*copypaste: ([-\d.,na]+)\n", log)
    assert m, f"no {task} results in the log"
    return dict(zip(m.group(1).split(","), (float(v) for v in m.group(2).split(","))))


def test_detectron2_trainer_resume_and_eval_only(tmp_path):
    json_file, image_root = write_polygon_shapes(str(tmp_path / "data"), num_images=6, seed=5)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML.format(base=REPO / "configs" / "SOLOv2" / "Base-SOLOv2.yaml"))
    out = tmp_path / "out"
    flags = ["--config-file", str(cfg), "--register-coco", "tiny_shapes", json_file, image_root]
    opts = ["DATASETS.TRAIN", "('tiny_shapes',)", "OUTPUT_DIR", str(out)]

    log = _run([*flags, *opts, "DATASETS.TEST", "()"], tmp_path)
    assert "Starting training from iteration 0" in log and "[DatasetMapper]" in log
    ckpt = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["iteration"] == 1
    # SOLVER.OPTIMIZER ADAMW reached Detectron2's trainer: the saved optimizer state is AdamW's.
    optimizer = ckpt["trainer"]["_trainer"]["optimizer"]
    assert "betas" in optimizer["param_groups"][0] and "exp_avg" in next(iter(optimizer["state"].values()))

    log = _run([*flags, "--resume", *opts, "DATASETS.TEST", "()", "SOLVER.MAX_ITER", "3"], tmp_path)
    assert "Starting training from iteration 2" in log
    assert torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["iteration"] == 2

    # Two iterations teach little: let every candidate through so that COCO AP is computed on real predictions.
    log = _run([*flags, "--eval-only", *opts, "DATASETS.TEST", "('tiny_shapes',)", "MODEL.WEIGHTS",
                str(out / "model_final.pth"), "MODEL.SOLOV2.SCORE_THR", "0.0", "MODEL.SOLOV2.UPDATE_THR", "0.0"],
               tmp_path)
    assert "COCOeval_opt" in log or "COCOeval" in log
    for task in ("bbox", "segm"):
        ap = _copypaste(log, task)
        assert set(ap) >= {"AP", "AP50", "AP75"} and all(0.0 <= ap[k] <= 100.0 for k in ("AP", "AP50", "AP75")), ap
        assert not math.isnan(ap["AP"])
    assert (out / "inference" / "coco_instances_results.json").stat().st_size > 2


def test_user_error_is_one_error_line(tmp_path):
    """A mistake in what the user gave ends the Detectron2 tool as it ends solov2's: one ERROR line, status 1."""
    json_file, image_root = write_polygon_shapes(str(tmp_path / "data"), num_images=2, seed=5)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML.format(base=REPO / "configs" / "SOLOv2" / "Base-SOLOv2.yaml"))
    proc = _run(["--config-file", str(cfg), "--register-coco", "tiny_err", json_file, image_root,
                 "DATASETS.TRAIN", "('tiny_err',)", "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path / "out"),
                 "MODEL.SOLOV2.NUM_CLASSES", "7"], tmp_path, expect_ok=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("ERROR: MODEL.SOLOV2.NUM_CLASSES is 7") and "Set MODEL.SOLOV2.NUM_CLASSES 3" in lines[-1]
    assert sum(line.startswith("ERROR:") for line in lines) == 1
    assert "Traceback" not in proc.stderr
