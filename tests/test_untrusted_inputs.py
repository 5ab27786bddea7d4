"""Untrusted files run no code; interrupts and full disks end in one line; evaluation scores what training sees.

Each case goes through the real command line (tools/train_net.py, demo/demo.py, tools/visualize_data.py,
tools/export_onnx.py) and checks the last line, the exit status, and that nothing was overwritten. A malicious
checkpoint, pickle or YAML file tries to create a marker file: it must not exist afterwards.
"""

import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from solov2.data.datasets import ensure_shapes_split
from solov2.utils.run_lock import LOCK_NAME

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "quickstart" / "shapes_R18.yaml"
TRAIN_NET = REPO / "tools" / "train_net.py"
DEMO = REPO / "demo" / "demo.py"
VISUALIZE = REPO / "tools" / "visualize_data.py"
EXPORT = REPO / "tools" / "export_onnx.py"

pytestmark = pytest.mark.slow


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("SOLOV2_DEBUG", None)
    return env


def run(cmd, timeout=240):
    """Run a command line in the repository; returns (exit status, stdout, stderr lines)."""
    r = subprocess.run([sys.executable, *map(str, cmd)], capture_output=True, text=True, timeout=timeout,
                       cwd=str(REPO), env=_env())
    _record_case(r.returncode, r.stdout, r.stderr)
    return r.returncode, r.stdout, r.stderr.splitlines()


def _record_case(code, stdout, stderr):
    """With SOLOV2_CASE_LOG=<file>: append the test, exit status and last printed line (for the closing note)."""
    log = os.environ.get("SOLOV2_CASE_LOG")
    if log:
        err, out = stderr.strip().splitlines(), stdout.strip().splitlines()
        last = err[-1] if err and err[-1].startswith("ERROR:") else (out[-1] if out else (err[-1] if err else ""))
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0]
        with open(log, "a") as f:
            f.write(json.dumps({"test": test, "status": code, "last": last}) + "\n")


def digests(folder: Path):
    """{relative path: bytes} of every file under `folder` (small test files)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("untrusted_data")
    return ensure_shapes_split(str(root), "untrusted", num_images=4, seed=21)


def train_args(split, out_dir, *extra, max_iter=6, test=False):
    json_file, image_root = split
    return [TRAIN_NET, "--config-file", CONFIG, "--register-coco", "u_shapes", json_file, image_root, *extra,
            "DATASETS.TRAIN", "('u_shapes',)", "DATASETS.TEST", "('u_shapes',)" if test else "()",
            "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", str(max_iter), "SOLVER.WARMUP_ITERS", "2",
            "SOLVER.CHECKPOINT_PERIOD", "3", "DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TRAIN", "(64,)",
            "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "128", "SEED", "1", "OUTPUT_DIR", out_dir]


def eval_args(split, out_dir, *extra, json_file=None):
    j, image_root = split
    return [TRAIN_NET, "--config-file", CONFIG, "--eval-only", "--register-coco", "u_val", json_file or j,
            image_root, "DATASETS.TEST", "('u_val',)", "DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TEST", "64",
            "INPUT.MAX_SIZE_TEST", "128", *extra, "OUTPUT_DIR", out_dir]


@pytest.fixture(scope="module")
def trained(split, tmp_path_factory):
    """A finished 6-iteration run (checkpoints at iterations 2 and 5, model_final)."""
    out = tmp_path_factory.mktemp("trained") / "out"
    code, stdout, err = run(train_args(split, out))
    assert code == 0, stdout[-2000:] + "\n".join(err)
    return out


def assert_error(code, err, *parts, status=1):
    """Exit status and stderr being exactly one ERROR line containing every part."""
    assert code == status, err
    assert len(err) == 1 and err[0].startswith("ERROR: "), err
    for p in parts:
        assert p in err[0], err[0]


class _Payload:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ---------------------------------------------------------------------------------------------- security
def test_malicious_checkpoint_and_pickle_run_no_code(split, tmp_path):
    marker = tmp_path / "PWNED"
    pth = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": _Payload(marker)}, pth)
    pkl = tmp_path / "evil.pkl"
    with open(pkl, "wb") as f:
        pickle.dump({"blobs": {"conv1_w": np.zeros((1,), np.float32)}, "x": _Payload(marker)}, f, protocol=2)
    for weights in (pth, pkl):
        code, _, err = run(eval_args(split, tmp_path / f"out_{weights.suffix[1:]}", "MODEL.WEIGHTS", weights))
        assert_error(code, err, f"Refusing to load '{weights}'", "posix.system", "could run arbitrary code")
        assert not marker.exists()


def test_yaml_python_tag_in_a_base_file_runs_no_code(tmp_path):
    marker = tmp_path / "PWNED"
    (tmp_path / "base.yaml").write_text(f'_BASE_: "{CONFIG}"\nSEED: 3\n'
                                        f'OUTPUT_DIR: !!python/object/apply:os.system ["touch {marker}"]\n')
    (tmp_path / "top.yaml").write_text('_BASE_: "base.yaml"\n')
    code, _, err = run([TRAIN_NET, "--config-file", tmp_path / "top.yaml", "OUTPUT_DIR", tmp_path / "out"])
    assert_error(code, err, f"Config file '{tmp_path / 'base.yaml'}' line 3 (a _BASE_ of", "python/object/apply",
                 "is refused")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_checkpoint_whose_embedded_config_has_a_python_tag_runs_no_code(tmp_path):
    """The config a checkpoint carries (read by predict/export/--eval-only without --config-file) is plain YAML only."""
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    torch.save({"model": {}, "class_names": ["a"],
                "config": f'SEED: !!python/object/apply:os.system ["touch {marker}"]\n'}, evil)
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    code, _, err = run([DEMO, "--weights", evil, "--input", image, "--output", tmp_path / "out"])
    assert_error(code, err, f"The config held by '{evil}' is not plain YAML", "is refused")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_base_cycle_is_named_with_its_chain(tmp_path):
    (tmp_path / "a.yaml").write_text('_BASE_: "b.yaml"\n')
    (tmp_path / "b.yaml").write_text('_BASE_: "a.yaml"\n')
    code, _, err = run([TRAIN_NET, "--config-file", tmp_path / "a.yaml"])
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert_error(code, err, f"_BASE_ cycle: '{a}' -> '{b}' -> '{a}'")


def test_image_paths_stay_under_the_image_root(split, tmp_path):
    json_file, image_root = split
    data = json.loads(Path(json_file).read_text())
    outside = tmp_path / "outside.png"
    cv2.imwrite(str(outside), np.zeros((64, 64, 3), np.uint8))
    victim = data["images"][1]
    victim["file_name"] = os.path.relpath(outside, image_root)  # ../../.../outside.png
    bad_json = tmp_path / "climbing.json"
    bad_json.write_text(json.dumps(data))
    common = [VISUALIZE, "--config-file", CONFIG, "--num", "1", "--output-dir", tmp_path / "vis",
              "DATASETS.COCO_INSTANCES", f"(('climb', '{bad_json}', '{image_root}'),)", "DATASETS.TRAIN", "('climb',)"]
    code, _, err = run(common)
    assert_error(code, err, f"'{bad_json}': image {victim['id']} has file_name '{victim['file_name']}'",
                 "leads outside image_root", "DATASETS.ALLOW_IMAGES_OUTSIDE_ROOT True")
    code, stdout, err = run(common + ["DATASETS.ALLOW_IMAGES_OUTSIDE_ROOT", "True"])
    assert code == 0, "\n".join(err)


# --------------------------------------------------------------------------------------- interrupts
def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < end, f"{path} did not appear"
        time.sleep(0.2)


def test_sigterm_ends_in_one_line_and_releases_the_lock(split, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, *map(str, train_args(split, out, max_iter=1000, test=True))],
                            cwd=str(REPO), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(out / "model_0000002.pth", proc)
    assert (out / LOCK_NAME).exists()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    _record_case(proc.returncode, stdout, stderr)
    err = stderr.splitlines()
    assert_error(proc.returncode, err, "Interrupted by SIGTERM during training at iteration",
                 "The last checkpoint", "is intact", f"Released the lock on OUTPUT_DIR '{out}'", status=143)
    assert not (out / LOCK_NAME).exists()
    assert not (out / "inference").exists() and "Evaluation results" not in stdout
    torch.load(out / (out / "last_checkpoint").read_text(), weights_only=True)  # intact


# Sends itself a real SIGINT (Ctrl-C) during the last iteration, or fails the final checkpoint save (a full disk).
LAST_ITERATION_FAULT = """
import errno, os, runpy, signal, sys
import torch
from solov2.engine.train_loop import SimpleTrainer

mode = sys.argv[1]
real_step, real_save = SimpleTrainer.run_step, torch.save


def step(self):
    real_step(self)
    if mode == "ctrl-c" and self.iter == 5:
        os.kill(os.getpid(), signal.SIGINT)


calls = []


def save(obj, f, *args, **kwargs):
    calls.append(1)
    if mode == "enospc" and len(calls) == 3:  # after model_0000002 and model_0000005: model_final
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_save(obj, f, *args, **kwargs)


SimpleTrainer.run_step, torch.save = step, save
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("mode,status,message", [
    ("ctrl-c", 130, "Interrupted by Ctrl-C during training at iteration 5 of 6"),
    ("enospc", 1, "Could not save checkpoint"),
])
def test_no_final_evaluation_after_an_interrupted_or_failed_last_iteration(split, tmp_path, mode, status, message):
    script = tmp_path / "fault.py"
    script.write_text(LAST_ITERATION_FAULT)
    out = tmp_path / "out"
    code, stdout, err = run([script, mode, *train_args(split, out, test=True)])
    assert_error(code, err, message, status=status)
    assert not (out / "inference").exists() and "Evaluation results" not in stdout
    assert not (out / LOCK_NAME).exists()


def test_a_lock_from_another_host_is_taken_over_only_when_asked(split, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"host=not-{socket.gethostname()}\npid=4242\nstarted=yesterday\n")
    code, _, err = run(train_args(split, out, max_iter=3))
    assert_error(code, err, f"is in use by a run on host not-{socket.gethostname()}", "TAKE_OVER_OUTPUT_DIR_LOCK True")
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    code, stdout, err = run(train_args(split, out, max_iter=3) + ["TAKE_OVER_OUTPUT_DIR_LOCK", "True"])
    assert code == 0, "\n".join(err)
    assert "Taking over OUTPUT_DIR" in (out / "log.txt").read_text() and not (out / LOCK_NAME).exists()


# ------------------------------------------------------------------------------------------ full disk
FULL_EVENTS = """
import errno, os, runpy, sys
from tensorboard.summary.writer import record_writer


def full(self, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


record_writer.RecordWriter.write = full
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("target", ["log.txt", "metrics.json", "events"])
def test_a_full_disk_while_logging_ends_in_one_line(split, tmp_path, target):
    out = tmp_path / "out"
    out.mkdir()
    cmd = train_args(split, out)
    if target == "events":
        script = tmp_path / "full_events.py"
        script.write_text(FULL_EVENTS)
        cmd = [script, *cmd]
    else:
        (out / target).symlink_to("/dev/full")  # writes fail with ENOSPC
    code, stdout, err = run(cmd)
    what = {"log.txt": f"the log file '{out}/log.txt'", "metrics.json": f"the metrics file '{out}/metrics.json'",
            "events": f"the TensorBoard event file in '{out}'"}[target]
    assert_error(code, err, f"Could not write {what}: no space left on device (the disk is full).")
    assert "Logging error" not in stdout + "\n".join(err)
    if target == "metrics.json":  # written at the last iteration, after its checkpoints
        assert err[0].endswith(f"The last checkpoint '{out}/model_final.pth' is intact (--resume continues from it).")
    assert not (out / LOCK_NAME).exists()


def test_a_full_disk_while_writing_results_ends_in_one_line(split, trained, tmp_path):
    out = tmp_path / "out"
    (out / "inference").mkdir(parents=True)
    (out / "inference" / "coco_instances_results.json").symlink_to("/dev/full")
    code, _, err = run(eval_args(split, out, "MODEL.WEIGHTS", trained / "model_final.pth"))
    assert_error(code, err, f"Could not write the results file '{out}/inference/coco_instances_results.json': no "
                 "space left on device")


# ------------------------------------------------------------------------------------------- weights
def test_resume_with_changed_shapes_is_refused_at_start(split, trained, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    before = digests(out)
    code, _, err = run(train_args(split, out, "--resume", max_iter=9) + ["MODEL.SOLOV2.INSTANCE_CHANNELS", "32"])
    assert_error(code, err, f"Cannot resume from '{out}/model_final.pth': the config changes the shape of",
                 "'ins_head.cate_tower.0.weight'", f"drop --resume, pass MODEL.WEIGHTS {out}/model_final.pth")
    after = digests(out)
    # Checkpoints, last_checkpoint and metrics untouched (config.yaml and log.txt are the new run's, as for any run).
    kept = [k for k in before if k not in ("config.yaml", "log.txt") and not k.startswith("events.")]
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}


def test_weights_that_do_not_fit_are_refused_unless_intended(split, trained, tmp_path):
    final = trained / "model_final.pth"
    code, _, err = run(eval_args(split, tmp_path / "e1", "MODEL.WEIGHTS", final, "MODEL.RESNETS.DEPTH", "34"))
    assert_error(code, err, f"MODEL.WEIGHTS '{final}' does not fit this model: 80 of the model's",
                 "MODEL.WEIGHTS_PARTIAL_OK True")
    code, stdout, err = run(eval_args(split, tmp_path / "e2", "MODEL.WEIGHTS", final, "MODEL.RESNETS.DEPTH", "34",
                                      "MODEL.WEIGHTS_PARTIAL_OK", "True"))
    assert code == 0, "\n".join(err)
    assert "Checkpoint does not match the model exactly (80 missing" in (tmp_path / "e2" / "log.txt").read_text()
    # Predicting with a half-loaded model is refused too (the demo; export loads the same way).
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    code, _, err = run([DEMO, "--weights", final, "--input", image, "--output", tmp_path / "pred", "MODEL.RESNETS.DEPTH",
                        "34"])
    assert_error(code, err, f"MODEL.WEIGHTS '{final}' does not fit this model: 80 of the model's")
    assert not (tmp_path / "pred").exists()
    # A deeper model's checkpoint into training: most of its parameters are not in the model.
    deeper = tmp_path / "r101ish.pth"
    code, _, err = run(["-c", "import torch, sys; from solov2.config import get_cfg; from solov2.modeling import "
                        "build_model; c = get_cfg(); c.merge_from_file(sys.argv[1]); c.MODEL.RESNETS.DEPTH = 101; "
                        "torch.save({'model': build_model(c).state_dict()}, sys.argv[2])", CONFIG, deeper])
    assert code == 0, err
    code, _, err = run(train_args(split, tmp_path / "t", max_iter=3) + ["MODEL.WEIGHTS", deeper])
    assert_error(code, err, "of its", "parameters are not in the model (e.g. 'backbone.bottom_up.")
    # NaN weights.
    state = torch.load(final, weights_only=True)["model"]
    state["mask_head.conv_pred.0.weight"] = torch.full_like(state["mask_head.conv_pred.0.weight"], float("nan"))
    torch.save({"model": state}, tmp_path / "nan.pth")
    code, _, err = run(eval_args(split, tmp_path / "e3", "MODEL.WEIGHTS", tmp_path / "nan.pth"))
    assert_error(code, err, "has NaN or infinite values in 1 parameter(s): 'mask_head.conv_pred.0.weight'")


# ---------------------------------------------------------------------------------------- evaluation
def test_rle_of_another_size_is_refused_in_evaluation_as_in_training(split, tmp_path):
    json_file, _ = split
    data = json.loads(Path(json_file).read_text())
    ann = data["annotations"][0]
    img = next(i for i in data["images"] if i["id"] == ann["image_id"])
    ann["segmentation"] = {"size": [img["height"] + 1, img["width"]], "counts": [(img["height"] + 1) * img["width"]]}
    bad = tmp_path / "rle.json"
    bad.write_text(json.dumps(data))
    message = f"'{bad}': annotation {ann['id']} (image {img['id']}, '{img['file_name']}'): its RLE size"
    code, _, err = run(eval_args(split, tmp_path / "e", json_file=bad))
    assert_error(code, err, message)
    _, image_root = split
    code, _, err = run(train_args((str(bad), image_root), tmp_path / "t", max_iter=3))
    assert_error(code, err, message)


def test_evaluation_scores_the_annotations_training_keeps(split, tmp_path):
    """Predictions equal to what the loader keeps score 100 in segm and bbox, with a degenerate annotation in the
    json (a valid polygon with a negative-width box) that the loader drops."""
    from solov2.data import DatasetCatalog, MetadataCatalog
    from solov2.data.datasets import register_coco_instances
    from solov2.evaluation import COCOEvaluator
    from solov2.structures import BitMasks, Instances
    from solov2.structures.masks import segmentation_to_bitmask

    json_file, image_root = split
    data = json.loads(Path(json_file).read_text())
    extra = dict(data["annotations"][0], id=99999, bbox=[10, 10, -5, 8])
    data["annotations"].append(extra)
    gt = tmp_path / "with_degenerate.json"
    gt.write_text(json.dumps(data))
    register_coco_instances("u_degenerate", {}, str(gt), image_root)
    evaluator = COCOEvaluator("u_degenerate", output_dir=str(tmp_path / "ev"))
    evaluator.reset()
    for d in DatasetCatalog.get("u_degenerate"):
        h, w = d["height"], d["width"]
        masks = np.stack([segmentation_to_bitmask(a["segmentation"], h, w) for a in d["annotations"]])
        inst = Instances((h, w), pred_masks=BitMasks(torch.from_numpy(masks)),
                         scores=torch.ones(len(masks)),
                         pred_classes=torch.tensor([a["category_id"] for a in d["annotations"]]))
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
    results = evaluator.evaluate()
    assert results["segm"]["AP"] == pytest.approx(100.0) and results["bbox"]["AP"] == pytest.approx(100.0)
    DatasetCatalog.pop("u_degenerate")
    MetadataCatalog.pop("u_degenerate")


# ------------------------------------------------------------------------------------ demo and tools
def test_demo_skips_a_named_pipe_and_marks_unnamed_classes(split, tmp_path):
    _, image_root = split
    inputs = tmp_path / "in"
    inputs.mkdir()
    first = sorted(Path(image_root).iterdir())[0]
    (inputs / "a.png").write_bytes(first.read_bytes())
    os.mkfifo(inputs / "b.png")
    out = tmp_path / "out"
    code, stdout, err = run([DEMO, "--config-file", CONFIG, "--input", inputs, "--output", out, "--json",
                             "--confidence-threshold", "0.0", "--opts", "MODEL.SOLOV2.NUM_CLASSES", "12",
                             "MODEL.SOLOV2.PRIOR_PROB", "0.5", "MODEL.SOLOV2.UPDATE_THR", "0.0",
                             "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "128"], timeout=120)
    assert code == 1, err
    assert stdout.splitlines()[-1] == "Done: 1 succeeded, 1 failed"
    assert f"Skipping '{inputs / 'b.png'}': it is a named pipe, not an image file" in stdout + "\n".join(err)
    results = json.loads((out / "a.json").read_text())
    unknown = [r for r in results if r.get("unknown_category")]
    assert unknown and all(r["category_name"] is None for r in unknown)
    known = [r for r in results if not r.get("unknown_category")]
    assert known and all(r["category_name"] in ("circle", "triangle", "rectangle") for r in known)


def test_visualize_data_refuses_two_images_drawn_to_one_file(split, tmp_path):
    json_file, image_root = split
    data = json.loads(Path(json_file).read_text())
    root = tmp_path / "images"
    for k, img in enumerate(data["images"][:2]):
        sub = root / f"d{k}"
        sub.mkdir(parents=True)
        (sub / "x.png").write_bytes((Path(image_root) / img["file_name"]).read_bytes())
        img["file_name"] = f"d{k}/x.png"
    data["images"] = data["images"][:2]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in {i["id"] for i in data["images"]}]
    j = tmp_path / "two.json"
    j.write_text(json.dumps(data))
    vis = tmp_path / "vis"
    code, _, err = run([VISUALIZE, "--config-file", CONFIG, "--output-dir", vis, "DATASETS.COCO_INSTANCES",
                        f"(('two', '{j}', '{root}'),)", "DATASETS.TRAIN", "('two',)"])
    assert_error(code, err, f"'{root}/d0/x.png' and '{root}/d1/x.png' would both be written to '{vis}/x.png'")
    assert not list(vis.glob("*.png"))


def test_export_checks_it_can_write_before_tracing(tmp_path):
    (tmp_path / "a_file").write_text("")
    start = time.perf_counter()
    code, _, err = run([EXPORT, "--config-file", CONFIG, "--output", tmp_path / "a_file" / "model.onnx"])
    assert_error(code, err, f"Cannot write the output '{tmp_path}/a_file/model.onnx': '{tmp_path}/a_file' is a file, "
                 "not a folder")
    assert time.perf_counter() - start < 60


def test_demo_onnx_skips_too_small_images_and_goes_on(split, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "m.onnx"
    small = ["INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160"]
    code, _, err = run([EXPORT, "--config-file", CONFIG, "--output", onnx, *small], timeout=600)
    assert code == 0, err
    _, image_root = split
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.png").write_bytes(sorted(Path(image_root).iterdir())[0].read_bytes())
    cv2.imwrite(str(inputs / "thin.png"), np.zeros((10, 400, 3), np.uint8))
    (inputs / "z.png").write_bytes(sorted(Path(image_root).iterdir())[1].read_bytes())
    # The exported file holds its test sizes (96 / 160): the demo needs no config for it.
    code, stdout, err = run([DEMO, "--input", inputs, "--output", tmp_path / "out", "--onnx", onnx])
    assert code == 1, err
    assert stdout.splitlines()[-1] == "Done: 2 succeeded, 1 failed"
    assert f"Skipping '{inputs / 'thin.png'}': The exported graph takes images of at least" in stdout + "\n".join(err)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "z.png"]


def test_detectron2_checkpointer_reads_pickles_without_running_code(tmp_path):
    pytest.importorskip("detectron2")
    from solov2.d2.checkpoint import SafeDetectionCheckpointer
    from solov2.utils.errors import CheckpointError

    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pkl"
    with open(evil, "wb") as f:
        pickle.dump({"blobs": {"weight": np.ones((1, 1), np.float32)}, "x": _Payload(marker)}, f, protocol=2)
    with pytest.raises(CheckpointError, match="posix.system"):
        SafeDetectionCheckpointer(torch.nn.Linear(1, 1)).load(str(evil))
    assert not marker.exists()
    good = tmp_path / "good.pkl"
    with open(good, "wb") as f:
        pickle.dump({"blobs": {"weight": np.full((1, 1), 2, np.float32), "bias": np.zeros(1, np.float32),
                               "weight_momentum": np.zeros((1, 1), np.float32)}}, f, protocol=2)
    model = torch.nn.Linear(1, 1)
    SafeDetectionCheckpointer(model).load(str(good))
    assert model.weight.item() == 2.0
