"""Masked autoencoder for distribution estimation, MADE (notes §7.3; Germain et al. 2015).

An MLP autoencoder whose weight matrices are multiplied by binary masks so that output ``i`` depends only
on the inputs before ``i`` in an ordering: its outputs are then the conditionals ``p(x_i | x_{<i})`` of
the chain rule, all ``n`` of them in one pass. Every unit gets a number (its *degree*):

* inputs: the ordering ``m^(0)``, a permutation of ``1 .. n`` (``m^(0)(j)`` is input ``j``'s position);
* hidden layer ``l``: ``m^(l)(k)`` drawn uniformly from ``1 .. n-1`` (as in the notes; the paper draws from
  ``min m^(l-1) .. n-1`` to avoid dead units, which the uniform draw only makes rarer for wide layers);
* outputs: the input's ordering ``m^(0)``.

and the masks are ``M^W(l)_ij = 1{m^(l-1)(j) <= m^(l)(i)}`` between layers and ``M^V_ij = 1{m^(L)(j) < m^(0)(i)}``
into the outputs (strict: output ``i`` never sees input ``i``). :func:`made_masks` builds them; an optional
direct input-to-output layer uses ``1{m^(0)(j) < m^(0)(i)}`` (:func:`direct_mask`, as in the paper).
The notes write ``M^V_ij = 1{m^(n)(j) < m^(V)(i)}``: read ``m^(L)`` (the last hidden layer) and ``m^(0)``.

Order-agnostic training (Germain et al. 2015; Uria et al. 2014): ``n_masks`` sets of ordering and
connectivity, one drawn per minibatch by ``loss(x, generator)``. The model is then the uniform mixture of
the ``n_masks`` autoregressive models, and ``log_prob`` is its exact likelihood,
``log (1/K) sum_k p_k(x)`` (``log_mean_exp`` of the per-mask log-likelihoods); ``sample`` draws the mask
first, then the ``n`` pixels in its order (``n`` passes). ``n_masks = 1`` with the natural order is plain MADE.

For ``levels > 2`` the inputs are the levels scaled to ``[0, 1]`` and the output layer emits ``levels``
logits per pixel (the output mask repeated for each level).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generative.models.base import ImageDensity, check_images, discrete_log_prob, log_mean_exp, network_input
from generative.models.fvsbn import check_image_shape, flat_logits_to_image, sample_pixel

__all__ = ["MADE", "MADEConfig", "direct_mask", "made_degrees", "made_masks"]

MADEOrdering = Literal["natural", "random"]
HiddenActivation = Literal["relu", "tanh", "sigmoid"]
_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def _check_ordering(order: Tensor) -> int:
    n = order.numel()
    if order.ndim != 1 or not torch.equal(order.sort().values, torch.arange(1, n + 1, device=order.device)):
        raise ValueError(f"order must be a permutation of 1..{n} (m^(0)), got {order.tolist()}")
    return n


def made_degrees(order: Tensor, hidden_sizes: Sequence[int], generator: torch.Generator) -> list[Tensor]:
    """``[m^(0), m^(1), ..., m^(L)]``: the input ordering ``order`` ``[n]`` (values ``1..n``), then per hidden layer
    ``hidden_sizes[l]`` degrees drawn uniformly from ``1 .. n-1`` with ``generator`` (``1`` when ``n == 1``)."""
    n = _check_ordering(order)
    if any(h < 1 for h in hidden_sizes):
        raise ValueError(f"hidden_sizes must be positive, got {list(hidden_sizes)}")
    return [order.long()] + [torch.randint(1, max(n, 2), (h,), generator=generator) for h in hidden_sizes]


def made_masks(order: Tensor, hidden_sizes: Sequence[int], generator: torch.Generator) -> list[Tensor]:
    """The masks of one MADE, ``[M^W(1) [h_1, n], ..., M^W(L) [h_L, h_{L-1}], M^V [n, h_L]]`` (float 0/1):
    ``M^W(l)_ij = 1{m^(l-1)(j) <= m^(l)(i)}``, ``M^V_ij = 1{m^(L)(j) < m^(0)(i)}`` (degrees: :func:`made_degrees`)."""
    m = made_degrees(order, hidden_sizes, generator)
    masks = [(m[l - 1].unsqueeze(0) <= m[l].unsqueeze(1)).float() for l in range(1, len(m))]
    return masks + [(m[-1].unsqueeze(0) < m[0].unsqueeze(1)).float()]


def direct_mask(order: Tensor) -> Tensor:  # [n] -> [n, n]
    """The direct input-to-output mask ``1{m^(0)(j) < m^(0)(i)}`` (strictly earlier inputs only)."""
    _check_ordering(order)
    return (order.unsqueeze(0) < order.unsqueeze(1)).float()


class MADE(ImageDensity):
    """MADE over ``[B, *image_shape]`` images (notes §7.3), optionally an ensemble of ``n_masks`` orderings
    and connectivities trained order-agnostically (module docstring).

    Mask set ``k`` has the ordering ``orders[k]`` (values ``1..n``): set 0 the natural order ``1..n`` (or a
    random one for ``ordering="random"``); the others share it unless ``order_agnostic``, which draws a fresh
    permutation for each. Connectivities and random orderings come from ``connectivity_seed``.
    """

    def __init__(self, image_shape: tuple[int, int, int], levels: int = 2, hidden_sizes: Sequence[int] = (500,),
                 n_masks: int = 1, order_agnostic: bool = False, ordering: MADEOrdering = "natural",
                 connectivity_seed: int = 0, direct: bool = False, activation: HiddenActivation = "relu",
                 dropout: float = 0.0) -> None:
        super().__init__()
        check_image_shape(image_shape, levels)
        _check_options(hidden_sizes, n_masks, ordering, activation, dropout)
        self.image_shape, self.levels = tuple(image_shape), levels
        self.n = n = math.prod(image_shape)
        self.L = L = 1 if levels == 2 else levels
        self.hidden_sizes, self.n_masks, self.activation, self.dropout = tuple(hidden_sizes), n_masks, activation, dropout
        g = torch.Generator().manual_seed(connectivity_seed)
        base = torch.arange(1, n + 1) if ordering == "natural" else torch.randperm(n, generator=g) + 1
        orders, mask_sets = [], []
        for k in range(n_masks):
            order = torch.randperm(n, generator=g) + 1 if order_agnostic and k > 0 else base
            orders.append(order)
            masks = made_masks(order, self.hidden_sizes, g)
            masks[-1] = masks[-1].repeat(L, 1)  # [L * n, h_L]: output row l * n + i is level l of pixel i
            mask_sets.append(masks + [direct_mask(order).repeat(L, 1)])
        self.register_buffer("orders", torch.stack(orders))  # [K, n]
        widths = (n, *self.hidden_sizes)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.output = nn.Linear(widths[-1], L * n)
        self.direct = nn.Linear(n, L * n, bias=False) if direct else None
        for l in range(len(widths)):  # mask l of every set: [K, out, in]; l = len(hidden_sizes) is the output mask
            self.register_buffer(f"mask_{l}", torch.stack([masks[l] for masks in mask_sets]))
        self.register_buffer("mask_direct", torch.stack([masks[-1] for masks in mask_sets]))

    def conditional_logits(self, u: Tensor, k: int = 0, generator: torch.Generator | None = None,
                           dropout: bool = False) -> Tensor:  # u: [B, n] -> [B, n] or [B, levels, n]
        """The masked network of set ``k`` on network input ``u`` (raster order): output ``i`` gives the logits
        of ``p(x_i | x_j : m(j) < m(i))``. ``dropout`` drops hidden units (rate ``self.dropout``) with ``generator``."""
        if u.ndim != 2 or u.shape[1] != self.n:
            raise ValueError(f"u must be [B, {self.n}], got {tuple(u.shape)}")
        if not 0 <= k < self.n_masks:
            raise ValueError(f"k must be in 0..{self.n_masks - 1}, got {k}")
        act, h = _ACTIVATIONS[self.activation], u
        for l, layer in enumerate(self.layers):
            h = act(F.linear(h, layer.weight * getattr(self, f"mask_{l}")[k], layer.bias))  # [B, h_l]
            if dropout and self.dropout > 0:
                keep = torch.bernoulli(torch.full_like(h, 1.0 - self.dropout), generator=generator)
                h = h * keep / (1.0 - self.dropout)
        out = F.linear(h, self.output.weight * getattr(self, f"mask_{len(self.layers)}")[k], self.output.bias)
        if self.direct is not None:
            out = out + F.linear(u, self.direct.weight * self.mask_direct[k])
        return out if self.levels == 2 else out.reshape(u.shape[0], self.levels, self.n)  # [B, n] / [B, L, n]

    def _input(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, n]
        check_images(x, self.image_shape, self.levels)
        return network_input(x, self.levels).flatten(1).to(self.output.weight.dtype)

    def log_prob_mask(self, x: Tensor, k: int) -> Tensor:  # [B, C, H, W] -> [B]
        """``log p_k(x)``: the likelihood under mask set ``k`` alone."""
        logits = self.conditional_logits(self._input(x), k)
        return discrete_log_prob(flat_logits_to_image(logits, self.image_shape, self.levels), x, self.levels)

    def log_prob(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B]
        """Exact ``log p(x)`` of the mask ensemble, ``log (1/K) sum_k p_k(x)`` (``log p_0`` for one mask)."""
        if self.n_masks == 1:
            return self.log_prob_mask(x, 0)
        return log_mean_exp(torch.stack([self.log_prob_mask(x, k) for k in range(self.n_masks)]), dim=0)

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:  # -> [B]
        """``-log p_k(x)`` for one mask set ``k`` drawn from ``generator`` (order-agnostic training), with
        dropout on the hidden units in training mode."""
        k = int(torch.randint(self.n_masks, (1,), generator=generator)) if self.n_masks > 1 else 0
        logits = self.conditional_logits(self._input(x), k, generator, dropout=self.training)
        return -discrete_log_prob(flat_logits_to_image(logits, self.image_shape, self.levels), x, self.levels)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:  # -> [n, C, H, W]
        """A mask set per image (uniform), then its pixels in its order, one network pass per pixel."""
        k_of = torch.randint(self.n_masks, (n,), generator=generator) if self.n_masks > 1 else torch.zeros(n).long()
        x = torch.zeros(n, self.n, dtype=torch.float32 if self.levels == 2 else torch.int64,
                        device=self.output.weight.device)
        for k in range(self.n_masks):
            rows = (k_of == k).nonzero().squeeze(1).to(x.device)
            if len(rows) > 0:
                x[rows] = self._sample_mask(len(rows), k, generator)
        return x.reshape(n, *self.image_shape)

    def _sample_mask(self, n: int, k: int, generator: torch.Generator | None) -> Tensor:  # -> [n, n_pixels]
        u = self.output.weight.new_zeros(n, self.n)
        x = torch.zeros(n, self.n, dtype=torch.float32 if self.levels == 2 else torch.int64, device=u.device)
        for i in torch.argsort(self.orders[k]).tolist():  # pixels by position 1, 2, ..., n
            logits = self.conditional_logits(u, k)[..., i]  # [n] or [n, L]
            x_i = sample_pixel(logits, self.levels, generator)
            u[:, i] = network_input(x_i, self.levels).to(u.dtype)
            x[:, i] = x_i.to(x.dtype)
        return x


def _check_options(hidden_sizes: Sequence[int], n_masks: int, ordering: str, activation: str, dropout: float) -> None:
    if any(h < 1 for h in hidden_sizes):
        raise ValueError(f"hidden_sizes must be positive, got {list(hidden_sizes)}")
    if n_masks < 1:
        raise ValueError(f"n_masks must be >= 1, got {n_masks}")
    if ordering not in ("natural", "random"):
        raise ValueError(f"ordering must be 'natural' or 'random', got {ordering!r}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {activation!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


@dataclass
class MADEConfig:
    """MADE (notes §7.3): a masked MLP autoencoder, by default an order-agnostic ensemble of 8 mask sets.

    The defaults are the best of a small search on the binary digits (Adam, lr 2e-3 cosine, batch 64, 12000
    steps, early stopping on validation): test NLL 16.34 nats in 50 s on one thread; plain MADE
    (``hidden_sizes=(500,), n_masks=1, direct=False, dropout=0``) reaches 17.3.
    """

    hidden_sizes: tuple[int, ...] = (500, 500)
    """Widths of the masked hidden layers."""
    n_masks: int = 8
    """Mask sets (ordering and connectivity) trained together; ``log_prob`` averages their probabilities."""
    order_agnostic: bool = True
    """Each mask set after the first gets its own random ordering (else all share the first's)."""
    ordering: MADEOrdering = "natural"
    """Ordering of the first mask set: natural (raster) or a random permutation."""
    connectivity_seed: int = 0
    """Seed of the hidden degrees and random orderings (the masks), apart from the weights' seed."""
    direct: bool = True
    """Add a direct input-to-output layer, masked with ``<`` (Germain et al. 2015)."""
    activation: HiddenActivation = "relu"
    """Hidden non-linearity."""
    dropout: float = 0.3
    """Dropout rate of the hidden units during training (drawn from the training generator)."""

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(self.hidden_sizes)
        _check_options(self.hidden_sizes, self.n_masks, self.ordering, self.activation, self.dropout)

    def build(self, image_shape: tuple[int, int, int], levels: int) -> MADE:
        """The model for ``[B, *image_shape]`` images of ``levels`` levels (weights from the torch seed)."""
        return MADE(image_shape, levels, self.hidden_sizes, self.n_masks, self.order_agnostic, self.ordering,
                    self.connectivity_seed, self.direct, self.activation, self.dropout)
