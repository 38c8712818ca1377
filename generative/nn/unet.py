"""The U-Net (notes §3.2; Ronneberger, Fischer and Brox, MICCAI 2015).

A fully convolutional network for per-pixel classification: an encoder of ``depth`` stages (two 3x3
convolutions, then a 2x2 max-pool that halves the size and, in the next stage, doubled channels), a
bottleneck, and a decoder of ``depth`` stages that upsample by 2 (notes §3.1, :class:`Upsample`),
CONCATENATE the encoder tensor of the same size ("right arrows copy", Figure 3.4) with the upsampled
one along the channels, and apply two 3x3 convolutions. A 1x1 convolution gives the class logits.

Unlike the paper, the 3x3 convolutions are padded ("same"), so the output has the input's size and no
cropping of the copied tensors is needed; the input's height and width must then be multiples of
``2^depth``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generative.nn.upsampling import Upsample, UpsamplingMethod

Norm = Literal["batch", "group", "none"]


@dataclass
class UNetArchitecture:
    """Shape of a U-Net: channels in and out, depth, width, upsampling rule, normalisation."""

    in_channels: int = 3
    """Channels of the input image (3 for RGB, 1 for grey)."""
    num_classes: int = 4
    """Output channels: one logit per class and pixel."""
    depth: int = 3
    """Number of downsampling (and upsampling) steps; inputs must be multiples of ``2^depth``."""
    width: int = 16
    """Channels of the first stage; stage ``l`` has ``width * 2^l``."""
    upsampling: UpsamplingMethod = "transposed"
    """Decoder upsampling (notes §3.1): transposed, nearest, bed_of_nails or max_unpool."""
    norm: Norm = "batch"
    """Normalisation after each 3x3 convolution (the paper has none; batch norm trains faster)."""

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.num_classes < 1 or self.depth < 1 or self.width < 1:
            raise ValueError(
                f"in_channels, num_classes, depth and width must be >= 1, got {self.in_channels}, "
                f"{self.num_classes}, {self.depth}, {self.width}"
            )
        if self.upsampling not in ("transposed", "nearest", "bed_of_nails", "max_unpool"):
            raise ValueError(
                f"upsampling must be transposed, nearest, bed_of_nails or max_unpool, got {self.upsampling!r}"
            )
        if self.norm not in ("batch", "group", "none"):
            raise ValueError(f"norm must be batch, group or none, got {self.norm!r}")


def _norm(norm: Norm, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """Two ``3x3 convolution -> norm -> ReLU`` layers, padded so the size is kept."""

    def __init__(self, in_channels: int, out_channels: int, norm: Norm = "batch") -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias), _norm(norm, out_channels), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias), _norm(norm, out_channels), nn.ReLU(),
        )


def concat_skip(skip: Tensor, upsampled: Tensor) -> Tensor:  # [B, C1, H, W], [B, C2, H, W] -> [B, C1 + C2, H, W]
    """The U-Net's copy: the encoder tensor and the upsampled decoder tensor side by side along the channels."""
    if skip.shape[0] != upsampled.shape[0] or skip.shape[2:] != upsampled.shape[2:]:
        raise ValueError(
            f"skip and upsampled must agree in batch and size, got {tuple(skip.shape)} and {tuple(upsampled.shape)}"
        )
    return torch.cat([skip, upsampled], dim=1)


class UNet(nn.Module):
    """``[B, in_channels, H, W] -> [B, num_classes, H, W]`` logits (notes §3.2)."""

    def __init__(self, architecture: UNetArchitecture | None = None) -> None:
        super().__init__()
        a = architecture or UNetArchitecture()
        self.architecture = a
        channels = [a.width * 2**level for level in range(a.depth + 1)]  # stage l, l = 0..depth (bottleneck)
        self.encoder = nn.ModuleList()
        c_in = a.in_channels
        for c in channels[:-1]:
            self.encoder.append(ConvBlock(c_in, c, a.norm))
            c_in = c
        self.bottleneck = ConvBlock(channels[-2], channels[-1], a.norm)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in reversed(range(a.depth)):
            self.up.append(Upsample(channels[level + 1], channels[level], a.upsampling))
            self.decoder.append(ConvBlock(2 * channels[level], channels[level], a.norm))
        self.head = nn.Conv2d(channels[0], a.num_classes, 1)

    def check_input(self, x: Tensor) -> None:
        a = self.architecture
        multiple = 2**a.depth
        if x.ndim != 4 or x.shape[1] != a.in_channels:
            raise ValueError(f"x must be [B, {a.in_channels}, H, W], got shape {tuple(x.shape)}")
        if x.shape[2] % multiple or x.shape[3] % multiple:
            raise ValueError(
                f"x's height and width must be multiples of 2^depth = {multiple}, got shape {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:  # x: [B, C, H, W] -> [B, num_classes, H, W]
        self.check_input(x)
        skips: list[Tensor] = []
        indices: list[Tensor] = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x, index = F.max_pool2d(x, 2, return_indices=True)
            indices.append(index)
        x = self.bottleneck(x)
        for up, block, skip, index in zip(self.up, self.decoder, reversed(skips), reversed(indices)):
            x = block(concat_skip(skip, up(x, index)))
        return self.head(x)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:  # x: [B, C, H, W] -> [B, H, W] int64 class per pixel
        """The most likely class of every pixel."""
        return self(x).argmax(dim=1)
