"""Upsampling for fully convolutional networks (notes §3.1).

Three fixed rules and one learned:

* nearest neighbour: every value is copied into its whole ``s x s`` block;
* bed of nails: every value goes to the top-left pixel of its block, the rest is zero;
* max unpooling: like bed of nails, but every value goes back to the position its max-pool took it
  from (the indices ``F.max_pool2d(..., return_indices=True)`` remembers);
* transposed convolution (Shelhamer et al., 2016): each input pixel multiplies the whole kernel and
  the products are summed into the output, the kernel's top-left corner at ``s`` times the pixel's
  position. It is the adjoint of the strided convolution with the same weights:
  ``<conv(x), y> = <x, conv^T(y)>`` (:func:`adjoint_gap`).

:func:`transposed_conv2d_reference` is the readable loop; ``F.conv_transpose2d`` the fast path
(the tests check that they agree). :class:`Upsample` packs the four rules as one layer for the U-Net.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

UpsamplingMethod = Literal["nearest", "bed_of_nails", "max_unpool", "transposed"]


def _check_image(x: Tensor, name: str = "x") -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} must be [B, C, H, W], got shape {tuple(x.shape)}")


def _check_factor(s: int) -> None:
    if int(s) != s or s < 1:
        raise ValueError(f"the factor s must be a positive integer, got {s}")


def nearest_neighbour(x: Tensor, s: int = 2) -> Tensor:  # x: [B, C, H, W] -> [B, C, sH, sW]
    """Copy each value into all ``s x s`` pixels of its block (notes §3.1, Figure 3.1)."""
    _check_image(x)
    _check_factor(s)
    return x.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)


def bed_of_nails(x: Tensor, s: int = 2) -> Tensor:  # x: [B, C, H, W] -> [B, C, sH, sW]
    """Put each value in the top-left pixel of its ``s x s`` block, zeros elsewhere (notes §3.1, Figure 3.2)."""
    _check_image(x)
    _check_factor(s)
    b, c, h, w = x.shape
    out = x.new_zeros(b, c, s * h, s * w)
    out[:, :, ::s, ::s] = x
    return out


def max_unpool(
    x: Tensor,  # [B, C, H, W]: the (processed) pooled values
    indices: Tensor,  # [B, C, H, W] int64: flat positions h * W_out + w of the maxima, from F.max_pool2d
    output_size: tuple[int, int],  # (H_out, W_out): the size before pooling
) -> Tensor:  # [B, C, H_out, W_out]
    """Put each value back where its max-pool found the maximum, zeros elsewhere (notes §3.1, Figure 3.3)."""
    _check_image(x)
    if indices.shape != x.shape:
        raise ValueError(f"indices must have the shape of x, got {tuple(indices.shape)} and {tuple(x.shape)}")
    b, c = x.shape[:2]
    h_out, w_out = output_size
    if indices.numel() and not 0 <= int(indices.min()) <= int(indices.max()) < h_out * w_out:
        raise ValueError(f"indices must lie in [0, H_out W_out) for output_size {tuple(output_size)}, got "
                         f"[{int(indices.min())}, {int(indices.max())}]")
    out = x.new_zeros(b, c, h_out * w_out)
    out.scatter_(2, indices.flatten(2), x.flatten(2))
    return out.view(b, c, h_out, w_out)


def transposed_output_size(h: int, k: int, stride: int, padding: int, output_padding: int) -> int:
    """Output length of a transposed convolution along one axis: ``(h - 1) s - 2p + k + output_padding``."""
    return (h - 1) * stride - 2 * padding + k + output_padding


def transposed_conv2d_reference(
    x: Tensor,  # [B, C_in, H, W]
    weight: Tensor,  # [C_in, C_out, kH, kW] (the layout of F.conv_transpose2d / nn.ConvTranspose2d)
    bias: Tensor | None = None,  # [C_out]
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
) -> Tensor:  # [B, C_out, (H-1)s - 2p + kH + output_padding, (W-1)s - 2p + kW + output_padding]
    """Transposed convolution written as the notes describe it (§3.1): for every input pixel ``(i, j)``
    the kernel times that pixel's values is added into the output at rows ``s i .. s i + kH - 1`` and
    columns ``s j .. s j + kW - 1``; ``padding`` then crops ``p`` pixels from each border and
    ``output_padding`` keeps that many extra rows/columns at the bottom/right. Equal to ``F.conv_transpose2d``."""
    _check_image(x)
    if weight.ndim != 4 or weight.shape[0] != x.shape[1]:
        raise ValueError(
            f"weight must be [C_in, C_out, kH, kW] with C_in = x.shape[1], got {tuple(weight.shape)} and x "
            f"{tuple(x.shape)}"
        )
    if bias is not None and bias.shape != (weight.shape[1],):
        raise ValueError(f"bias must be [C_out] = [{weight.shape[1]}], got {tuple(bias.shape)}")
    if stride < 1 or padding < 0 or not 0 <= output_padding < max(stride, 1):
        raise ValueError(
            f"need stride >= 1, padding >= 0 and 0 <= output_padding < stride, got {stride}, {padding}, "
            f"{output_padding}"
        )
    b, _, h, w = x.shape
    c_out, kh, kw = weight.shape[1:]
    full = x.new_zeros(b, c_out, (h - 1) * stride + kh + output_padding, (w - 1) * stride + kw + output_padding)
    for i in range(h):
        for j in range(w):
            # one term of the sum: the pixel's C_in values times the whole kernel -> [B, C_out, kH, kW]
            term = torch.einsum("bc,cokl->bokl", x[:, :, i, j], weight)
            full[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw] += term
    h_out = transposed_output_size(h, kh, stride, padding, output_padding)
    w_out = transposed_output_size(w, kw, stride, padding, output_padding)
    out = full[:, :, padding : padding + h_out, padding : padding + w_out]
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def adjoint_gap(
    x: Tensor,  # [B, C_in, H, W]: input of the convolution
    y: Tensor,  # [B, C_out, H', W']: same shape as conv2d(x, weight)
    weight: Tensor,  # [C_out, C_in, kH, kW]: the convolution's weights (as F.conv2d takes them)
    stride: int = 1,
    padding: int = 0,
) -> float:
    """``<conv(x), y> - <x, conv^T(y)>`` with ``conv^T = F.conv_transpose2d`` on the *same* weights
    (no bias: the adjoint is of the linear map). Zero up to round-off: the transposed convolution is
    the adjoint (the matrix transpose) of the convolution. ``output_padding`` restores the rows a
    strided convolution dropped, so that ``conv^T(y)`` has the shape of ``x``."""
    _check_image(x)
    _check_image(y, "y")
    conv = F.conv2d(x, weight, stride=stride, padding=padding)
    if conv.shape != y.shape:
        raise ValueError(f"y must have the shape of conv2d(x), got {tuple(y.shape)} and {tuple(conv.shape)}")
    kh, kw = weight.shape[2:]
    extra = [
        x.shape[2] - transposed_output_size(y.shape[2], kh, stride, padding, 0),
        x.shape[3] - transposed_output_size(y.shape[3], kw, stride, padding, 0),
    ]
    back = F.conv_transpose2d(y, weight, stride=stride, padding=padding, output_padding=tuple(extra))
    return float((conv * y).sum() - (x * back).sum())


class Upsample(nn.Module):
    """One §3.1 upsampling by 2 that also maps ``in_channels -> out_channels``.

    ``transposed`` is a learned 2x2, stride-2 transposed convolution (the U-Net's "up-conv"); the three
    fixed rules first mix the channels with a 1x1 convolution (so that max unpooling sees the channel
    count its max-pool had) and then upsample.
    """

    def __init__(self, in_channels: int, out_channels: int, method: UpsamplingMethod = "transposed") -> None:
        super().__init__()
        if method not in ("nearest", "bed_of_nails", "max_unpool", "transposed"):
            raise ValueError(f"method must be nearest, bed_of_nails, max_unpool or transposed, got {method!r}")
        self.method = method
        if method == "transposed":
            self.layer: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        else:
            self.layer = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor, indices: Tensor | None = None) -> Tensor:  # x: [B, C_in, H, W] -> [B, C_out, 2H, 2W]
        if self.method == "transposed":
            return self.layer(x)
        x = self.layer(x)
        if self.method == "nearest":
            return nearest_neighbour(x, 2)
        if self.method == "bed_of_nails":
            return bed_of_nails(x, 2)
        if indices is None:
            raise ValueError("max_unpool needs the indices of the matching max-pool")
        return max_unpool(x, indices, (2 * x.shape[2], 2 * x.shape[3]))
