"""Causal self-attention, the core of the transformer (notes §7.7; Vaswani et al., 2017).

For a sequence ``X in R^{n x d}`` (one row per position) self-attention forms keys, values and queries

    K = X W_K,   V = X W_V,   Q = X W_Q,

and mixes the values with a soft look-up: ``Y = softmax(Q K^T / sqrt(d_head) + M) V`` (softmax over each
row). The additive mask ``M`` (:func:`causal_mask`) makes the mixing autoregressive: row ``i`` sees only
the positions ``j <= i``. With ``h`` heads the ``d`` features are split into ``h`` groups of
``d_head = d / h``; each head attends on its own, the heads' outputs are concatenated and projected by
``W_O``. ``nn.Linear`` stores ``W^T``: ``W_K`` of the notes is ``self.W_K.weight.T``.

Slips in the notes, corrected here (standard form of Vaswani et al.):

1. The notes' ``M`` has ``-inf`` on the diagonal too, so position ``i`` may not attend to itself and row 1
   is all ``-inf`` (its softmax is 0/0). The standard causal mask is 0 for ``j <= i``; the *input* is
   shifted one position right (a start token first), so that output ``i`` predicts ``x_{i+1}`` from
   ``x_{<=i}`` (done by the models, e.g. ``generative.models.transformer``).
2. The scale ``sqrt(d)`` is per head: ``sqrt(d_head)`` (the dot products are over ``d_head`` features).

* :func:`attention`, :func:`causal_mask`: the pure maths, checked against
  ``torch.nn.functional.scaled_dot_product_attention``;
* :class:`MultiHeadSelfAttention`: the layer, with a key-value cache (:class:`KVCache`) for incremental
  decoding (one new position attends to the cached keys and values: ``O(t d)`` per step instead of
  re-running the prefix), and ``forward_by_hand``, a slow loop over heads and positions as reference.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["KVCache", "MultiHeadSelfAttention", "attention", "causal_mask"]


def causal_mask(
    n: int, n_keys: int | None = None, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:  # -> [n, n_keys]
    """The additive causal mask ``M``: 0 where key ``j`` may be seen by query ``i`` (``j <= i``), ``-inf`` after.

    ``n_keys`` (default ``n``) allows ``n`` new queries after ``n_keys - n`` cached positions: query ``i``
    is then position ``n_keys - n + i`` and sees the keys ``j <= n_keys - n + i``.
    """
    n_keys = n if n_keys is None else n_keys
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n_keys < n:
        raise ValueError(f"n_keys must be >= n = {n}, got {n_keys}")
    i = torch.arange(n, device=device).unsqueeze(1) + (n_keys - n)  # [n, 1] absolute query positions
    j = torch.arange(n_keys, device=device).unsqueeze(0)  # [1, n_keys]
    zeros = torch.zeros((), dtype=dtype, device=device)
    return torch.where(j <= i, zeros, torch.tensor(float("-inf"), dtype=dtype, device=device))


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """``softmax(q k^T / sqrt(d_head) + mask) v``: scaled dot-product attention (Vaswani et al., 2017, eq. 1).

    ``q``: ``[..., n_q, d_head]``, ``k``: ``[..., n_k, d_head]``, ``v``: ``[..., n_k, d_v]``; ``mask``: additive,
    broadcastable to ``[..., n_q, n_k]`` (``None``: every query sees every key). -> ``[..., n_q, d_v]``.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share d_head, got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have as many positions, got k {tuple(k.shape)} and v {tuple(v.shape)}")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [..., n_q, n_k]
    if mask is not None:
        scores = scores + mask
    return torch.softmax(scores, dim=-1) @ v  # [..., n_q, d_v]


class KVCache(NamedTuple):
    """Keys and values of the positions seen so far, per head, for incremental decoding."""

    k: Tensor  # [B, h, t, d_head]
    v: Tensor  # [B, h, t, d_head]

    @property
    def length(self) -> int:
        """Number of cached positions ``t``."""
        return self.k.shape[2]


class MultiHeadSelfAttention(nn.Module):
    """Causal multi-head self-attention ``Y = concat_h(softmax(Q_h K_h^T / sqrt(d_head) + M) V_h) W_O``.

    ``forward(x, cache)`` takes ``x`` ``[B, n, d]``; with ``cache`` (the :class:`KVCache` a previous call
    returned) ``x`` holds the next ``n`` positions after the cached ones. It returns ``y`` ``[B, n, d]`` and the
    cache extended by ``x``'s keys and values, so a decoder can feed one position per step.
    """

    def __init__(self, d: int, heads: int, bias: bool = True) -> None:
        super().__init__()
        if d < 1:
            raise ValueError(f"d must be >= 1, got {d}")
        if heads < 1 or d % heads:
            raise ValueError(f"heads must be >= 1 and divide d = {d}, got {heads}")
        self.d, self.heads, self.d_head = d, heads, d // heads
        self.W_Q = nn.Linear(d, d, bias=bias)
        self.W_K = nn.Linear(d, d, bias=bias)
        self.W_V = nn.Linear(d, d, bias=bias)
        self.W_O = nn.Linear(d, d, bias=bias)

    def _split(self, t: Tensor) -> Tensor:  # [B, n, d] -> [B, h, n, d_head]
        return t.unflatten(-1, (self.heads, self.d_head)).transpose(1, 2)

    def _check(self, x: Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.d:
            raise ValueError(f"x must be [B, n, {self.d}], got {tuple(x.shape)}")

    def forward(self, x: Tensor, cache: KVCache | None = None) -> tuple[Tensor, KVCache]:  # x: [B, n, d]
        self._check(x)
        q, k, v = self._split(self.W_Q(x)), self._split(self.W_K(x)), self._split(self.W_V(x))  # [B, h, n, d_head]
        if cache is not None:
            if cache.k.shape[:2] != (x.shape[0], self.heads) or cache.k.shape[3] != self.d_head:
                raise ValueError(f"cache must be [{x.shape[0]}, {self.heads}, t, {self.d_head}], "
                                 f"got {tuple(cache.k.shape)}")
            k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)  # [B, h, t + n, d_head]
        n = x.shape[1]
        # A single new query may see every key (all are in its past): no mask needed.
        mask = None if n == 1 else causal_mask(n, k.shape[2], dtype=x.dtype, device=x.device)
        y = attention(q, k, v, mask)  # [B, h, n, d_head]
        return self.W_O(y.transpose(1, 2).flatten(2)), KVCache(k, v)  # [B, n, d]

    def forward_by_hand(self, x: Tensor) -> Tensor:  # [B, n, d] -> [B, n, d]
        """Slow reference: for every head and every position ``i``, a softmax over the keys ``j <= i`` only."""
        self._check(x)
        heads = []
        for head in range(self.heads):
            cols = slice(head * self.d_head, (head + 1) * self.d_head)
            q = x @ self.W_Q.weight[cols].T  # [B, n, d_head]
            k = x @ self.W_K.weight[cols].T
            v = x @ self.W_V.weight[cols].T
            if self.W_Q.bias is not None:
                q, k, v = q + self.W_Q.bias[cols], k + self.W_K.bias[cols], v + self.W_V.bias[cols]
            rows = []
            for i in range(x.shape[1]):
                scores = (k[:, : i + 1] @ q[:, i].unsqueeze(-1)).squeeze(-1) / math.sqrt(self.d_head)  # [B, i + 1]
                weights = torch.softmax(scores, dim=-1)
                rows.append((weights.unsqueeze(-1) * v[:, : i + 1]).sum(1))  # [B, d_head]
            heads.append(torch.stack(rows, dim=1))  # [B, n, d_head]
        return self.W_O(torch.cat(heads, dim=-1))
