"""tools/benchmark.py runs on CPU with a tiny config, prints its table and writes the expected JSON fields."""

import json
import subprocess
import sys
from pathlib import Path

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
    assert data["train"]["batch_size"] == 2 and data["train"]["iter_time_median_s"] > 0
    nms = data["matrix_nms"]
    assert nms["num_masks"] == 50 and nms["mask_size"] == [32, 40] and nms["time_median_s"] > 0
    assert data["peak_memory_mb"] > 0 and "peak_memory_delta_mb" in data
    for text in ("latency (median)", "throughput", "training iteration", "Matrix NMS, 50 masks", "peak memory"):
        assert text in r.stdout


def test_benchmark_bad_input_size_is_named():
    r = _run(["--input-size", "800by1216"])
    assert r.returncode != 0 and "--input-size" in r.stderr and "800by1216" in r.stderr
