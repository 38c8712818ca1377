"""An autoregressive pixel transformer: a decoder-only transformer over the pixels (notes §7.7, §7.2).

The image is read as a sequence of ``n = C*H*W`` tokens in raster order (rows top to bottom, columns left
to right, the channels of one pixel in turn), ``p(x) = prod_i p(x_i | x_{<i})`` (notes §7.2). Each token is
a pixel value (``levels`` of them) embedded in ``R^d``, plus a learned positional embedding. The input is
shifted one position right behind a start token, ``s = (start, x_1, ..., x_{n-1})``, so that with the
causal mask of :mod:`generative.nn.attention` output ``i`` sees ``x_{<i}`` only and gives the logits of
``x_i`` (Bernoulli for ``levels == 2``, ``levels`` categorical logits otherwise).

The network is GPT-2's (Radford et al., 2019) pre-LayerNorm stack on Vaswani et al. (2017): each block is
``h = h + Dropout(MHSA(LN(h)))``, ``h = h + Dropout(MLP(LN(h)))`` with a GELU MLP, then a final LayerNorm and
a linear head. ``log_prob`` is exact (one parallel pass, teacher forcing); ``sample`` draws one pixel per
step, either feeding only the new position with every block's key-value cache (``O(n d)`` per step) or
re-running the whole prefix each step (``O(n^2 d)``); both draw identical samples from one generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from generative.models.base import ImageDensity, check_images, discrete_log_prob, discrete_sample
from generative.nn.attention import KVCache, MultiHeadSelfAttention

__all__ = ["PixelTransformer", "TransformerBlock", "TransformerConfig", "image_to_tokens", "tokens_to_image"]


def image_to_tokens(x: Tensor, levels: int) -> Tensor:  # [B, C, H, W] -> [B, n] int64
    """Pixels in raster order (channels innermost) as int64 tokens ``0 .. levels - 1``."""
    tokens = x.permute(0, 2, 3, 1).flatten(1)  # [B, H*W*C]
    return tokens.long() if levels == 2 else tokens


def tokens_to_image(tokens: Tensor, image_shape: tuple[int, int, int], levels: int) -> Tensor:  # [B, n] -> image
    """Inverse of :func:`image_to_tokens`: float ``{0, 1}`` images for ``levels == 2``, int64 otherwise."""
    c, h, w = image_shape
    x = tokens.reshape(tokens.shape[0], h, w, c).permute(0, 3, 1, 2).contiguous()  # [B, C, H, W]
    return x.float() if levels == 2 else x.long()


class TransformerBlock(nn.Module):
    """Pre-LN block: ``h + Dropout(MHSA(LN(h)))``, then ``h + Dropout(W_2 GELU(W_1 LN(h)))``."""

    def __init__(self, d: int, heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = MultiHeadSelfAttention(d, heads)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, cache: KVCache | None = None) -> tuple[Tensor, KVCache]:  # h: [B, n, d]
        a, cache = self.attn(self.ln_1(h), cache)
        h = h + self.drop(a)
        return h + self.drop(self.mlp(self.ln_2(h))), cache


class PixelTransformer(ImageDensity):
    """Decoder-only transformer over the ``n = C*H*W`` pixels, exact ``log p(x)`` (notes §7.7).

    ``logits(x)`` gives ``[B, C, H, W]`` Bernoulli logits (``levels == 2``) or ``[B, levels, C, H, W]``;
    ``sample(n, generator, cache)`` fills the pixels one by one.
    """

    def __init__(self, image_shape: tuple[int, int, int], levels: int, d_model: int = 64, heads: int = 4,
                 layers: int = 4, mlp_ratio: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (C, H, W) of positive sizes, got {image_shape}")
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        self.image_shape, self.levels = tuple(image_shape), levels
        self.n = image_shape[0] * image_shape[1] * image_shape[2]
        self.start = levels  # the start token's id, after the pixel values 0 .. levels - 1
        self.token_embedding = nn.Embedding(levels + 1, d_model)
        self.position_embedding = nn.Parameter(torch.zeros(self.n, d_model))  # [n, d]
        nn.init.normal_(self.position_embedding, std=0.02)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, heads, mlp_ratio, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 1 if levels == 2 else levels)

    def shifted_tokens(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, n]
        """The network's input ``(start, x_1, ..., x_{n-1})``: the pixels shifted right by one."""
        tokens = image_to_tokens(x, self.levels)
        start = torch.full_like(tokens[:, :1], self.start)
        return torch.cat([start, tokens[:, :-1]], dim=1)

    def embed(self, tokens: Tensor, offset: int = 0) -> Tensor:  # [B, t] -> [B, t, d]
        """Token plus positional embedding of ``tokens`` at positions ``offset .. offset + t - 1``."""
        return self.token_embedding(tokens) + self.position_embedding[offset: offset + tokens.shape[1]]

    def network(self, h: Tensor, caches: list[KVCache] | None = None) -> tuple[Tensor, list[KVCache]]:
        """Blocks, final LN and head on embedded positions ``h`` ``[B, t, d]`` -> logits ``[B, t, out]``.

        With ``caches`` (one per block, from the previous call) ``h`` holds the positions after the cached ones.
        """
        h = self.drop(h)
        new_caches = []
        for i, block in enumerate(self.blocks):
            h, cache = block(h, None if caches is None else caches[i])
            new_caches.append(cache)
        return self.head(self.ln_f(h)), new_caches

    def _to_image_logits(self, out: Tensor) -> Tensor:  # [B, n, out] -> [B, C, H, W] or [B, levels, C, H, W]
        c, h, w = self.image_shape
        if self.levels == 2:
            return out.reshape(-1, h, w, c).permute(0, 3, 1, 2)
        return out.reshape(-1, h, w, c, self.levels).permute(0, 4, 3, 1, 2)

    def logits(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, C, H, W] or [B, levels, C, H, W]
        """Logits of every pixel given the pixels before it (one parallel pass, teacher forcing)."""
        check_images(x, self.image_shape, self.levels)
        out, _ = self.network(self.embed(self.shifted_tokens(x)))
        return self._to_image_logits(out)

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(x)

    def log_prob(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B] nats
        return discrete_log_prob(self.logits(x), x, self.levels)

    def _draw(self, out: Tensor, generator: torch.Generator | None) -> Tensor:  # [B, out] -> [B] int64 tokens
        if self.levels == 2:
            return discrete_sample(out[:, 0], 2, generator).long()
        return discrete_sample(out, self.levels, generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, cache: bool = True) -> Tensor:
        """``n`` images, one pixel per step in raster order (dropout off while sampling).

        ``cache=True`` feeds each step only the newest token and keeps every block's keys and values;
        ``cache=False`` re-runs the network on the whole prefix each step (the slow reference).
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        was_training = self.training
        self.eval()
        device = self.position_embedding.device
        tokens = torch.full((n, 1), self.start, dtype=torch.long, device=device)  # [n, t + 1]: start, x_1..x_t
        caches: list[KVCache] | None = None
        try:
            for i in range(self.n):
                if cache:
                    out, caches = self.network(self.embed(tokens[:, i:], offset=i), caches)  # [n, 1, out]
                else:
                    out, _ = self.network(self.embed(tokens))  # [n, i + 1, out]
                tokens = torch.cat([tokens, self._draw(out[:, -1], generator).unsqueeze(1)], dim=1)
        finally:
            self.train(was_training)
        return tokens_to_image(tokens[:, 1:], self.image_shape, self.levels)


@dataclass
class TransformerConfig:
    """A decoder-only pixel transformer (notes §7.7); defaults sized for the binary 8x8 digits."""

    d_model: int = 64
    """Width ``d`` of the token and positional embeddings and of every block."""
    heads: int = 4
    """Attention heads per block (must divide ``d_model``)."""
    layers: int = 4
    """Transformer blocks."""
    mlp_ratio: int = 4
    """Hidden width of each block's MLP as a multiple of ``d_model``."""
    dropout: float = 0.1
    """Dropout on the embeddings and on each residual branch (regularises the tiny digits set)."""

    def __post_init__(self) -> None:
        if self.d_model < 1:
            raise ValueError(f"d_model must be >= 1, got {self.d_model}")
        if self.heads < 1 or self.d_model % self.heads:
            raise ValueError(f"heads must be >= 1 and divide d_model = {self.d_model}, got {self.heads}")
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")
        if self.mlp_ratio < 1:
            raise ValueError(f"mlp_ratio must be >= 1, got {self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def build(self, image_shape: tuple[int, int, int], levels: int) -> PixelTransformer:
        """The model for images of ``image_shape`` with ``levels`` pixel levels."""
        return PixelTransformer(image_shape, levels, self.d_model, self.heads, self.layers, self.mlp_ratio,
                                self.dropout)
