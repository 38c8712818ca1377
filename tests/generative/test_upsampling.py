"""Upsampling (notes §3.1): the fixed rules on the notes' figures, max unpooling against torch, and the
transposed convolution as a loop, as torch's kernel and as the adjoint of the convolution."""

import pytest
import torch
import torch.nn.functional as F

from generative.nn.upsampling import (
    Upsample,
    adjoint_gap,
    bed_of_nails,
    max_unpool,
    nearest_neighbour,
    transposed_conv2d_reference,
)


def test_nearest_neighbour_copies_each_value_into_its_block():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    expected = torch.tensor(
        [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0], [3.0, 3.0, 4.0, 4.0]]
    ).view(1, 1, 4, 4)
    assert torch.equal(nearest_neighbour(x, 2), expected)
    y = torch.randn(2, 3, 5, 4)
    assert torch.equal(nearest_neighbour(y, 3), F.interpolate(y, scale_factor=3, mode="nearest"))


def test_bed_of_nails_puts_values_top_left_and_zeros_elsewhere():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    expected = torch.tensor(
        [[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    ).view(1, 1, 4, 4)
    assert torch.equal(bed_of_nails(x, 2), expected)
    # bed of nails is the adjoint of subsampling x[..., ::s, ::s], and its sum equals the input's
    y = torch.randn(2, 3, 4, 5)
    z = torch.randn(2, 3, 12, 15)
    assert torch.allclose((bed_of_nails(y, 3) * z).sum(), (y * z[:, :, ::3, ::3]).sum(), atol=1e-5)


def test_max_unpool_puts_values_back_where_the_maxima_were():
    x = torch.tensor([[1.0, 5.0, 2.0, 0.0], [3.0, 0.0, 1.0, 7.0], [4.0, 2.0, 8.0, 1.0], [0.0, 6.0, 3.0, 2.0]])
    pooled, indices = F.max_pool2d(x.view(1, 1, 4, 4), 2, return_indices=True)
    assert pooled.flatten().tolist() == [5.0, 7.0, 6.0, 8.0]
    out = max_unpool(pooled, indices, (4, 4))
    expected = torch.zeros(4, 4)
    for (i, j), v in {(0, 1): 5.0, (1, 3): 7.0, (3, 1): 6.0, (2, 2): 8.0}.items():
        expected[i, j] = v
    assert torch.equal(out.view(4, 4), expected)


def test_max_unpool_equals_torch():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 8, 6)
    pooled, indices = F.max_pool2d(x, 2, return_indices=True)
    processed = pooled * 2 + 1  # the decoder unpools other values at the remembered positions
    ours = max_unpool(processed, indices, (8, 6))
    assert torch.equal(ours, F.max_unpool2d(processed, indices, 2, output_size=(8, 6)))
    # unpool(pool(x)) keeps exactly the maxima of x
    kept = max_unpool(pooled, indices, (8, 6))
    assert torch.equal(kept[kept != 0], x[kept != 0])
    assert int((kept != 0).sum()) == pooled.numel()


@pytest.mark.parametrize("stride,padding,output_padding", [(1, 0, 0), (2, 0, 0), (2, 1, 1), (3, 1, 2)])
def test_transposed_reference_equals_torch(stride, padding, output_padding):
    torch.manual_seed(stride + padding)
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    bias = torch.randn(2, dtype=torch.float64)
    ours = transposed_conv2d_reference(x, weight, bias, stride, padding, output_padding)
    theirs = F.conv_transpose2d(x, weight, bias, stride=stride, padding=padding, output_padding=output_padding)
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-12)


def test_transposed_each_pixel_stamps_the_kernel():
    """One non-zero input pixel: the output is that value times the kernel, placed at stride * position."""
    weight = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 2] = 2.0
    out = transposed_conv2d_reference(x, weight, stride=2)
    assert out.shape == (1, 1, 7, 7)
    expected = torch.zeros(7, 7)
    expected[2:5, 4:7] = 2.0 * weight[0, 0]
    assert torch.equal(out[0, 0], expected)


@pytest.mark.parametrize("stride,padding,size", [(1, 0, 7), (1, 1, 7), (2, 1, 8), (2, 0, 9), (2, 1, 7)])
def test_transposed_convolution_is_the_adjoint(stride, padding, size):
    """<conv(x), y> = <x, conv^T(y)> with the same weights, also for strided convolutions."""
    torch.manual_seed(size)
    x = torch.randn(2, 3, size, size + 1, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    y = torch.randn_like(F.conv2d(x, weight, stride=stride, padding=padding))
    scale = float((F.conv2d(x, weight, stride=stride, padding=padding) * y).abs().sum())
    assert abs(adjoint_gap(x, y, weight, stride, padding)) < 1e-12 * scale
    # the test can fail: the flipped kernel (a plausible mistake) is not the adjoint
    conv = F.conv2d(x, weight, stride=stride, padding=padding)
    back = F.conv_transpose2d(y, weight, stride=stride, padding=padding)
    pad = (x.shape[2] - back.shape[2], x.shape[3] - back.shape[3])
    flipped = F.conv_transpose2d(y, weight.flip(2, 3), stride=stride, padding=padding, output_padding=pad)
    assert abs(float((conv * y).sum() - (x * flipped).sum())) > 1e-3 * scale / conv.numel()


def test_transposed_is_the_gradient_of_conv():
    """conv^T(y) = d<conv(x), y>/dx: autograd's backward of conv2d is the transposed convolution."""
    torch.manual_seed(1)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    y = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    (F.conv2d(x, weight, stride=2, padding=1) * y).sum().backward()
    assert torch.allclose(x.grad, transposed_conv2d_reference(y, weight, stride=2, padding=1, output_padding=1))


@pytest.mark.parametrize("method", ["nearest", "bed_of_nails", "max_unpool", "transposed"])
def test_upsample_layer_shapes(method):
    torch.manual_seed(0)
    skip = torch.randn(2, 4, 8, 8)
    _, indices = F.max_pool2d(skip, 2, return_indices=True)
    layer = Upsample(8, 4, method)
    out = layer(torch.randn(2, 8, 4, 4), indices)
    assert out.shape == (2, 4, 8, 8)
    if method in ("bed_of_nails", "max_unpool"):
        assert int((out != 0).sum()) <= 2 * 4 * 16  # one non-zero per 2x2 block at most


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="x must be"):
        nearest_neighbour(torch.ones(3, 4))
    with pytest.raises(ValueError, match="indices"):
        max_unpool(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 3, dtype=torch.long), (4, 4))
    with pytest.raises(ValueError, match="indices"):
        max_unpool(torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 16, dtype=torch.long), (4, 4))
    with pytest.raises(ValueError, match="weight"):
        transposed_conv2d_reference(torch.ones(1, 2, 3, 3), torch.ones(3, 1, 2, 2))
    with pytest.raises(ValueError, match="y must"):
        adjoint_gap(torch.ones(1, 1, 5, 5), torch.ones(1, 1, 5, 5), torch.ones(1, 1, 3, 3))
    with pytest.raises(ValueError, match="indices"):
        Upsample(4, 2, "max_unpool")(torch.ones(1, 4, 2, 2))
    with pytest.raises(ValueError, match="method"):
        Upsample(4, 2, "bilinear")  # type: ignore[arg-type]
