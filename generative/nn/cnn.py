"""A small convolutional classifier (notes §2.2, Figure 2.2): convolution, ReLU and max-pool blocks, then a
dense layer.

Each block is ``conv(k x k, zero padding k // 2) -> ReLU -> max-pool 2x2``: the convolution keeps the
size, the pooling halves it (rounding down), so the receptive field grows while the maps shrink. The
flattened size is computed from ``image_size`` (8x8 digits: 8 -> 4 -> 2; MNIST: 28 -> 14 -> 7), so the
same class serves both. With ``hand_written=True`` the convolutions and poolings are the layers of
``generative.nn.conv`` with their hand-written backward passes instead of torch's.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from generative.nn.conv import Conv2d, MaxPool2d


def feature_size(image_size: tuple[int, int], blocks: int) -> tuple[int, int]:
    """Spatial size after ``blocks`` size-preserving convolutions each followed by a 2x2 max-pool."""
    h, w = image_size
    for _ in range(blocks):
        h, w = h // 2, w // 2
    return h, w


class CNN(nn.Module):
    """``[conv -> ReLU -> max-pool] x len(channels) -> flatten -> (dense -> ReLU) -> dense`` to ``n_classes`` logits."""

    def __init__(
        self,
        image_size: tuple[int, int] = (8, 8),
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        hidden: int = 128,
        n_classes: int = 10,
        dropout: float = 0.0,
        hand_written: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1 or kernel_size < 1:
            raise ValueError(f"kernel_size must be odd (size-preserving padding k // 2), got {kernel_size}")
        if not channels or min(channels) < 1 or in_channels < 1 or n_classes < 2 or hidden < 0:
            raise ValueError(
                f"need channels >= 1, in_channels >= 1, n_classes >= 2, hidden >= 0, got {list(channels)}, "
                f"{in_channels}, {n_classes}, {hidden}"
            )
        h, w = feature_size(image_size, len(channels))
        if h < 1 or w < 1:
            raise ValueError(f"image_size {tuple(image_size)} is too small for {len(channels)} 2x2 poolings")
        self.image_shape = (in_channels, *image_size)
        blocks: list[nn.Module] = []
        c_in = in_channels
        for c_out in channels:
            if hand_written:
                blocks += [Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2), nn.ReLU(), MaxPool2d(2)]
            else:
                blocks += [nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        flat = c_in * h * w
        head: list[nn.Module] = [nn.Flatten()]
        if hidden > 0:
            head += [nn.Dropout(dropout), nn.Linear(flat, hidden), nn.ReLU()]
            flat = hidden
        head += [nn.Dropout(dropout), nn.Linear(flat, n_classes)]
        self.head = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:  # x: [B, C, H, W] -> [B, n_classes]
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"x must be [B, {', '.join(map(str, self.image_shape))}], got {tuple(x.shape)}")
        return self.head(self.features(x))
