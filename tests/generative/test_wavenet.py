"""WaveNet (notes §7.5): the receptive field formula and the measured dependency of every output (exactly the
``R`` previous samples, nothing at or after ``t``), causal convolutions, the chain rule, fast generation with
per-layer queues equal to the naive sampler, and a short training run that beats the no-context baseline."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from generative.data.audio import RATE, read_wav, tonal_fraction
from generative.models.wavenet import CausalConv1d, WaveNet, WaveNetConfig, receptive_field, shift_right
from generative.tasks.audio import WaveNetTrainConfig, audio_figure, generate, train_wavenet, write_samples
from generative.training import FitConfig


def test_receptive_field_formula():
    assert [receptive_field(L) for L in range(1, 11)] == [2**L for L in range(1, 11)]
    assert receptive_field(10, stacks=3) == 3 * 1023 + 1
    assert receptive_field(3, stacks=2, kernel_size=3) == 2 * 2 * 7 + 1
    with pytest.raises(ValueError, match="layers"):
        receptive_field(0)


@pytest.mark.parametrize("layers, stacks, kernel_size", [(3, 1, 2), (4, 1, 2), (2, 2, 3)])
def test_output_t_depends_on_exactly_the_receptive_field_before_t(layers, stacks, kernel_size):
    torch.manual_seed(0)
    model = WaveNet(levels=16, channels=6, skip_channels=8, layers=layers, stacks=stacks,
                    kernel_size=kernel_size).double()
    R, T = model.receptive_field, 48
    x = torch.randint(0, 16, (3, T))
    e = model.features(x).transpose(1, 2).detach().requires_grad_(True)  # [B, C, T]: features of x_1..x_T
    s = shift_right(e)
    s.retain_grad()
    for t in (5, 30, T - 1):
        e.grad, s.grad = None, None
        model.network(s)[:, :, t].sum().backward(retain_graph=True)
        seen = (s.grad.abs().sum((0, 1)) > 0).nonzero().flatten().tolist()
        assert seen == list(range(max(t - R + 1, 0), t + 1))  # shifted inputs t-R+1 .. t
        used = (e.grad.abs().sum((0, 1)) > 0).nonzero().flatten().tolist()
        assert used == list(range(max(t - R, 0), t))  # samples x_{t-R} .. x_{t-1}; never x_t or later


def test_causal_conv_is_the_left_padded_dilated_sum_and_its_step_agrees():
    torch.manual_seed(1)
    conv = CausalConv1d(3, 4, kernel_size=3, dilation=2).double()
    x = torch.randn(2, 3, 20, dtype=torch.float64)
    y = conv(x)
    padded = F.pad(x, (4, 0))  # (k - 1) d zeros on the left
    expected = torch.stack([
        torch.einsum("bik,oik->bo", padded[:, :, t:t + 5:2], conv.weight) + conv.bias for t in range(20)
    ], dim=2)
    assert torch.allclose(y, expected)
    assert torch.allclose(y[:, :, 0], x[:, :, 0] @ conv.weight[:, :, -1].T + conv.bias)  # only the present tap
    assert torch.allclose(conv.step(padded[:, :, 11:16]), y[:, :, 11])


def test_log_prob_is_the_chain_rule_of_truncated_runs():
    torch.manual_seed(2)
    model = WaveNet(levels=8, channels=4, skip_channels=4, layers=3).double()
    x = torch.randint(0, 8, (2, 12))
    chain = sum(torch.log_softmax(model(x[:, : t + 1])[:, :, t], dim=1).gather(1, x[:, t:t + 1])[:, 0]
                for t in range(12))
    assert torch.allclose(model.log_prob(x), chain)
    assert model.log_prob(x).shape == (2,)
    with pytest.raises(ValueError, match="x must be int64 codes"):
        model.log_prob(x.float())


def test_fast_generation_equals_the_naive_sampler():
    torch.manual_seed(3)
    model = WaveNet(levels=16, channels=8, skip_channels=8, layers=3, stacks=2, kernel_size=2).double()
    fast = model.sample(5, 60, torch.Generator().manual_seed(7))
    naive = model.sample_naive(5, 60, torch.Generator().manual_seed(7))
    assert fast.dtype == torch.int64 and fast.shape == (5, 60) and 0 <= fast.min() and fast.max() < 16
    assert torch.equal(fast, naive)
    assert torch.equal(fast, model.sample(5, 60, torch.Generator().manual_seed(7)))
    assert not torch.equal(fast, model.sample(5, 60, torch.Generator().manual_seed(8)))
    cold = model.sample(5, 60, torch.Generator().manual_seed(7), temperature=0.5)
    assert torch.equal(cold, model.sample_naive(5, 60, torch.Generator().manual_seed(7), temperature=0.5))
    with pytest.raises(ValueError, match="temperature"):
        model.sample(1, 2, temperature=0.0)
    k3 = WaveNet(levels=16, channels=8, skip_channels=8, layers=2, kernel_size=3).double()
    assert torch.equal(k3.sample(3, 30, torch.Generator().manual_seed(1)),
                       k3.sample_naive(3, 30, torch.Generator().manual_seed(1)))


def test_config_validates_and_builds():
    model = WaveNetConfig(channels=8, skip_channels=16, layers=4).build()
    assert isinstance(model, WaveNet) and model.receptive_field == 16
    assert WaveNetConfig().build().receptive_field == 256
    with pytest.raises(ValueError, match="kernel_size"):
        WaveNetConfig(kernel_size=1)
    with pytest.raises(ValueError, match="layers"):
        WaveNetConfig(layers=0)
    with pytest.raises(ValueError, match="clip_length"):
        WaveNetTrainConfig(clip_length=1)


def test_short_training_beats_the_marginal_baseline(tmp_path):
    """Tiny net (RF 32) on 32 mu-law levels, 100 steps on 96-sample clips: test 2.9 bits per sample against
    the marginal entropy's 4.8."""
    config = WaveNetTrainConfig(
        model=WaveNetConfig(levels=32, channels=16, skip_channels=32, layers=5), clip_length=96, batch_size=8,
        n_train=64, n_test=16, fit=FitConfig(steps=100, lr=1e-2, log_every=50, checkpoint_every=100, progress=False),
    )
    result = train_wavenet(config, tmp_path / "run")
    assert result.test_bits == pytest.approx(result.test_nll / math.log(2))
    assert 3.0 < result.baseline_bits < 5.0  # log2(32) = 5 at most
    assert result.test_bits < result.baseline_bits - 1.0
    paths = write_samples(result.model, 2, 0.01, tmp_path / "wav")
    clip, rate = read_wav(paths[1])
    assert rate == RATE and clip.shape == (80,) and np.abs(clip).max() <= 1.0
    assert np.array_equal(generate(result.model, 1, 0.005, seed=4), generate(result.model, 1, 0.005, seed=4))
    figure = audio_figure(clip, config.split().test[0])
    assert len(figure.axes) >= 4


def test_default_config_learns_steady_tones_from_clips_longer_than_the_receptive_field():
    """Generated audio is tonal only if the model learns a stable oscillator: the default clips are steady tones
    (no decay, no mixtures) and at least twice the receptive field, so most training targets see a full context."""
    config = WaveNetTrainConfig()
    assert config.kind == "steady"
    assert config.clip_length >= 2 * config.model.build().receptive_field
    split = dataclasses.replace(config, n_train=8, n_test=4).split()
    assert split.train.shape == (8, config.clip_length)
    assert min(tonal_fraction(c) for c in np.concatenate([split.train, split.test])) > 0.6
    mixed = dataclasses.replace(config, kind=None, n_train=8, n_test=4).split()  # the other kinds stay available
    assert not np.array_equal(mixed.test, split.test)
