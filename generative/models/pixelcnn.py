"""PixelCNN and gated PixelCNN (notes §7.4, "Pixel-CNN"; van den Oord et al. 2016).

Both factorise ``p(x) = prod_i p(x_i | x_{1:i-1})`` over the pixels in raster order (row by row, left
to right) and compute every conditional of an image in ONE parallel pass: a masked convolution only
reads pixels that come earlier in that order. ``MaskedConv2d`` zeroes kernel taps by a fixed mask:

* ``"raster"`` (PixelCNN, "Pixel Recurrent Neural Networks", §3.4): the rows above the centre and the
  pixels left of it; type ``"A"`` (first layer) excludes the centre pixel, type ``"B"`` includes it.
  Stacking such masks leaves a BLIND SPOT (notes Figure 7.3): pixels up-right of the position, inside
  the nominal receptive field, that no path reaches (:func:`mask_field` computes the reachable set).
* ``"vertical"`` / ``"horizontal"`` (gated PixelCNN, "Conditional Image Generation with PixelCNN
  Decoders"): the vertical stack reads whole rows above (type A: strictly above; type B: also its own
  row, whose vertical features themselves only saw rows above), the horizontal stack reads the row so
  far; the vertical stack feeds the horizontal one, so the field is every earlier pixel: no blind spot.

Pixels are single-channel: the notes' colour ordering (R, then G given R, then B given R and G) is not
implemented, and ``image_shape`` with ``C > 1`` is rejected. ``levels == 2`` gives Bernoulli logits
``[B, 1, H, W]``, ``levels > 2`` categorical logits ``[B, levels, 1, H, W]`` (``generative.models.base``).
A model's ``forward`` maps the float network input ``[B, C, H, W]`` to logits; ``logits(x)`` takes data.
Dropout (:class:`SeededDropout`) acts only in ``train()`` mode and draws its masks from the ``generator``
given to ``loss``; evaluate and sample in ``eval()`` mode.
The notes say the two stacks' outputs are summed; as in the paper, the vertical stack is added into the
horizontal one in every layer (the link) and the logits are read from the horizontal stack.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generative.models.base import ImageDensity, check_images, discrete_log_prob, discrete_sample, network_input

__all__ = [
    "GatedPixelCNN", "GatedPixelCNNConfig", "MaskedConv2d", "PixelCNN", "PixelCNNConfig", "RasterDensity",
    "SeededDropout", "gated_activation", "kernel_mask", "mask_field", "raster_sample", "receptive_field",
]

MaskType = Literal["A", "B"]
Region = Literal["raster", "vertical", "horizontal"]


def kernel_mask(kernel_size: int, mask_type: MaskType, region: Region = "raster") -> Tensor:
    """The 0/1 taps a masked convolution keeps: ``[k, k]`` (``[1, k]`` for ``"horizontal"``), centre ``k // 2``.

    ``raster``: rows above the centre and the centre row left of the centre; ``vertical``: rows above the
    centre (type B adds the whole centre row); ``horizontal``: the centre row left of the centre. Type B
    adds the centre tap to ``raster`` and ``horizontal``.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    k, centre = kernel_size, kernel_size // 2
    if region == "horizontal":
        mask = torch.zeros(1, k)
        mask[0, : centre + (mask_type == "B")] = 1.0
        return mask
    mask = torch.zeros(k, k)
    mask[:centre] = 1.0
    if region == "raster":
        mask[centre, : centre + (mask_type == "B")] = 1.0
    elif region == "vertical":
        if mask_type == "B":
            mask[centre] = 1.0
    else:
        raise ValueError(f"region must be 'raster', 'vertical' or 'horizontal', got {region!r}")
    return mask


class MaskedConv2d(nn.Conv2d):
    """A 'same'-padded convolution whose weight is multiplied by :func:`kernel_mask` on every call."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: MaskType,
                 region: Region = "raster") -> None:
        mask = kernel_mask(kernel_size, mask_type, region)
        shape = tuple(mask.shape)
        super().__init__(in_channels, out_channels, shape, padding=(shape[0] // 2, shape[1] // 2))
        self.mask_type, self.region = mask_type, region
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:  # [B, C_in, H, W] -> [B, C_out, H, W]
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def mask_field(masks: list[Tensor], position: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Pixels a stack of masked convolutions can reach from the output at ``position``: bool ``[H, W]``.

    ``masks`` in the order the layers are applied (input first), each ``[kh, kw]`` with centre
    ``(kh // 2, kw // 2)``. Output ``p`` of a layer reads input ``q`` iff ``mask[q - p + centre]``; walking back
    from the last layer, the reachable set is correlated with the flipped mask. With nonzero weights
    (and residual paths that only skip layers whose masks hold the centre) this is the exact dependency set.
    """
    H, W = size
    if not (0 <= position[0] < H and 0 <= position[1] < W):
        raise ValueError(f"position must lie in an image of size {size}, got {position}")
    field = torch.zeros(1, 1, H, W, dtype=torch.float64)
    field[0, 0, position[0], position[1]] = 1.0
    for mask in reversed(masks):
        kh, kw = mask.shape
        kernel = mask.flip(0, 1).to(torch.float64)[None, None]  # [1, 1, kh, kw]
        field = (F.conv2d(field, kernel, padding=(kh // 2, kw // 2)) > 0).to(torch.float64)
    return field[0, 0] > 0


def gated_activation(a: Tensor) -> Tensor:  # [B, 2p, H, W] -> [B, p, H, W]
    """``tanh(W_f * x) ⊙ sigmoid(W_g * x)``: the first half of the channels are ``W_f * x``, the second ``W_g * x``."""
    if a.shape[1] % 2:
        raise ValueError(f"a must have an even number of channels, got shape {tuple(a.shape)}")
    f, g = a.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class SeededDropout(nn.Module):
    """Inverted dropout (training mode only) whose masks come from ``self.generator`` (set by ``loss``)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: Tensor) -> Tensor:  # [*] -> [*]
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        return x * keep / (1.0 - self.p)


class RasterDensity(ImageDensity):
    """An exact-likelihood image model in raster order: ``forward`` gives every conditional's logits at once.

    Subclasses build their network and implement ``forward(u)`` (float input ``[B, C, H, W]``, e.g. from
    :func:`~generative.models.base.network_input`); this class turns it into ``log_prob`` and ``sample``.
    """

    def __init__(self, image_shape: tuple[int, int, int], levels: int) -> None:
        super().__init__()
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {image_shape}")
        if image_shape[0] != 1:
            raise ValueError(f"image_shape must have C = 1 (the colour ordering is not implemented), got {image_shape}")
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        self.image_shape, self.levels = tuple(image_shape), levels
        self.logit_channels = image_shape[0] * (1 if levels == 2 else levels)

    def to_logits(self, out: Tensor) -> Tensor:  # [B, C * L', H, W] -> [B, C, H, W] or [B, levels, C, H, W]
        """Shape the head's output channels as the Bernoulli or categorical logits of ``generative.models.base``."""
        if self.levels == 2:
            return out
        B, _, H, W = out.shape
        return out.reshape(B, self.levels, self.image_shape[0], H, W)

    def logits(self, x: Tensor) -> Tensor:  # [B, C, H, W] data -> logits
        """Logits of every pixel's conditional given the pixels before it (teacher forcing, notes §7.2)."""
        return self(network_input(x, self.levels).to(next(self.parameters()).dtype))  # float64 models too

    def log_prob(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B] nats
        check_images(x, self.image_shape, self.levels)
        return discrete_log_prob(self.logits(x), x, self.levels)

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:  # -> [B]
        """``-log_prob(x)``; dropout masks (training mode) are drawn from ``generator``."""
        dropouts = [m for m in self.modules() if isinstance(m, SeededDropout)]
        for m in dropouts:
            m.generator = generator
        try:
            return -self.log_prob(x)
        finally:
            for m in dropouts:
                m.generator = None

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:  # -> [n, C, H, W]
        return raster_sample(self, n, generator)


def raster_sample(model: RasterDensity, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``n`` images pixel by pixel in raster order, one full forward pass per pixel (notes §7.3, fn. 14)."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    C, H, W = model.image_shape
    device = next(model.parameters()).device
    dtype = torch.float32 if model.levels == 2 else torch.int64
    x = torch.zeros(n, C, H, W, dtype=dtype, device=device)
    with torch.no_grad():
        for r in range(H):
            for c in range(W):
                logits = model.logits(x)  # [n, C, H, W] or [n, levels, C, H, W]
                x[..., r, c] = discrete_sample(logits[..., r, c], model.levels, generator).to(dtype)
    return x


def receptive_field(model: RasterDensity, position: tuple[int, int], batch: int = 4, seed: int = 0) -> Tensor:
    """Which input pixels the logits at ``position`` depend on: bool ``[H, W]``, by gradients.

    The sum of the logits at ``position`` is differentiated w.r.t. a random float64 input (``batch``
    images, so that no pixel's gradient vanishes by chance); nonzero wherever a computational path exists.
    """
    C, H, W = model.image_shape
    if not (0 <= position[0] < H and 0 <= position[1] < W):
        raise ValueError(f"position must lie in the {H}x{W} image, got {position}")
    generator = torch.Generator().manual_seed(seed)
    probe = copy.deepcopy(model).eval().to(torch.float64)  # the caller's model keeps its dtype and mode
    device = next(probe.parameters()).device
    u = torch.rand(batch, C, H, W, generator=generator, dtype=torch.float64).to(device).requires_grad_(True)
    probe(u)[..., position[0], position[1]].sum().backward()
    return (u.grad.abs().sum(dim=(0, 1)) > 0).cpu()  # [H, W]


@dataclass
class PixelCNNConfig:
    """PixelCNN of van den Oord et al. (2016a): a type-A convolution, type-B residual blocks, a 1x1 head."""

    channels: int = 64
    """Width ``2h`` of the residual stream (each block narrows to ``h`` around its masked convolution)."""
    layers: int = 5
    """Residual blocks of type-B masked convolutions."""
    first_kernel: int = 7
    """Kernel size of the first, type-A masked convolution."""
    kernel: int = 5
    """Kernel size of the type-B masked convolution in every residual block (5: on 8x8 digits the wider context
    shrinks the blind spot's share of the past; test NLL 16.9 nats against 18.3 with 3x3)."""
    head_channels: int = 64
    """Width of the hidden 1x1 convolution of the output head."""
    dropout: float = 0.3
    """Dropout probability on each residual block's output (training mode only)."""

    def __post_init__(self) -> None:
        if self.channels < 2 or self.channels % 2:
            raise ValueError(f"channels must be even and >= 2, got {self.channels}")
        if self.layers < 0:
            raise ValueError(f"layers must be >= 0, got {self.layers}")
        if self.first_kernel < 1 or self.first_kernel % 2 == 0:
            raise ValueError(f"first_kernel must be odd and positive, got {self.first_kernel}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd and positive, got {self.kernel}")
        if self.head_channels < 1:
            raise ValueError(f"head_channels must be positive, got {self.head_channels}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def build(self, image_shape: tuple[int, int, int], levels: int) -> PixelCNN:
        return PixelCNN(image_shape, levels, self)


class ResidualBlock(nn.Module):
    """PixelCNN's residual block: ReLU, 1x1 (``2h -> h``), ReLU, type-B ``k x k``, ReLU, 1x1 (``h -> 2h``), plus skip."""

    def __init__(self, channels: int, kernel: int, dropout: float) -> None:
        super().__init__()
        half = channels // 2
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, half, 1),
            nn.ReLU(), MaskedConv2d(half, half, kernel, "B"),
            nn.ReLU(), nn.Conv2d(half, channels, 1),
            SeededDropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:  # [B, 2h, H, W] -> [B, 2h, H, W]
        return x + self.body(x)


class PixelCNN(RasterDensity):
    """PixelCNN (notes §7.4; van den Oord et al. 2016, "Pixel Recurrent Neural Networks", §3.4)."""

    def __init__(self, image_shape: tuple[int, int, int], levels: int, config: PixelCNNConfig | None = None) -> None:
        super().__init__(image_shape, levels)
        self.config = config = config or PixelCNNConfig()
        self.first = MaskedConv2d(image_shape[0], config.channels, config.first_kernel, "A")
        self.blocks = nn.Sequential(*(ResidualBlock(config.channels, config.kernel, config.dropout)
                                      for _ in range(config.layers)))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(config.channels, config.head_channels, 1),
                                  nn.ReLU(), nn.Conv2d(config.head_channels, self.logit_channels, 1))

    def forward(self, u: Tensor) -> Tensor:  # [B, C, H, W] float -> logits
        return self.to_logits(self.head(self.blocks(self.first(u))))

    def masks(self) -> list[Tensor]:
        """The spatial masks along the deepest path, input first (1x1 convolutions keep everything)."""
        return [self.first.mask] + [block.body[3].mask for block in self.blocks]


@dataclass
class GatedPixelCNNConfig:
    """Gated PixelCNN of van den Oord et al. (2016b): vertical and horizontal stacks, gated activations."""

    channels: int = 32
    """Feature maps ``p`` of both stacks (the gated convolutions emit ``2p``)."""
    layers: int = 6
    """Gated layers, the first included (it excludes the current pixel)."""
    first_kernel: int = 7
    """Kernel size of the first layer's convolutions (vertical ``k x k``, horizontal ``1 x k``)."""
    kernel: int = 3
    """Kernel size of the later layers' convolutions."""
    head_channels: int = 64
    """Width of the hidden 1x1 convolution of the output head."""
    dropout: float = 0.2
    """Dropout probability on each horizontal residual update (training mode only)."""

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError(f"channels must be positive, got {self.channels}")
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")
        if self.first_kernel < 3 or self.first_kernel % 2 == 0:
            raise ValueError(f"first_kernel must be odd and >= 3, got {self.first_kernel}")
        if self.kernel < 3 or self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd and >= 3, got {self.kernel}")
        if self.head_channels < 1:
            raise ValueError(f"head_channels must be positive, got {self.head_channels}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def build(self, image_shape: tuple[int, int, int], levels: int) -> GatedPixelCNN:
        return GatedPixelCNN(image_shape, levels, self)


class GatedLayer(nn.Module):
    """One gated layer: ``v' = gate(V * v)``, ``h' = h + 1x1(gate(H * h + 1x1(V * v)))`` (no residual if first).

    The vertical stack's pre-activation feeds the horizontal one (the vertical-to-horizontal link); the
    vertical features at a pixel only ever see rows above it, so the link never leaks the current pixel.
    """

    def __init__(self, in_channels: int, channels: int, kernel: int, mask_type: MaskType, dropout: float) -> None:
        super().__init__()
        self.first = mask_type == "A"
        self.vertical = MaskedConv2d(in_channels, 2 * channels, kernel, mask_type, "vertical")
        self.horizontal = MaskedConv2d(in_channels, 2 * channels, kernel, mask_type, "horizontal")
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        self.dropout = SeededDropout(dropout)

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:  # [B, C_in, H, W] each -> [B, p, H, W] each
        v_pre = self.vertical(v)  # [B, 2p, H, W]
        h_update = self.dropout(self.out(gated_activation(self.horizontal(h) + self.link(v_pre))))
        return gated_activation(v_pre), h_update if self.first else h + h_update


class GatedPixelCNN(RasterDensity):
    """Gated PixelCNN without a blind spot (notes §7.4; van den Oord et al. 2016, "Conditional Image
    Generation with PixelCNN Decoders"); the optional class conditioning is left out."""

    def __init__(self, image_shape: tuple[int, int, int], levels: int,
                 config: GatedPixelCNNConfig | None = None) -> None:
        super().__init__(image_shape, levels)
        self.config = config = config or GatedPixelCNNConfig()
        C, p = image_shape[0], config.channels
        self.gated = nn.ModuleList(
            [GatedLayer(C, p, config.first_kernel, "A", config.dropout)]
            + [GatedLayer(p, p, config.kernel, "B", config.dropout) for _ in range(config.layers - 1)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(p, config.head_channels, 1),
                                  nn.ReLU(), nn.Conv2d(config.head_channels, self.logit_channels, 1))

    def forward(self, u: Tensor) -> Tensor:  # [B, C, H, W] float -> logits
        v = h = u
        for layer in self.gated:
            v, h = layer(v, h)
        return self.to_logits(self.head(h))
