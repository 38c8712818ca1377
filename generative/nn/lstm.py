"""Long short-term memory (notes §4.2; Hochreiter and Schmidhuber, 1997).

The cell by hand, exactly the notes' gate equations (column vectors; biases allowed, the notes write none):

    f_t = sigma(W_hf h_{t-1} + W_xf x_t + b_f)      forget gate
    i_t = sigma(W_hi h_{t-1} + W_xi x_t + b_i)      input gate
    o_t = sigma(W_ho h_{t-1} + W_xo x_t + b_o)      output gate
    g_t = tanh (W_hg h_{t-1} + W_xg x_t + b_g)      what to write
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)

Stacked ("chain multiple LSTM units"): layer ``l > 1`` reads layer ``l - 1``'s ``h_t`` in place of ``x_t``.
``torch.nn.LSTM`` is the fast path; it stacks the gates in the order ``i, f, g, o`` in ``weight_ih_l{k}``
/ ``weight_hh_l{k}`` and has two biases whose sum is our ``b``; :func:`weights_from_torch` maps them.

The notes' bullet on the forget gate says it scales "the old cell state ``h^{(t-1)}``"; the equations
(and the code) scale the old CELL state ``c_{t-1}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

TORCH_GATE_ORDER = ("i", "f", "g", "o")
"""How ``nn.LSTM`` stacks the four gates' rows in its weight matrices and biases."""


class LSTMWeights(NamedTuple):
    """One LSTM layer's weights in the notes' names (``H`` hidden units, ``D`` inputs)."""

    W_hf: Tensor  # [H, H]
    W_xf: Tensor  # [H, D]
    b_f: Tensor  # [H]
    W_hi: Tensor  # [H, H]
    W_xi: Tensor  # [H, D]
    b_i: Tensor  # [H]
    W_ho: Tensor  # [H, H]
    W_xo: Tensor  # [H, D]
    b_o: Tensor  # [H]
    W_hg: Tensor  # [H, H]
    W_xg: Tensor  # [H, D]
    b_g: Tensor  # [H]

    @property
    def hidden_size(self) -> int:
        return self.W_hf.shape[0]

    @property
    def input_size(self) -> int:
        return self.W_xf.shape[1]


def _check_weights(w: LSTMWeights) -> None:
    hidden, inputs = w.hidden_size, w.input_size
    for name, value in w._asdict().items():
        columns = {"W_h": (hidden,), "W_x": (inputs,)}.get(name[:3], ())
        expected = (hidden, *columns)
        if value.shape != expected:
            raise ValueError(f"{name} must be {expected} (H = {hidden}, D = {inputs}), got shape {tuple(value.shape)}")


class Gates(NamedTuple):
    """The four gate activations of one step, each ``[B, H]``."""

    f: Tensor
    i: Tensor
    o: Tensor
    g: Tensor


def lstm_gates(x_t: Tensor, h_prev: Tensor, w: LSTMWeights) -> Gates:  # x_t: [B, D], h_prev: [B, H]
    """``f, i, o`` (sigmoid) and ``g`` (tanh) of notes §4.2 from ``h_{t-1}`` and ``x_t``."""

    def pre(W_h: Tensor, W_x: Tensor, b: Tensor) -> Tensor:
        return h_prev @ W_h.T + x_t @ W_x.T + b

    return Gates(
        torch.sigmoid(pre(w.W_hf, w.W_xf, w.b_f)),
        torch.sigmoid(pre(w.W_hi, w.W_xi, w.b_i)),
        torch.sigmoid(pre(w.W_ho, w.W_xo, w.b_o)),
        torch.tanh(pre(w.W_hg, w.W_xg, w.b_g)),
    )


def lstm_cell(
    x_t: Tensor,  # [B, D]
    h_prev: Tensor,  # [B, H]
    c_prev: Tensor,  # [B, H]
    w: LSTMWeights,
) -> tuple[Tensor, Tensor]:  # h_t [B, H], c_t [B, H]
    """One step: ``c_t = f * c_{t-1} + i * g`` (keep/forget plus write), ``h_t = o * tanh(c_t)``."""
    gates = lstm_gates(x_t, h_prev, w)
    c = gates.f * c_prev + gates.i * gates.g
    return gates.o * torch.tanh(c), c


def lstm_forward(
    x: Tensor,  # [B, T, D]
    layers: Sequence[LSTMWeights],
    h0: Tensor | None = None,  # [L, B, H]
    c0: Tensor | None = None,  # [L, B, H]
) -> tuple[Tensor, tuple[Tensor, Tensor]]:  # outputs [B, T, H] (last layer), (h_T, c_T) each [L, B, H]
    """Run ``L`` chained LSTM layers over the sequence, the same contract as ``nn.LSTM(batch_first=True)``."""
    if x.ndim != 3:
        raise ValueError(f"x must be [B, T, D], got shape {tuple(x.shape)}")
    if len(layers) == 0:
        raise ValueError("layers must hold at least one LSTMWeights")
    for depth, w in enumerate(layers):
        _check_weights(w)
        expected = x.shape[2] if depth == 0 else layers[depth - 1].hidden_size
        if w.input_size != expected:
            raise ValueError(f"layer {depth} must read {expected} inputs, got W_xf of shape {tuple(w.W_xf.shape)}")
    batch, hidden = x.shape[0], layers[0].hidden_size
    state_shape = (len(layers), batch, hidden)
    h0 = x.new_zeros(state_shape) if h0 is None else h0
    c0 = x.new_zeros(state_shape) if c0 is None else c0
    if h0.shape != state_shape or c0.shape != state_shape:
        raise ValueError(f"h0 and c0 must be [L, B, H] = {state_shape}, got {tuple(h0.shape)} and {tuple(c0.shape)}")
    sequence = x
    h_last, c_last = [], []
    for depth, w in enumerate(layers):
        h, c = h0[depth], c0[depth]
        outputs = []
        for t in range(sequence.shape[1]):
            h, c = lstm_cell(sequence[:, t], h, c, w)
            outputs.append(h)
        sequence = torch.stack(outputs, dim=1)
        h_last.append(h)
        c_last.append(c)
    return sequence, (torch.stack(h_last), torch.stack(c_last))


def weights_from_torch(lstm: nn.LSTM) -> list[LSTMWeights]:
    """The notes' per-gate weights of every layer of ``lstm`` (rows ``i, f, g, o``; ``b = b_ih + b_hh``).
    The tensors are views/sums of the module's parameters, so gradients flow back to them."""
    if lstm.bidirectional or lstm.proj_size:
        raise ValueError("only unidirectional LSTMs without projection map onto the notes' cell")
    if not lstm.bias:
        raise ValueError("weights_from_torch expects nn.LSTM(bias=True)")
    layers = []
    for k in range(lstm.num_layers):
        W_x = dict(zip(TORCH_GATE_ORDER, getattr(lstm, f"weight_ih_l{k}").chunk(4, 0)))
        W_h = dict(zip(TORCH_GATE_ORDER, getattr(lstm, f"weight_hh_l{k}").chunk(4, 0)))
        b = dict(zip(TORCH_GATE_ORDER, (getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")).chunk(4, 0)))
        layers.append(LSTMWeights(*(t for gate in "fiog" for t in (W_h[gate], W_x[gate], b[gate]))))
    return layers


class LSTMSequenceModel(nn.Module):
    """``nn.LSTM`` (the fast path) and a linear readout ``y_hat_t = W_y h_t + b_y``: ``[B, T, D] -> [B, T, O]``."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, num_layers: int = 1,
                 forget_bias: float = 1.0) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.readout = nn.Linear(hidden_size, output_size)
        # start remembering (Gers et al., 2000): b_f = forget_bias, split over torch's two biases
        with torch.no_grad():
            for k in range(num_layers):
                for name in (f"bias_ih_l{k}", f"bias_hh_l{k}"):
                    getattr(self.lstm, name)[hidden_size : 2 * hidden_size].fill_(forget_bias / 2)

    def _check(self, x: Tensor) -> None:
        if x.ndim != 3 or x.shape[2] != self.lstm.input_size:
            raise ValueError(f"x must be [B, T, {self.lstm.input_size}], got shape {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:  # [B, T, D] -> [B, T, O]
        self._check(x)
        hs, _ = self.lstm(x)
        return self.readout(hs)

    def forward_by_hand(self, x: Tensor) -> Tensor:  # [B, T, D] -> [B, T, O]
        """The same outputs from :func:`lstm_forward` on the module's weights."""
        self._check(x)
        hs, _ = lstm_forward(x, weights_from_torch(self.lstm))
        return self.readout(hs)
