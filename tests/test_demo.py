"""demo/demo.py end to end (images with a corrupt one, JSON, video in -> video out) and DefaultPredictor."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from solov2.checkpoint import Checkpointer
from solov2.config import get_cfg
from solov2.engine.predictor import DefaultPredictor
from solov2.modeling import build_model
from solov2.structures import Instances
from solov2.utils.error_reporting import run_tool

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "demo.py"
CONFIG = REPO / "configs" / "quickstart" / "shapes_R18.yaml"
# Random weights detect nothing at the default thresholds; --confidence-threshold 0 (which sets SCORE_THR) and
# UPDATE_THR 0 make the drawing path run.
OPTS = ["MODEL.SOLOV2.UPDATE_THR", "0.0", "MODEL.SOLOV2.MAX_PER_IMG", "5",
        "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "192"]


def _run(args, **kw):
    return subprocess.run([sys.executable, str(DEMO), "--config-file", str(CONFIG), *args],
                          capture_output=True, text=True, timeout=240, cwd=str(REPO), **kw)


@pytest.mark.slow
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
    expected = [i.name for i in images] + [i.stem + ".json" for i in images]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)  # one image and one JSON per readable input
    for img in images:
        vis = cv2.imread(str(out / img.name))
        original = cv2.imread(str(img))
        assert vis is not None and vis.shape == original.shape
        preds = json.loads((out / (img.stem + ".json")).read_text())
        assert isinstance(preds, list) and 0 < len(preds) <= 5
        assert np.abs(vis.astype(int) - original).max() > 50  # masks and labels were drawn
        h, w = original.shape[:2]
        for p in preds:
            assert {"segmentation", "bbox", "score", "category_id", "category_name"} <= set(p)
            assert p["segmentation"]["size"] == [h, w] and 0.0 <= p["score"] <= 1.0
            assert p["category_name"] in ("circle", "rectangle", "triangle")  # the config's dataset's classes
            x, y, bw, bh = p["bbox"]
            assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h


@pytest.mark.slow
def test_demo_video_keeps_frame_count(tmp_path):
    src = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (96, 64))
    for i in range(7):
        frame = np.full((64, 96, 3), 40, np.uint8)
        cv2.circle(frame, (10 + 10 * i, 32), 12, (0, 200, 255), -1)
        writer.write(frame)
    writer.release()
    out = tmp_path / "vis"
    r = _run(["--video-input", str(src), "--output", str(out), "--confidence-threshold", "0.0", "--opts", *OPTS])
    assert r.returncode == 0, r.stdout + r.stderr
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (64, 96, 3)
        n += 1
    assert n == 7
    assert abs(cap.get(cv2.CAP_PROP_FPS) - 12.0) < 0.5


def _demo_main():
    spec = importlib.util.spec_from_file_location("solov2_demo_script", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("args, message", [
    ([], "Nothing to do"),
    (["--input", "a.jpg", "--json"], "--json"),
    (["--video-input", "missing_clip.mp4", "--output", "x"], "missing_clip.mp4"),
    (["--input", "no_such_dir/*.jpg", "--output", "x"], "no_such_dir/*.jpg"),
])
def test_demo_command_line_errors_name_the_problem(args, message, capsys):
    # These are caught before the model is built, so they are cheap to run in-process, through the same run_tool
    # the script's __main__ uses: one ERROR line on stderr and exit status 1.
    assert run_tool(_demo_main(), ["--config-file", str(CONFIG), *args]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("ERROR: ") and message in err[0]


def _small_cfg(**overrides):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG))
    cfg.merge_from_list(["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "80", "MODEL.DEVICE", "cpu"])
    for k, v in overrides.items():
        cfg.merge_from_list([k, v])
    return cfg


class _Recorder(torch.nn.Module):
    """Stands in for the model: records what the predictor feeds it."""

    def forward(self, batched_inputs):
        self.inputs = batched_inputs
        x = batched_inputs[0]
        return [{"instances": Instances((x["height"], x["width"]))}]


def test_predictor_resizes_and_orders_channels():
    image = np.zeros((100, 200, 3), np.uint8)
    image[..., 0] = 255  # blue in OpenCV's BGR order
    for fmt, blue_channel in (("BGR", 0), ("RGB", 2)):
        predictor = DefaultPredictor(_small_cfg(**{"INPUT.FORMAT": fmt}))
        predictor.model = _Recorder()
        predictor(image)
        x = predictor.model.inputs[0]
        # short side 100 -> 64 makes the long side 128 > 80, so the long side caps the scale: 40 x 80
        assert x["image"].shape == (3, 40, 80) and x["image"].dtype == torch.uint8
        assert (x["height"], x["width"]) == (100, 200)
        assert int(x["image"][blue_channel].min()) == 255 and int(x["image"].sum(0).max()) == 255


def test_predictor_loads_weights_and_predicts_in_image_size(tmp_path):
    cfg = _small_cfg(**{"MODEL.SOLOV2.SCORE_THR": "0.0", "MODEL.SOLOV2.UPDATE_THR": "0.0"})
    torch.manual_seed(1)
    saved = build_model(cfg)
    Checkpointer(saved, str(tmp_path)).save("weights")
    cfg.MODEL.WEIGHTS = str(tmp_path / "weights.pth")
    predictor = DefaultPredictor(cfg)
    for (name, a), b in zip(saved.state_dict().items(), predictor.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert not predictor.model.training
    image = np.random.RandomState(0).randint(0, 256, (90, 130, 3)).astype(np.uint8)
    inst = predictor(image)["instances"]
    assert len(inst) > 0 and inst.pred_masks.shape[1:] == (90, 130) and inst.pred_masks.dtype == torch.bool
    assert inst.image_size == (90, 130)


def test_predictor_rejects_a_grey_image():
    predictor = DefaultPredictor(_small_cfg())
    with pytest.raises(ValueError, match="H x W x 3"):
        predictor(np.zeros((20, 30), np.uint8))
