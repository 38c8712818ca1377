"""How good is a generative model of the digits (notes §5-10)? Likelihoods, sample quality, memorisation.

* Likelihood (notes §5, explicit models): :func:`nll_report` turns per-image negative log-likelihoods in
  nats into their mean, bits per dimension and standard error; :func:`evaluate_density` computes them in
  batches for an exact model (``ImageDensity``: NADE, MADE, PixelCNN, notes §7) or the two bounds of a
  latent model (``LatentDensity``: the ELBO and the importance-weighted bound :func:`iwae_bound` of
  Burda et al. 2016, notes §6.3).
* Sample quality: the Frechet digit distance (FDD), the FID of Heusel et al. (2017) with the
  penultimate-layer features of the notes-§2 digit classifier (``generative.digit_features``) in place of
  Inception's: two image sets as Gaussians ``N(mu, C)`` of their features, compared by the Frechet (2-
  Wasserstein) distance :func:`frechet_distance`. Samples are compared with reference images in the same
  form (binary samples with ``reference_images("binary")``).
* Memorisation: :func:`nearest_neighbour_distance` to the training images, summarised by
  :func:`overfitting_report` against the distances of real test images (samples much nearer to training
  images than unseen real images are = copies).

``python -m generative.metrics`` retrains the digit classifier and rewrites its shipped weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from generative.digit_features import (
    DIGIT_CLASSIFIER_PATH,
    digit_features,
    load_digit_classifier,
    reference_images,
    reference_labels,
    save_digit_classifier,
    train_digit_classifier,
)
from generative.models.base import ImageDensity, LatentDensity, bits_per_dim, check_images, log_mean_exp
from generative.nn.cnn import CNN
from generative.training import evaluating

__all__ = [
    "NLL", "LatentBounds", "Overfitting", "evaluate_density", "feature_statistics", "frechet_digit_distance",
    "frechet_distance", "iwae_bound", "nearest_neighbour_distance", "nll_report", "overfitting_report",
    "trace_sqrt_product",
]

ArrayLike = Tensor | np.ndarray


# --------------------------------------------------------------------------------------------- likelihood
class NLL(NamedTuple):
    """Mean negative log-likelihood per image."""

    nats: float  # mean NLL per image, in nats
    bits_per_dim: float  # nats / (dims * ln 2)
    stderr_nats: float  # standard error of the mean (sample std / sqrt(N)); nan for a single value


def nll_report(nll_nats_per_image: Tensor | float, dims: int | tuple[int, ...]) -> NLL:
    """Mean NLL (nats per image), in bits per dimension and with its standard error; ``dims`` is the
    number of dimensions of one image (64 for 8x8 digits) or its shape ``(C, H, W)``."""
    d = math.prod(dims) if isinstance(dims, tuple) else int(dims)
    if d < 1:
        raise ValueError(f"dims must be >= 1 (or a shape with positive sides), got {dims}")
    values = torch.as_tensor(nll_nats_per_image, dtype=torch.float64).flatten()  # [N]
    if values.numel() == 0:
        raise ValueError("nll_nats_per_image must hold at least one value, got an empty tensor")
    mean = float(values.mean())
    stderr = float(values.std(correction=1) / math.sqrt(values.numel())) if values.numel() > 1 else math.nan
    return NLL(mean, bits_per_dim(mean, d), stderr)


def iwae_bound(log_weights: Tensor) -> Tensor:  # [B, k] -> [B]
    """Importance-weighted bound ``log (1/k) sum_i w_i`` from ``log w_i = log p(x, z_i) - log q(z_i | x)``,
    ``z_i ~ q(z | x)`` (Burda et al. 2016; notes §6.3's ELBO is ``k = 1``); nats per image."""
    if log_weights.ndim != 2 or log_weights.shape[1] < 1:
        raise ValueError(f"log_weights must be [B, k] with k >= 1, got {tuple(log_weights.shape)}")
    return log_mean_exp(log_weights, dim=1)


class LatentBounds(NamedTuple):
    """Per-image lower bounds on ``log p(x)`` of a latent model, in nats."""

    elbo: Tensor  # [N] one-sample ELBO
    iwae: Tensor | None  # [N] importance-weighted bound with k samples; None when k was not given


@torch.no_grad()
def evaluate_density(model: ImageDensity | LatentDensity, x: Tensor, batch_size: int = 256, k: int | None = None,
                     generator: torch.Generator | None = None) -> Tensor | LatentBounds:
    """Per image, in batches, in evaluation mode without gradients: the exact NLL ``-log p(x)`` ``[N]`` of an
    ``ImageDensity`` (``k`` and ``generator`` unused), or the ``LatentBounds`` (ELBO, IWAE with ``k``
    samples) of a ``LatentDensity``, their ``z`` drawn from ``generator``. ``x`` is ``[N, *image_shape]``
    data in the model's form; results are on the CPU."""
    if not isinstance(model, (ImageDensity, LatentDensity)):
        raise TypeError(f"model must be an ImageDensity or a LatentDensity, got {type(model).__name__}")
    check_images(x, model.image_shape, model.levels, "x")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1 or None, got {k}")
    device = next(iter(model.parameters()), x).device
    nll, elbo, iwae = [], [], []
    with evaluating(model):
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size].to(device)  # [b, C, H, W]
            if isinstance(model, ImageDensity):
                nll.append(-model.log_prob(batch).cpu())
            else:
                elbo.append(model.elbo(batch, generator=generator).cpu())
                if k is not None:
                    iwae.append(model.iwae(batch, k, generator=generator).cpu())
    empty = torch.zeros(0)
    if isinstance(model, ImageDensity):
        return torch.cat(nll) if nll else empty
    return LatentBounds(torch.cat(elbo) if elbo else empty,
                        (torch.cat(iwae) if iwae else empty) if k is not None else None)


# ------------------------------------------------------------------------------ Frechet digit distance
def _float64(value: ArrayLike, name: str, ndim: int) -> Tensor:
    tensor = torch.as_tensor(value).detach().to("cpu", torch.float64)
    if tensor.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(tensor.shape)}")
    return tensor


def _symmetric_sqrt(C: Tensor) -> Tensor:  # [F, F] symmetric PSD -> [F, F]
    """``C^(1/2)`` of a symmetric positive semi-definite matrix by its eigen-decomposition (round-off
    negative eigenvalues clamped to 0)."""
    eigenvalues, Q = torch.linalg.eigh((C + C.T) / 2)
    return (Q * eigenvalues.clamp(min=0.0).sqrt()) @ Q.T


def trace_sqrt_product(C1: ArrayLike, C2: ArrayLike) -> float:
    """``tr((C1 C2)^(1/2))`` for symmetric PSD ``C1, C2`` ``[F, F]``, through the symmetric form:
    ``C1 C2 = C1^(1/2) (C1^(1/2) C2 C1^(1/2)) C1^(-1/2)`` is similar to the PSD ``M = C1^(1/2) C2 C1^(1/2)``,
    so the two have the same eigenvalues and the trace is ``sum_j sqrt(lambda_j(M))``. Real by
    construction (``scipy.linalg.sqrtm(C1 @ C2)`` gets there with tiny imaginary round-off instead)."""
    S1 = _symmetric_sqrt(_float64(C1, "C1", 2))
    M = S1 @ _float64(C2, "C2", 2) @ S1
    return float(torch.linalg.eigvalsh((M + M.T) / 2).clamp(min=0.0).sqrt().sum())


def frechet_distance(mu1: ArrayLike, cov1: ArrayLike, mu2: ArrayLike, cov2: ArrayLike) -> float:
    """Squared Frechet (2-Wasserstein) distance of ``N(mu1, C1)`` and ``N(mu2, C2)`` (Dowson and Landau 1982;
    the FID of Heusel et al. 2017): ``||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2))``, in float64 (torch's
    linear algebra, so it keeps to ``torch.set_num_threads``). ``mu``: ``[F]``, ``cov``: ``[F, F]``
    symmetric positive semi-definite; tensors or numpy arrays."""
    m1, m2 = _float64(mu1, "mu1", 1), _float64(mu2, "mu2", 1)
    C1, C2 = _float64(cov1, "cov1", 2), _float64(cov2, "cov2", 2)
    F = m1.shape[0]
    if m2.shape != (F,) or C1.shape != (F, F) or C2.shape != (F, F):
        raise ValueError(f"need mu1, mu2 [F] and cov1, cov2 [F, F] with one F, got {tuple(m1.shape)}, "
                         f"{tuple(m2.shape)}, {tuple(C1.shape)}, {tuple(C2.shape)}")
    diff = m1 - m2
    value = float(diff @ diff + C1.trace() + C2.trace()) - 2.0 * trace_sqrt_product(C1, C2)
    return max(value, 0.0)  # a squared distance; clamps round-off below 0


def feature_statistics(features: ArrayLike) -> tuple[Tensor, Tensor]:  # [N, F] -> [F], [F, F] float64
    """Mean and unbiased covariance (float64) of ``N >= 2`` feature vectors."""
    f = _float64(features, "features", 2)
    if f.shape[0] < 2:
        raise ValueError(f"features must hold at least 2 rows for a covariance, got {tuple(f.shape)}")
    return f.mean(dim=0), torch.cov(f.T, correction=1)


def frechet_digit_distance(samples: Tensor, reference: Tensor, levels: int | None = None,
                           classifier: CNN | None = None) -> float:
    """FDD of two sets of 8x8 digits ``[N, 1, 8, 8]``: the Frechet distance of the Gaussians fitted to their
    digit-classifier features (``generative.digit_features``). Pass ``reference`` in the samples' form:
    binary samples with binary digits (``reference_images("binary")``), float with float, int64 grey levels
    with grey levels (then ``levels``, 17 for the digits). 0 for identical sets; larger is worse."""
    mu1, cov1 = feature_statistics(digit_features(samples, levels, classifier))
    mu2, cov2 = feature_statistics(digit_features(reference, levels, classifier))
    return frechet_distance(mu1, cov1, mu2, cov2)


# --------------------------------------------------------------------------------------------- memorisation
def _is_binary(x: Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def nearest_neighbour_distance(samples: Tensor, train: Tensor, metric: Literal["auto", "euclidean", "hamming"] = "auto",
                               chunk: int = 256) -> Tensor:  # samples [N, ...], train [M, ...] -> [N] float64
    """Distance of every sample to its nearest training image, in the units of the data: Euclidean, or
    Hamming (pixels that differ) for binary images (``auto``: Hamming when both sets hold only 0 and 1).
    Exact (no ``||a||^2 + ||b||^2 - 2ab`` cancellation), so a copy of a training image is at 0."""
    if samples.ndim < 2 or train.ndim < 2 or samples.shape[1:] != train.shape[1:] or len(train) == 0:
        raise ValueError(f"samples [N, ...] and train [M >= 1, ...] need one image shape, got "
                         f"{tuple(samples.shape)} and {tuple(train.shape)}")
    if metric not in ("auto", "euclidean", "hamming"):
        raise ValueError(f"metric must be 'auto', 'euclidean' or 'hamming', got {metric!r}")
    a = samples.detach().cpu().flatten(1).double()  # [N, D]
    b = train.detach().cpu().flatten(1).double()  # [M, D]
    if metric == "auto":
        metric = "hamming" if _is_binary(a) and _is_binary(b) else "euclidean"
    if metric == "hamming" and not (_is_binary(a) and _is_binary(b)):
        raise ValueError("metric='hamming' needs binary samples and train images (only 0 and 1)")
    out = []
    for start in range(0, len(a), chunk):
        d = torch.cdist(a[start:start + chunk], b, compute_mode="donot_use_mm_for_euclid_dist")  # [n, M]
        out.append(d.square().round() if metric == "hamming" else d)  # binary: squared distance = pixels differing
    return torch.cat(out).min(dim=1).values if out else a.new_zeros(0)


class Overfitting(NamedTuple):
    """Nearest-training-neighbour distances of samples against those of real unseen (test) images."""

    sample_distance: float  # mean distance of a sample to its nearest training image
    test_distance: float  # mean distance of a test image to its nearest training image
    ratio: float  # sample_distance / test_distance: about 1 = as novel as real data, << 1 = memorised
    sample_copies: float  # fraction of samples that equal a training image
    test_copies: float  # fraction of test images that equal a training image (duplicates in the data)


def overfitting_report(samples: Tensor, train: Tensor, test: Tensor,
                       metric: Literal["auto", "euclidean", "hamming"] = "auto") -> Overfitting:
    """Are the samples copies of training images? Compare their mean nearest-training-neighbour distance
    with that of real test images (the same metric for both; ``auto`` picks Hamming only if all three
    sets are binary): samples much nearer to the training set than unseen real images are memorised."""
    if metric == "auto":
        metric = "hamming" if _is_binary(samples) and _is_binary(train) and _is_binary(test) else "euclidean"
    d_samples = nearest_neighbour_distance(samples, train, metric)  # [N]
    d_test = nearest_neighbour_distance(test, train, metric)  # [T]
    if len(d_samples) == 0 or len(d_test) == 0:
        raise ValueError(f"samples and test must be non-empty, got {len(samples)} and {len(test)} images")
    s, t = float(d_samples.mean()), float(d_test.mean())
    ratio = s / t if t > 0 else (math.inf if s > 0 else 1.0)
    return Overfitting(s, t, ratio, float((d_samples == 0).double().mean()), float((d_test == 0).double().mean()))


# ------------------------------------------------------------------------- rebuilding the shipped classifier
@dataclass
class ClassifierBuild:
    """Retrain the digit classifier of the Frechet digit distance and write its weights."""

    out: Path = DIGIT_CLASSIFIER_PATH
    """Where to write the weights (the shipped file by default)."""
    seed: int = 0
    """Seed of the initialisation and of the batches."""
    steps: int = 1500
    """Adam steps (batch 64)."""
    json: bool = False
    """Print the report as one JSON line."""


def build_classifier(build: ClassifierBuild) -> dict[str, float | str]:
    """Train (:func:`~generative.digit_features.train_digit_classifier`), write, reload, and measure:
    test accuracy, FDD test-vs-train (binary and float forms), real-vs-noise, and the time of one FDD."""
    from generative.tasks.classification import accuracy

    start = time.perf_counter()
    model = train_digit_classifier(build.seed, build.steps)
    seconds = time.perf_counter() - start
    test_accuracy = accuracy(model, reference_images("float", "test"), reference_labels("test"))
    save_digit_classifier(model, build.out, test_accuracy=test_accuracy, seed=build.seed, steps=build.steps)
    model = load_digit_classifier(build.out)
    report: dict[str, float | str] = {"file": str(build.out), "train_seconds": seconds, "test_accuracy": test_accuracy}
    for form in ("binary", "float"):
        train, test = reference_images(form, "train"), reference_images(form, "test")
        report[f"fdd_test_vs_train_{form}"] = frechet_digit_distance(test, train, classifier=model)
    train = reference_images("float", "train")
    noise = torch.rand(1000, *train.shape[1:], generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    report["fdd_noise_vs_train"] = frechet_digit_distance(noise, train, classifier=model)
    report["fdd_seconds_1000_samples"] = time.perf_counter() - start
    report["fdd_zeros_vs_train_binary"] = frechet_digit_distance(
        torch.zeros(360, *train.shape[1:]), reference_images("binary", "train"), classifier=model)
    return report


def main(argv: list[str] | None = None) -> int:
    import tyro

    from envs.io.cli import report

    build = tyro.cli(ClassifierBuild, args=argv, prog="python -m generative.metrics")
    torch.set_num_threads(1)
    report(build_classifier(build), build.json)
    return 0


if __name__ == "__main__":
    from envs.io.cli import run_main

    run_main(main)
