"""Config system: defaults, _BASE_ inheritance, overrides, and error messages naming key and file."""

from pathlib import Path

import pytest

from solov2.config import CfgNode, ConfigError, get_cfg

REPO = Path(__file__).resolve().parents[1]


def test_defaults_have_published_solov2_keys():
    cfg = get_cfg()
    s = cfg.MODEL.SOLOV2
    assert s.NUM_GRIDS == [40, 36, 24, 16, 12]
    assert s.FPN_SCALE_RANGES == ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))
    assert s.FPN_INSTANCE_STRIDES == [8, 8, 16, 32, 32]
    assert (s.NUM_KERNELS, s.NUM_MASKS, s.MASK_CHANNELS, s.INSTANCE_CHANNELS) == (256, 256, 128, 512)
    assert (s.SCORE_THR, s.UPDATE_THR, s.MASK_THR, s.NMS_PRE, s.MAX_PER_IMG) == (0.1, 0.05, 0.5, 500, 100)
    assert (s.LOSS.FOCAL_ALPHA, s.LOSS.FOCAL_GAMMA, s.LOSS.DICE_WEIGHT) == (0.25, 2.0, 3.0)
    for key in ["MODEL", "INPUT", "DATASETS", "DATALOADER", "SOLVER", "TEST", "OUTPUT_DIR", "SEED", "VERSION"]:
        assert key in cfg


def test_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  BASE_LR: 0.5\n  STEPS: (10, 20)\nMODEL:\n  SOLOV2:\n    NUM_CLASSES: 7\n")
    (tmp_path / "mid.yaml").write_text('_BASE_: "base.yaml"\nSOLVER:\n  MAX_ITER: 30\n')
    (tmp_path / "top.yaml").write_text('_BASE_: "mid.yaml"\nSOLVER:\n  BASE_LR: 0.25\n')
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / "top.yaml"))
    assert cfg.SOLVER.BASE_LR == 0.25  # child wins
    assert cfg.SOLVER.MAX_ITER == 30 and cfg.SOLVER.STEPS == (10, 20)
    assert cfg.MODEL.SOLOV2.NUM_CLASSES == 7
    cfg.merge_from_list(["MODEL.SOLOV2.NUM_GRIDS", "[10, 8]", "OUTPUT_DIR", "out/x"])
    assert cfg.MODEL.SOLOV2.NUM_GRIDS == [10, 8] and cfg.OUTPUT_DIR == "out/x"


def test_unknown_key_error_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  SOLOV2:\n    NUM_GRIDZ: [1]\n")
    with pytest.raises(ConfigError) as e:
        get_cfg().merge_from_file(str(bad))
    assert "MODEL.SOLOV2.NUM_GRIDZ" in str(e.value) and str(bad) in str(e.value)
    with pytest.raises(ConfigError, match="SOLVER.BASE_LRR"):
        get_cfg().merge_from_list(["SOLVER.BASE_LRR", "1.0"])


def test_error_names_the_base_file_that_holds_the_bad_key(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  MAX_ITER: 'many'\n  WARMUP_ITERZ: 3\n")
    (tmp_path / "top.yaml").write_text('_BASE_: "base.yaml"\nSOLVER:\n  BASE_LR: 0.1\n')
    with pytest.raises(ConfigError) as e:
        get_cfg().merge_from_file(str(tmp_path / "top.yaml"))
    msg = str(e.value)
    assert "SOLVER.WARMUP_ITERZ" in msg or "SOLVER.MAX_ITER" in msg
    assert f"'{tmp_path / 'base.yaml'}', a _BASE_ of '{tmp_path / 'top.yaml'}'" in msg
    # The child overriding the base's bad value is fine; a child's own bad key names the child.
    (tmp_path / "base.yaml").write_text("SOLVER:\n  MAX_ITER: 'many'\n")
    (tmp_path / "top.yaml").write_text('_BASE_: "base.yaml"\nSOLVER:\n  MAX_ITER: 7\n  STEPZ: (1,)\n')
    with pytest.raises(ConfigError) as e:
        get_cfg().merge_from_file(str(tmp_path / "top.yaml"))
    assert "SOLVER.STEPZ" in str(e.value) and "_BASE_" not in str(e.value)
    (tmp_path / "top.yaml").write_text('_BASE_: "base.yaml"\nSOLVER:\n  MAX_ITER: 7\n')
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / "top.yaml"))
    assert cfg.SOLVER.MAX_ITER == 7
    (tmp_path / "top.yaml").write_text('_BASE_: "gone.yaml"\n')
    with pytest.raises(ConfigError, match="gone.yaml"):
        get_cfg().merge_from_file(str(tmp_path / "top.yaml"))


def test_wrong_type_and_odd_overrides(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("SOLVER:\n  MAX_ITER: 'many'\n")
    with pytest.raises(ConfigError) as e:
        get_cfg().merge_from_file(str(bad))
    assert "SOLVER.MAX_ITER" in str(e.value) and str(bad) in str(e.value)
    with pytest.raises(ConfigError, match="KEY VALUE"):
        get_cfg().merge_from_list(["SOLVER.MAX_ITER"])
    with pytest.raises(ConfigError, match="does not exist"):
        get_cfg().merge_from_file(str(tmp_path / "missing.yaml"))


def test_published_yaml_loads_unchanged(tmp_path):
    # Text in the form the published Detectron2-based SOLOv2 release ships (tuples written as strings).
    (tmp_path / "Base-SOLOv2.yaml").write_text(
        'MODEL:\n  META_ARCHITECTURE: "SOLOv2"\n  MASK_ON: True\n  BACKBONE:\n    NAME: "build_resnet_fpn_backbone"\n'
        '  RESNETS:\n    OUT_FEATURES: ["res2", "res3", "res4", "res5"]\n  FPN:\n    IN_FEATURES: ["res2", "res3", "res4", "res5"]\n'
        'DATASETS:\n  TRAIN: ("coco_2017_train",)\n  TEST: ("coco_2017_val",)\nSOLVER:\n  IMS_PER_BATCH: 16\n'
        '  BASE_LR: 0.01\n  WARMUP_FACTOR: 0.01\n  WARMUP_ITERS: 1000\n  STEPS: (60000, 80000)\n  MAX_ITER: 90000\n'
        'INPUT:\n  MIN_SIZE_TRAIN: (640, 672, 704, 736, 768, 800)\n  MASK_FORMAT: "bitmask"\nVERSION: 2\n'
    )
    (tmp_path / "R50_3x.yaml").write_text(
        '_BASE_: "Base-SOLOv2.yaml"\nMODEL:\n  WEIGHTS: "detectron2://ImageNetPretrained/MSRA/R-50.pkl"\n'
        '  RESNETS:\n    DEPTH: 50\nSOLVER:\n  STEPS: (210000, 250000)\n  MAX_ITER: 270000\n'
    )
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / "R50_3x.yaml"))
    assert cfg.SOLVER.STEPS == (210000, 250000) and cfg.INPUT.MIN_SIZE_TRAIN[0] == 640
    assert cfg.DATASETS.TRAIN == ("coco_2017_train",)


def test_repo_configs_match_published_schedule():
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs/SOLOv2/R50_3x.yaml"))
    assert cfg.SOLVER.STEPS == (210000, 250000) and cfg.SOLVER.MAX_ITER == 270000
    assert cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.SOLVER.BASE_LR == 0.01 and cfg.SOLVER.WARMUP_ITERS == 1000
    assert cfg.INPUT.MASK_FORMAT == "bitmask" and cfg.MODEL.RESNETS.DEPTH == 50
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs/SOLOv2/R101_3x.yaml"))
    assert cfg.MODEL.RESNETS.DEPTH == 101


def test_unknown_keys_get_a_suggestion_and_types_are_explained():
    cfg = get_cfg()
    cases = {
        "SOLVER.BASE_LRR": "did you mean 'SOLVER.BASE_LR'?",
        "MODEL.ROI_HEADS.NUM_CLASSES": "did you mean 'MODEL.SOLOV2.NUM_CLASSES'?",  # Detectron2's name elsewhere
        "MODEL.RETINANET.SCORE_THRESH_TEST": "did you mean 'MODEL.SOLOV2.SCORE_THR'?",
        "OUTPUTDIR": "did you mean 'OUTPUT_DIR'?",
    }
    for key, suggestion in cases.items():
        with pytest.raises(ConfigError) as e:
            cfg.merge_from_list([key, "1"])
        assert f"Unknown config key '{key}'; {suggestion}" in str(e.value)
    with pytest.raises(ConfigError) as e:
        cfg.merge_from_list(["TEST.AUG.ENABLED", "True"])  # many keys end in ENABLED: no guess beats a wrong one
    assert "did you mean" not in str(e.value)
    with pytest.raises(ConfigError, match=r"'SOLVER.STEPS' must be of type tuple .*write it as e.g. '\(1, 2\)'"):
        cfg.merge_from_list(["SOLVER.STEPS", "5"])
    with pytest.raises(ConfigError, match="'--debug' .* looks like a command-line option; put options before"):
        cfg.merge_from_list(["SOLVER.BASE_LR", "0.1", "--debug"])


def test_unsupported_keys_refused_by_name_and_supported_values_pass():
    from solov2.config import check_unsupported_keys
    from solov2.config.key_policy import UNSUPPORTED_KEYS

    check_unsupported_keys(get_cfg())  # every default is supported
    for rule in UNSUPPORTED_KEYS:
        if rule.key == "TEST.AUG.ENABLED":  # a Detectron2 key, not in our defaults
            continue
        cfg = get_cfg()
        for ok in rule.supported:
            cfg.merge_from_list([rule.key, repr(ok) if isinstance(ok, str) else str(ok)])
            check_unsupported_keys(cfg)
        default = cfg
        bad = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v + 0.5, str: lambda v: "other",
               tuple: lambda v: ("x.pkl",)}
        node, leaf = default, rule.key.split(".")
        for part in leaf[:-1]:
            node = node[part]
        value = node[leaf[-1]]
        node[leaf[-1]] = bad[type(value)](value)
        with pytest.raises(ConfigError, match=f"^{rule.key} .* is not supported: "):
            check_unsupported_keys(default)


def test_unsupported_keys_check_tolerates_a_detectron2_style_config():
    from solov2.config import CfgNode, check_unsupported_keys

    # A Detectron2 config has many keys we do not know; only the table's keys are looked at.
    d2 = CfgNode({"MODEL": {"MASK_ON": True, "ROI_HEADS": {"NUM_CLASSES": 3}, "RPN": {"HEAD_NAME": "x"}},
                  "TEST": {"AUG": {"ENABLED": False, "MIN_SIZES": (400,)}}, "VIS_PERIOD": 0})
    check_unsupported_keys(d2)
    d2.TEST.AUG.ENABLED = True
    d2.MODEL.MASK_ON = False
    with pytest.raises(ConfigError) as e:
        check_unsupported_keys(d2)
    assert str(e.value).startswith("2 config keys are set to values solov2 cannot honour: (1) MODEL.MASK_ON False")
    assert "(2) TEST.AUG.ENABLED True is not supported: test-time augmentation" in str(e.value)
    assert "\n" not in str(e.value)


class _RecordingCfgNode(CfgNode):
    """A config that records the dotted key of every value read from it (clones share the record)."""

    reads: set = set()

    def __getitem__(self, key):
        value = super().__getitem__(key)
        if not isinstance(value, CfgNode):
            _RecordingCfgNode.reads.add(self.__dict__.get("_prefix", "") + key)
        return value

    def get(self, key, default=None):
        return self[key] if key in self else default


def _recording(cfg, prefix=""):
    """`cfg` as a _RecordingCfgNode whose nodes know their dotted prefix."""
    node = _RecordingCfgNode(cfg) if not prefix else cfg
    node.__dict__["_prefix"] = prefix
    for key, value in dict.items(node):
        if isinstance(value, CfgNode):
            _recording(value, f"{prefix}{key}.")
    return node


@pytest.mark.slow
def test_every_default_key_is_read_or_in_the_policy_table(tmp_path):
    """Build and run everything a config drives, recording which keys are read; every other key is in key_policy."""
    import numpy as np

    from solov2.config.config import all_keys
    from solov2.config.key_policy import IGNORED_KEYS, UNSUPPORTED_KEYS
    from solov2.data import DatasetMapper
    from solov2.data.datasets import ensure_shapes_split
    from solov2.engine import DefaultTrainer, default_argument_parser, default_setup
    from solov2.engine.predictor import DefaultPredictor
    from solov2.modeling import build_model
    from solov2.solver import build_lr_scheduler, build_optimizer
    from solov2.utils.logger import setup_logger

    _RecordingCfgNode.reads = set()
    # The quickstart end to end: setup, a 2-iteration training with evaluation, a prediction.
    json_file, image_root = ensure_shapes_split(str(tmp_path), "keys", num_images=2, seed=1)
    base = get_cfg()
    base.merge_from_file(str(REPO / "configs" / "quickstart" / "shapes_R18.yaml"))
    cfg = _recording(base)
    cfg.DATASETS.COCO_INSTANCES = (("keys_shapes", json_file, image_root),)
    cfg.DATASETS.TRAIN = cfg.DATASETS.TEST = ("keys_shapes",)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TEST = (96,), 96
    cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.MAX_ITER, cfg.SOLVER.WARMUP_ITERS = 2, 2, 1
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    setup_logger.cache_clear()
    default_setup(cfg, default_argument_parser().parse_args([]))
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    DefaultPredictor(cfg)(np.zeros((64, 80, 3), np.uint8))
    setup_logger.cache_clear()
    # What the quickstart leaves unused: bottleneck ResNets with deformable stages and DCN heads, SGD with steps, crops.
    base = get_cfg()
    base.merge_from_file(str(REPO / "configs" / "SOLOv2" / "R101_DCN_3x.yaml"))
    cfg = _recording(base)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.RESNETS.RES2_OUT_CHANNELS, cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 50, 64, 16
    cfg.INPUT.CROP.ENABLED = True
    model = build_model(cfg)
    build_lr_scheduler(cfg, build_optimizer(cfg, model))
    DatasetMapper(cfg, is_train=True)

    listed = {r.key for r in UNSUPPORTED_KEYS} | set(IGNORED_KEYS)
    unread = [k for k in all_keys(get_cfg()) if k not in listed and k not in _RecordingCfgNode.reads]
    assert not unread, f"config keys neither read anywhere nor in solov2/config/key_policy.py: {unread}"


def test_configurable_forwards_keywords_like_detectron2():
    """cfg positional or as `cfg=`; keywords from_config takes go to it, the others override its result."""
    from solov2.config import configurable

    class Thing:
        @configurable
        def __init__(self, *, a, b=1, c=2):
            self.abc = (a, b, c)

        @classmethod
        def from_config(cls, cfg, b=10):
            return {"a": cfg.SEED, "b": b}

    cfg = get_cfg()
    cfg.SEED = 7
    assert Thing(cfg).abc == (7, 10, 2)
    assert Thing(cfg=cfg, b=3, c=4).abc == (7, 3, 4)
    assert Thing(cfg, c=5).abc == (7, 10, 5)
    assert Thing(a=1).abc == (1, 1, 2)

    def from_config(cfg, scale=2):
        return {"x": cfg.SEED * scale}

    @configurable(from_config=from_config)
    def fn(*, x, y=0):
        return x + y

    assert fn(cfg) == 14 and fn(cfg, scale=1, y=1) == 8 and fn(x=1) == 1
