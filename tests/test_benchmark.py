"""tools/benchmark.py runs on CPU with a tiny config, prints its table and writes the expected JSON fields."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from solov2.data.datasets import ensure_shapes_split

pytestmark = pytest.mark.slow  # subprocess launches / trainings

REPO = Path(__file__).resolve().parents[1]
BENCH = [sys.executable, str(REPO / "tools" / "benchmark.py"), "--config-file",
         str(REPO / "configs" / "quickstart" / "shapes_R18.yaml")]


def _run(args):
    return subprocess.run(BENCH + args, capture_output=True, text=True, timeout=240, cwd=str(REPO))


def test_benchmark_cpu_json(tmp_path):
    out = tmp_path / "bench.json"
    r = _run(["--input-size", "128x160", "--batch-sizes", "1", "2", "--iters", "2", "--warmup", "1", "--train",
              "--nms-masks", "50", "--output", str(out)])
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["input_size"] == [128, 160] and data["device"] == "cpu" and data["amp"] is False
    assert [x["batch_size"] for x in data["inference"]] == [1, 2]
    for x in data["inference"]:
        assert x["latency_median_s"] >= x["latency_min_s"] > 0
        assert abs(x["images_per_s"] - x["batch_size"] / x["latency_median_s"]) < 1e-6
        # "full" candidates: post-processing really runs and keeps up to MAX_PER_IMG masks per image
        assert len(x["instances_per_image"]) == x["batch_size"] and all(n > 0 for n in x["instances_per_image"])
    t = data["train"]
    assert t["batch_size"] == 2 and t["data"] == "synthetic" and t["data_time_median_s"] is None
    assert t["iter_time_median_s"] == t["step_time_median_s"] > 0
    assert t["last_batch_sizes_hw"] == [[128, 160], [128, 160]]
    nms = data["matrix_nms"]
    assert nms["num_masks"] == 50 and nms["mask_size"] == [32, 40] and nms["time_median_s"] > 0
    assert data["peak_memory_mb"] > 0 and "peak_memory_delta_mb" in data
    for text in ("latency (median)", "throughput", "training iteration", "training step time", "Matrix NMS, 50 masks",
                 "peak memory", "training data time, batch 2", "not measured (synthetic batch"):
        assert text in r.stdout


def test_benchmark_train_data_time_from_the_dataset(tmp_path):
    """--train-data dataset: batches come from DATASETS.TRAIN through the training loader; data and step timed apart."""
    json_file, image_root = ensure_shapes_split(str(tmp_path), "bench", num_images=4, seed=5)
    out = tmp_path / "bench.json"
    r = _run(["--batch-sizes", "1", "--iters", "4", "--warmup", "2", "--train", "--train-data", "dataset",
              "--train-batch-size", "2", "--output", str(out), "--opts",
              "DATASETS.COCO_INSTANCES", f"(('bench_shapes', '{json_file}', '{image_root}'),)",
              "DATASETS.TRAIN", "('bench_shapes',)", "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "160"])
    assert r.returncode == 0, r.stderr
    t = json.loads(out.read_text())["train"]
    assert t["data"] == "dataset" and t["batch_size"] == 2
    assert t["data_time_median_s"] > 0 and t["step_time_median_s"] > 0
    assert t["iter_time_median_s"] == pytest.approx(t["data_time_median_s"] + t["step_time_median_s"])
    # The dataset's images at the configured training size (short side 96), not --input-size.
    assert len(t["last_batch_sizes_hw"]) == 2 and all(min(hw) == 96 for hw in t["last_batch_sizes_hw"])
    assert "training data time, batch 2 (dataset)" in r.stdout and "training step time, batch 2" in r.stdout


def test_benchmark_bad_input_size_is_named():
    r = _run(["--input-size", "800by1216"])
    assert r.returncode != 0 and "--input-size" in r.stderr and "800by1216" in r.stderr
