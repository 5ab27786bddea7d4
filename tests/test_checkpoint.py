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


def _narrow_r50_model():
    """Bottleneck blocks (branch2c, stride in 1x1) with few channels, as in R-50.pkl but small."""
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    return _Holder(build_backbone(cfg))


def _bottom_up_state(model):
    return {k[len("backbone.bottom_up."):]: v for k, v in model.state_dict().items() if k.startswith("backbone.bottom_up.")}


@pytest.mark.parametrize("make_model", [_r18_model, _narrow_r50_model], ids=["R18", "R50-narrow"])
def test_msra_pickle_maps_every_tensor(tmp_path, make_model):
    model = make_model()
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
    # Hand-written spot checks of the Caffe2 naming, independent of the loop above.
    spots = {"conv1_w": "stem.conv1.weight", "res_conv1_bn_b": "stem.conv1.norm.bias",
             "res3_0_branch1_w": "res3.0.shortcut.weight", "res3_0_branch1_bn_s": "res3.0.shortcut.norm.weight",
             "res2_1_branch2a_w": "res2.1.conv1.weight", "res5_1_branch2b_bn_b": "res5.1.conv2.norm.bias"}
    if "res2_0_branch2c_w" in blobs:
        spots["res4_5_branch2c_w"] = "res4.5.conv3.weight"
    for c2, ours in spots.items():
        assert torch.equal(state[ours], torch.from_numpy(blobs[c2])), c2
    # Scale/bias only: identity statistics, so FrozenBN computes x * scale + bias exactly.
    bn = model.backbone.bottom_up.res2[0].conv1.norm
    assert torch.all(bn.running_mean == 0) and torch.allclose(bn.running_var + bn.eps, torch.ones_like(bn.running_var))
    x = torch.randn(1, bn.weight.numel(), 2, 2)
    expected_bn = x * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    assert torch.allclose(bn(x), expected_bn, atol=1e-5)
    # The same blobs at top level (no "blobs" wrapper) load identically.
    flat = tmp_path / "flat.pkl"
    with open(flat, "wb") as f:
        pickle.dump(blobs, f)
    fresh = make_model()
    Checkpointer(fresh).load(str(flat))
    assert all(torch.equal(v, state[k]) for k, v in _bottom_up_state(fresh).items())


def test_pickle_with_our_names_and_published_checkpoint(tmp_path, reference_state_dict_shapes):
    # A Detectron2-style pickle: {"model": {our name: numpy array}}.
    model = _r18_model()
    arrays = {k: np.full(tuple(v.shape), 0.5, dtype=np.float32) for k, v in model.state_dict().items()}
    with open(tmp_path / "d2.pkl", "wb") as f:
        pickle.dump({"model": arrays, "__author__": "someone"}, f)
    Checkpointer(model).load(str(tmp_path / "d2.pkl"))
    assert all(torch.all(v == 0.5) for v in model.state_dict().values())
    # A published SOLOv2 checkpoint ({"model": state_dict} with the reference names), backbone part.
    cfg = get_cfg()
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    r50 = _Holder(build_backbone(cfg))
    g = torch.Generator().manual_seed(2)
    published = {k: torch.rand(shape, generator=g) for k, shape in reference_state_dict_shapes.items()
                 if k.startswith("backbone.")}
    torch.save({"model": published}, tmp_path / "SOLOv2_R50_3x.pth")
    Checkpointer(r50).load(str(tmp_path / "SOLOv2_R50_3x.pth"))
    state = r50.state_dict()
    assert set(state) == set(published)
    assert all(torch.equal(state[k], published[k]) for k in published)


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
    for k in mapped:  # every torchvision tensor, by the documented renaming
        name = k.replace("conv1.weight", "stem.conv1.weight", 1) if k == "conv1.weight" else k
        name = "stem.conv1.norm." + name[4:] if name.startswith("bn1.") else name
        for i in range(1, 5):
            name = name.replace(f"layer{i}.", f"res{i + 1}.")
        name = name.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
        for i in (1, 2):
            name = name.replace(f".bn{i}.", f".conv{i}.norm.")
        assert torch.equal(ours[name], tvs[k]), k


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
    with pytest.raises(FileNotFoundError, match="https://example.com/w/R-101.pkl.*local file"):
        Checkpointer(model).resume_or_load("https://example.com/w/R-101.pkl", resume=False)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        Checkpointer(model).load(str(tmp_path / "nope.pth"))


def test_only_main_process_writes(tmp_path, monkeypatch):
    from solov2.utils import comm

    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    ck = Checkpointer(torch.nn.Linear(2, 2), str(tmp_path / "out"))
    ck.save("model_final")
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


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


def test_resume_restores_optimizer_scheduler_and_iteration(tmp_path):
    def make():
        m = torch.nn.Linear(3, 2)
        o = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        return m, o, torch.optim.lr_scheduler.MultiStepLR(o, milestones=[2, 4], gamma=0.1)

    model, opt, sched = make()
    for _ in range(3):
        model(torch.ones(1, 3)).sum().backward()
        opt.step()
        sched.step()
    Checkpointer(model, str(tmp_path), optimizer=opt, scheduler=sched).save("model_0000005", iteration=5)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "model_0000005.pth").st_mode & 0o777 == 0o666 & ~umask  # like a plain open()
    model2, opt2, sched2 = make()
    ck = Checkpointer(model2, str(tmp_path), optimizer=opt2, scheduler=sched2)
    assert ck.has_checkpoint() and ck.get_checkpoint_file() == str(tmp_path / "model_0000005.pth")
    extra = ck.resume_or_load("ignored.pth", resume=True)
    assert extra["iteration"] == 5
    buf1 = opt.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(opt2.state_dict()["state"][0]["momentum_buffer"], buf1)
    assert sched2.last_epoch == 3 and opt2.param_groups[0]["lr"] == pytest.approx(0.01)
    assert all(torch.equal(model2.state_dict()[k], v) for k, v in model.state_dict().items())
    # resume=False loads only the given weights: no optimizer state, no iteration.
    model3, opt3, sched3 = make()
    torch.save({"model": model.state_dict()}, tmp_path / "weights.pth")
    extra = Checkpointer(model3, str(tmp_path), optimizer=opt3).resume_or_load(str(tmp_path / "weights.pth"),
                                                                                 resume=False)
    assert "iteration" not in extra and not opt3.state_dict()["state"]
