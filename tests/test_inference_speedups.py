"""Eval-mode speedups: BatchNorm folded into convs and channels-last activations give the same answers, and never
touch training, parameters or checkpoint names."""

import copy

import pytest
import torch

import pinned_model as pm
from solov2.layers import Conv2d, FrozenBatchNorm2d, set_norm_folding


def _network(model, images):
    with torch.no_grad():
        return model.network(images)


def _flat(outputs):
    cate, kernels, mask_feats = outputs
    return torch.cat([t.flatten().double() for t in list(cate) + list(kernels) + [mask_feats]])


def _close(a, b, rel=1e-4):
    """Equal up to float32 rounding through the network: max difference within `rel` of the largest value."""
    return float((a - b).abs().max()) <= rel * float(b.abs().max())


def _images(model, key):
    inputs = pm.pinned_inputs(pm.CONFIGS[key]().MODEL.SOLOV2.NUM_CLASSES, with_gt=False)
    return model.preprocess_image(inputs).tensor, inputs


@pytest.mark.parametrize("key", ["small", "quickstart"])
def test_folded_channels_last_model_gives_the_pinned_answers_of_the_plain_one(key, one_thread):
    """FrozenBN (small) and eval-mode BN (quickstart) backbones: same detections as without the speedups."""
    nc = pm.CONFIGS[key]().MODEL.SOLOV2.NUM_CLASSES
    fast = pm.build_pinned_model(key).eval()
    plain = set_norm_folding(pm.build_pinned_model(key).eval(), False)
    plain.channels_last = False
    assert fast.channels_last and any(m.folds_norm() for m in fast.modules() if isinstance(m, Conv2d))
    images, _ = _images(fast, key)
    assert _close(_flat(_network(fast, images)), _flat(_network(plain, images)))
    pm.assert_inference_matches(pm.record_inference(fast, nc), pm.record_inference(plain, nc))


def test_folding_is_as_accurate_as_the_unfolded_network(one_thread):
    """R50 (53 FrozenBNs): folded float32 is as close to a float64 reference as unfolded float32 is."""
    fast = pm.build_pinned_model("r50").eval()
    plain = set_norm_folding(copy.deepcopy(fast), False)
    plain.channels_last = False
    exact = copy.deepcopy(plain).double()
    images = _images(fast, "r50")[0][:1, :, :96, :160]  # one image, cropped: float64 R50 is slow
    want = _flat(_network(exact, images.double()))
    err_fast = float((_flat(_network(fast, images)) - want).abs().max() / want.abs().max())
    err_plain = float((_flat(_network(plain, images)) - want).abs().max() / want.abs().max())
    assert err_plain < 1e-5 and err_fast < 2 * err_plain + 1e-7, (err_fast, err_plain)


def test_folding_leaves_parameters_training_and_checkpoints_alone():
    model = pm.build_pinned_model("quickstart")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    images, inputs = _images(model, "quickstart")
    _network(model, images)
    assert list(model.state_dict()) == list(before)  # the published names, nothing added
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    # training runs the convs and BatchNorms as before (and updates the running statistics)
    model.train()
    assert not any(m.folds_norm() for m in model.modules() if isinstance(m, Conv2d))
    assert not any("_folded_bn" in m.__dict__ for m in model.modules())
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    mean = bn.running_mean.clone()
    model(pm.pinned_inputs(3, with_gt=True))
    assert not torch.equal(bn.running_mean, mean)


def test_folded_weights_follow_changed_parameters():
    """The folded copy is rebuilt after load_state_dict, an in-place update or a move: never stale."""
    a = pm.build_pinned_model("small").eval()
    images, _ = _images(a, "small")
    before = _flat(_network(a, images))  # builds the folded weights
    b = pm.build_pinned_model("small").eval()
    with torch.no_grad():
        for name, t in b.state_dict().items():
            if t.dtype.is_floating_point and "bottom_up" in name:
                t.mul_(1.1 if name.endswith("weight") else 0.9)
    a.load_state_dict(b.state_dict())
    ref = set_norm_folding(copy.deepcopy(b), False)
    assert not _close(_flat(_network(ref, images)), before)  # the change is visible at the outputs
    assert _close(_flat(_network(a, images)), _flat(_network(ref, images)))
    frozen = next(m for m in a.modules() if isinstance(m, FrozenBatchNorm2d))
    with torch.no_grad():
        frozen.running_var.mul_(4)  # in place, through the tensor
    ref = set_norm_folding(copy.deepcopy(a), False)
    assert _close(_flat(_network(a, images)), _flat(_network(ref, images)))


def test_eval_mode_still_differentiates_the_conv_weights():
    model = pm.build_pinned_model("small").eval()
    images, _ = _images(model, "small")
    conv = model.backbone.bottom_up.res3[0].conv1
    assert conv.folds_norm() and conv.weight.requires_grad
    _, _, mask_feats = model.network(images)
    mask_feats.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
