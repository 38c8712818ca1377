"""Pixel-RNN with Row LSTM layers (notes §7.4, "Pixel-RNN"; van den Oord et al. 2016, "Pixel Recurrent
Neural Networks", §3.1).

A Row LSTM layer computes an image's hidden state row by row, top to bottom; the whole row at once:

    [f, i, o, g]_r = K_is ⊛ x_r + K_ss ⊛ h_{r-1}        (two 1-D convolutions along the row)
    c_r = sigma(f) ⊙ c_{r-1} + sigma(i) ⊙ tanh(g)
    h_r = sigma(o) ⊙ tanh(c_r)

The state-to-state ``K_ss`` is a 1-D convolution (kernel 3) over the previous row's hidden state; the
input-to-state ``K_is`` is a masked 1-D convolution over the current row of the layer's input (mask type
A on the first layer: only pixels left of the current one; type B on later layers, whose input at a pixel
already excludes it). Each row's state thus sees a triangle of the rows above plus the row so far: the
model is strictly autoregressive in raster order, with a smaller context than the gated PixelCNN's: row
``r - k`` is seen up to column ``c + k - 1``, so a row's last pixel never informs later rows (the paper puts
a 7x7 mask-A convolution before the Row LSTMs; the mask A here sits on the first Row LSTM's input).

The notes' point: the recurrence runs over the rows one after another, so training is sequential in
``H`` (PixelCNN trains every position in parallel); :func:`time_training_and_sampling` measures both
costs. Single-channel images only (as ``generative.models.pixelcnn``); sampling fills pixels in raster
order with one full pass per pixel (:func:`~generative.models.pixelcnn.raster_sample`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generative.models.base import ImageDensity
from generative.models.pixelcnn import MaskedConv2d, MaskType, RasterDensity, SeededDropout

__all__ = ["PixelRNN", "PixelRNNConfig", "RowLSTM", "Timing", "row_lstm_step", "time_training_and_sampling"]


def row_lstm_step(
    z_is: Tensor,  # [B, 4h, W] input-to-state pre-activations of row r, gates stacked f, i, o, g
    h_prev: Tensor,  # [B, h, W] hidden state of row r - 1
    c_prev: Tensor,  # [B, h, W] cell state of row r - 1
    K_ss: Tensor,  # [4h, h, k] state-to-state kernel
    b_ss: Tensor | None = None,  # [4h]
) -> tuple[Tensor, Tensor]:  # h_r [B, h, W], c_r [B, h, W]
    """One Row LSTM step: the LSTM gates of notes §4.2 with the state-to-state product made a 1-D convolution."""
    if K_ss.ndim != 3 or K_ss.shape[0] != z_is.shape[1] or K_ss.shape[0] != 4 * h_prev.shape[1]:
        raise ValueError(f"K_ss must be [4h, h, k] for h = {h_prev.shape[1]}, got {tuple(K_ss.shape)}")
    z = z_is + F.conv1d(h_prev, K_ss, b_ss, padding=K_ss.shape[2] // 2)  # [B, 4h, W]
    f, i, o, g = z.chunk(4, dim=1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class RowLSTM(nn.Module):
    """A Row LSTM layer ``[B, C_in, H, W] -> [B, h, H, W]``; ``K_is`` is computed for every row in one pass."""

    def __init__(self, in_channels: int, hidden: int, input_kernel: int, state_kernel: int, mask_type: MaskType,
                 forget_bias: float = 1.0) -> None:
        super().__init__()
        if state_kernel < 1 or state_kernel % 2 == 0:
            raise ValueError(f"state_kernel must be odd and positive, got {state_kernel}")
        self.hidden = hidden
        self.input_to_state = MaskedConv2d(in_channels, 4 * hidden, input_kernel, mask_type, "horizontal")
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, state_kernel, padding=state_kernel // 2)
        with torch.no_grad():  # start remembering (Gers et al., 2000)
            self.state_to_state.bias[:hidden].fill_(forget_bias)

    def forward(self, x: Tensor) -> Tensor:  # [B, C_in, H, W] -> [B, h, H, W]
        z_is = self.input_to_state(x)  # [B, 4h, H, W]
        B, _, H, W = z_is.shape
        h = c = z_is.new_zeros(B, self.hidden, W)
        rows = []
        for r in range(H):  # sequential in the rows: the cost the notes point out
            h, c = row_lstm_step(z_is[:, :, r], h, c, self.state_to_state.weight, self.state_to_state.bias)
            rows.append(h)
        return torch.stack(rows, dim=2)


@dataclass
class PixelRNNConfig:
    """Pixel-RNN of Row LSTM layers (van den Oord et al. 2016a, §3.1) with residual links and a 1x1 head."""

    hidden: int = 32
    """Hidden and cell channels ``h`` of every Row LSTM layer."""
    layers: int = 3
    """Row LSTM layers; the first masks type A, later ones type B with a residual connection."""
    input_kernel: int = 3
    """Width of the masked input-to-state convolution along the row (type A keeps its left half)."""
    state_kernel: int = 3
    """Width of the state-to-state convolution over the previous row's hidden state."""
    head_channels: int = 64
    """Width of the hidden 1x1 convolution of the output head."""
    dropout: float = 0.0
    """Dropout probability on each layer's output (training mode only)."""

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ValueError(f"hidden must be positive, got {self.hidden}")
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")
        if self.input_kernel < 3 or self.input_kernel % 2 == 0:
            raise ValueError(f"input_kernel must be odd and >= 3, got {self.input_kernel}")
        if self.state_kernel < 1 or self.state_kernel % 2 == 0:
            raise ValueError(f"state_kernel must be odd and positive, got {self.state_kernel}")
        if self.head_channels < 1:
            raise ValueError(f"head_channels must be positive, got {self.head_channels}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def build(self, image_shape: tuple[int, int, int], levels: int) -> PixelRNN:
        return PixelRNN(image_shape, levels, self)


class PixelRNN(RasterDensity):
    """Pixel-RNN (notes §7.4; van den Oord et al. 2016, "Pixel Recurrent Neural Networks", Row LSTM)."""

    def __init__(self, image_shape: tuple[int, int, int], levels: int, config: PixelRNNConfig | None = None) -> None:
        super().__init__(image_shape, levels)
        self.config = config = config or PixelRNNConfig()
        C, h = image_shape[0], config.hidden
        self.rows = nn.ModuleList(
            [RowLSTM(C, h, config.input_kernel, config.state_kernel, "A")]
            + [RowLSTM(h, h, config.input_kernel, config.state_kernel, "B") for _ in range(config.layers - 1)])
        self.dropout = SeededDropout(config.dropout)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(h, config.head_channels, 1),
                                  nn.ReLU(), nn.Conv2d(config.head_channels, self.logit_channels, 1))

    def forward(self, u: Tensor) -> Tensor:  # [B, C, H, W] float -> logits
        h = self.dropout(self.rows[0](u))
        for layer in self.rows[1:]:
            h = h + self.dropout(layer(h))
        return self.to_logits(self.head(h))


class Timing(NamedTuple):
    """Wall-clock seconds of one training step (forward and backward) and of drawing ``n_samples`` images."""

    train_step_seconds: float
    sample_seconds: float


def time_training_and_sampling(model: ImageDensity, x: Tensor, n_samples: int,
                               generator: torch.Generator | None = None) -> Timing:
    """Time one training step on ``x`` (loss, gradients; the weights and their ``.grad`` stay untouched)
    and ``model.sample(n_samples, generator)``: PixelCNN's parallel training against Pixel-RNN's rows."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    parameters = [p for p in model.parameters() if p.requires_grad]
    start = time.perf_counter()
    loss = model.loss(x, generator).mean()
    torch.autograd.grad(loss, parameters)
    train_step = time.perf_counter() - start
    start = time.perf_counter()
    model.sample(n_samples, generator)
    return Timing(train_step, time.perf_counter() - start)
