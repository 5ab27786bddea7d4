"""demo/demo.py end to end: images (with a corrupt one), JSON output, and video in -> video out."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "demo.py"
CONFIG = REPO / "configs" / "quickstart" / "shapes_R18.yaml"
# Random weights detect nothing at the default thresholds; low ones make the drawing path run.
OPTS = ["MODEL.SOLOV2.SCORE_THR", "0.0", "MODEL.SOLOV2.UPDATE_THR", "0.0", "MODEL.SOLOV2.MAX_PER_IMG", "5",
        "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "192"]


def _run(args, **kw):
    return subprocess.run([sys.executable, str(DEMO), "--config-file", str(CONFIG), *args],
                          capture_output=True, text=True, timeout=240, cwd=str(REPO), **kw)


def test_demo_on_labelme_images_with_a_corrupt_input(shared_data, tmp_path):
    images = sorted((shared_data / "voc_labelme_coco" / "JPEGImages").glob("*.jpg"))
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8 this is not an image")
    out = tmp_path / "out"
    r = _run(["--input", *map(str, images), str(corrupt), "--output", str(out), "--json",
              "--confidence-threshold", "0.0", "--opts", *OPTS])
    assert r.returncode == 1, r.stdout + r.stderr  # one input failed
    text = r.stdout + r.stderr
    assert "Skipping" in text and "broken.jpg" in text and "1 failed" in text
    for img in images:
        vis = cv2.imread(str(out / img.name))
        assert vis is not None and vis.shape == cv2.imread(str(img)).shape
        preds = json.loads((out / (img.stem + ".json")).read_text())
        assert isinstance(preds, list) and len(preds) <= 5
        for p in preds:
            assert {"segmentation", "bbox", "score", "category_id", "category_name"} <= set(p)
            assert p["segmentation"]["size"] == list(vis.shape[:2])


def test_demo_video_keeps_frame_count(tmp_path):
    src = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (96, 64))
    for i in range(7):
        frame = np.full((64, 96, 3), 40, np.uint8)
        cv2.circle(frame, (10 + 10 * i, 32), 12, (0, 200, 255), -1)
        writer.write(frame)
    writer.release()
    out = tmp_path / "vis"
    r = _run(["--video-input", str(src), "--output", str(out), "--opts", *OPTS])
    assert r.returncode == 0, r.stdout + r.stderr
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 7
    assert abs(cap.get(cv2.CAP_PROP_FPS) - 12.0) < 0.5


def test_demo_without_inputs_is_an_error():
    r = _run(["--opts", *OPTS])
    assert r.returncode != 0 and "Nothing to do" in r.stdout + r.stderr
