"""Causal self-attention (notes §7.7): against PyTorch's fused kernel, a hand loop, gradients and the cache."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from generative.nn.attention import KVCache, MultiHeadSelfAttention, attention, causal_mask


def test_causal_mask_is_zero_on_and_below_the_diagonal() -> None:
    m = causal_mask(4)
    assert m.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            assert m[i, j] == (0.0 if j <= i else -math.inf)
    # n new queries after 2 cached positions: query i is position 2 + i.
    m = causal_mask(2, 4)
    assert torch.equal(m, torch.tensor([[0.0, 0.0, 0.0, -math.inf], [0.0, 0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="n_keys"):
        causal_mask(3, 2)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
@pytest.mark.parametrize("shape", [(1, 1, 1, 4), (2, 3, 5, 8), (3, 4, 7, 2), (2, 1, 16, 16)])
def test_attention_equals_scaled_dot_product_attention(shape: tuple[int, ...], dtype: torch.dtype,
                                                       tol: float) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    q, k, v = (torch.randn(shape, generator=g, dtype=dtype) for _ in range(3))  # [B, h, n, d_head]
    n = shape[2]
    reference = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    ours = attention(q, k, v, causal_mask(n, dtype=dtype))
    assert torch.allclose(ours, reference, atol=tol, rtol=0)
    # An explicit additive mask (here an arbitrary finite one) and no mask at all.
    bias = torch.randn(n, n, generator=g, dtype=dtype)
    assert torch.allclose(attention(q, k, v, bias), F.scaled_dot_product_attention(q, k, v, attn_mask=bias),
                          atol=tol, rtol=0)
    assert torch.allclose(attention(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=tol, rtol=0)


def test_attention_rows_are_convex_combinations_of_the_visible_values() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    v = torch.eye(6)  # value j is e_j: output row i is the attention weights of query i
    weights = attention(q, k, v, causal_mask(6))
    assert torch.allclose(weights.sum(-1), torch.ones(6))
    assert torch.equal(weights.triu(1), torch.zeros(6, 6))
    assert weights[0, 0] == 1.0  # position 1 sees only itself (the notes' mask would leave it undefined)


@pytest.mark.parametrize("d,heads", [(8, 1), (12, 3), (16, 4)])
def test_module_equals_hand_loop_over_heads(d: int, heads: int) -> None:
    torch.manual_seed(d + heads)
    layer = MultiHeadSelfAttention(d, heads).double()
    x = torch.randn(3, 7, d, dtype=torch.float64)
    y, cache = layer(x)
    assert torch.allclose(y, layer.forward_by_hand(x), atol=1e-10)
    assert cache.length == 7 and cache.k.shape == (3, heads, 7, d // heads)
    # And against PyTorch's fused kernel on the same projections (the notes' K = X W_K, W_K = weight^T).

    def split(t: torch.Tensor) -> torch.Tensor:  # [B, n, d] -> [B, h, n, d_head]
        return t.unflatten(-1, (heads, d // heads)).transpose(1, 2)

    q, k, v = (split(x @ lin.weight.T + lin.bias) for lin in (layer.W_Q, layer.W_K, layer.W_V))
    fused = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).flatten(2)
    assert torch.allclose(y, layer.W_O(fused), atol=1e-10)


def test_output_i_has_zero_gradient_wrt_later_inputs() -> None:
    torch.manual_seed(0)
    layer = MultiHeadSelfAttention(8, 2)
    n = 6
    x = torch.randn(2, n, 8)
    jacobian = torch.autograd.functional.jacobian(lambda x: layer(x)[0], x)  # [2, n, 8, 2, n, 8]
    per_position = jacobian.abs().sum(dim=(0, 2, 3, 5))  # [n_out, n_in]
    for i in range(n):
        for j in range(n):
            if j > i:
                assert per_position[i, j] == 0.0  # exactly: softmax weight exp(-inf) = 0
            elif j == i:
                assert per_position[i, j] > 0.0


def test_incremental_decoding_with_the_cache_equals_the_full_forward() -> None:
    torch.manual_seed(1)
    layer = MultiHeadSelfAttention(12, 3).double()
    x = torch.randn(2, 9, 12, dtype=torch.float64)
    full, full_cache = layer(x)
    cache: KVCache | None = None
    for i in range(9):  # one position per step
        y, cache = layer(x[:, i: i + 1], cache)
        assert cache.length == i + 1
        assert torch.allclose(y, full[:, i: i + 1], atol=1e-12)
    assert torch.allclose(cache.k, full_cache.k) and torch.allclose(cache.v, full_cache.v)
    # Chunks of several positions after a cached prefix use the offset mask.
    y_a, cache = layer(x[:, :4])
    y_b, cache = layer(x[:, 4:], cache)
    assert torch.allclose(torch.cat([y_a, y_b], dim=1), full, atol=1e-12)


def test_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="heads"):
        MultiHeadSelfAttention(10, 3)
    layer = MultiHeadSelfAttention(8, 2)
    with pytest.raises(ValueError, match=r"x must be \[B, n, 8\]"):
        layer(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="cache"):
        layer(torch.zeros(2, 1, 8), KVCache(torch.zeros(3, 2, 1, 4), torch.zeros(3, 2, 1, 4)))
    with pytest.raises(ValueError, match="d_head"):
        attention(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))
