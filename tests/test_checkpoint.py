"""Checkpointer: atomic saves, resume, and the weight-format converters."""

import logging
import os
import pickle

import numpy as np
import pytest
import torch

from solov2.checkpoint import Checkpointer
from solov2.config import get_cfg
from solov2.modeling import build_backbone


class _Holder(torch.nn.Module):
    """Puts a backbone under `backbone.` as in the full model."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


def _r18_model():
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    return _Holder(build_backbone(cfg))


def _bottom_up_state(model):
    return {k[len("backbone.bottom_up."):]: v for k, v in model.state_dict().items() if k.startswith("backbone.bottom_up.")}


def test_msra_pickle_maps_every_tensor(tmp_path):
    model = _r18_model()
    g = torch.Generator().manual_seed(0)
    blobs, expected = {"__author__": "Caffe2"}, {}
    for name, t in _bottom_up_state(model).items():
        if name.endswith(("running_mean", "running_var")):
            continue
        val = torch.randn(t.shape, generator=g).numpy()
        parts = name.split(".")
        if parts[0] == "stem":
            c2 = {"weight": "conv1_w"}.get(parts[-1]) if parts[-2] == "conv1" else None
            c2 = c2 or {"weight": "res_conv1_bn_s", "bias": "res_conv1_bn_b"}[parts[-1]]
        else:
            stage, block, layer = parts[0][3:], parts[1], parts[2]
            branch = {"shortcut": "branch1", "conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c"}[layer]
            if parts[3] == "weight":
                c2 = f"res{stage}_{block}_{branch}_w"
            else:
                c2 = f"res{stage}_{block}_{branch}_bn_" + {"weight": "s", "bias": "b"}[parts[4]]
        blobs[c2] = val
        blobs[c2 + "_momentum"] = np.zeros_like(val)
        expected[name] = val
    blobs["fc1000_w"] = np.zeros((1000, 512), dtype=np.float32)
    path = tmp_path / "R-18.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f)
    Checkpointer(model).load(str(path))
    state = _bottom_up_state(model)
    for name, val in expected.items():
        assert torch.equal(state[name], torch.from_numpy(val)), name
    bn = model.backbone.bottom_up.res2[0].conv1.norm
    assert torch.all(bn.running_mean == 0) and torch.allclose(bn.running_var + bn.eps, torch.ones_like(bn.running_var))


def test_torchvision_state_dict_maps_every_tensor(tmp_path):
    import torchvision

    tv = torchvision.models.resnet18(weights=None)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in tv.state_dict().values():
            if p.dtype.is_floating_point:
                p.copy_(torch.randn(p.shape, generator=g).abs() + 0.1)
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    model = _r18_model()
    Checkpointer(model).load(str(path))
    ours = _bottom_up_state(model)
    tvs = tv.state_dict()
    assert torch.equal(ours["stem.conv1.weight"], tvs["conv1.weight"])
    assert torch.equal(ours["stem.conv1.norm.running_var"], tvs["bn1.running_var"])
    assert torch.equal(ours["res2.0.conv2.norm.bias"], tvs["layer1.0.bn2.bias"])
    assert torch.equal(ours["res3.0.shortcut.weight"], tvs["layer2.0.downsample.0.weight"])
    assert torch.equal(ours["res3.0.shortcut.norm.weight"], tvs["layer2.0.downsample.1.weight"])
    assert torch.equal(ours["res5.1.conv1.weight"], tvs["layer4.1.conv1.weight"])
    mapped = [k for k in tvs if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    assert len(mapped) == len(ours)


def test_shape_mismatch_is_skipped_with_table(tmp_path, caplog):
    model = _r18_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["backbone.fpn_output2.weight"] = torch.zeros(3, 3, 3, 3)
    state["backbone.extra.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "m.pth")
    before = model.backbone.fpn_output2.weight.clone()
    with caplog.at_level(logging.INFO):
        Checkpointer(model).load(str(tmp_path / "m.pth"))
    assert torch.equal(model.backbone.fpn_output2.weight, before)
    text = caplog.text
    assert "shape mismatch (skipped)" in text and "backbone.fpn_output2.weight" in text
    assert "unexpected in checkpoint" in text and "backbone.extra.weight" in text


def test_remote_and_missing_paths_fail_fast(tmp_path):
    model = _r18_model()
    with pytest.raises(FileNotFoundError, match="detectron2://ImageNetPretrained/MSRA/R-50.pkl.*MODEL.WEIGHTS"):
        Checkpointer(model).load("detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        Checkpointer(model).load(str(tmp_path / "nope.pth"))


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ck = Checkpointer(model, str(tmp_path), optimizer=opt)
    ck.save("model_0000001", iteration=1)
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    real_save = torch.save

    def broken_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(torch, "save", broken_save)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        ck.save("model_0000001", iteration=2)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]  # no temp file left
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    fresh = torch.nn.Linear(3, 2)
    extra = Checkpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 1
    assert all(torch.equal(fresh.state_dict()[k], saved[k]) for k in saved)


def test_resume_restores_optimizer_and_iteration(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    Checkpointer(model, str(tmp_path), optimizer=opt).save("model_0000005", iteration=5)
    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    ck = Checkpointer(model2, str(tmp_path), optimizer=opt2)
    assert ck.has_checkpoint()
    extra = ck.resume_or_load("ignored.pth", resume=True)
    assert extra["iteration"] == 5
    buf1 = opt.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(opt2.state_dict()["state"][0]["momentum_buffer"], buf1)
