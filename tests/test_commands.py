"""The package as a product: the `solov2` command and its subcommands (both override styles, help on every flag,
--version, --debug), the model zoo, self-describing checkpoints, the one-call Predictor and a quiet console."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pinned_model as pm
from solov2 import Predictor, Results
from solov2.checkpoint import Checkpointer, embedded_description, read_description
from solov2.checkpoint.embedded import describe
from solov2.commands import main as command
from solov2.commands.zoo import format_zoo
from solov2.engine.arguments import config_overrides
from solov2.engine.predictor import DefaultPredictor
from solov2.model_zoo import PUBLISHED_WEIGHTS, get_config, get_config_file, list_configs, published_weights
from solov2.structures import Boxes, Instances
from solov2.utils.error_reporting import DEBUG_ENV
from solov2.utils.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["circle", "triangle", "rectangle"]
# Arguments each subcommand needs besides the overrides, and how far it gets before merging them.
NEEDS = {
    "train": ["--config-file", "quickstart/shapes_R18.yaml"],
    "predict": ["--config-file", "quickstart/shapes_R18.yaml", "--input", "x.png"],
    "export": ["--config-file", "quickstart/shapes_R18.yaml", "--output", "x.onnx"],
    "benchmark": ["--config-file", "quickstart/shapes_R18.yaml"],
    "visualize": ["--config-file", "quickstart/shapes_R18.yaml", "--output", "vis"],
    "zoo": ["--show", "quickstart/shapes_R18.yaml"],
    "convert": ["in.pth", "out.pth", "--config-file", "quickstart/shapes_R18.yaml"],
}
NO_CONFIG = {"plot"}  # redraws a run's plots from its files: no config to override


def _parse(name, argv):
    """A subcommand's command line as its main() parses it."""
    module = _module(name)
    return module.parse_args(argv) if hasattr(module, "parse_args") else module.build_parser().parse_args(argv)


def _module(name):
    return importlib.import_module(command.SUBCOMMANDS[name][0])


def test_every_subcommand_is_listed_and_needs_its_arguments_here():
    assert set(command.SUBCOMMANDS) == set(NEEDS) | NO_CONFIG


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_both_override_styles_parse_alike(name):
    base = NEEDS[name]
    want = ["SOLVER.BASE_LR", "0.5", "SEED", "3"]
    for style in (want, ["--opts", *want], want[:2] + ["--opts", *want[2:]]):
        assert config_overrides(_parse(name, base + style)) == want


@pytest.mark.parametrize("name", sorted(NEEDS))
@pytest.mark.parametrize("style", ["trailing", "--opts"])
def test_both_override_styles_reach_the_config(name, style, capsys, monkeypatch, tmp_path):
    # A misspelt key in either style is read by the config merge: its did-you-mean proves the override arrived.
    monkeypatch.chdir(tmp_path)
    bad = ["SOLVER.BASE_LRR", "0.1"]
    argv = NEEDS[name] + (bad if style == "trailing" else ["--opts", *bad])
    assert _module(name).main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("ERROR: Unknown config key 'SOLVER.BASE_LRR'; did you mean "
                                               "'SOLVER.BASE_LR'?"), err


@pytest.mark.parametrize("name", sorted(set(NEEDS) | NO_CONFIG))
def test_every_flag_has_help_and_there_is_a_version(name, capsys):
    parser = _module(name).build_parser()
    for action in parser._actions:
        assert action.help and action.help.strip(), (name, action.option_strings or action.dest)
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip().startswith("solov2 ")


def test_output_spellings():
    visualize = _module("visualize").build_parser()
    for flag in ("--output", "--output-dir"):
        assert visualize.parse_args(["--config-file", "c.yaml", flag, "d"]).output_dir == "d"
    assert _module("train").build_parser().parse_args(["--output", "d"]).output == "d"


def test_dispatcher_version_help_and_unknown_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        command.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == "solov2 0.1.0"
    with pytest.raises(SystemExit) as e:
        command.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and all(name in out for name in NEEDS)
    with pytest.raises(SystemExit) as e:
        command.main(["trian"])
    assert e.value.code == 2 and "invalid choice: 'trian'" in capsys.readouterr().err


def test_python_dash_m_solov2_runs_the_command():
    r = subprocess.run([sys.executable, "-m", "solov2", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "solov2 0.1.0"


def test_debug_is_applied_at_start_up_not_while_parsing(monkeypatch, capsys):
    monkeypatch.setenv(DEBUG_ENV, "0")  # recorded, so that what the command sets is undone after the test
    monkeypatch.delenv(DEBUG_ENV)
    predict = _module("predict")
    args = predict.build_parser().parse_args(["--debug", "--input", "x.png"])
    assert args.debug and DEBUG_ENV not in os.environ  # parsing leaves the process alone
    assert predict.main(["--debug", "--input", "x.png"]) == 1  # no model to run: a user error, with its traceback
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):" and err[-1].startswith("ERROR: Nothing to predict with")
    assert os.environ.get(DEBUG_ENV) == "1"  # so that processes started later print theirs too


# ------------------------------------------------------------------------------------------------ model zoo
def test_model_zoo_configs_by_name():
    names = list_configs()
    assert {"SOLOv2/R50_3x.yaml", "SOLOv2/Base-SOLOv2.yaml", "quickstart/shapes_R18.yaml"} <= set(names)
    path = get_config_file("SOLOv2/R50_3x.yaml")
    assert Path(path).is_file()
    assert get_config_file("configs/SOLOv2/R50_3x") == path  # the README's spelling, without the extension
    cfg = get_config("SOLOv2/Light_448_R18_3x.yaml")
    assert cfg.MODEL.RESNETS.DEPTH == 18 and cfg.MODEL.FPN.IN_FEATURES == ["res2", "res3", "res4", "res5"]  # _BASE_
    with pytest.raises(ConfigError, match="not a config of the model zoo"):
        get_config_file("SOLOv2/R51_3x.yaml")


def test_model_zoo_weights_table():
    r50 = {w.source.split(" (")[0]: w for w in published_weights("SOLOv2/R50_3x.yaml")}
    assert r50["Detectron2-based release"].mask_ap == 37.6 and r50["Detectron2-based release"].format == "detectron2"
    assert published_weights("quickstart/shapes_R18.yaml") == []
    ours = set(list_configs())
    for name, weights in PUBLISHED_WEIGHTS.items():
        assert name in ours, name  # every row names a config the package ships
        assert weights and all(20 < w.mask_ap < 50 and w.hosted and w.file_name for w in weights)
    table = format_zoo()
    assert "SOLOv2/R50_3x.yaml" in table and "mask AP 37.6" in table and "Base-SOLOv2" not in table


# ------------------------------------------------------------------------------------------ checkpoints
def _small_checkpoint(tmp_path, with_description=True):
    """The pinned small model (informative weights) saved as training would save it, or as published ones are."""
    cfg = pm.CONFIGS["small"]()
    model = pm.build_pinned_model("small")
    info = describe(cfg.dump(), CLASSES) if with_description else {}
    Checkpointer(model, str(tmp_path), run_info=info).save("model_final")
    return cfg, str(tmp_path / "model_final.pth")


def _image():
    return np.ascontiguousarray(pm.pinned_inputs(3, with_gt=False)[0]["image"].permute(1, 2, 0).numpy())


def test_checkpoints_describe_themselves(tmp_path):
    cfg, path = _small_checkpoint(tmp_path)
    described = read_description(path)
    assert described.class_names == CLASSES and described.config == cfg.dump()
    assert embedded_description(torch.load(path, weights_only=True)) == described


def test_a_checkpoint_without_config_needs_one_and_says_so(tmp_path, capsys):
    _, path = _small_checkpoint(tmp_path, with_description=False)
    assert read_description(path).config is None
    with pytest.raises(ConfigError, match="holds no config"):
        Predictor(path)
    assert _module("predict").main(["--weights", path, "--input", "x.png"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "holds no config" in err[0] and "--config-file" in err[0], err


def test_predictor_answers_as_default_predictor(tmp_path):
    cfg, path = _small_checkpoint(tmp_path)
    image = _image()
    threshold = 0.105  # above the config's SCORE_THR (0.1): the Predictor pre-filters candidates at it
    result = Predictor(path, score_thresh=threshold)(image)
    cfg.MODEL.WEIGHTS = path
    want = DefaultPredictor(cfg)(image)["instances"]
    want = want[want.scores >= threshold]
    assert len(result) == len(want) > 0
    assert np.abs(result.scores - want.scores.numpy()).max() < 1e-6
    assert (result.classes == want.pred_classes.numpy()).all() and (result.masks == want.pred_masks.numpy()).all()
    assert result.boxes.shape == (len(want), 4) and result.labels == [CLASSES[k] for k in result.classes]
    # A config (name or path) with weights gives the same; so do a file path, PIL image, list and folder of them.
    again = Predictor(pm.CONFIGS["small"](), weights=path, score_thresh=threshold)(image)
    assert (again.masks == result.masks).all()
    named_in_config = Predictor(cfg, score_thresh=threshold)  # MODEL.WEIGHTS in the config: its class names too
    assert named_in_config.class_names == CLASSES
    Image.fromarray(image[:, :, ::-1]).save(tmp_path / "a.png")
    from_file = Predictor(path, score_thresh=threshold)
    for got in (from_file(str(tmp_path / "a.png")), from_file(Image.open(tmp_path / "a.png")),
                from_file([tmp_path / "a.png"])[0], from_file(str(tmp_path))[0]):
        assert (got.masks == result.masks).all() and np.allclose(got.scores, result.scores)
    assert len(DefaultPredictor(cfg)(str(tmp_path / "a.png"))["instances"]) > 0  # DefaultPredictor takes a path


def test_results_repr_json_drawing(tmp_path):
    n, h, w = 12, 20, 30
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    for k in range(n):
        masks[k, k : k + 5, 2 * k : 2 * k + 4] = True
    inst = Instances((h, w), pred_masks=masks, pred_boxes=Boxes(torch.zeros(n, 4)),
                     scores=torch.linspace(0.93, 0.5, n), pred_classes=torch.arange(n) % 3)
    result = Results(inst, np.zeros((h, w, 3), np.uint8), CLASSES, path="img.png")
    text = repr(result)
    assert text == "12 instances: circle 0.93, triangle 0.89, rectangle 0.85, circle 0.81, triangle 0.77, ... (7 more)"
    assert repr(Results(inst[:0], np.zeros((h, w, 3), np.uint8), CLASSES)) == "0 instances"
    coco = result.to_coco_json()
    assert len(coco) == n and coco[0]["category_name"] == "circle" and coco[0]["file_name"] == "img.png"
    assert result.draw().shape == (h, w, 3)
    result.save(str(tmp_path / "out" / "vis.png"))
    result.save(str(tmp_path / "out" / "vis.json"))
    assert (tmp_path / "out" / "vis.png").is_file()
    assert len(json.loads((tmp_path / "out" / "vis.json").read_text())) == n


# ---------------------------------------------------------------------------------------- whole commands
@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    from solov2.data.datasets import ensure_shapes_split

    return ensure_shapes_split(str(tmp_path_factory.mktemp("commands_data")), "commands", num_images=4, seed=5)


def _solov2(*args, cwd, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop(DEBUG_ENV, None)
    return subprocess.run([sys.executable, "-m", "solov2", *map(str, args)], capture_output=True, text=True,
                          cwd=str(cwd), env=env, timeout=timeout)


@pytest.mark.slow
def test_quiet_console_then_predict_and_slim_export_without_config(tiny_split, tmp_path):
    json_file, images = tiny_split
    r = _solov2("train", "--config-file", "quickstart/shapes_R18.yaml", "--register-coco", "cmd", json_file, images,
                "--output", "out", "DATASETS.TRAIN", "('cmd',)", "DATASETS.TEST", "()", "SOLVER.IMS_PER_BATCH", "2",
                "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1", "INPUT.MIN_SIZE_TRAIN", "(64,)", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = (r.stdout + r.stderr).splitlines()
    start = next(i for i, line in enumerate(lines) if "Starting training" in line)
    assert start < 40, "\n".join(lines[:start])
    assert any("M parameters" in line and "config.yaml" in line for line in lines[:start])
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "Model:\nSOLOv2(" in log and "Running with full config" in log and "Environment info" in log
    described = read_description(str(tmp_path / "out" / "model_final.pth"))
    assert described.class_names == ["circle", "triangle", "rectangle"] and "NUM_CLASSES: 3" in described.config

    weights = tmp_path / "out" / "model_final.pth"
    r = _solov2("train", "--eval-only", "--weights", weights, "--output", "eval", "DATASETS.TEST", "('cmd',)",
                cwd=tmp_path)  # no --config-file: the checkpoint's own
    assert r.returncode == 0 and "copypaste: Task: segm" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert len(r.stdout.splitlines()) < 40

    image = Path(images) / "000000.png"
    r = _solov2("predict", "--weights", weights, "--input", image, "--output", "pred/", "--json",
                "--confidence-threshold", "0.0", "--opts", "MODEL.SOLOV2.UPDATE_THR", "0.0", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (tmp_path / "pred" / "000000.png").is_file()
    assert {p["category_name"] for p in json.loads((tmp_path / "pred" / "000000.json").read_text())} <= set(CLASSES)

    r = _solov2("export", "--weights", weights, "--output", "slim.pth", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    slim = torch.load(tmp_path / "slim.pth", weights_only=True)
    assert set(slim) == {"model", "config", "class_names"} and slim["class_names"] == CLASSES
    assert (tmp_path / "slim.pth").stat().st_size < 0.5 * weights.stat().st_size  # no optimizer state
    got = Predictor(str(tmp_path / "slim.pth"), score_thresh=0.0)(str(image))
    want = Predictor(str(weights), score_thresh=0.0)(str(image))
    assert (got.masks == want.masks).all() and np.array_equal(got.scores, want.scores)
