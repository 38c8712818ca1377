"""Correlation and convolution (notes §2.1), the conv layer and max pooling with hand-written backward (§2.2)."""

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from generative.nn.conv import (
    Conv2d,
    ConvFunction,
    MaxPool2d,
    MaxPoolFunction,
    conv_backward,
    conv_backward_loops,
    conv_forward,
    convolve1d_full,
    convolve2d,
    convolve2d_loops,
    correlate2d,
    correlate2d_loops,
    maxpool_forward,
    toeplitz_matrix,
)

D = torch.float64


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D)


@pytest.mark.parametrize("kernel", [(3, 3), (2, 4), (1, 1), (5, 2)])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_loops_fast_path_and_scipy_agree(kernel, mode):
    I, K = _rand(7, 6, seed=1), _rand(*kernel, seed=2)
    torch.testing.assert_close(correlate2d(I, K, mode), correlate2d_loops(I, K, mode))
    torch.testing.assert_close(convolve2d(I, K, mode), convolve2d_loops(I, K, mode))
    expected = torch.from_numpy(scipy.signal.convolve2d(I.numpy(), K.numpy(), mode))
    torch.testing.assert_close(convolve2d_loops(I, K, mode), expected)
    if mode != "same" or all(k % 2 == 1 for k in kernel):  # scipy centres even kernels differently
        expected = torch.from_numpy(scipy.signal.correlate2d(I.numpy(), K.numpy(), mode))
        torch.testing.assert_close(correlate2d_loops(I, K, mode), expected)


def test_convolution_is_correlation_with_the_flipped_kernel():
    I, K = _rand(6, 8, seed=3), _rand(3, 4, seed=4)
    for mode in ("valid", "same", "full"):
        # both sides from the loop definitions: I[i - m, j - n] against I[i + m, j + n]
        torch.testing.assert_close(convolve2d_loops(I, K, mode), correlate2d_loops(I, K.flip(0, 1), mode))
    assert not torch.allclose(convolve2d_loops(I, K, "valid"), correlate2d_loops(I, K, "valid"))


def test_convolution_commutes_correlation_does_not():
    a, b = _rand(5, 4, seed=5), _rand(3, 6, seed=6)
    torch.testing.assert_close(convolve2d_loops(a, b, "full"), convolve2d_loops(b, a, "full"))  # I * K = K * I
    ab, ba = correlate2d_loops(b, a, "full"), correlate2d_loops(a, b, "full")  # a ⋆ b and b ⋆ a
    assert not torch.allclose(ab, ba)
    torch.testing.assert_close(ab, ba.flip(0, 1))  # I ⋆ K = Flip(K ⋆ I)


def test_linearity():
    x, y, K = _rand(2, 9, 9, seed=7), _rand(2, 9, 9, seed=8), _rand(3, 3, seed=9)
    alpha, beta = 1.7, -0.4
    for op in (convolve2d, correlate2d):
        combined = op(alpha * x + beta * y, K, "same")
        torch.testing.assert_close(combined, alpha * op(x, K, "same") + beta * op(y, K, "same"))
    # the notes' "C(alpha x + beta) = alpha C(x) + beta" fails: a constant comes out times sum(K)
    c = convolve2d(x + 1.0, K, "valid") - convolve2d(x, K, "valid")
    torch.testing.assert_close(c, torch.full_like(c, float(K.sum())))
    assert not torch.allclose(c, torch.ones_like(c))


def test_shift_equivariance():
    x, K = _rand(12, 12, seed=10), _rand(3, 3, seed=11)
    for t in [(1, 0), (0, 2), (-2, 3)]:
        shifted_out = torch.roll(convolve2d(x, K, "same"), t, dims=(0, 1))
        out_of_shifted = convolve2d(torch.roll(x, t, dims=(0, 1)), K, "same")
        # equal away from the border, where neither sees the zero padding nor the wrapped-around rows
        r = 1 + max(abs(s) for s in t)
        torch.testing.assert_close(out_of_shifted[r:-r, r:-r], shifted_out[r:-r, r:-r])
    # circular: with wrap-around padding the equality holds everywhere
    circ = lambda z: F.conv2d(F.pad(z[None, None], (1, 1, 1, 1), mode="circular"), K.flip(0, 1)[None, None])[0, 0]
    for t in [(1, 0), (3, -5)]:
        torch.testing.assert_close(circ(torch.roll(x, t, (0, 1))), torch.roll(circ(x), t, (0, 1)))


def test_toeplitz_matrix_is_the_full_1d_convolution():
    k, x = _rand(4, seed=12), _rand(9, seed=13)
    T = toeplitz_matrix(k, 9)
    assert T.shape == (12, 9)
    torch.testing.assert_close(T[:4, 0], k)  # first column k_1 .. k_m
    assert float(T[0, 1]) == 0.0 and float(T[-1, -1]) == float(k[-1])  # upper triangle zero; ends in k_m
    reference = F.conv1d(x[None, None], k.flip(0)[None, None], padding=3)[0, 0]  # conv1d correlates: flip
    torch.testing.assert_close(T @ x, reference)
    torch.testing.assert_close(T @ x, convolve1d_full(x, k))
    torch.testing.assert_close(T @ x, torch.from_numpy(np.convolve(x.numpy(), k.numpy(), "full")))
    # without the flip F.conv1d computes something else (k is not symmetric)
    assert not torch.allclose(T @ x, F.conv1d(x[None, None], k[None, None], padding=3)[0, 0])


def test_layer_forward_is_the_notes_sum_over_input_channels():
    Z, W, b = _rand(2, 3, 6, 5, seed=14), _rand(4, 3, 3, 2, seed=15), _rand(4, seed=16)
    out = conv_forward(Z, W, b)
    for n in range(2):
        for j in range(4):
            expected = sum(convolve2d_loops(Z[n, c], W[j, c], "valid") for c in range(3)) + b[j]
            torch.testing.assert_close(out[n, j], expected)


def test_layer_backward_is_the_notes_formulas():
    Z, W = _rand(6, 7, seed=17), _rand(3, 2, seed=18)
    delta = _rand(4, 6, seed=19)
    grad_Z, grad_W, _ = conv_backward(delta[None, None], Z[None, None], W[None, None])
    loop_Z, loop_W = conv_backward_loops(delta, Z, W)
    torch.testing.assert_close(grad_Z[0, 0], loop_Z)
    torch.testing.assert_close(grad_W[0, 0], loop_W)
    # delta^(l-1) = delta * Flip(W) (full) = W ⋆ delta, not delta ⋆ W
    torch.testing.assert_close(loop_Z, convolve2d_loops(delta, W.flip(0, 1), "full"))
    torch.testing.assert_close(loop_Z, correlate2d_loops(delta, W, "full"))
    # dL/dW = Flip(delta ⋆ Z): a correlation of the input with delta (flipped), not the convolution delta * Z
    torch.testing.assert_close(loop_W, correlate2d_loops(Z, delta, "valid").flip(0, 1))
    assert not torch.allclose(loop_W, convolve2d_loops(Z, delta, "valid"))


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_layer_backward_equals_autograd_and_passes_gradcheck(padding):
    Z = _rand(2, 3, 6, 5, seed=20).requires_grad_(True)
    W = _rand(4, 3, 3, 2, seed=21).requires_grad_(True)
    b = _rand(4, seed=22).requires_grad_(True)
    out = ConvFunction.apply(Z, W, b, padding)
    weights = _rand(*out.shape, seed=23)
    hand = torch.autograd.grad((out * weights).sum(), [Z, W, b])
    reference = F.conv2d(Z, W.flip(-2, -1), b, padding=padding)  # autograd through torch's conv
    torch.testing.assert_close(out, reference)
    auto = torch.autograd.grad((reference * weights).sum(), [Z, W, b])
    for h, a in zip(hand, auto):
        torch.testing.assert_close(h, a)
    assert torch.autograd.gradcheck(lambda z, w, c: ConvFunction.apply(z, w, c, padding), (Z, W, b))


def test_maxpool_forward_and_indices():
    Z = torch.tensor([[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 8.0, 7.0], [0.0, 1.0, 2.0, 3.0], [9.0, 0.0, 4.0, 6.0]])
    values, indices = maxpool_forward(Z[None, None], 2)
    assert values[0, 0].tolist() == [[5.0, 8.0], [9.0, 6.0]]
    assert indices[0, 0].tolist() == [[1, 6], [12, 15]]  # flat i* W + j*
    torch.testing.assert_close(values, F.max_pool2d(Z[None, None], 2))


@pytest.mark.parametrize("k,s", [(2, 2), (3, 2), (2, 1), (3, 3)])
def test_maxpool_backward_routes_to_the_argmax_only(k, s):
    g = torch.Generator().manual_seed(24)
    values = torch.randperm(2 * 3 * 7 * 8, generator=g).to(D).reshape(2, 3, 7, 8)  # distinct, 1 apart
    Z = values.clone().requires_grad_(True)
    out = MaxPoolFunction.apply(Z, k, s)
    torch.testing.assert_close(out, F.max_pool2d(Z, k, s))
    weights = torch.randn(out.shape, generator=g, dtype=D)
    hand = torch.autograd.grad((out * weights).sum(), Z)[0]
    auto = torch.autograd.grad((F.max_pool2d(Z, k, s) * weights).sum(), Z)[0]
    torch.testing.assert_close(hand, auto)
    # the gradient lives on the arg-max positions only
    _, indices = maxpool_forward(Z.detach(), k, s)
    mask = torch.zeros(2, 3, 56, dtype=torch.bool).scatter_(2, indices.flatten(2), True).reshape(2, 3, 7, 8)
    assert bool((hand[~mask] == 0).all())
    assert torch.autograd.gradcheck(lambda z: MaxPoolFunction.apply(z, k, s), (Z,))


def test_modules_match_torch_layers():
    torch.manual_seed(0)
    conv, pool = Conv2d(2, 3, 3, padding=1), MaxPool2d(2)
    x = torch.randn(4, 2, 8, 8)
    out = pool(conv(x))
    reference = F.max_pool2d(F.conv2d(x, conv.weight.flip(-2, -1), conv.bias, padding=1), 2)
    torch.testing.assert_close(out, reference)
    out.square().sum().backward()
    assert conv.weight.grad.shape == (3, 2, 3, 3) and conv.bias.grad.shape == (3,)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"K must be \[kh, kw\]"):
        correlate2d(torch.zeros(4, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="C_in"):
        conv_forward(torch.zeros(1, 2, 5, 5), torch.zeros(3, 4, 3, 3), None)
    with pytest.raises(ValueError, match="delta must be"):
        conv_backward(torch.zeros(1, 3, 5, 5), torch.zeros(1, 2, 5, 5), torch.zeros(3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"kernel must be \[m\]"):
        toeplitz_matrix(torch.zeros(2, 2), 3)
    with pytest.raises(ValueError, match="valid"):
        correlate2d(torch.zeros(2, 2), torch.zeros(3, 3), "valid")
