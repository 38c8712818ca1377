"""U-Net (notes §3.2): sizes, the concatenated skips, the size check, context from downsampling."""

import pytest
import torch
from torch import nn

from generative.nn.unet import UNet, UNetArchitecture, concat_skip


@pytest.mark.parametrize("upsampling", ["transposed", "nearest", "bed_of_nails", "max_unpool"])
@pytest.mark.parametrize("depth", [1, 3])
def test_output_has_the_input_size_and_one_logit_per_class(upsampling, depth):
    torch.manual_seed(0)
    net = UNet(UNetArchitecture(in_channels=1, num_classes=5, depth=depth, width=4, upsampling=upsampling))
    x = torch.randn(2, 1, 16, 24)
    out = net(x)
    assert out.shape == (2, 5, 16, 24)
    assert net.predict(x).shape == (2, 16, 24) and net.predict(x).dtype == torch.long


def test_widths_double_and_decoders_read_the_concatenation():
    net = UNet(UNetArchitecture(in_channels=3, num_classes=2, depth=3, width=8))
    assert [block[0].out_channels for block in net.encoder] == [8, 16, 32]
    assert net.bottleneck[0].out_channels == 64
    # each decoder block reads [skip, upsampled]: twice the stage's channels
    assert [block[0].in_channels for block in net.decoder] == [64, 32, 16]
    assert [up.layer.out_channels for up in net.up] == [32, 16, 8]


def test_concat_skip_puts_the_copy_first():
    skip, up = torch.zeros(2, 3, 4, 4), torch.ones(2, 5, 4, 4)
    out = concat_skip(skip, up)
    assert out.shape == (2, 8, 4, 4)
    assert torch.equal(out[:, :3], skip) and torch.equal(out[:, 3:], up)
    with pytest.raises(ValueError, match="skip and upsampled"):
        concat_skip(skip, torch.ones(2, 5, 8, 8))


def test_sizes_must_be_multiples_of_two_to_the_depth():
    net = UNet(UNetArchitecture(in_channels=1, depth=3, width=4))
    with pytest.raises(ValueError, match="multiples of 2\\^depth = 8"):
        net(torch.randn(1, 1, 20, 16))
    with pytest.raises(ValueError, match="x must be"):
        net(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="depth"):
        UNetArchitecture(depth=0)


def test_the_skips_carry_local_information_when_the_decoder_path_is_cut():
    """Zero every upsampling layer: the coarse path is cut, yet the output still depends on the input
    through the concatenated encoder tensors (the copies of Figure 3.4)."""
    torch.manual_seed(0)
    net = UNet(UNetArchitecture(in_channels=1, num_classes=2, depth=2, width=4, norm="none"))
    for up in net.up:
        nn.init.zeros_(up.layer.weight)
        nn.init.zeros_(up.layer.bias)
    x = torch.randn(1, 1, 16, 16, requires_grad=True)
    out = net(x)
    out[0, :, 8, 8].sum().backward()
    support = (x.grad[0, 0] != 0).nonzero()
    assert len(support) > 0
    # only the top stage's convolutions remain: 2 encoder + 2 decoder 3x3 convs reach 4 pixels
    assert int((support - 8).abs().max()) <= 4


def test_downsampling_widens_the_receptive_field():
    """With the decoder path intact, an output pixel sees much farther than the 3x3 convs alone."""
    torch.manual_seed(0)
    net = UNet(UNetArchitecture(in_channels=1, num_classes=2, depth=3, width=4, norm="none"))
    x = torch.randn(1, 1, 64, 64, requires_grad=True)
    net(x)[0, :, 32, 32].sum().backward()
    support = (x.grad[0, 0].abs() > 0).nonzero()
    assert int((support - 32).abs().max()) >= 16


def test_a_tiny_unet_overfits_one_batch():
    torch.manual_seed(0)
    net = UNet(UNetArchitecture(in_channels=1, num_classes=2, depth=2, width=4))
    x = torch.randn(4, 1, 16, 16)
    target = (x[:, 0] > 0).long()  # per-pixel sign: a purely local task
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        loss = nn.functional.cross_entropy(net(x), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()
    accuracy = float((net.predict(x) == target).float().mean())
    assert accuracy > 0.95
