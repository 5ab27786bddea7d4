"""DefaultTrainer in one process on a tiny SOLOv2: exact resume state, forced NaN, default_setup and the parser."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch

from solov2.config import get_cfg
from solov2.data.datasets import ensure_shapes_split
from solov2.engine import DefaultTrainer, default_argument_parser, default_setup
from solov2.utils.logger import setup_logger

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_cfg_factory(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer_data")
    json_file, image_root = ensure_shapes_split(str(root), "trainer", num_images=4, seed=5)

    def make(out_dir: Path, max_iter: int = 4):
        cfg = get_cfg()
        cfg.merge_from_file(str(REPO / "configs" / "quickstart" / "shapes_R18.yaml"))
        cfg.DATASETS.COCO_INSTANCES = (("trainer_shapes", json_file, image_root),)
        cfg.DATASETS.TRAIN = ("trainer_shapes",)
        cfg.DATASETS.TEST = ()
        cfg.DATALOADER.NUM_WORKERS = 0
        cfg.INPUT.MIN_SIZE_TRAIN = (96,)
        cfg.SOLVER.IMS_PER_BATCH = 2
        cfg.SOLVER.MAX_ITER = max_iter
        cfg.SOLVER.WARMUP_ITERS = 2
        cfg.SOLVER.STEPS = (3,)
        cfg.SOLVER.CHECKPOINT_PERIOD = 2
        cfg.SEED = 7
        cfg.OUTPUT_DIR = str(out_dir)
        return cfg

    return make


def _tensors_equal(a, b) -> bool:
    """Deep equality of nested dicts/lists of tensors and numbers."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_tensors_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.slow
def test_resume_restores_model_optimizer_scheduler_and_iteration(tiny_cfg_factory, tmp_path):
    torch.manual_seed(0)
    full = DefaultTrainer(tiny_cfg_factory(tmp_path))
    full.resume_or_load(resume=False)
    full.train()
    assert full.iter == 4 and full.scheduler.last_epoch == 4
    final_lr = full.optimizer.param_groups[0]["lr"]
    assert {"model_0000001.pth", "model_0000003.pth", "model_final.pth"} <= {p.name for p in tmp_path.iterdir()}

    # Pretend the run died after the checkpoint of iteration 1 (0-based), then resume it.
    (tmp_path / "last_checkpoint").write_text("model_0000001.pth")
    saved = torch.load(tmp_path / "model_0000001.pth", map_location="cpu", weights_only=False)
    resumed = DefaultTrainer(tiny_cfg_factory(tmp_path))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 2 and resumed.scheduler.last_epoch == 2
    assert _tensors_equal(resumed.optimizer.state_dict(), saved["optimizer"])
    assert _tensors_equal(resumed.model.state_dict(), saved["model"])
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(saved["optimizer"]["param_groups"][0]["lr"])
    resumed.train()
    # Ends like the uninterrupted run: same iteration count, same LR, same optimizer state layout.
    assert resumed.iter == full.iter and resumed.scheduler.last_epoch == full.scheduler.last_epoch
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(final_lr)
    state_a, state_b = full.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert state_a["param_groups"] == state_b["param_groups"]
    assert state_a["state"].keys() == state_b["state"].keys()
    final = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)
    assert final["iteration"] == 3 and final["scheduler"]["last_epoch"] == 4


class _NaNAtSecondCall(torch.nn.Module):
    """Wraps SOLOv2 and poisons loss_ins on its second training call."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, batched_inputs):
        out = self.inner(batched_inputs)
        self.calls += 1
        if self.calls == 2:
            out = dict(out, loss_ins=out["loss_ins"] * float("nan"))
        return out


class _NaNTrainer(DefaultTrainer):
    @classmethod
    def build_model(cls, cfg):
        return _NaNAtSecondCall(super().build_model(cfg))


@pytest.mark.slow
def test_forced_nan_loss_stops_with_named_error(tiny_cfg_factory, tmp_path):
    trainer = _NaNTrainer(tiny_cfg_factory(tmp_path, max_iter=5))
    trainer.resume_or_load(resume=False)
    with pytest.raises(FloatingPointError) as err:
        trainer.train()
    assert re.search(r"iteration=1\b.*'loss_ins': nan, 'loss_cate': [0-9.e-]+", str(err.value)), str(err.value)
    assert not (tmp_path / "model_final.pth").exists()  # a failed run does not pretend to have finished


def test_default_setup_writes_config_log_and_seeds(tmp_path):
    setup_logger.cache_clear()
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    cfg.SEED = -1
    cfg.SOLVER.BASE_LR = 0.123
    args = default_argument_parser().parse_args(["SOLVER.BASE_LR", "0.123"])
    default_setup(cfg, args)
    for handler in logging.getLogger("solov2").handlers:
        handler.flush()
    reloaded = get_cfg()
    reloaded.merge_from_file(str(tmp_path / "out" / "config.yaml"))
    assert reloaded.SOLVER.BASE_LR == pytest.approx(0.123) and reloaded.dump() == cfg.dump()
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "Environment info" in log and "pycocotools" in log and "torchvision" in log
    assert "Command line arguments" in log and "Running with full config" in log
    assert re.search(r"Using a generated random seed \d+", log)
    setup_logger.cache_clear()


def test_default_argument_parser():
    args = default_argument_parser().parse_args(
        ["--config-file", "a.yaml", "--num-gpus", "2", "--resume", "SOLVER.BASE_LR", "0.1", "OUTPUT_DIR", "x"]
    )
    assert args.config_file == "a.yaml" and args.num_gpus == 2 and args.resume and not args.eval_only
    assert args.num_machines == 1 and args.machine_rank == 0 and args.dist_url.startswith("tcp://127.0.0.1:")
    assert args.opts == ["SOLVER.BASE_LR", "0.1", "OUTPUT_DIR", "x"]
    args = default_argument_parser().parse_args(["--eval-only", "--dist-url", "auto", "MODEL.WEIGHTS", "m.pth"])
    assert args.eval_only and args.dist_url == "auto" and args.opts == ["MODEL.WEIGHTS", "m.pth"]


@pytest.mark.slow
def test_every_periodic_evaluation_reaches_metrics_json(tiny_cfg_factory, tmp_path):
    cfg = tiny_cfg_factory(tmp_path, max_iter=6)
    cfg.DATASETS.TEST = ("trainer_shapes",)
    cfg.INPUT.MIN_SIZE_TEST = 96
    cfg.TEST.EVAL_PERIOD = 2
    cfg.SOLVER.CHECKPOINT_PERIOD = 100
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    assert set(results) == {"segm", "bbox"}
    rows = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in rows if "segm/AP" in r] == [1, 3, 6]  # after iterations 2, 4 and the end
    assert (tmp_path / "inference" / "coco_instances_results.json").exists()
