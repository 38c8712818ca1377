"""WaveNet (van den Oord et al. 2016; notes §7.5): stacks of dilated causal convolutions over mu-law codes.

The model factorises a clip of codes ``x_1 .. x_T`` (``levels = 256`` mu-law levels,
``generative.data.audio``) as ``p(x) = prod_t p(x_t | x_<t)``, every conditional a softmax over the levels.
The network sees the clip *shifted by one*, ``s_t = e(x_{t-1})`` (an embedding of the previous code,
zeros for ``t = 1``; :meth:`WaveNet.features`), so output ``t`` never sees ``x_t``. Then:

* a stack of residual blocks with dilations ``1, 2, 4, ..., 2^(L-1)`` (repeated ``stacks`` times), each a
  :class:`CausalConv1d` (left padding only) into the gated unit ``z = tanh(W_f * h) ⊙ sigmoid(W_g * h)``,
  a 1x1 convolution back to the residual stream (``h <- h + W_r z``) and a 1x1 skip convolution ``W_s z``;
* the skip sum -> ReLU -> 1x1 -> ReLU -> 1x1 -> ``levels`` logits per step.

The receptive field (:func:`receptive_field`) is ``R = stacks (k - 1)(2^L - 1) + 1``; with ``k = 2`` one
stack of ``L`` layers sees ``2^L`` shifted inputs ``s_{t-R+1} .. s_t``, i.e. the codes ``x_{t-R} .. x_{t-1}``.

Sampling is sequential. :meth:`WaveNet.sample_naive` reruns the whole network on the codes drawn so far for
every new sample (``O(T^2)``); :meth:`WaveNet.sample` is the fast generation of Paine et al. 2016
("Fast Wavenet"): every layer keeps a queue of its last ``(k - 1) d`` inputs, so one step costs one
column of each layer (``O(T)`` in all). Both draw ``x_t`` with ``discrete_sample`` from the same
generator in the same order, so they give the same samples for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generative.models.base import discrete_sample

__all__ = ["CausalConv1d", "ResidualBlock", "WaveNet", "WaveNetConfig", "gated_activation", "receptive_field",
           "shift_right"]


def receptive_field(layers: int, stacks: int = 1, kernel_size: int = 2) -> int:
    """Shifted inputs an output sees: ``stacks (kernel_size - 1)(2^layers - 1) + 1`` (``2^layers`` for one stack,
    kernel 2); dilations ``1 .. 2^(layers-1)`` add ``(k - 1) d`` each."""
    if layers < 1 or stacks < 1 or kernel_size < 2:
        raise ValueError(f"need layers >= 1, stacks >= 1 and kernel_size >= 2, got {layers}, {stacks}, {kernel_size}")
    return stacks * (kernel_size - 1) * (2**layers - 1) + 1


def gated_activation(filter_: Tensor, gate: Tensor) -> Tensor:  # [B, C, T], [B, C, T] -> [B, C, T]
    """WaveNet's gated unit ``tanh(W_f * x) ⊙ sigmoid(W_g * x)`` (the PixelCNN gate, notes §7.4)."""
    return torch.tanh(filter_) * torch.sigmoid(gate)


def shift_right(e: Tensor) -> Tensor:  # [B, C, T] -> [B, C, T]
    """``s_t = e_{t-1}``, ``s_1 = 0``: the input of step ``t`` holds only the samples before ``t``."""
    return F.pad(e[:, :, :-1], (1, 0))


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


class CausalConv1d(nn.Conv1d):
    """A dilated 1-D convolution padded on the left only: output ``t`` sees inputs ``t - (k-1) d .. t``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, dilation: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left = (kernel_size - 1) * dilation
        """How many past inputs an output sees beyond the present one (the length of the fast queue)."""

    def forward(self, x: Tensor) -> Tensor:  # [B, C_in, T] -> [B, C_out, T]
        return super().forward(F.pad(x, (self.left, 0)))

    def step(self, window: Tensor) -> Tensor:  # [B, C_in, left + 1] (past .. present) -> [B, C_out]
        """One output column from the inputs ``t - left .. t`` (the queue and the present input)."""
        taps = window[:, :, :: self.dilation[0]]  # [B, C_in, k]: inputs t - (k-1) d, ..., t - d, t
        return torch.einsum("bik,oik->bo", taps, self.weight) + self.bias


class ResidualBlock(nn.Module):
    """Dilated causal conv -> gated unit -> 1x1 residual (``h + W_r z``) and 1x1 skip (``W_s z``)."""

    def __init__(self, channels: int, skip_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.conv = CausalConv1d(channels, 2 * channels, kernel_size, dilation)
        self.residual = nn.Conv1d(channels, channels, 1)
        self.skip = nn.Conv1d(channels, skip_channels, 1)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:  # [B, C, T] -> ([B, C, T], [B, S, T])
        z = gated_activation(*self.conv(h).chunk(2, dim=1))
        return h + self.residual(z), self.skip(z)

    def step(self, window: Tensor) -> tuple[Tensor, Tensor]:  # [B, C, left + 1] -> ([B, C], [B, S])
        """One time step from the layer's queue of past inputs and its present input (``window[..., -1]``)."""
        z = gated_activation(*self.conv.step(window).chunk(2, dim=1))[:, :, None]  # [B, C, 1]
        return window[:, :, -1] + self.residual(z)[:, :, 0], self.skip(z)[:, :, 0]


class WaveNet(nn.Module):
    """``p(x) = prod_t softmax(f(x_<t))_{x_t}`` over ``levels`` mu-law codes (see the module docstring)."""

    def __init__(self, levels: int = 256, channels: int = 32, skip_channels: int = 64, layers: int = 8,
                 stacks: int = 1, kernel_size: int = 2) -> None:
        super().__init__()
        self.levels, self.layers, self.stacks, self.kernel_size = levels, layers, stacks, kernel_size
        self.embed = nn.Embedding(levels, channels)  # the 1x1 input convolution of a one-hot code
        self.amplitude = nn.Linear(1, channels, bias=False)  # plus the code's companded value y in [-1, 1]
        self.blocks = nn.ModuleList(
            ResidualBlock(channels, skip_channels, kernel_size, 2**i) for _ in range(stacks) for i in range(layers)
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(skip_channels, skip_channels, 1), nn.ReLU(),
                                  nn.Conv1d(skip_channels, levels, 1))

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.layers, self.stacks, self.kernel_size)

    def _check(self, x: Tensor) -> None:
        if x.ndim != 2 or x.dtype != torch.int64:
            raise ValueError(f"x must be int64 codes [B, T], got {x.dtype} {tuple(x.shape)}")

    def features(self, x: Tensor) -> Tensor:  # codes [B, *S] int64 -> [B, *S, C]
        """The input features ``e(x) = E[x] + w y(x)`` of codes: a learned embedding plus a linear map of the
        companded amplitude ``y = 2 x / (levels - 1) - 1`` (it tells the net at once that codes are ordered)."""
        y = 2.0 * x.to(self.embed.weight.dtype) / (self.levels - 1) - 1.0
        return self.embed(x) + self.amplitude(y[..., None])

    def network(self, s: Tensor) -> Tensor:  # shifted input features [B, C, T] -> logits [B, levels, T]
        """The convolutional stack on the (already shifted) input features."""
        skip = 0
        h = s
        for block in self.blocks:
            h, out = block(h)
            skip = skip + out
        return self.head(skip)

    def forward(self, x: Tensor) -> Tensor:  # codes [B, T] int64 -> logits [B, levels, T] of p(x_t | x_<t)
        self._check(x)
        return self.network(shift_right(self.features(x).transpose(1, 2)))

    def log_prob(self, x: Tensor) -> Tensor:  # [B, T] int64 -> [B] nats
        """Exact ``log p(x) = sum_t log p(x_t | x_<t)`` (teacher forcing)."""
        return -F.cross_entropy(self(x), x, reduction="none").sum(1)

    @torch.no_grad()
    def sample_naive(self, n: int, length: int, generator: torch.Generator | None = None,
                     temperature: float = 1.0) -> Tensor:  # -> [n, T] int64
        """The slow, obviously correct sampler: rerun the whole network for every new sample."""
        _check_temperature(temperature)
        device = self.embed.weight.device
        x = torch.zeros(n, length, dtype=torch.int64, device=device)
        for t in range(length):
            logits = self(x[:, : t + 1])[:, :, t]  # [n, levels]; position t sees x_<t only
            x[:, t] = discrete_sample(logits / temperature, self.levels, generator).to(device)
        return x

    @torch.no_grad()
    def sample(self, n: int, length: int, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> Tensor:  # -> [n, T] int64
        """Fast generation (Paine et al. 2016): one column per layer and step, from per-layer queues holding
        the layer's last ``(k - 1) d`` inputs (zeros before the clip starts, as the causal padding).
        ``temperature < 1`` sharpens every conditional (``softmax(logits / temperature)``); 1 samples the model."""
        _check_temperature(temperature)
        if n < 0 or length < 0:
            raise ValueError(f"n and length must be >= 0, got {n}, {length}")
        device = self.embed.weight.device
        dtype = self.embed.weight.dtype
        channels = self.embed.embedding_dim
        queues = [torch.zeros(n, channels, block.conv.left, device=device, dtype=dtype) for block in self.blocks]
        x = torch.zeros(n, length, dtype=torch.int64, device=device)
        h = torch.zeros(n, channels, device=device, dtype=dtype)  # s_1 = 0
        for t in range(length):
            skip = 0
            for i, block in enumerate(self.blocks):
                window = torch.cat([queues[i], h[:, :, None]], dim=2)  # [n, C, left + 1]
                queues[i] = window[:, :, 1:]
                h, out = block.step(window)
                skip = skip + out
            logits = self.head(skip[:, :, None])[:, :, 0]  # [n, levels]
            x[:, t] = discrete_sample(logits / temperature, self.levels, generator).to(device)
            h = self.features(x[:, t])  # the next step's input s_{t+1} = e(x_t)
        return x


@dataclass
class WaveNetConfig:
    """A WaveNet on 8-bit mu-law audio; the defaults (receptive field 256 samples = 32 ms at 8 kHz) train on
    the procedural tones in a few minutes on one CPU thread."""

    levels: int = 256
    """Quantisation levels of the mu-law codes (``mu + 1``)."""
    channels: int = 32
    """Residual channels (also the embedding width of the input codes)."""
    skip_channels: int = 64
    """Channels of the skip connections and of the output head."""
    layers: int = 8
    """Layers per stack, with dilations ``1, 2, ..., 2^(layers-1)``."""
    stacks: int = 1
    """How many times the dilation stack repeats."""
    kernel_size: int = 2
    """Taps of every dilated causal convolution."""

    def __post_init__(self) -> None:
        if self.levels < 2:
            raise ValueError(f"levels must be >= 2, got {self.levels}")
        if min(self.channels, self.skip_channels) < 1:
            raise ValueError(f"channels and skip_channels must be >= 1, got {self.channels}, {self.skip_channels}")
        if self.layers < 1 or self.stacks < 1:
            raise ValueError(f"layers and stacks must be >= 1, got {self.layers}, {self.stacks}")
        if self.kernel_size < 2:
            raise ValueError(f"kernel_size must be >= 2, got {self.kernel_size}")

    def build(self) -> WaveNet:
        """The model of this config (audio has no image shape; ``levels`` is a field)."""
        return WaveNet(self.levels, self.channels, self.skip_channels, self.layers, self.stacks, self.kernel_size)
