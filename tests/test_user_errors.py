"""A user error ends every tool with one `ERROR: <message>` line (traceback in log.txt, on the console with --debug).

Each case runs the real command line, as a user would meet it, and checks the last line, the exit status and that
stderr holds exactly that one line.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from solov2.data.datasets import ensure_shapes_split
from solov2.utils.error_reporting import DEBUG_ENV, run_tool
from solov2.utils.errors import ConfigError, UserError

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "quickstart" / "shapes_R18.yaml"
TRAIN_NET = REPO / "tools" / "train_net.py"


def run(script, *args, env=None, timeout=240):
    """Run a tool; returns (exit status, stdout lines, stderr lines)."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1")
    full_env.pop(DEBUG_ENV, None)
    full_env.update(env or {})
    r = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, cwd=str(REPO), env=full_env)
    return r.returncode, r.stdout.splitlines(), r.stderr.splitlines()


def assert_one_error_line(code, err, message):
    """Exit status 1 and stderr is exactly one ERROR line containing `message`."""
    assert code == 1, err
    assert len(err) == 1 and err[0].startswith("ERROR: ") and message in err[0], err


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors_data")
    return ensure_shapes_split(str(root), "errors", num_images=4, seed=8)


@pytest.mark.slow
def test_unknown_key_one_line_and_did_you_mean():
    code, out, err = run(TRAIN_NET, "--config-file", CONFIG, "SOLVER.BASE_LRR", "0.1")
    assert_one_error_line(code, err, "Unknown config key 'SOLVER.BASE_LRR'; did you mean 'SOLVER.BASE_LR'?")
    assert not any("Traceback" in line for line in out + err)
    # --debug adds the traceback before the same last line.
    code, out, err = run(TRAIN_NET, "--config-file", CONFIG, "--debug", "SOLVER.BASE_LRR", "0.1")
    assert code == 1 and err[0] == "Traceback (most recent call last):" and "ConfigError" in "\n".join(err)
    assert err[-1].startswith("ERROR: Unknown config key 'SOLVER.BASE_LRR'")


@pytest.mark.slow
def test_error_after_setup_goes_to_log_txt_once(tmp_path):
    code, out, err = run(TRAIN_NET, "--config-file", CONFIG, "VIS_PERIOD", "20", "MODEL.MASK_ON", "False",
                         "OUTPUT_DIR", tmp_path)
    assert_one_error_line(code, err, "2 config keys are set to values solov2 cannot honour")
    text = "\n".join(out + err)
    assert "VIS_PERIOD 20 is not supported" in text and "MODEL.MASK_ON False is not supported" in text
    log = (tmp_path / "log.txt").read_text()
    assert log.count("Traceback (most recent call last)") == 1 and "check_unsupported_keys" in log
    assert not (tmp_path / "config.yaml").exists()  # a refused config is not recorded as the run's config
    assert not (tmp_path / ".solov2_run.lock").exists()  # released at exit


@pytest.mark.slow
def test_two_processes_print_a_user_error_once(tmp_path):
    code, out, err = run(TRAIN_NET, "--config-file", CONFIG, "--num-gpus", "2", "--dist-url", "auto",
                         "MODEL.KEYPOINT_ON", "True", "OUTPUT_DIR", tmp_path)
    # Both processes hit it; the parent prints it once, without torch's "Terminating process" chatter.
    assert_one_error_line(code, err, "MODEL.KEYPOINT_ON True is not supported: SOLOv2 has no keypoint head")
    for log in ("log.txt", "log.txt.rank1"):
        assert "ConfigError: MODEL.KEYPOINT_ON" in (tmp_path / log).read_text()


@pytest.mark.slow
def test_nan_loss_stops_training_with_one_message(tiny_split, tmp_path):
    json_file, image_root = tiny_split
    code, out, err = run(TRAIN_NET, "--config-file", CONFIG, "--register-coco", "nan_shapes", json_file, image_root,
                         "DATASETS.TRAIN", "('nan_shapes',)", "DATASETS.TEST", "()", "SOLVER.IMS_PER_BATCH", "2",
                         "SOLVER.BASE_LR", "1e30", "SOLVER.WARMUP_ITERS", "0", "SOLVER.MAX_ITER", "20",
                         "DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TRAIN", "(64,)", "OUTPUT_DIR", tmp_path)
    assert_one_error_line(code, err, "Loss became infinite or NaN at iteration=")
    assert "SOLVER.BASE_LR" in err[0]
    # Logged to the file with its iteration, not printed a second time on the console.
    assert sum("Loss became infinite" in line for line in out + err) == 1
    log = (tmp_path / "log.txt").read_text()
    assert "Exception during training at iteration" in log and log.count("Traceback (most recent call last)") == 1


@pytest.mark.slow
def test_unexpected_errors_keep_their_traceback(tmp_path):
    script = tmp_path / "tool.py"
    script.write_text("import sys\nfrom solov2.utils.error_reporting import run_tool\n\n"
                      "def main():\n    return {}['bug']\n\nsys.exit(run_tool(main))\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr and "KeyError: 'bug'" in r.stderr
    assert "ERROR:" not in r.stderr


def test_run_tool_exit_status_and_debug_variable(capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert run_tool(lambda: None) == 0 and run_tool(lambda: 3) == 3

    def bad():
        raise ConfigError("bad key X")

    assert run_tool(bad) == 1
    assert capsys.readouterr().err == "ERROR: bad key X\n"
    monkeypatch.setenv(DEBUG_ENV, "1")  # SOLOV2_DEBUG=1 does what --debug does
    assert run_tool(bad) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):" and err[-1] == "ERROR: bad key X"
    with pytest.raises(ZeroDivisionError):
        run_tool(lambda: 1 / 0)


@pytest.mark.slow
@pytest.mark.parametrize("script, args, message", [
    ("demo/demo.py", ["--input", "no_such_dir/*.jpg", "--output", "{tmp}"],
     "No input images found for ['no_such_dir/*.jpg']"),
    ("tools/visualize_data.py", ["--source", "dataloader", "--output-dir", "{tmp}", "INPUT.CROP.ENABLED", "True",
                                 "INPUT.CROP.TYPE", "diagonal"],
     "INPUT.CROP.TYPE must be one of"),
    ("tools/benchmark.py", ["--opts", "MODEL.SOLOV2.NUM_CLASES", "3"], "did you mean 'MODEL.SOLOV2.NUM_CLASSES'?"),
])
def test_every_tool_prints_one_error_line(script, args, message, tmp_path):
    code, out, err = run(script, "--config-file", CONFIG, *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert_one_error_line(code, err, message)


@pytest.mark.slow
def test_output_dir_used_by_a_live_run_is_refused(tmp_path):
    # This test process plays the live run that holds the lock.
    (tmp_path / ".solov2_run.lock").write_text(f"host={os.uname().nodename}\npid={os.getpid()}\n"
                                                "started=2024-01-01 00:00:00\ncommand=train_net.py\n")
    code, out, err = run(TRAIN_NET, "--config-file", CONFIG, "OUTPUT_DIR", tmp_path)
    assert_one_error_line(code, err, f"OUTPUT_DIR '{tmp_path}' is in use by another run (pid {os.getpid()}")
    assert not (tmp_path / "config.yaml").exists() and not (tmp_path / "log.txt").exists()


@pytest.mark.slow
def test_json_without_annotations_key(tiny_split, tmp_path, caplog):
    json_file, image_root = tiny_split
    data = json.loads(Path(json_file).read_text())
    del data["annotations"]
    unlabelled = tmp_path / "test_split.json"
    unlabelled.write_text(json.dumps(data))
    code, out, err = run(TRAIN_NET, "--config-file", CONFIG, "--register-coco", "unlabelled", unlabelled, image_root,
                         "DATASETS.TRAIN", "('unlabelled',)", "OUTPUT_DIR", tmp_path / "out")
    assert_one_error_line(code, err, f"'{unlabelled}', which has no 'annotations' key")
    assert any(f"'{unlabelled}' has no 'annotations' key: its 4 images are loaded without annotations" in line
               for line in out)


def test_user_error_classes_keep_builtin_bases():
    from solov2.data import DatasetCatalog, DatasetFormatError, ImageReadError

    assert issubclass(ConfigError, ValueError) and issubclass(DatasetFormatError, ValueError)
    assert issubclass(ImageReadError, OSError)
    for cls in (ConfigError, DatasetFormatError, ImageReadError):
        assert issubclass(cls, UserError)
    with pytest.raises(KeyError) as e:
        DatasetCatalog.get("no_such_dataset_x")
    assert isinstance(e.value, UserError) and str(e.value).startswith("Dataset 'no_such_dataset_x' is not registered")


def test_traceback_goes_to_our_and_detectron2s_log_files_only(tmp_path, capsys):
    import logging

    handlers = []
    for name in ("solov2", "detectron2"):
        h = logging.StreamHandler(open(tmp_path / f"{name}.txt", "a"))  # how both set up OUTPUT_DIR/log.txt
        logging.getLogger(name).addHandler(h)
        handlers.append((name, h))
    try:
        def bad():
            raise ConfigError("SOLVER.X is wrong")

        assert run_tool(bad) == 1
    finally:
        for name, h in handlers:
            logging.getLogger(name).removeHandler(h)
            h.close()
    assert capsys.readouterr().err == "ERROR: SOLVER.X is wrong\n"
    for name in ("solov2", "detectron2"):
        text = (tmp_path / f"{name}.txt").read_text()
        assert text.count("Traceback (most recent call last)") == 1 and "ConfigError: SOLVER.X is wrong" in text
