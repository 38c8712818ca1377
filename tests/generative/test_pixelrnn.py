"""Pixel-RNN with Row LSTM layers (notes §7.4): the row step is the notes' LSTM cell when the convolutions are
1-wide, the model is strictly autoregressive with a triangular context (exact zero gradients), it is exactly
normalised and samples at the right frequencies on a 2x2 image, and the timing helper leaves the model alone."""

import pytest
import torch

from generative.data.digits import load_digits_split
from generative.models.exhaustive import probabilities, sample_frequencies
from generative.models.pixelcnn import receptive_field
from generative.models.pixelrnn import (
    PixelRNN,
    PixelRNNConfig,
    RowLSTM,
    Timing,
    row_lstm_step,
    time_training_and_sampling,
)
from generative.nn.lstm import LSTMWeights, lstm_forward
from generative.tasks.density import DensityObjective
from generative.training import FitConfig, fit

SMALL = PixelRNNConfig(hidden=8, layers=2, head_channels=8)


def _build(image_shape=(1, 8, 8), levels=2, seed=0, **overrides) -> PixelRNN:
    torch.manual_seed(seed)
    return PixelRNNConfig(**{**SMALL.__dict__, **overrides}).build(image_shape, levels).eval()


def test_row_lstm_with_one_wide_kernels_is_an_lstm_down_every_column():
    torch.manual_seed(0)
    layer = RowLSTM(2, 3, input_kernel=1, state_kernel=1, mask_type="B").double()
    x = torch.randn(4, 2, 5, 6, dtype=torch.float64)  # [B, C_in, H, W]
    out = layer(x)  # [B, h, H, W]
    W_x = layer.input_to_state.weight[:, :, 0, 0].chunk(4)  # gates stacked f, i, o, g
    W_h = layer.state_to_state.weight[:, :, 0].chunk(4)
    b = (layer.input_to_state.bias + layer.state_to_state.bias).chunk(4)
    weights = LSTMWeights(W_h[0], W_x[0], b[0], W_h[1], W_x[1], b[1], W_h[2], W_x[2], b[2], W_h[3], W_x[3], b[3])
    for c in range(6):
        expected, _ = lstm_forward(x[:, :, :, c].transpose(1, 2), [weights])  # the rows as time steps: [B, H, h]
        assert torch.allclose(out[:, :, :, c], expected.transpose(1, 2))


def test_row_lstm_step_convolves_the_previous_row():
    torch.manual_seed(1)
    h_prev, c_prev = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    K_ss, z_is = torch.randn(12, 3, 3), torch.randn(2, 12, 5)
    h, c = row_lstm_step(z_is, h_prev, c_prev, K_ss)
    padded = torch.nn.functional.pad(h_prev, (1, 1))
    z = z_is + torch.stack([torch.einsum("ohk,bhk->bo", K_ss, padded[:, :, j:j + 3]) for j in range(5)], dim=2)
    f, i, o, g = z.chunk(4, dim=1)
    c_expected = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    assert torch.allclose(c, c_expected, atol=1e-6)
    assert torch.allclose(h, torch.sigmoid(o) * torch.tanh(c_expected), atol=1e-6)
    with pytest.raises(ValueError, match="K_ss"):
        row_lstm_step(z_is, h_prev, c_prev, torch.randn(8, 3, 3))


@pytest.mark.parametrize("levels", [2, 17])
@pytest.mark.parametrize("layers", [1, 3])
def test_strictly_autoregressive_with_a_triangular_context(levels, layers):
    model = _build(levels=levels, layers=layers)
    for r, c in [(0, 0), (0, 6), (2, 3), (5, 1), (7, 7), (6, 4)]:
        field = receptive_field(model, (r, c))
        assert not field.flatten()[r * 8 + c:].any(), f"{(r, c)} depends on the current or a later pixel"
        for k in range(1, r + 1):  # row r - k: the state reaches column c + k, its masked input one to the left
            edge = min(c + k, 7) - 1  # (so the last column never informs later rows: the first layer's mask A)
            assert field[r - k, edge] and not field[r - k, edge + 1:].any(), (r, c, k)
        if c > 0:
            assert field[r, c - 1] and field[r, max(c - layers, 0):c].all()  # the row so far, one pixel per layer
            assert not field[r, : max(c - layers, 0)].any()


@pytest.mark.parametrize("levels", [2, 3])
def test_probabilities_of_all_tiny_images_sum_to_one(levels):
    model = _build((1, 2, 2), levels).double()
    assert abs(probabilities(model).sum().item() - 1.0) < 1e-5


def test_sample_frequencies_match_the_probabilities():
    model = _build((1, 2, 2), 2)
    with torch.no_grad():
        model.head[-1].weight.mul_(10.0)  # sharpen the conditionals: far from uniform, a stricter check
    p = probabilities(model)  # [16]
    assert p.max() > 0.12
    assert (sample_frequencies(model, 20000, torch.Generator().manual_seed(0)) - p).abs().max() < 0.02


@pytest.mark.parametrize("levels", [2, 17])
def test_seeded_sampling_is_reproducible_and_in_the_data_form(levels):
    model = _build(levels=levels)
    a = model.sample(3, torch.Generator().manual_seed(5))
    assert torch.equal(a, model.sample(3, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, model.sample(3, torch.Generator().manual_seed(6)))
    assert a.shape == (3, 1, 8, 8)
    # the data's form: float32 {0, 1} or int64 0 .. levels - 1
    assert a.dtype == (torch.float32 if levels == 2 else torch.int64)
    assert ((a == a.round()) & (a >= 0) & (a < levels)).all()


def test_timing_leaves_the_model_untouched():
    model = _build()
    before = [p.detach().clone() for p in model.parameters()]
    x = (torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    timing = time_training_and_sampling(model, x, n_samples=2, generator=torch.Generator().manual_seed(0))
    assert isinstance(timing, Timing) and timing.train_step_seconds > 0 and timing.sample_seconds > 0
    assert all(torch.equal(a, b) and b.grad is None for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="n_samples"):
        time_training_and_sampling(model, x, 0)


def test_inputs_and_configs_are_checked():
    with pytest.raises(ValueError, match="x must be"):
        _build().log_prob(torch.zeros(2, 1, 8, 7))
    with pytest.raises(ValueError, match="image_shape must have C = 1"):
        PixelRNN((3, 8, 8), 2)
    with pytest.raises(ValueError, match="input_kernel"):
        PixelRNNConfig(input_kernel=1)
    with pytest.raises(ValueError, match="state_kernel"):
        PixelRNNConfig(state_kernel=2)
    with pytest.raises(ValueError, match="layers"):
        PixelRNNConfig(layers=0)


def test_a_short_training_run_beats_independent_pixels(tmp_path):
    split = load_digits_split(form="binary")
    x_train, x_test = torch.tensor(split.x_train), torch.tensor(split.x_test)
    mean = x_train.mean(0).clamp(1e-3, 1 - 1e-3)  # independent Bernoulli pixels with the training marginals
    independent = -(x_test * mean.log() + (1 - x_test) * (1 - mean).log()).flatten(1).sum(1).mean().item()
    model = _build(hidden=16, head_channels=16).train()
    # the engine's Adam at a constant rate on batches of 64 drawn from a generator seeded with 0
    fit_config = FitConfig(steps=100, lr=1e-2, schedule="constant", device="cpu", progress=False, checkpoint_every=100)
    fit(DensityObjective(model, split, batch_size=64, device=torch.device("cpu")), fit_config, tmp_path)
    with torch.no_grad():
        nll = -model.eval().log_prob(x_test).mean().item()
    assert 24.0 < independent < 27.0 and nll < independent - 2.0, (nll, independent)  # measured: 22.4 vs 25.2


def test_the_default_config_builds_a_model_of_the_digits():
    model = PixelRNNConfig().build((1, 8, 8), 17).eval()
    x = torch.randint(0, 17, (2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert model.logits(x).shape == (2, 17, 1, 8, 8) and torch.isfinite(model.log_prob(x)).all()
