"""ONNX export of the whole inference, run in ONNX Runtime: same detections as PyTorch on images of two sizes through
one exported file, empty outputs for zero detections, clear errors for what cannot be exported."""

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pinned_model as pm

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from solov2.checkpoint import Checkpointer  # noqa: E402
from solov2.engine.predictor import DefaultPredictor  # noqa: E402
from solov2.export import ExportError, MissingDependencyError, ONNXPredictor, check_exportable, export_onnx  # noqa: E402
from solov2.export.onnx_export import onnx_metadata, write_checked_onnx  # noqa: E402
from solov2.modeling import build_model  # noqa: E402
from solov2.structures import Boxes, Instances  # noqa: E402
from solov2.utils.errors import UserError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The small pinned model (informative weights: it detects things) and one exported file of it."""
    model = pm.build_pinned_model("small").eval()
    path = str(tmp_path_factory.mktemp("onnx") / "small.onnx")
    cfg = pm.CONFIGS["small"]()
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 120, 1000
    export_onnx(model, path, "BGR", metadata=onnx_metadata(cfg, CLASSES))
    return model, path


def _ort_record(outputs, size):
    masks, scores, classes, boxes = outputs
    inst = Instances(size, pred_masks=torch.from_numpy(masks), pred_boxes=Boxes(torch.from_numpy(boxes)),
                     scores=torch.from_numpy(scores), pred_classes=torch.from_numpy(classes))
    return pm.instances_record(inst)


@pytest.mark.slow
def test_one_graph_gives_pytorchs_detections_on_two_image_sizes(exported):
    model, path = exported
    graph = onnx.load(path)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    image_dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert image_dims[0].dim_param and image_dims[1].dim_param and image_dims[2].dim_value == 3
    assert [o.name for o in graph.graph.output] == ["masks", "scores", "classes", "boxes"]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    # 150 x 200 reported at 225 x 300 (upsampling to another size in the graph), and 120 x 176
    for x in pm.pinned_inputs(3, with_gt=False):
        image = x["image"]
        size = (x.get("height", image.shape[1]), x.get("width", image.shape[2]))
        with torch.no_grad():
            want = pm.instances_record(model([x])[0]["instances"])
        got = session.run(None, {"image": image.permute(1, 2, 0).contiguous().numpy(),
                                 "output_size": np.array(size, dtype=np.int64)})
        assert len(want["classes"]) > 3 and got[0].shape[1:] == size and got[0].dtype == bool
        pm.assert_inference_matches([_ort_record(got, size)], [want], score_atol=1e-4)
        np.testing.assert_allclose(got[3], np.array(want["boxes"]).reshape(-1, 4), atol=1)


@pytest.mark.slow
def test_onnx_predictor_matches_default_predictor(exported, tmp_path):
    model, path = exported
    Checkpointer(model, str(tmp_path)).save("weights")
    cfg = pm.CONFIGS["small"]()
    cfg.MODEL.WEIGHTS = str(tmp_path / "weights.pth")
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 120, 1000  # a 150 x 200 image is resized to 120 x 160
    image = np.ascontiguousarray(pm.pinned_inputs(3, with_gt=False)[0]["image"].permute(1, 2, 0).numpy())
    want = DefaultPredictor(cfg)(image)["instances"]
    got = ONNXPredictor(cfg, path)(image)["instances"]
    assert got.image_size == want.image_size == (150, 200) and len(want) > 3
    pm.assert_inference_matches([pm.instances_record(got)], [pm.instances_record(want)], score_atol=1e-4)
    assert got.pred_masks.dtype == torch.bool and got.pred_classes.dtype == torch.int64


def test_the_file_describes_itself(exported):
    """The test size, class names and thresholds come from the file's metadata: no config needed."""
    from solov2 import Predictor

    _, path = exported
    cfg = pm.CONFIGS["small"]()
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 120, 1000
    image = np.ascontiguousarray(pm.pinned_inputs(3, with_gt=False)[0]["image"].permute(1, 2, 0).numpy())
    alone = ONNXPredictor(path)
    assert (alone.min_size, alone.max_size, alone.class_names) == (120, 1000, CLASSES)
    assert alone.score_thresh == cfg.MODEL.SOLOV2.SCORE_THR
    got, want = alone(image)["instances"], ONNXPredictor(cfg, path)(image)["instances"]
    assert len(got) > 3 and torch.equal(got.scores, want.scores) and torch.equal(got.pred_masks, want.pred_masks)
    result = Predictor(path, score_thresh=0.1)(image)
    assert len(result) == int((want.scores >= 0.1).sum()) and set(result.labels) <= set(CLASSES)


@pytest.mark.slow
def test_predictor_refuses_a_graph_exported_for_another_config(exported):
    _, path = exported
    cfg = pm.CONFIGS["small"]()
    cfg.INPUT.FORMAT = "RGB"
    with pytest.raises(ExportError, match="INPUT.FORMAT"):
        ONNXPredictor(cfg, path)
    cfg = pm.CONFIGS["small"]()
    cfg.MODEL.SOLOV2.NUM_CLASSES = 80
    with pytest.raises(ExportError, match="NUM_CLASSES"):
        ONNXPredictor(cfg, path)
    with pytest.raises(UserError, match="does not exist"):
        ONNXPredictor(pm.CONFIGS["small"](), path + ".missing")
    cfg = pm.CONFIGS["small"]()
    cfg.INPUT.MIN_SIZE_TEST = 0
    with pytest.raises(UserError, match="at least 65 px"):
        ONNXPredictor(cfg, path)(np.zeros((40, 300, 3), np.uint8))


def _write_small_config(tmp_path, **overrides):
    """The small pinned config (with `overrides`) as a YAML file, and its fixed weights as a checkpoint."""
    cfg = pm.CONFIGS["small"]()
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    model = pm.build_pinned_model("small")
    Checkpointer(model, str(tmp_path)).save("weights")
    cfg.MODEL.WEIGHTS = str(tmp_path / "weights.pth")
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 0, 0  # no resize: predictor and session see the same image
    path = tmp_path / "small.yaml"
    path.write_text(cfg.dump())
    return cfg, str(path)


def _export_tool(*args):
    return subprocess.run([sys.executable, str(REPO / "tools" / "export_onnx.py"), *args], capture_output=True,
                          text=True, timeout=600, cwd=str(REPO))


@pytest.mark.slow
def test_zero_detections_give_empty_outputs(tmp_path):
    """Exported with the command-line tool; SCORE_THR 1 leaves no candidate, so every step sees empty tensors."""
    cfg, cfg_file = _write_small_config(tmp_path, **{"MODEL.SOLOV2.SCORE_THR": 1.0})
    out = tmp_path / "empty.onnx"
    r = _export_tool("--config-file", cfg_file, "--output", str(out))
    assert r.returncode == 0, r.stderr
    image = np.random.RandomState(0).randint(0, 256, (100, 140, 3)).astype(np.uint8)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    masks, scores, classes, boxes = session.run(None, {"image": image, "output_size": np.array([50, 70])})
    assert masks.shape == (0, 50, 70) and scores.shape == (0,) and classes.shape == (0,) and boxes.shape == (0, 4)
    assert masks.dtype == bool and classes.dtype == np.int64
    inst = ONNXPredictor(cfg, str(out))(image)["instances"]
    assert len(inst) == 0 and inst.image_size == (100, 140) and inst.pred_masks.shape == (0, 100, 140)
    assert len(DefaultPredictor(cfg)(image)["instances"]) == 0


@pytest.mark.slow
def test_export_tool_names_the_key_it_cannot_export(tmp_path):
    _, cfg_file = _write_small_config(tmp_path)
    r = _export_tool("--config-file", cfg_file, "--output", str(tmp_path / "x.onnx"), "MODEL.SOLOV2.NMS_TYPE", "mask")
    assert r.returncode == 1 and "ERROR" in r.stderr and "MODEL.SOLOV2.NMS_TYPE" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("key", ["MODEL.SOLOV2.USE_DCN_IN_INSTANCE", "MODEL.SOLOV2.USE_DCN_IN_MASK",
                                 "MODEL.SOLOV2.USE_DCN_IN_MASK_PRED"])
def test_deformable_convs_are_refused_by_name(key):
    cfg = pm.CONFIGS["small"]()
    section, leaf = key.rsplit(".", 1)
    cfg.MODEL.SOLOV2[leaf] = True
    with pytest.raises(ExportError, match=key):
        check_exportable(build_model(cfg))
    cfg = pm.CONFIGS["small"]()
    cfg.MODEL.RESNETS.DEPTH = 50  # deformable stages need bottleneck blocks
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS, cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 64, 16
    cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, True, True, True]
    with pytest.raises(ExportError, match="MODEL.RESNETS.DEFORM_ON_PER_STAGE"):
        export_onnx(build_model(cfg), "unused.onnx")  # the model's own export checks it, before any capture


def test_missing_packages_say_what_to_install(monkeypatch):
    real = importlib.import_module

    def no_onnx(name, *args):
        if name == "onnx":
            raise ImportError("No module named 'onnx'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_onnx)
    with pytest.raises(MissingDependencyError, match=r'pip install -e "\.\[onnx\]"'):
        export_onnx(torch.nn.Module(), "unused.onnx")



@pytest.mark.slow
def test_a_failed_write_keeps_the_existing_file(exported, tmp_path, monkeypatch):
    """The file is written beside the target and renamed once checked: a full disk mid-write loses nothing."""
    _, good = exported
    target = tmp_path / "model.onnx"
    target.write_bytes(Path(good).read_bytes())
    real_save = onnx.save

    def disk_full(proto, f, *args, **kwargs):
        f.write(proto.SerializeToString()[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save", disk_full)
    with pytest.raises(UserError, match=r"Cannot write the ONNX file .*model\.onnx.*No space left"):
        write_checked_onnx(onnx.load(good), str(target))
    assert target.read_bytes() == Path(good).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    monkeypatch.setattr(onnx, "save", real_save)
    write_checked_onnx(onnx.load(good), str(tmp_path / "sub" / "copy.onnx"))  # creates the folder
    assert (tmp_path / "sub" / "copy.onnx").read_bytes() == Path(good).read_bytes()
