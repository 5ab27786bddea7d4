"""tools/benchmark.py runs on CPU with a tiny config and writes the expected JSON fields."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_cpu_json(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "benchmark.py"), "--config-file",
         str(REPO / "configs" / "quickstart" / "shapes_R18.yaml"), "--input-size", "128x160", "--batch-sizes", "1", "2",
         "--iters", "2", "--warmup", "1", "--train", "--nms-masks", "50", "--output", str(out)],
        capture_output=True, text=True, timeout=240, cwd=str(REPO),
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert [x["batch_size"] for x in data["inference"]] == [1, 2]
    assert all(x["latency_median_s"] > 0 and x["images_per_s"] > 0 for x in data["inference"])
    assert data["train"]["iter_time_median_s"] > 0
    assert data["matrix_nms"]["num_masks"] == 50 and data["matrix_nms"]["time_median_s"] > 0
    assert data["peak_memory_mb"] > 0
    assert "latency" in r.stdout and "Matrix NMS" in r.stdout
