"""Optimizer parameter groups, gradient clipping and LR schedules built from the config."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

from solov2.config import get_cfg
from solov2.layers import FrozenBatchNorm2d
from solov2.solver import build_lr_scheduler, build_optimizer, scale_for_world_size


def _lrs(cfg, num_iters=None):
    """The lr used at each iteration 0..MAX_ITER-1, stepping the scheduler like the trainer does."""
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=cfg.SOLVER.BASE_LR)
    sched = build_lr_scheduler(cfg, opt)
    out = []
    for _ in range(num_iters or cfg.SOLVER.MAX_ITER):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _schedule_cfg(**solver):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.5
    cfg.SOLVER.MAX_ITER = 100
    cfg.SOLVER.WARMUP_ITERS = 10
    cfg.SOLVER.WARMUP_FACTOR = 0.1
    cfg.SOLVER.STEPS = (50, 80)
    cfg.SOLVER.GAMMA = 0.1
    for k, v in solver.items():
        setattr(cfg.SOLVER, k, v)
    return cfg


def test_warmup_multistep_values():
    lrs = _lrs(_schedule_cfg())
    # Linear warmup from BASE_LR * WARMUP_FACTOR: factor * (1 - a) + a with a = iter / WARMUP_ITERS.
    for it in range(10):
        alpha = it / 10
        assert lrs[it] == pytest.approx(0.5 * (0.1 * (1 - alpha) + alpha))
    assert lrs[10:50] == pytest.approx([0.5] * 40)
    assert lrs[50:80] == pytest.approx([0.05] * 30)
    assert lrs[80:100] == pytest.approx([0.005] * 20)


def test_constant_warmup_and_no_warmup():
    lrs = _lrs(_schedule_cfg(WARMUP_METHOD="constant"))
    assert lrs[:10] == pytest.approx([0.05] * 10)
    assert lrs[10] == pytest.approx(0.5)
    lrs = _lrs(_schedule_cfg(WARMUP_ITERS=0))
    assert lrs[0] == pytest.approx(0.5) and lrs[49] == pytest.approx(0.5) and lrs[50] == pytest.approx(0.05)


def test_cosine_values():
    cfg = _schedule_cfg(LR_SCHEDULER_NAME="WarmupCosineLR", BASE_LR_END=0.05)
    lrs = _lrs(cfg)
    end = 0.05 / 0.5
    for it in (10, 25, 50, 75, 99):
        expected = 0.5 * (end + (1 - end) * 0.5 * (1 + math.cos(math.pi * it / 100)))
        assert lrs[it] == pytest.approx(expected)
    # The warmup ends at the cosine value at WARMUP_ITERS, starting from WARMUP_FACTOR * BASE_LR.
    assert lrs[0] == pytest.approx(0.05)
    assert lrs[5] == pytest.approx(0.05 + 0.5 * (lrs[10] - 0.05), rel=1e-3)


def test_schedule_errors_and_warnings(caplog):
    with pytest.raises(ValueError, match="SOLVER.LR_SCHEDULER_NAME 'Bogus'"):
        _lrs(_schedule_cfg(LR_SCHEDULER_NAME="Bogus"))
    with pytest.raises(ValueError, match="SOLVER.WARMUP_METHOD"):
        _lrs(_schedule_cfg(WARMUP_METHOD="exp"))
    with caplog.at_level(logging.WARNING, logger="solov2.solver.build"):
        lrs = _lrs(_schedule_cfg(STEPS=(50, 300)))
    assert "SOLVER.STEPS" in caplog.text
    assert lrs[99] == pytest.approx(0.05)


def test_scheduler_state_dict_roundtrip():
    cfg = _schedule_cfg()
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.5)
    sched = build_lr_scheduler(cfg, opt)
    for _ in range(60):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert set(state) == {"base_lrs", "last_epoch"} and state["last_epoch"] == 60
    opt2 = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    sched2 = build_lr_scheduler(cfg, opt2)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.gn = nn.GroupNorm(2, 8)
        self.bn = nn.BatchNorm2d(8)
        self.frozen = FrozenBatchNorm2d(8)
        self.fc = nn.Linear(8, 2)
        self.fixed = nn.Linear(2, 2)
        self.fixed.requires_grad_(False)


def _hyper_of(opt, param):
    for g in opt.param_groups:
        if any(p is param for p in g["params"]):
            return g["lr"], g["weight_decay"]
    return None


def test_no_weight_decay_on_norm_params_by_default():
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.WEIGHT_DECAY = 1e-4
    net = _Net()
    opt = build_optimizer(cfg, net)
    for p in (net.gn.weight, net.gn.bias, net.bn.weight, net.bn.bias):
        assert _hyper_of(opt, p) == (0.1, 0.0)
    for p in (net.conv.weight, net.conv.bias, net.fc.weight, net.fc.bias):
        assert _hyper_of(opt, p) == (0.1, 1e-4)
    # Frozen parameters are not optimised; each trainable one appears exactly once.
    assert _hyper_of(opt, net.fixed.weight) is None
    all_params = [p for g in opt.param_groups for p in g["params"]]
    assert len(all_params) == len({id(p) for p in all_params}) == 8
    assert opt.defaults["momentum"] == cfg.SOLVER.MOMENTUM


def test_norm_decay_bias_lr_and_decay_when_asked():
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.WEIGHT_DECAY = 1e-4
    cfg.SOLVER.WEIGHT_DECAY_NORM = 5e-5
    cfg.SOLVER.BIAS_LR_FACTOR = 2.0
    cfg.SOLVER.WEIGHT_DECAY_BIAS = 0.0
    cfg.SOLVER.NESTEROV = True
    net = _Net()
    opt = build_optimizer(cfg, net)
    assert _hyper_of(opt, net.gn.weight) == (0.1, 5e-5)
    assert _hyper_of(opt, net.gn.bias) == (0.1, 5e-5)
    assert _hyper_of(opt, net.conv.bias) == (0.2, 0.0)
    assert _hyper_of(opt, net.conv.weight) == (0.1, 1e-4)
    assert opt.defaults["nesterov"] is True


def test_adamw_optimizer_keeps_param_groups_and_clipping():
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER = "AdamW"  # names are case-insensitive
    cfg.SOLVER.BASE_LR = 0.01
    cfg.SOLVER.WEIGHT_DECAY = 0.05
    cfg.SOLVER.BETAS = (0.8, 0.99)
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1e-3
    net = _Net()
    opt = build_optimizer(cfg, net)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.8, 0.99)
    assert _hyper_of(opt, net.bn.weight) == (0.01, 0.0) and _hyper_of(opt, net.conv.weight) == (0.01, 0.05)
    # Decoupled weight decay: a zero gradient still shrinks a decayed weight by lr * wd, never a norm weight.
    w0, g0 = net.conv.weight.detach().clone(), net.bn.weight.detach().clone()
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.allclose(net.conv.weight, w0 * (1 - 0.01 * 0.05))
    assert torch.equal(net.bn.weight, g0)
    # The first Adam step moves every weight by ~lr whatever the gradient's size, so clipping shows in the grads.
    for p in net.parameters():
        p.grad = torch.full_like(p, 100.0)
    opt.step()
    total = torch.sqrt(sum((p.grad**2).sum() for p in net.parameters() if p.requires_grad))
    assert total == pytest.approx(1e-3, rel=1e-4)


def test_unknown_optimizer_names_the_key():
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER = "LAMB"
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER"):
        build_optimizer(cfg, _Net())


def _step_with_grad(cfg, grads):
    """One SGD step (lr 1, no momentum/decay) from zero params with the given grads; returns -update."""
    cfg.SOLVER.BASE_LR = 1.0
    cfg.SOLVER.MOMENTUM = 0.0
    cfg.SOLVER.WEIGHT_DECAY = 0.0
    net = nn.Module()
    net.a = nn.Parameter(torch.zeros(2))
    net.b = nn.Parameter(torch.zeros(2))
    opt = build_optimizer(cfg, net)
    net.a.grad = grads[0].clone()
    net.b.grad = grads[1].clone()
    opt.step()
    return -net.a.detach(), -net.b.detach()


@pytest.mark.parametrize("clip_type", ["value", "norm", "full_model"])
def test_gradient_clipping(clip_type):
    cfg = get_cfg()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = clip_type
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
    grads = (torch.tensor([3.0, 4.0]), torch.tensor([0.3, -0.4]))
    a, b = _step_with_grad(cfg, grads)
    if clip_type == "value":
        assert torch.allclose(a, torch.tensor([1.0, 1.0])) and torch.allclose(b, grads[1])
    elif clip_type == "norm":
        assert torch.allclose(a, torch.tensor([0.6, 0.8]), atol=1e-5) and torch.allclose(b, grads[1])
    else:
        total = math.sqrt(25 + 0.25)
        assert torch.allclose(a, grads[0] / total, atol=1e-5) and torch.allclose(b, grads[1] / total, atol=1e-5)


def test_clipping_disabled_and_bad_type():
    cfg = get_cfg()
    a, _ = _step_with_grad(cfg, (torch.tensor([3.0, 4.0]), torch.zeros(2)))
    assert torch.allclose(a, torch.tensor([3.0, 4.0]))
    cfg = get_cfg()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "elementwise"
    with pytest.raises(ValueError, match="SOLVER.CLIP_GRADIENTS.CLIP_TYPE"):
        _step_with_grad(cfg, (torch.zeros(2), torch.zeros(2)))


def test_scale_for_world_size():
    cfg = get_cfg()
    cfg.SOLVER.IMS_PER_BATCH = 16
    cfg.SOLVER.BASE_LR = 0.01
    cfg.SOLVER.MAX_ITER = 90000
    cfg.SOLVER.STEPS = (60000, 80000)
    cfg.SOLVER.WARMUP_ITERS = 1000
    assert scale_for_world_size(cfg, 4) is cfg  # REFERENCE_WORLD_SIZE 0: no scaling
    cfg.SOLVER.REFERENCE_WORLD_SIZE = 8
    new = scale_for_world_size(cfg, 4)
    assert new.SOLVER.IMS_PER_BATCH == 8 and new.SOLVER.BASE_LR == pytest.approx(0.005)
    assert new.SOLVER.MAX_ITER == 180000 and new.SOLVER.STEPS == (120000, 160000)
    assert new.SOLVER.WARMUP_ITERS == 2000 and cfg.SOLVER.IMS_PER_BATCH == 16
