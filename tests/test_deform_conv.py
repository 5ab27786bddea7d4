"""The deformable convs (torchvision's deform_conv2d on CPU) equal a plain-PyTorch bilinear-sampling reference."""

from __future__ import annotations

import pytest
import torch

from solov2.layers import DeformConv, DeformConvWithOffset, ModulatedDeformConv


def _bilinear(x: torch.Tensor, y: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Sample x (C x H x W) at real positions (y, xs) (any equal shapes): zero outside the image, each of the four
    neighbours counted only when it lies inside."""
    c, h, w = x.shape
    y0, x0 = torch.floor(y), torch.floor(xs)
    out = x.new_zeros((c,) + y.shape)
    for dy in (0, 1):
        for dx in (0, 1):
            yy, xx = y0 + dy, x0 + dx
            weight = (1 - (y - yy).abs()) * (1 - (xs - xx).abs())
            inside = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
            vals = x[:, yy.clamp(0, h - 1).long(), xx.clamp(0, w - 1).long()]
            out += vals * (weight * inside)
    return out


def reference_deform_conv(x, offset, mask, weight, bias, stride, padding, dilation):
    """Deformable conv from its definition: out[o, p] = sum over taps k and input channels c of
    weight[o, c, k] * mask[g, k, p] * x[c](p * stride - padding + k * dilation + offset[g, k, p]),
    with (dy, dx) offsets per tap and channel groups g of the offsets (and of `groups` for the weight)."""
    n, cin, h, w = x.shape
    cout, cin_g, kh, kw = weight.shape
    groups = cin // cin_g
    oh, ow = offset.shape[-2:]
    dg = offset.shape[1] // (2 * kh * kw)
    ys = torch.arange(oh, dtype=x.dtype).view(-1, 1) * stride - padding
    xs = torch.arange(ow, dtype=x.dtype).view(1, -1) * stride - padding
    out = x.new_zeros(n, cout, oh, ow)
    for b in range(n):
        cols = x.new_zeros(cin, kh * kw, oh, ow)  # sampled input per channel and tap
        for c in range(cin):
            g = c // (cin // dg)
            for i in range(kh):
                for j in range(kw):
                    k = i * kw + j
                    dy = offset[b, g * 2 * kh * kw + 2 * k]
                    dx = offset[b, g * 2 * kh * kw + 2 * k + 1]
                    v = _bilinear(x[b, c:c + 1], ys + i * dilation + dy, xs + j * dilation + dx)[0]
                    if mask is not None:
                        v = v * mask[b, g * kh * kw + k]
                    cols[c, k] = v
        for gi in range(groups):
            wg = weight[gi * (cout // groups):(gi + 1) * (cout // groups)].reshape(cout // groups, cin_g * kh * kw)
            cg = cols[gi * cin_g:(gi + 1) * cin_g].reshape(cin_g * kh * kw, oh * ow)
            out[b, gi * (cout // groups):(gi + 1) * (cout // groups)] = (wg @ cg).view(-1, oh, ow)
        if bias is not None:
            out[b] += bias.view(-1, 1, 1)
    return out


@pytest.mark.parametrize("modulated", [False, True], ids=["DCNv1", "DCNv2"])
@pytest.mark.parametrize("stride,padding,dilation,groups,dg,kernel", [
    (1, 1, 1, 1, 1, 3), (2, 1, 1, 2, 1, 3), (1, 2, 2, 1, 2, 3), (1, 0, 1, 1, 1, 1)],
    ids=["3x3", "stride2-groups2", "dilation2-dgroups2", "1x1"])
def test_deform_conv_equals_bilinear_reference(modulated, stride, padding, dilation, groups, dg, kernel):
    g = torch.Generator().manual_seed(stride * 7 + dilation + groups * 3 + dg + kernel)
    cin, cout, h, w = 4, 6, 7, 9
    cls = ModulatedDeformConv if modulated else DeformConv
    conv = cls(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
               deformable_groups=dg, bias=True).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        conv.bias.copy_(torch.randn(cout, generator=g))
    x = torch.randn(2, cin, h, w, generator=g)
    oh = (h + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    ow = (w + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    # Offsets of several pixels, many landing between pixels and some outside the image.
    offset = torch.randn(2, 2 * kernel * kernel * dg, oh, ow, generator=g) * 2.5
    mask = torch.rand(2, kernel * kernel * dg, oh, ow, generator=g) if modulated else None
    with torch.no_grad():
        got = conv(x, offset, mask) if modulated else conv(x, offset)
    want = reference_deform_conv(x.double(), offset.double(), None if mask is None else mask.double(),
                                 conv.weight.double(), conv.bias.double(), stride, padding, dilation)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("modulated", [False, True], ids=["DCNv1", "DCNv2"])
def test_offset_predicting_conv_splits_offsets_and_masks(modulated):
    """The conv that predicts its own offsets: first 2*k*k channels are offsets, the rest mask logits (sigmoid)."""
    g = torch.Generator().manual_seed(3)
    m = DeformConvWithOffset(4, 5, 3, padding=1, modulated=modulated).eval()
    assert torch.count_nonzero(m.conv_offset.weight) == 0  # starts as a plain conv
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    x = torch.randn(1, 4, 6, 8, generator=g)
    pred = m.conv_offset(x)
    offset = pred[:, :18]
    mask = pred[:, 18:].sigmoid() if modulated else None
    want = reference_deform_conv(x.double(), offset.double(), None if mask is None else mask.double(),
                                 m.conv.weight.double(), None, 1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(m(x).double(), want, rtol=1e-4, atol=1e-4)
