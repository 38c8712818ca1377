"""The CNN of notes §2.2: sizes for 8x8 and 28x28 inputs, and the hand-written layers inside it."""

import pytest
import torch

from generative.nn.cnn import CNN, feature_size


@pytest.mark.parametrize("size,expected", [((8, 8), (2, 2)), ((28, 28), (7, 7)), ((9, 13), (2, 3))])
def test_flatten_size_follows_the_input_size(size, expected):
    assert feature_size(size, 2) == expected
    model = CNN(size, channels=(4, 6), hidden=0)
    dense = model.head[-1]
    assert dense.in_features == 6 * expected[0] * expected[1]
    assert model(torch.zeros(3, 1, *size)).shape == (3, 10)


def test_mnist_sized_network():
    model = CNN((28, 28), channels=(8, 16, 32), hidden=64)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)  # 28 -> 14 -> 7 -> 3


def test_hand_written_layers_give_torchs_outputs_and_gradients():
    torch.manual_seed(0)
    torch_cnn = CNN((8, 8), channels=(3, 5), hidden=16).double()
    torch.manual_seed(0)
    hand_cnn = CNN((8, 8), channels=(3, 5), hidden=16, hand_written=True).double()
    # the hand-written layer is a true convolution: its kernel is torch's, flipped
    with torch.no_grad():
        for a, b in zip(torch_cnn.features, hand_cnn.features):
            if isinstance(a, torch.nn.Conv2d):
                b.weight.copy_(a.weight.flip(-2, -1))
                b.bias.copy_(a.bias)
        hand_cnn.head.load_state_dict(torch_cnn.head.state_dict())
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 3, 7, 9])
    out_t, out_h = torch_cnn(x), hand_cnn(x)
    torch.testing.assert_close(out_h, out_t)
    torch.nn.functional.cross_entropy(out_t, y).backward()
    torch.nn.functional.cross_entropy(out_h, y).backward()
    for a, b in zip(torch_cnn.features, hand_cnn.features):
        if isinstance(a, torch.nn.Conv2d):
            torch.testing.assert_close(b.weight.grad, a.weight.grad.flip(-2, -1))
            torch.testing.assert_close(b.bias.grad, a.bias.grad)


def test_errors():
    with pytest.raises(ValueError, match="odd"):
        CNN(kernel_size=4)
    with pytest.raises(ValueError, match="too small"):
        CNN((3, 3), channels=(4, 4))
    with pytest.raises(ValueError, match=r"x must be \[B, 1, 8, 8\]"):
        CNN()(torch.zeros(2, 1, 28, 28))
