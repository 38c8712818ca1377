"""PixelCNN and gated PixelCNN (notes §7.4): masks by construction, the autoregressive property by exact zero
gradients, PixelCNN's blind spot and the gated stacks without it, exact normalisation and sampling on a
2x2 image, and a short training run on the binary digits."""

import pytest
import torch
import torch.nn.functional as F

from generative.data.digits import load_digits_split
from generative.models.exhaustive import probabilities, sample_frequencies
from generative.models.pixelcnn import (
    GatedPixelCNN,
    GatedPixelCNNConfig,
    MaskedConv2d,
    PixelCNN,
    PixelCNNConfig,
    gated_activation,
    kernel_mask,
    mask_field,
    receptive_field,
)
from generative.tasks.density import DensityObjective
from generative.training import FitConfig, fit

SMALL = {"pixelcnn": PixelCNNConfig(channels=8, layers=2, head_channels=8, dropout=0.0),
         "gated": GatedPixelCNNConfig(channels=8, layers=2, head_channels=8, dropout=0.0)}


def _build(name: str, image_shape=(1, 8, 8), levels=2, seed=0, **overrides):
    torch.manual_seed(seed)
    config = type(SMALL[name])(**{**SMALL[name].__dict__, **overrides})
    return config.build(image_shape, levels).eval()


def _peaked(model, scale=10.0):
    """Sharpen the output head so the tiny-image distribution is far from uniform (a stricter check)."""
    with torch.no_grad():
        model.head[-1].weight.mul_(scale)
        model.head[-1].bias.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(1))
    return model


def test_kernel_masks_by_construction():
    raster_a = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.float32)
    raster_b = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0]], dtype=torch.float32)
    assert torch.equal(kernel_mask(3, "A"), raster_a)
    assert torch.equal(kernel_mask(3, "B"), raster_b)
    five_a = kernel_mask(5, "A")
    assert five_a[:2].eq(1).all() and five_a[2, :2].eq(1).all() and five_a[2, 2:].eq(0).all() and five_a[3:].eq(0).all()
    assert torch.equal(kernel_mask(5, "B") - five_a, F.one_hot(torch.tensor(12), 25).float().reshape(5, 5))
    assert torch.equal(kernel_mask(3, "A", "vertical"), torch.tensor([[1.0, 1, 1], [0, 0, 0], [0, 0, 0]]))
    assert torch.equal(kernel_mask(3, "B", "vertical"), torch.tensor([[1.0, 1, 1], [1, 1, 1], [0, 0, 0]]))
    assert torch.equal(kernel_mask(5, "A", "horizontal"), torch.tensor([[1.0, 1, 0, 0, 0]]))
    assert torch.equal(kernel_mask(5, "B", "horizontal"), torch.tensor([[1.0, 1, 1, 0, 0]]))
    with pytest.raises(ValueError, match="kernel_size"):
        kernel_mask(4, "A")
    with pytest.raises(ValueError, match="mask_type"):
        kernel_mask(3, "C")  # type: ignore[arg-type]


def test_masked_conv_ignores_masked_weights_and_gets_no_gradient_there():
    torch.manual_seed(0)
    conv = MaskedConv2d(2, 3, 5, "A")
    x = torch.randn(4, 2, 6, 6)
    expected = F.conv2d(x, conv.weight * kernel_mask(5, "A"), conv.bias, padding=2)
    assert torch.allclose(conv(x), expected)
    with torch.no_grad():
        conv.weight.add_(torch.randn_like(conv.weight) * (1 - conv.mask))  # change only masked-out taps
    assert torch.allclose(conv(x), expected)
    conv(x).sum().backward()
    assert conv.weight.grad[..., 2, 2:].abs().sum() == 0 and conv.weight.grad[..., 3:, :].abs().sum() == 0
    assert conv.weight.grad[..., :2, :].abs().sum() > 0


def test_mask_field_of_one_layer_is_the_mask_placed_at_the_position():
    field = mask_field([kernel_mask(3, "B")], (2, 2), (5, 5))
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[1, 1:4] = True
    expected[2, 1:3] = True
    assert torch.equal(field, expected)


def test_gated_activation_is_tanh_times_sigmoid():
    a = torch.randn(2, 6, 3, 3)
    assert torch.allclose(gated_activation(a), torch.tanh(a[:, :3]) * torch.sigmoid(a[:, 3:]))


@pytest.mark.parametrize("name", ["pixelcnn", "gated"])
@pytest.mark.parametrize("levels", [2, 17])
def test_no_dependence_on_the_current_or_later_pixels(name, levels):
    model = _build(name, levels=levels, layers=4)
    for r, c in [(0, 0), (0, 5), (3, 4), (5, 2), (7, 0), (7, 7)]:
        field = receptive_field(model, (r, c)).flatten()  # raster order
        assert not field[r * 8 + c:].any(), f"{name} at {(r, c)} depends on the current or a later pixel"
        if c > 0:
            assert field[r * 8 + c - 1], "the pixel to the left must be in the context"


def test_pixelcnn_has_a_blind_spot_and_the_mask_field_predicts_its_gradients():
    model = _build("pixelcnn", layers=5, kernel=3)  # 7x7 type A, then five 3x3 type B: nominal half-width 3 + 5 = 8
    position = (5, 2)
    field = receptive_field(model, position)
    assert torch.equal(field, mask_field(model.masks(), position, (8, 8)))
    # up-right of the position, earlier in raster order, inside the nominal field, and unreachable:
    for blind in [(4, 6), (4, 7), (3, 7)]:
        assert not field[blind], f"{blind} should be in PixelCNN's blind spot"
    assert field[4, 5] and field[0, 7] and field[5, 0]  # reached: via the 7x7 layer, via B steps up-right, to the left


@pytest.mark.parametrize("position", [(5, 2), (7, 7), (4, 0), (1, 7), (7, 3)])
def test_gated_pixelcnn_of_the_same_depth_sees_every_earlier_pixel(position):
    model = _build("gated", layers=6)  # same depth as the PixelCNN above: a first layer plus five
    field = receptive_field(model, position).flatten()
    index = position[0] * 8 + position[1]
    assert field[:index].all() and not field[index:].any()


@pytest.mark.parametrize("name", ["pixelcnn", "gated"])
@pytest.mark.parametrize("levels", [2, 3])
def test_probabilities_of_all_tiny_images_sum_to_one(name, levels):
    model = _peaked(_build(name, (1, 2, 2), levels)).double()
    assert abs(probabilities(model).sum().item() - 1.0) < 1e-5


@pytest.mark.parametrize("name", ["pixelcnn", "gated"])
def test_sample_frequencies_match_the_probabilities(name):
    model = _peaked(_build(name, (1, 2, 2), 2))
    p = probabilities(model)  # [16]
    assert p.max() > 0.12  # far from uniform (1/16), so a wrong conditional would show
    assert (sample_frequencies(model, 20000, torch.Generator().manual_seed(0)) - p).abs().max() < 0.02


@pytest.mark.parametrize("name", ["pixelcnn", "gated"])
@pytest.mark.parametrize("levels", [2, 17])
def test_seeded_sampling_is_reproducible_and_in_the_data_form(name, levels):
    model = _build(name, levels=levels)
    a = model.sample(3, torch.Generator().manual_seed(5))
    b = model.sample(3, torch.Generator().manual_seed(5))
    c = model.sample(3, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (3, 1, 8, 8)
    # the data's form: float32 {0, 1} or int64 0 .. levels - 1
    assert a.dtype == (torch.float32 if levels == 2 else torch.int64)
    assert ((a == a.round()) & (a >= 0) & (a < levels)).all()
    assert model.log_prob(a).shape == (3,) and torch.isfinite(model.log_prob(a)).all()


def test_inputs_and_configs_are_checked():
    model = _build("pixelcnn")
    with pytest.raises(ValueError, match="x must be"):
        model.log_prob(torch.zeros(2, 1, 7, 8))
    with pytest.raises(ValueError, match="x must hold int64"):
        _build("gated", levels=17).log_prob(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="image_shape must have C = 1"):
        PixelCNN((3, 8, 8), 2)
    with pytest.raises(ValueError, match="image_shape must have C = 1"):
        GatedPixelCNN((3, 8, 8), 2)
    with pytest.raises(ValueError, match="channels"):
        PixelCNNConfig(channels=7)
    with pytest.raises(ValueError, match="first_kernel"):
        GatedPixelCNNConfig(first_kernel=4)
    with pytest.raises(ValueError, match="dropout"):
        GatedPixelCNNConfig(dropout=1.0)


@pytest.mark.parametrize("name", ["pixelcnn", "gated"])
def test_a_short_training_run_beats_independent_pixels(name, tmp_path):
    split = load_digits_split(form="binary")
    x_train, x_test = torch.tensor(split.x_train), torch.tensor(split.x_test)
    # independent Bernoulli pixels with the training marginals: the baseline any autoregressive model must beat
    mean = x_train.mean(0).clamp(1e-3, 1 - 1e-3)
    independent = -(x_test * mean.log() + (1 - x_test) * (1 - mean).log()).flatten(1).sum(1).mean().item()
    model = _build(name, channels=16, head_channels=16, layers=2).train()
    # the engine's Adam at a constant rate on batches of 64 drawn from a generator seeded with 0
    fit_config = FitConfig(steps=150, lr=3e-3, schedule="constant", device="cpu", progress=False, checkpoint_every=150)
    fit(DensityObjective(model, split, batch_size=64, device=torch.device("cpu")), fit_config, tmp_path)
    with torch.no_grad():
        nll = -model.eval().log_prob(x_test).mean().item()
    assert 24.0 < independent < 27.0 and nll < independent - 2.0, (nll, independent)  # measured: 21.9, 22.7 vs 25.2


@pytest.mark.parametrize("name", ["pixelcnn", "gated"])
def test_dropout_masks_come_from_the_loss_generator(name):
    model = _build(name, dropout=0.5).train()
    x = (torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    a = model.loss(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, model.loss(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, model.loss(x, torch.Generator().manual_seed(4)))
    model.eval()
    assert torch.equal(model.loss(x), -model.log_prob(x)) and not torch.allclose(a, model.loss(x))


@pytest.mark.parametrize("config", [PixelCNNConfig(), GatedPixelCNNConfig()])
def test_default_configs_build_models_of_the_digits(config):
    model = config.build((1, 8, 8), 17).eval()
    x = torch.randint(0, 17, (2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert model.logits(x).shape == (2, 17, 1, 8, 8) and torch.isfinite(model.log_prob(x)).all()
