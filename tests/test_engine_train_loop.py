"""Trainer loop, hooks, writers and AMP with a tiny fake model and a list-based loader."""

from __future__ import annotations

import json
import logging
import math
import os
import re
from typing import Dict, List

import pytest
import torch
from torch import nn

from solov2.config import get_cfg
from solov2.engine import (
    AMPTrainer,
    CallbackHook,
    EvalHook,
    HookBase,
    IterationTimer,
    LRScheduler,
    PeriodicWriter,
    SimpleTrainer,
)
from solov2.solver import build_lr_scheduler, build_optimizer
from solov2.utils.events import CommonMetricPrinter, EventStorage, JSONWriter, TensorboardXWriter


class TinyModel(nn.Module):
    """Regression of a fixed target; the loss dict mimics SOLOv2's two losses."""

    def __init__(self, nan_at_call: int = -1) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)
        self.norm = nn.GroupNorm(1, 4)
        self.calls = 0
        self.nan_at_call = nan_at_call
        self.seen_dtypes: List[torch.dtype] = []

    def forward(self, batch: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        x = torch.stack([d["x"] for d in batch])
        out = self.fc(self.norm(x[:, :, None]).squeeze(-1))
        self.seen_dtypes.append(out.dtype)
        loss_ins = ((out.float() - 1.0) ** 2).mean()
        loss_cate = out.float().abs().mean() * 0.1
        self.calls += 1
        if self.calls == self.nan_at_call:
            loss_ins = loss_ins * float("nan")
        return {"loss_ins": loss_ins, "loss_cate": loss_cate}


def make_loader(n: int = 1000, batch: int = 2):
    """An endless-enough list of batches of dicts, like the detection loaders yield."""
    g = torch.Generator().manual_seed(0)
    return [[{"x": torch.randn(4, generator=g)} for _ in range(batch)] for _ in range(n)]


def make_cfg(max_iter: int = 6):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.05
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.WARMUP_ITERS = 2
    cfg.SOLVER.STEPS = (4,)
    return cfg


class Recorder(HookBase):
    def __init__(self) -> None:
        self.events: List[str] = []

    def before_train(self) -> None:
        self.events.append("before_train")

    def after_train(self) -> None:
        self.events.append(f"after_train@{self.trainer.iter}")

    def before_step(self) -> None:
        self.events.append(f"before_step{self.trainer.iter}")

    def after_step(self) -> None:
        self.events.append(f"after_step{self.trainer.iter}")


def test_hook_order_iterations_and_lr():
    torch.manual_seed(0)
    cfg = make_cfg()
    model = TinyModel()
    opt = build_optimizer(cfg, model)
    trainer = SimpleTrainer(model, make_loader(), opt)
    rec = Recorder()
    trainer.register_hooks([IterationTimer(), LRScheduler(opt, build_lr_scheduler(cfg, opt)), rec])
    w0 = model.fc.weight.detach().clone()
    trainer.train(0, 6)
    expected = ["before_train"]
    for i in range(6):
        expected += [f"before_step{i}", f"after_step{i}"]
    expected.append("after_train@6")
    assert rec.events == expected
    assert model.calls == 6 and not torch.equal(w0, model.fc.weight)
    storage = trainer.storage
    lrs = [v for v, _ in storage.history("lr").values()]
    assert lrs[0] == pytest.approx(0.05 * cfg.SOLVER.WARMUP_FACTOR)
    assert lrs[2:4] == pytest.approx([0.05, 0.05]) and lrs[4:] == pytest.approx([0.005, 0.005])
    assert len(storage.history("time").values()) == 6
    for name in ("loss_ins", "loss_cate", "total_loss", "data_time"):
        assert all(math.isfinite(v) for v, _ in storage.history(name).values())
    total = storage.history("total_loss").latest()
    assert total == pytest.approx(storage.history("loss_ins").latest() + storage.history("loss_cate").latest())


def test_nan_loss_stops_with_named_error():
    cfg = make_cfg()
    model = TinyModel(nan_at_call=4)
    opt = build_optimizer(cfg, model)
    trainer = SimpleTrainer(model, make_loader(), opt)
    rec = Recorder()
    evals = []
    trainer.register_hooks([rec, EvalHook(0, lambda: evals.append(1) or {})])
    with pytest.raises(FloatingPointError) as err:
        trainer.train(0, 6)
    msg = str(err.value)
    # Both loss values are named, and the hooks still ran after_train, without the final evaluation.
    assert re.search(r"iteration=3\b.*'loss_ins': nan, 'loss_cate': 0\.\d+", msg), msg
    assert rec.events[-1] == "after_train@3" and evals == []


def test_eval_hook_period_and_final_results_in_storage():
    cfg = make_cfg()
    model = TinyModel()
    opt = build_optimizer(cfg, model)
    trainer = SimpleTrainer(model, make_loader(), opt)
    calls = []

    def evaluate():
        calls.append(trainer.iter)
        return {"segm": {"AP": 10.0 * len(calls), "APs": float("nan")}}

    trainer.register_hooks([EvalHook(2, evaluate)])
    trainer.train(0, 5)
    assert calls == [1, 3, 5]  # after iterations 2 and 4 (1-based), then after training
    hist = trainer.storage.history("segm/AP").values()
    assert [v for v, _ in hist] == [10.0, 20.0, 30.0]
    assert "segm/APs" not in trainer.storage.histories()  # NaN metrics are not recorded


def test_writers_metrics_json_tensorboard_and_console(tmp_path):
    cfg = make_cfg(max_iter=5)
    model = TinyModel()
    opt = build_optimizer(cfg, model)
    trainer = SimpleTrainer(model, make_loader(), opt)
    lines: List[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    events_logger = logging.getLogger("solov2.utils.events")
    handler = ListHandler()
    events_logger.addHandler(handler)
    old_level = events_logger.level
    events_logger.setLevel(logging.INFO)
    try:
        writers = [
            CommonMetricPrinter(max_iter=5),
            JSONWriter(str(tmp_path / "metrics.json")),
            TensorboardXWriter(str(tmp_path)),
        ]
        trainer.register_hooks(
            [
                IterationTimer(),
                LRScheduler(opt, build_lr_scheduler(cfg, opt)),
                EvalHook(0, lambda: {"segm": {"AP": 42.0}}),
                PeriodicWriter(writers, period=2),
            ]
        )
        trainer.train(0, 5)
    finally:
        events_logger.removeHandler(handler)
        events_logger.setLevel(old_level)

    records = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    train_records = [r for r in records if "total_loss" in r]
    assert [r["iteration"] for r in train_records] == [1, 3, 4]
    for r in train_records:
        for key in ("loss_ins", "loss_cate", "lr", "time", "data_time"):
            assert math.isfinite(r[key])
    assert any(r.get("segm/AP") == 42.0 and r["iteration"] == 5 for r in records)
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path))

    assert len(lines) == 3  # iterations 1, 3 and 4 (the last); none for after_train
    for line in lines:
        for field in ("eta:", "iter:", "loss_ins:", "loss_cate:", "total_loss:", "time:", "data_time:", "lr:"):
            assert field in line, (field, line)
        assert ("max_mem:" in line) or ("max_rss:" in line)


def test_amp_trainer_cpu_uses_bfloat16():
    cfg = make_cfg()
    model = TinyModel()
    opt = build_optimizer(cfg, model)
    trainer = AMPTrainer(model, make_loader(), opt)
    assert trainer.grad_scaler is None and trainer.dtype == torch.bfloat16
    w0 = model.fc.weight.detach().clone()
    trainer.train(0, 3)
    assert model.seen_dtypes == [torch.bfloat16] * 3
    assert model.fc.weight.dtype == torch.float32 and not torch.equal(w0, model.fc.weight)
    assert all(math.isfinite(v) for v, _ in trainer.storage.history("total_loss").values())


def test_callback_hook_and_get_event_storage_errors():
    from solov2.utils.events import get_event_storage

    with pytest.raises(RuntimeError, match="EventStorage"):
        get_event_storage()
    cfg = make_cfg()
    model = TinyModel()
    trainer = SimpleTrainer(model, make_loader(), build_optimizer(cfg, model))
    seen = []
    trainer.register_hooks([CallbackHook(after_step=lambda t: seen.append(t.iter))])
    trainer.train(2, 4)  # resuming at iteration 2 runs iterations 2 and 3
    assert seen == [2, 3] and model.calls == 2
    with EventStorage(7) as storage:
        assert get_event_storage() is storage and storage.iter == 7
