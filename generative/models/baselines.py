"""Two non-neural baselines for the comparison of every generative model (``python -m generative compare``).

Both are densities of continuous images in ``[0, 1]^D`` fitted to the *dequantised* digits
(``y = (x + u) / L``, ``u ~ U[0, 1)``; ``generative.data.digits``, form ``continuous``), so their test
NLL is the same kind of number as a flow's: ``-log p(y) + D log L`` bounds the NLL of the discrete
17-level digits (Theis et al. 2016), reported in bits per dimension.

* :class:`GaussianMixtureBaseline` — a ``k``-component full-covariance Gaussian mixture fitted by EM
  (scikit-learn's ``GaussianMixture``; EM itself is not the subject of the notes). With 1257 training
  images and 2080 covariance entries per component, each covariance is regularised by ``reg_covar * I``.
* :class:`NoisyTrainingSet` — the training images plus Gaussian noise of standard deviation ``std``: as a
  density, the kernel density estimate ``p(y) = (1/N) sum_i N(y; x_i, std^2 I)``. Its samples are nearly
  copies of training images: excellent sample scores and a poor likelihood, the second failure case of
  notes §9 (a model that memorises the training set).

Samples are clipped to ``[0, 1]`` (the range of the images) and drawn from a ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["BaselineFit", "GaussianMixtureBaseline", "MixtureConfig", "NoiseConfig", "NoisyTrainingSet",
           "dequantised_nll"]


def dequantised_nll(log_density: Tensor, dims: int, levels: int) -> Tensor:  # [N] nats -> [N] nats
    """The discrete NLL bound ``-log p(y) + D log L`` of a continuous density on dequantised images."""
    return -log_density + dims * math.log(levels)


def _flat(images: Tensor | np.ndarray, name: str) -> Tensor:  # [N, C, H, W] -> [N, D] float64
    x = torch.as_tensor(np.asarray(images)).double()
    if x.ndim != 4 or len(x) < 2:
        raise ValueError(f"{name} must be [N >= 2, C, H, W] images, got shape {tuple(x.shape)}")
    return x.flatten(1)


@dataclass
class MixtureConfig:
    """A full-covariance Gaussian mixture."""

    components: int = 50
    """Number of mixture components ``k``."""
    reg_covar: float = 3e-3
    """Added to every covariance's diagonal (chosen on the validation NLL of the digits among 1e-3, 3e-3, 1e-2)."""
    seed: int = 0
    """Seed of the k-means initialisation of EM."""

    def __post_init__(self) -> None:
        if self.components < 1 or not self.reg_covar > 0:
            raise ValueError(f"components must be >= 1 and reg_covar > 0, got {self.components}, {self.reg_covar}")


class GaussianMixtureBaseline:
    """``p(y) = sum_k pi_k N(y; mu_k, Sigma_k)`` fitted by EM to ``[N, C, H, W]`` images in ``[0, 1]``."""

    def __init__(self, train: Tensor | np.ndarray, config: MixtureConfig | None = None) -> None:
        from sklearn.mixture import GaussianMixture

        self.config = config or MixtureConfig()
        x = _flat(train, "train")
        if len(x) < self.config.components:
            raise ValueError(f"train holds {len(x)} images, fewer than components={self.config.components}")
        self.image_shape = tuple(np.asarray(train).shape[1:])
        self.mixture = GaussianMixture(self.config.components, covariance_type="full", reg_covar=self.config.reg_covar,
                                       random_state=self.config.seed, max_iter=200).fit(x.numpy())
        self.parameters = self.config.components * (1 + x.shape[1] + x.shape[1] * (x.shape[1] + 1) // 2) - 1

    def log_prob(self, y: Tensor | np.ndarray) -> Tensor:  # [N, C, H, W] -> [N] nats
        return torch.from_numpy(self.mixture.score_samples(_flat(y, "y").numpy()))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:  # -> [n, C, H, W] float32 in [0, 1]
        """Component ``k ~ pi``, then ``mu_k + L_k eps`` (``L_k`` the Cholesky factor of ``Sigma_k``), clipped."""
        m = self.mixture
        k = torch.multinomial(torch.from_numpy(m.weights_), n, replacement=True, generator=generator)  # [n]
        eps = torch.randn(n, m.means_.shape[1], generator=generator, dtype=torch.float64)  # [n, D]
        chol = torch.linalg.cholesky(torch.from_numpy(m.covariances_))  # [K, D, D]
        y = torch.from_numpy(m.means_)[k] + (chol[k] @ eps[:, :, None])[:, :, 0]
        return y.clamp(0, 1).float().reshape(n, *self.image_shape)


@dataclass
class NoiseConfig:
    """The training set plus Gaussian noise (a kernel density estimate)."""

    std: float = 0.05
    """Noise (kernel) standard deviation in the units of images in [0, 1]; small: samples are near-copies."""

    def __post_init__(self) -> None:
        if not self.std > 0:
            raise ValueError(f"std must be > 0, got {self.std}")


class NoisyTrainingSet:
    """``p(y) = (1/N) sum_i N(y; x_i, std^2 I)`` over the ``N`` training images; a sample is ``x_i + std * eps``."""

    def __init__(self, train: Tensor | np.ndarray, config: NoiseConfig | None = None) -> None:
        self.config = config or NoiseConfig()
        self.x = _flat(train, "train")  # [N, D]
        self.image_shape = tuple(np.asarray(train).shape[1:])
        self.parameters = 0  # nothing is fitted: the training set itself is the model

    def log_prob(self, y: Tensor | np.ndarray, chunk: int = 256) -> Tensor:  # [M, C, H, W] -> [M] nats
        s, (n, d) = self.config.std, self.x.shape
        out = []
        for part in _flat(y, "y").split(chunk):
            d2 = torch.cdist(part, self.x).pow(2)  # [m, N]
            out.append(torch.logsumexp(-d2 / (2 * s * s), dim=1) - math.log(n) - 0.5 * d * math.log(2 * math.pi * s * s))
        return torch.cat(out)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:  # -> [n, C, H, W] float32 in [0, 1]
        index = torch.randint(0, len(self.x), (n,), generator=generator)
        eps = torch.randn(n, self.x.shape[1], generator=generator, dtype=torch.float64)
        return (self.x[index] + self.config.std * eps).clamp(0, 1).float().reshape(n, *self.image_shape)


class BaselineFit(NamedTuple):
    """A fitted baseline and its test NLL bound."""

    model: GaussianMixtureBaseline | NoisyTrainingSet
    test_nll: float  # nats per image: -log p(y) + D log L on the dequantised test images
    test_bits_per_dim: float
    seconds: float
