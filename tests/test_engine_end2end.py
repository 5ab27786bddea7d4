"""tools/train_net.py end to end on CPU: 2-process gloo training + evaluation, resume, --eval-only."""

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from solov2.data.datasets import ensure_shapes_split

pytestmark = pytest.mark.slow  # subprocess launches / trainings

REPO = Path(__file__).resolve().parents[1]
TRAIN_NET = REPO / "tools" / "train_net.py"
CONFIG = REPO / "configs" / "quickstart" / "shapes_R18.yaml"
MAX_PER_IMG = 3


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e_data")
    json_file, image_root = ensure_shapes_split(str(root), "e2e", num_images=6, seed=21)
    return json_file, image_root


def _train_net(tiny_split, out_dir, *extra, num_gpus=1, opts=()):
    json_file, image_root = tiny_split
    cmd = [sys.executable, str(TRAIN_NET), "--config-file", str(CONFIG), "--num-gpus", str(num_gpus),
           "--register-coco", "e2e_shapes", json_file, image_root, *extra,
           "DATASETS.TRAIN", "('e2e_shapes',)", "DATASETS.TEST", "('e2e_shapes',)",
           "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "(4,)",
           "SOLVER.CHECKPOINT_PERIOD", "3", "DATALOADER.NUM_WORKERS", "0",
           "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MIN_SIZE_TEST", "96",
           # untrained: let every image produce exactly MAX_PER_IMG detections so coverage can be counted
           "MODEL.SOLOV2.SCORE_THR", "0.0", "MODEL.SOLOV2.UPDATE_THR", "0.0", "MODEL.SOLOV2.MAX_PER_IMG", str(MAX_PER_IMG),
           "SEED", "3", "OUTPUT_DIR", str(out_dir), *opts]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=str(REPO), env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _metrics(out_dir):
    return [json.loads(line) for line in (Path(out_dir) / "metrics.json").read_text().splitlines() if line.strip()]


def test_two_process_training_and_evaluation(tiny_split, tmp_path):
    out = tmp_path / "ddp"
    _train_net(tiny_split, out, num_gpus=2, opts=["SOLVER.MAX_ITER", "4"])
    files = sorted(os.listdir(out))
    assert "model_final.pth" in files and "metrics.json" in files and "config.yaml" in files
    assert len([f for f in files if f.startswith("events.out.tfevents")]) == 1  # one writer: rank 0
    assert "log.txt" in files and "log.txt.rank1" in files
    train_rows = [m for m in _metrics(out) if "total_loss" in m]
    assert train_rows and all(m["total_loss"] == m["total_loss"] and m["total_loss"] < 1e6 for m in train_rows)
    assert train_rows[-1]["iteration"] == 3
    results = json.loads((out / "inference" / "coco_instances_results.json").read_text())
    per_image = Counter(r["image_id"] for r in results)
    image_ids = {img["id"] for img in json.loads(Path(tiny_split[0]).read_text())["images"]}
    assert set(per_image) == image_ids  # every image evaluated ...
    assert set(per_image.values()) == {MAX_PER_IMG}  # ... exactly once (twice would double its detections)
    log = (out / "log.txt").read_text()
    assert "predicted more than once" not in log and "were not run through the model" not in log


def test_resume_matches_uninterrupted_run(tiny_split, tmp_path):
    full = tmp_path / "full"
    _train_net(tiny_split, full, opts=["SOLVER.MAX_ITER", "6"])
    # The same run "killed" after the checkpoint at iteration 3: a copy of it with the later files gone.
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    for f in os.listdir(cut):
        if (f.startswith("model_") and f != "model_0000002.pth") or f.startswith(("log.txt", "events.out")):
            os.remove(cut / f)  # the logs too, so what is checked below comes from the resumed run only
    (cut / "last_checkpoint").write_text("model_0000002.pth")
    (cut / "metrics.json").unlink()
    r = _train_net(tiny_split, cut, "--resume", opts=["SOLVER.MAX_ITER", "6"])
    assert "model_0000002.pth" in r.stdout + r.stderr + (cut / "log.txt").read_text()
    resumed = [m for m in _metrics(cut) if "lr" in m]
    uninterrupted = [m for m in _metrics(full) if "lr" in m]
    assert "Starting training from iteration 3" in (cut / "log.txt").read_text()  # not from 0
    assert resumed[-1]["iteration"] == uninterrupted[-1]["iteration"] == 5
    assert resumed[-1]["lr"] == pytest.approx(uninterrupted[-1]["lr"])
    assert (cut / "model_final.pth").exists()


def test_eval_only_on_saved_checkpoint(tiny_split, tmp_path):
    out = tmp_path / "train"
    _train_net(tiny_split, out, opts=["SOLVER.MAX_ITER", "3"])
    ev = tmp_path / "eval"
    r = _train_net(tiny_split, ev, "--eval-only", opts=["MODEL.WEIGHTS", str(out / "model_final.pth")])
    assert "copypaste: Task: segm" in r.stdout + r.stderr + (ev / "log.txt").read_text()
    # Both commands end by logging their whole wall time (start-up, data, training, evaluation).
    for log in (out / "log.txt", ev / "log.txt"):
        assert re.search(r"Total wall time of this command: \d+:\d\d:\d\d\n", log.read_text()), log
    # The checkpoint reproduces exactly the predictions the training run's final evaluation made.
    evaluated = json.loads((ev / "inference" / "coco_instances_results.json").read_text())
    at_train_end = json.loads((out / "inference" / "coco_instances_results.json").read_text())
    assert evaluated and evaluated == at_train_end
    assert not (ev / "model_final.pth").exists()  # evaluation trains nothing


def test_num_classes_mismatch_stops_at_startup(tiny_split, tmp_path):
    json_file, image_root = tiny_split
    r = subprocess.run(
        [sys.executable, str(TRAIN_NET), "--config-file", str(CONFIG), "--register-coco", "e2e_bad", json_file,
         image_root, "DATASETS.TRAIN", "('e2e_bad',)", "MODEL.SOLOV2.NUM_CLASSES", "7", "OUTPUT_DIR", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=str(REPO),
    )
    assert r.returncode == 1
    err = r.stderr.splitlines()
    assert len(err) == 1 and err[0].startswith("ERROR: MODEL.SOLOV2.NUM_CLASSES is 7 but the training dataset")
    assert "Set MODEL.SOLOV2.NUM_CLASSES 3" in err[0] and "Traceback" not in r.stdout
