"""Exhaustive checks of a discrete image density on tiny images (notes §7): every image is enumerated, so
normalisation (``sum_x p(x) = 1``) and sampling (frequencies against ``p(x)``) can be checked exactly.

Images are in the data's form of :mod:`generative.models.base` (float ``{0, 1}`` for ``levels == 2``, int64
``0 .. levels - 1`` otherwise). :func:`all_images` lists the ``levels ** n`` images of a shape in one fixed
order, the first pixel (raster order, channels outermost) varying slowest, so that row ``k`` is the image
whose pixels are the base-``levels`` digits of ``k``; :func:`image_index` is its inverse. Distributions over
the images (:func:`probabilities`, :func:`image_frequencies`, :func:`sample_frequencies`, the ``target`` of
:func:`fit_distribution`) are float64 vectors ``[levels ** n]`` in that order.
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
from torch import Tensor, nn

from generative.models.base import ImageDensity

__all__ = [
    "MAX_IMAGES", "all_images", "fit_distribution", "image_frequencies", "image_index", "probabilities", "randomised",
    "sample_frequencies",
]

MAX_IMAGES = 2**20
"""The most images :func:`all_images` enumerates (``levels ** n``): exhaustive checks are for tiny images."""

M = TypeVar("M", bound=nn.Module)
D = TypeVar("D", bound=ImageDensity)


def _image_count(image_shape: tuple[int, ...], levels: int) -> int:
    """``levels ** n`` for ``n`` pixels, after checking that it is small enough to enumerate."""
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    n = math.prod(image_shape)
    if n < 1 or levels**n > MAX_IMAGES:
        raise ValueError(f"image_shape {tuple(image_shape)} with {levels} levels must have 1 to {MAX_IMAGES} images, "
                         f"got {levels}^{n}")
    return levels**n


def all_images(image_shape: tuple[int, int, int], levels: int) -> Tensor:  # -> [levels ** n, C, H, W]
    """Every image of ``image_shape`` with ``levels`` levels, in the data's form; row ``k`` holds the base-``levels``
    digits of ``k``, most significant first (the order of ``itertools.product(range(levels), repeat=n)``)."""
    count, n = _image_count(image_shape, levels), math.prod(image_shape)
    index = torch.arange(count)  # [N]
    digits = torch.stack([(index // levels ** (n - 1 - i)) % levels for i in range(n)], dim=1)  # [N, n]
    images = digits.reshape(-1, *image_shape)
    return images.float() if levels == 2 else images


def image_index(x: Tensor, levels: int) -> Tensor:  # [B, C, H, W] -> [B] int64
    """Row of each image of ``x`` in :func:`all_images` (its pixels read as a base-``levels`` number)."""
    if x.ndim < 2:
        raise ValueError(f"x must be [B, C, H, W] images, got shape {tuple(x.shape)}")
    _image_count(tuple(x.shape[1:]), levels)
    digits = x.flatten(1)  # [B, n]
    if digits.numel() and (digits.min() < 0 or digits.max() > levels - 1 or (digits != digits.round()).any()):
        raise ValueError(f"x must hold whole pixel values in 0..{levels - 1} for levels={levels}")
    n = digits.shape[1]
    weights = levels ** torch.arange(n - 1, -1, -1, device=x.device)  # [n]: most significant first
    return (digits.long() * weights).sum(1)


def image_frequencies(x: Tensor, levels: int) -> Tensor:  # [B, C, H, W] -> [levels ** n] float64
    """Empirical distribution of the images ``x``: the fraction of them equal to each image of :func:`all_images`."""
    if x.shape[0] < 1:
        raise ValueError(f"x must hold at least one image, got shape {tuple(x.shape)}")
    counts = torch.bincount(image_index(x, levels), minlength=_image_count(tuple(x.shape[1:]), levels))
    return counts.double() / x.shape[0]


def _dtype_and_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """Float dtype and device of the model's first parameter (float32 on the CPU without parameters)."""
    parameter = next(model.parameters(), None)
    if parameter is None or not parameter.is_floating_point():
        return torch.float32, torch.device("cpu")
    return parameter.dtype, parameter.device


def probabilities(model: ImageDensity) -> Tensor:  # -> [levels ** n] float64
    """``p(x) = exp(log_prob(x))`` of every image of :func:`all_images`, in float64, with the model in ``eval()``
    mode (its mode is restored); binary images are given in the model's float dtype."""
    dtype, device = _dtype_and_device(model)
    x = all_images(model.image_shape, model.levels).to(device)
    x = x.to(dtype) if model.levels == 2 else x
    training = model.training
    try:
        with torch.no_grad():
            return model.eval().log_prob(x).double().exp()
    finally:
        model.train(training)


def sample_frequencies(model: ImageDensity, n: int, generator: torch.Generator | None = None) -> Tensor:
    """How often each image of :func:`all_images` is among ``n`` samples of the model (``eval()`` mode, restored
    after): ``[levels ** n_pixels]`` float64, summing to 1; compare with :func:`probabilities`."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    training = model.training
    try:
        with torch.no_grad():
            samples = model.eval().sample(n, generator)  # [n, C, H, W]
    finally:
        model.train(training)
    return image_frequencies(samples, model.levels).cpu()


def randomised(model: M, seed: int = 0, scale: float = 1.0) -> M:
    """``model`` with every parameter redrawn from ``N(0, scale^2)`` (a generator seeded with ``seed``, drawn on
    the CPU): far from a uniform distribution, so exact checks on tiny images have teeth."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.empty(p.shape, dtype=p.dtype).normal_(0.0, scale, generator=generator))
    return model


def fit_distribution(model: D, target: Tensor, steps: int, lr: float) -> D:
    """Full-batch Adam on the exact expected loss ``sum_x target(x) loss(x)`` over every image of :func:`all_images`.

    ``target``: ``[levels ** n]``, a distribution over the images (e.g. :func:`image_frequencies` of data, when this
    is the mean loss on that data). ``sum_x target(x) (-log p(x)) = H(target) + KL(target || p)``, so a model
    that can represent ``target`` drives the KL to 0. The model keeps its mode; ``loss`` is called without a
    generator. A few hundred steps on a tiny image for a check: runs, schedules and checkpoints are
    :func:`generative.training.fit`'s job.
    """
    dtype, device = _dtype_and_device(model)
    x = all_images(model.image_shape, model.levels).to(device)  # [N, C, H, W]
    x = x.to(dtype) if model.levels == 2 else x
    if target.shape != (len(x),):
        raise ValueError(f"target must be [{len(x)}] (one probability per image), got {tuple(target.shape)}")
    if steps < 1 or not lr > 0:
        raise ValueError(f"steps must be >= 1 and lr > 0, got steps={steps}, lr={lr}")
    weights = target.to(device=device, dtype=dtype)  # [N]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = (weights * model.loss(x)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model
