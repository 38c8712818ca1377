"""LSTM (notes §4.2): the gate equations by hand equal nn.LSTM (one and stacked layers), and the cell
state is the "information highway" whose Jacobian is the product of the forget gates."""

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from generative.nn.lstm import LSTMSequenceModel, LSTMWeights, lstm_cell, lstm_forward, lstm_gates, weights_from_torch

D64 = torch.float64


def _random_weights(H=4, D=3, seed=0) -> LSTMWeights:
    g = torch.Generator().manual_seed(seed)
    shapes = [(H, H), (H, D), (H,)] * 4
    return LSTMWeights(*(torch.randn(*s, generator=g, dtype=D64) * 0.5 for s in shapes))


def test_cell_is_the_notes_equations():
    w = _random_weights()
    x, h, c = torch.randn(2, 3, dtype=D64), torch.randn(2, 4, dtype=D64), torch.randn(2, 4, dtype=D64)
    h_new, c_new = lstm_cell(x, h, c, w)
    for b in range(2):
        xc, hc = x[b].unsqueeze(1), h[b].unsqueeze(1)  # columns
        f = torch.sigmoid(w.W_hf @ hc + w.W_xf @ xc + w.b_f.unsqueeze(1))
        i = torch.sigmoid(w.W_hi @ hc + w.W_xi @ xc + w.b_i.unsqueeze(1))
        o = torch.sigmoid(w.W_ho @ hc + w.W_xo @ xc + w.b_o.unsqueeze(1))
        g = torch.tanh(w.W_hg @ hc + w.W_xg @ xc + w.b_g.unsqueeze(1))
        c_expected = f * c[b].unsqueeze(1) + i * g
        assert torch.allclose(c_new[b], c_expected[:, 0])
        assert torch.allclose(h_new[b], (o * torch.tanh(c_expected))[:, 0])
    gates = lstm_gates(x, h, w)
    assert all(((0 < v) & (v < 1)).all() for v in (gates.f, gates.i, gates.o))
    assert ((gates.g > -1) & (gates.g < 1)).all()


@pytest.mark.parametrize("num_layers", [1, 3])
def test_hand_lstm_equals_torch_given_the_same_weights(num_layers):
    torch.manual_seed(num_layers)
    lstm = nn.LSTM(3, 5, num_layers=num_layers, batch_first=True).double()
    x = torch.randn(2, 9, 3, dtype=D64)
    h0, c0 = torch.randn(num_layers, 2, 5, dtype=D64), torch.randn(num_layers, 2, 5, dtype=D64)
    out, (h_n, c_n) = lstm(x, (h0, c0))
    ours, (h_ours, c_ours) = lstm_forward(x, weights_from_torch(lstm), h0, c0)
    assert torch.allclose(ours, out, atol=1e-12)
    assert torch.allclose(h_ours, h_n, atol=1e-12) and torch.allclose(c_ours, c_n, atol=1e-12)
    # gradients reach torch's parameters through the mapping, equal to torch's own backward
    g_torch = torch.autograd.grad(out.pow(2).sum(), list(lstm.parameters()))
    g_ours = torch.autograd.grad(ours.pow(2).sum(), list(lstm.parameters()))
    for a, b in zip(g_torch, g_ours):
        assert torch.allclose(a, b, atol=1e-10)


def test_gate_order_mapping_is_not_the_identity():
    """Reading torch's rows in the notes' order f, i, o, g (without remapping) gives other outputs."""
    torch.manual_seed(0)
    lstm = nn.LSTM(2, 3, batch_first=True).double()
    x = torch.randn(1, 5, 2, dtype=D64)
    (w,) = weights_from_torch(lstm)
    rows = lambda name: getattr(lstm, name).chunk(4, 0)
    b = (lstm.bias_ih_l0 + lstm.bias_hh_l0).chunk(4, 0)
    naive = LSTMWeights(*(t for k in range(4) for t in (rows("weight_hh_l0")[k], rows("weight_ih_l0")[k], b[k])))
    assert torch.equal(w.W_xi, lstm.weight_ih_l0[:3]) and torch.equal(w.W_xf, lstm.weight_ih_l0[3:6])
    assert not torch.allclose(lstm_forward(x, [naive])[0], lstm(x)[0], atol=1e-3)


def test_cell_state_jacobian_is_the_product_of_forget_gates():
    """With no recurrent weights (W_h* = 0) the gates do not depend on the past, and
    dc_t/dc_k = diag(f_t * ... * f_{k+1}): the additive path of notes §4.2, no W_h and no tanh' in it."""
    w = _random_weights(H=4, D=3, seed=1)
    w = w._replace(**{name: torch.zeros_like(getattr(w, name)) for name in ("W_hf", "W_hi", "W_ho", "W_hg")})
    x = torch.randn(8, 3, dtype=D64)

    def c_last(c0):
        h, c = torch.zeros(1, 4, dtype=D64), c0.unsqueeze(0)
        for t in range(8):
            h, c = lstm_cell(x[t : t + 1], h, c, w)
        return c[0]

    J = jacobian(c_last, torch.randn(4, dtype=D64))
    forget = torch.stack([lstm_gates(x[t : t + 1], torch.zeros(1, 4, dtype=D64), w).f[0] for t in range(8)])
    assert torch.allclose(J, torch.diag(forget.prod(0)), atol=1e-14)


def test_open_forget_gate_and_closed_input_gate_remember_the_cell():
    """b_f large, b_i very negative: c_t stays c_0 over 100 steps and dc_T/dc_0 stays near I."""
    H = 3
    w = _random_weights(H=H, D=2, seed=2)
    w = w._replace(b_f=torch.full((H,), 30.0, dtype=D64), b_i=torch.full((H,), -30.0, dtype=D64))
    x = torch.randn(1, 100, 2, dtype=D64)
    c0 = torch.tensor([[[0.7, -1.2, 2.0]]], dtype=D64)
    _, (_, c_n) = lstm_forward(x, [w], torch.zeros(1, 1, H, dtype=D64), c0)
    assert torch.allclose(c_n, c0, atol=1e-9)
    h0 = torch.zeros(1, 1, H, dtype=D64)
    J = jacobian(lambda c: lstm_forward(x, [w], h0, c.view(1, 1, H))[1][1].view(H), c0.view(H))
    assert torch.allclose(J, torch.eye(H, dtype=D64), atol=1e-9)


def test_sequence_model_fast_path_equals_hand_and_sets_the_forget_bias():
    torch.manual_seed(0)
    model = LSTMSequenceModel(2, 6, 1, num_layers=2, forget_bias=1.0).double()
    x = torch.randn(3, 7, 2, dtype=D64)
    assert model(x).shape == (3, 7, 1)
    assert torch.allclose(model(x), model.forward_by_hand(x), atol=1e-12)
    for w in weights_from_torch(model.lstm):
        assert torch.allclose(w.b_f, torch.ones(6, dtype=D64))


def test_shape_errors_name_the_argument():
    w = _random_weights()
    with pytest.raises(ValueError, match="W_xg must be"):
        lstm_forward(torch.zeros(1, 2, 3), [w._replace(W_xg=torch.zeros(4, 2))])
    with pytest.raises(ValueError, match="layer 1 must read 4"):
        lstm_forward(torch.zeros(1, 2, 3, dtype=D64), [w, w])
    with pytest.raises(ValueError, match="h0 and c0"):
        lstm_forward(torch.zeros(1, 2, 3, dtype=D64), [w], torch.zeros(2, 1, 4, dtype=D64))
    with pytest.raises(ValueError, match="x must be"):
        LSTMSequenceModel(2, 4, 1)(torch.zeros(3, 5, 3))
