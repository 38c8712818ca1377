"""Autoencoders (notes §6.1-6.2): linear (PCA), MLP under- and overcomplete, denoising and inpainting.

An encoder ``f: X -> Z`` and a decoder ``g: Z -> X`` trained so that ``g(f(x)) ~ x``, i.e. on the
reconstruction error ``sum_n ||x_n - g(f(x_n))||^2`` (notes §6.2; :func:`reconstruction_error`).
Notes slip: they call autoencoders explicit generative models, but a plain autoencoder defines no density
``p(x)`` and no way to sample; the VAE (``generative.models.vae``, notes §6.3) is the one that does.

* :class:`LinearAutoencoder` — ``f(x) = A x + a``, ``g(z) = B z + b`` (notes §6.1). At the minimum of the
  squared error, ``B`` spans the top-``k`` principal subspace of the data and the mean error per image is
  the sum of the discarded eigenvalues of the (``1/N``) covariance (Baldi & Hornik 1989); :func:`pca`
  gives that closed form and :func:`principal_angles` compares subspaces.
* :class:`Autoencoder` — MLP encoder and decoder (sigmoid output, pixels in ``[0, 1]``); ``latent``
  below the input size is undercomplete, above it overcomplete (notes §6.2).
* Corruptions for the denoising (Vincent et al. 2008) and inpainting autoencoders: the network sees
  :func:`add_noise` or :func:`mask_pixels` of ``x`` and the loss compares its output with the clean ``x``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from generative.nn.mlp import Activation

__all__ = [
    "Autoencoder", "LinearAutoencoder", "add_noise", "mask_pixels", "mlp", "pca", "principal_angles",
    "reconstruction_error",
]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


# --- the closed form of §6.1 -----------------------------------------------------------------------------


def pca(x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:  # x: [N, D] -> mean [D], components [D, k], eig [D]
    """Principal component analysis by eigen-decomposition of the covariance ``(1/N) sum_n (x_n - m)(x_n - m)^T``.

    Returns the mean ``[D]``, the top-``k`` eigenvectors as orthonormal columns ``[D, k]`` and *all*
    ``D`` eigenvalues in decreasing order (``eigenvalues[k:].sum()`` is the optimal reconstruction error).
    """
    if x.ndim != 2:
        raise ValueError(f"x must be [N, D], got {tuple(x.shape)}")
    if not 1 <= k <= x.shape[1]:
        raise ValueError(f"k must lie in 1..{x.shape[1]}, got {k}")
    mean = x.mean(0)  # [D]
    centred = x - mean  # [N, D]
    covariance = centred.T @ centred / x.shape[0]  # [D, D]
    eigenvalues, vectors = torch.linalg.eigh(covariance)  # ascending
    eigenvalues, vectors = eigenvalues.flip(0), vectors.flip(1)
    return mean, vectors[:, :k], eigenvalues.clamp_min(0.0)


def principal_angles(A: Tensor, B: Tensor) -> Tensor:  # A: [D, k], B: [D, m] -> [min(k, m)] radians, ascending
    """Principal angles between the column spaces of ``A`` and ``B`` (Bjoerck & Golub 1973).

    Orthonormal bases ``Q_A, Q_B`` by SVD; the cosines are the singular values of ``Q_A^T Q_B`` and the
    sines those of ``(I - Q_B Q_B^T) Q_A`` (smaller space first); ``atan2(sin, cos)`` keeps small angles
    accurate where ``arccos`` of a cosine near 1 would lose half the digits (Knyazev & Argentati 2002).
    """
    if A.ndim != 2 or B.ndim != 2 or A.shape[0] != B.shape[0]:
        raise ValueError(f"A and B must be [D, k] and [D, m] with the same D, got {tuple(A.shape)} and {tuple(B.shape)}")
    Q_A, Q_B = _orthonormal_basis(A), _orthonormal_basis(B)
    if Q_A.shape[1] > Q_B.shape[1]:
        Q_A, Q_B = Q_B, Q_A
    cos = torch.linalg.svdvals(Q_A.T @ Q_B)  # [k] descending
    sin = torch.linalg.svdvals(Q_A - Q_B @ (Q_B.T @ Q_A)).flip(0)  # [k] ascending
    return torch.atan2(sin, cos.clamp(max=1.0))


def _orthonormal_basis(M: Tensor) -> Tensor:  # [D, k] -> [D, rank]
    U, s, _ = torch.linalg.svd(M, full_matrices=False)
    rank = int((s > s.max() * max(M.shape) * torch.finfo(M.dtype).eps).sum())
    if rank == 0:
        raise ValueError(f"matrix of shape {tuple(M.shape)} has rank 0: it spans no subspace")
    return U[:, :rank]


def reconstruction_error(x: Tensor, x_hat: Tensor) -> Tensor:  # [B, ...] twice -> [B]
    """Squared error ``||x - x_hat||^2`` per image, summed over the pixels (notes §6.2)."""
    if x.shape != x_hat.shape:
        raise ValueError(f"x_hat must have x's shape {tuple(x.shape)}, got {tuple(x_hat.shape)}")
    return (x - x_hat).pow(2).flatten(1).sum(1)


# --- corruptions ----------------------------------------------------------------------------------------


def add_noise(x: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:  # [B, ...] -> same
    """``x + std * eps``, ``eps ~ N(0, I)`` from ``generator`` (the denoising autoencoder's input; not clipped)."""
    if std < 0 or not math.isfinite(std):
        raise ValueError(f"std must be a finite number >= 0, got {std}")
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + std * eps


def mask_pixels(x: Tensor, fraction: float | None = None, square: int | None = None,  # x: [B, C, H, W]
                generator: torch.Generator | None = None, fill: float = 0.0) -> tuple[Tensor, Tensor]:
    """The inpainting autoencoder's input: ``x`` with pixels set to ``fill``, and the mask ``[B, 1, H, W]``
    (1 kept, 0 masked). Give exactly one of ``fraction`` (each pixel hidden independently with that
    probability) or ``square`` (one ``square x square`` patch per image at a uniform position)."""
    if x.ndim != 4:
        raise ValueError(f"x must be [B, C, H, W], got {tuple(x.shape)}")
    if (fraction is None) == (square is None):
        raise ValueError(f"give exactly one of fraction and square, got fraction={fraction}, square={square}")
    B, _, H, W = x.shape
    if fraction is not None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
        u = torch.rand((B, 1, H, W), generator=generator, device=x.device)
        keep = (u >= fraction).to(x.dtype)
    else:
        assert square is not None
        if not 1 <= square <= min(H, W):
            raise ValueError(f"square must lie in 1..{min(H, W)} for {H}x{W} images, got {square}")
        top = torch.randint(0, H - square + 1, (B,), generator=generator).to(x.device)
        left = torch.randint(0, W - square + 1, (B,), generator=generator).to(x.device)
        rows = torch.arange(H, device=x.device)[None, :, None]  # [1, H, 1]
        cols = torch.arange(W, device=x.device)[None, None, :]  # [1, 1, W]
        inside = ((rows >= top[:, None, None]) & (rows < (top + square)[:, None, None])
                  & (cols >= left[:, None, None]) & (cols < (left + square)[:, None, None]))  # [B, H, W]
        keep = (~inside).to(x.dtype)[:, None]
    return x * keep + fill * (1 - keep), keep


# --- models ---------------------------------------------------------------------------------------------


def mlp(widths: Sequence[int], activation: Activation = "relu", dropout: float = 0.0) -> nn.Sequential:
    """Linear layers ``widths[0] -> ... -> widths[-1]`` with ``activation`` (and dropout) between them, not after
    the last (``generative.nn.mlp.MLP`` with dropout, which the small generative models need on 1257 images)."""
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"widths must list at least two positive sizes, got {list(widths)}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {activation!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class LinearAutoencoder(nn.Module):
    """``f(x) = A x + a`` (``A: [k, D]``), ``g(z) = B z + b`` (``B: [D, k]``) on flattened images (notes §6.1)."""

    def __init__(self, image_shape: tuple[int, int, int], k: int) -> None:
        super().__init__()
        D = math.prod(image_shape)
        if not 1 <= k <= D:
            raise ValueError(f"k must lie in 1..{D} for images {image_shape}, got {k}")
        self.image_shape, self.k = tuple(image_shape), k
        self.encoder = nn.Linear(D, k)  # weight A [k, D], bias a [k]
        self.decoder = nn.Linear(k, D)  # weight B [D, k], bias b [D]

    @property
    def B(self) -> Tensor:  # [D, k]
        """The decoder's matrix; at the optimum its columns span the top-``k`` principal subspace."""
        return self.decoder.weight

    @classmethod
    def from_pca(cls, mean: Tensor, components: Tensor, image_shape: tuple[int, int, int]) -> LinearAutoencoder:
        """The closed-form optimum: ``A = U^T``, ``a = -U^T m``, ``B = U``, ``b = m`` (``U = components [D, k]``)."""
        if components.ndim != 2 or mean.shape != components.shape[:1]:
            raise ValueError(f"mean must be [D] and components [D, k], got {tuple(mean.shape)}, {tuple(components.shape)}")
        model = cls(image_shape, components.shape[1]).to(components.dtype)
        with torch.no_grad():
            model.encoder.weight.copy_(components.T)
            model.encoder.bias.copy_(-components.T @ mean)
            model.decoder.weight.copy_(components)
            model.decoder.bias.copy_(mean)
        return model

    def encode(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, k]
        return self.encoder(_flat(x, self.image_shape))

    def decode(self, z: Tensor) -> Tensor:  # [B, k] -> [B, C, H, W]
        return self.decoder(z).reshape(-1, *self.image_shape)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, C, H, W]
        return self.decode(self.encode(x))


def fit_linear_autoencoder(x: Tensor, k: int, steps: int = 1000, lr: float = 0.05, seed: int = 0) -> LinearAutoencoder:
    """The experiment of notes §6.1 (Baldi & Hornik 1989): a :class:`LinearAutoencoder` fitted to the images
    ``x [N, C, H, W]`` by full-batch gradient descent on the mean squared error (Adam, learning rate decayed
    linearly to 0.2% of ``lr``, in ``x``'s dtype; float64 for tight results). It learns the biases too, so the
    data need no centring; at the minimum its decoder spans the top-``k`` principal subspace and its error is the
    sum of the discarded eigenvalues."""
    if x.ndim != 4 or steps < 1 or not lr > 0:
        raise ValueError(f"need x [N, C, H, W], steps >= 1 and lr > 0, got {tuple(x.shape)}, {steps}, {lr}")
    torch.manual_seed(seed)
    model = LinearAutoencoder(tuple(x.shape[1:]), k).to(x.dtype)  # type: ignore[arg-type]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1 - i / steps + 0.002)
    for _ in range(steps):
        loss = reconstruction_error(x, model(x)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model


class Autoencoder(nn.Module):
    """MLP encoder ``D -> hidden -> latent`` and mirrored decoder ``latent -> reversed(hidden) -> D`` with a
    sigmoid output (notes §6.2); undercomplete for ``latent < D``, overcomplete for ``latent > D``."""

    def __init__(self, image_shape: tuple[int, int, int], latent: int, hidden: Sequence[int] = (256,),
                 activation: Activation = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        if latent < 1:
            raise ValueError(f"latent must be >= 1, got {latent}")
        D = math.prod(image_shape)
        self.image_shape, self.latent = tuple(image_shape), latent
        self.encoder = mlp([D, *hidden, latent], activation, dropout)
        self.decoder = mlp([latent, *reversed(hidden), D], activation, dropout)

    @property
    def overcomplete(self) -> bool:
        """``dim Z > dim X`` (notes §6.2)."""
        return self.latent > math.prod(self.image_shape)

    def encode(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, latent]
        return self.encoder(_flat(x, self.image_shape))

    def decode(self, z: Tensor) -> Tensor:  # [B, latent] -> [B, C, H, W] in (0, 1)
        return torch.sigmoid(self.decoder(z)).reshape(-1, *self.image_shape)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, C, H, W]
        return self.decode(self.encode(x))


def _flat(x: Tensor, image_shape: tuple[int, ...]) -> Tensor:  # [B, *image_shape] -> [B, D]
    if tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(f"x must be [B, {', '.join(map(str, image_shape))}], got {tuple(x.shape)}")
    return x.flatten(1)
