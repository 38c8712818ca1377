"""Networks chosen from the observation space (notes §1-2, §11.3).

* ``Discrete(n)`` observations are one-hot encoded inside the network;
* vectors (``Box`` of floats) go straight into an MLP;
* ``uint8`` images, channel-last ``[H, W, C]`` (or frame-stacked ``[k, H, W, C]``), are scaled to
  ``[0, 1]`` and moved to channel-first inside the network, then encoded by a small CNN.

Observations are handed to the network as they come from the environment (:func:`as_tensor`), so the
replay buffer can keep images as ``uint8``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn


def is_image_space(space: gym.Space) -> bool:
    """A ``uint8`` Box of shape ``[H, W, C]`` or frame-stacked ``[k, H, W, C]`` with ``C`` in 1..4."""
    return (
        isinstance(space, gym.spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) in (3, 4)
        and space.shape[-1] in (1, 3, 4)
    )


def check_observation_space(space: gym.Space) -> None:
    """Raise ``ValueError`` unless the deep agents can read observations from ``space``."""
    if isinstance(space, gym.spaces.Discrete) or is_image_space(space):
        return
    if isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.floating):
        return
    raise ValueError(
        f"deep agents read Discrete, float Box or uint8 image (H, W, C) observations, got {space}"
    )


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between them (not after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class OneHot(nn.Module):
    """Integer states ``[B]`` -> one-hot float ``[B, n]``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(x.long().reshape(-1), self.n).float()


class ImageEncoder(nn.Module):
    """``uint8 [B, (k,) H, W, C]`` -> features ``[B, F]``: scale to [0, 1], channel-first, three convolutions.

    The kernel sizes follow DQN's Atari network, shrunk to 3x3 (first stride 2) for images below 64 pixels.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        *stack, height, width, channels = shape
        in_channels = channels * (stack[0] if stack else 1)
        small = min(height, width) < 64
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3 if small else 8, stride=2 if small else 4), nn.ReLU(),
            nn.Conv2d(32, 64, 3 if small else 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            self.out_features = int(self.conv(torch.zeros(1, in_channels, height, width)).shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0
        if x.ndim == 5:  # frame-stacked [B, k, H, W, C] -> [B, H, W, k*C]
            b, k, h, w, c = x.shape
            x = x.permute(0, 2, 3, 1, 4).reshape(b, h, w, k * c)
        return self.conv(x.permute(0, 3, 1, 2))


def make_encoder(space: gym.Space) -> tuple[nn.Module, int]:
    """The input part of a network for observations from ``space`` and its feature size."""
    check_observation_space(space)
    if isinstance(space, gym.spaces.Discrete):
        return OneHot(int(space.n)), int(space.n)
    if is_image_space(space):
        encoder = ImageEncoder(space.shape)
        return encoder, encoder.out_features
    return nn.Flatten(), int(np.prod(space.shape))


class Network(nn.Module):
    """Encoder for ``observation_space`` followed by an MLP with ``hidden`` layers and ``n_out`` outputs."""

    def __init__(self, observation_space: gym.Space, n_out: int, hidden: Sequence[int] = (64, 64),
                 activation: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.encoder, features = make_encoder(observation_space)
        self.head = mlp([features, *hidden, n_out], activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(obs))


def as_tensor(obs: Any, space: gym.Space, device: torch.device | str = "cpu") -> torch.Tensor:
    """A batch of observations ``[B, ...]`` as a tensor of the dtype the network expects (images stay uint8)."""
    array = np.asarray(obs)
    if isinstance(space, gym.spaces.Discrete):
        return torch.as_tensor(array, dtype=torch.long, device=device)
    if is_image_space(space):
        return torch.as_tensor(array, dtype=torch.uint8, device=device)
    return torch.as_tensor(array, dtype=torch.float32, device=device)
