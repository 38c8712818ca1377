"""The 8x8 handwritten digits that ship with scikit-learn, split once for the whole project (notes §2).

``sklearn.datasets.load_digits`` holds 1797 images of 8x8 pixels with integer intensities 0..16 (no
download). The test set is fixed for every model of the project: 360 images, stratified by class,

    train_test_split(X, y, test_size=360, stratify=y, random_state=0)

and a validation set is carved from the remaining 1437 images (stratified, ``val_seed``; 180 images by
default, leaving 1257 to train on).

Every model reads the pixels in one of four forms (``Form``), all ``[N, 1, H, W]``:

* ``"float"``      float32 ``raw / (levels - 1)`` in ``[0, 1]`` (classifiers, autoencoders);
* ``"binary"``     float32 in ``{0, 1}``: ``raw >= levels // 2`` (pixel >= 8 of 16; Bernoulli models);
* ``"grey"``       int64 intensities ``0 .. levels - 1`` (17 levels for the digits; categorical models);
* ``"continuous"`` float32 dequantised ``(raw + u) / levels``, ``u ~ U[0, 1)`` seeded (density models:
  a continuous density on the dequantised data bounds the discrete log-likelihood, Theis et al. 2016).

``DataConfig`` picks the digits or MNIST (``generative.data.mnist``, read from IDX files), both into
the same ``Split``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from sklearn.model_selection import train_test_split

Form = Literal["float", "binary", "grey", "continuous"]

TEST_SIZE = 360
"""Test images of the fixed digits split (20% of 1797, stratified, ``random_state=0``)."""
DIGITS_VAL_SIZE = 180
"""Default validation images carved from the 1437 digits training images."""
DIGITS_LEVELS = 17
"""Intensity levels of the scikit-learn digits (0..16)."""


class Split(NamedTuple):
    """Train / validation / test images ``[N, 1, H, W]`` (dtype set by the ``Form``) and int64 labels ``[N]``."""

    x_train: np.ndarray  # [N_train, 1, H, W]
    y_train: np.ndarray  # [N_train] int64 in 0..9
    x_val: np.ndarray  # [N_val, 1, H, W]
    y_val: np.ndarray  # [N_val]
    x_test: np.ndarray  # [N_test, 1, H, W]
    y_test: np.ndarray  # [N_test]
    levels: int  # number of raw intensity levels (17 for the digits, 256 for MNIST)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


@dataclass
class DataConfig:
    """Which images to train on and in which form."""

    dataset: Literal["digits", "mnist"] = "digits"
    """scikit-learn's bundled 8x8 digits, or MNIST read from IDX files in ``mnist_dir``."""
    mnist_dir: Path | None = None
    """Folder with train-images-idx3-ubyte[.gz] and the three other standard MNIST files."""
    val_size: int | None = None
    """Validation images carved from the training part; None: 180 (digits) or 5000 (MNIST)."""
    val_seed: int = 0
    """Seed of the stratified validation split (the test split never changes)."""
    form: Form = "float"
    """Pixel form: float in [0, 1], binary, integer grey levels or dequantised continuous."""
    dequantise_seed: int = 0
    """Seed of the uniform noise of the ``continuous`` form."""

    def __post_init__(self) -> None:
        if self.dataset not in ("digits", "mnist"):
            raise ValueError(f"dataset must be 'digits' or 'mnist', got {self.dataset!r}")
        if self.form not in ("float", "binary", "grey", "continuous"):
            raise ValueError(f"form must be float, binary, grey or continuous, got {self.form!r}")
        if self.dataset == "mnist" and self.mnist_dir is None:
            raise ValueError("dataset='mnist' needs mnist_dir, the folder holding the four IDX files")
        if self.val_size is not None and self.val_size < 10:
            raise ValueError(f"val_size must be >= 10 (one image per class), got {self.val_size}")


def apply_form(raw: np.ndarray, levels: int, form: Form, rng: np.random.Generator | None = None) -> np.ndarray:
    """Integer intensities ``raw`` in ``0 .. levels - 1`` (any shape) in the given ``form`` (see the module
    docstring); ``continuous`` needs ``rng`` for the dequantisation noise."""
    raw = np.asarray(raw)
    if raw.size and (raw.min() < 0 or raw.max() > levels - 1):
        raise ValueError(f"raw intensities must lie in 0..{levels - 1}, got {raw.min()}..{raw.max()}")
    if form == "float":
        return (raw / (levels - 1)).astype(np.float32)
    if form == "binary":
        return (raw >= levels // 2).astype(np.float32)
    if form == "grey":
        return raw.astype(np.int64)
    if form == "continuous":
        if rng is None:
            raise ValueError("form='continuous' needs rng, the generator of the dequantisation noise")
        return ((raw + rng.random(raw.shape)) / levels).astype(np.float32)
    raise ValueError(f"form must be float, binary, grey or continuous, got {form!r}")


def split_raw(
    x_train: np.ndarray,  # [N, 1, H, W] integer intensities
    y_train: np.ndarray,  # [N]
    x_test: np.ndarray,  # [M, 1, H, W]
    y_test: np.ndarray,  # [M]
    levels: int,
    val_size: int,
    val_seed: int,
    form: Form,
    dequantise_seed: int = 0,
) -> Split:
    """Carve a stratified, seeded validation set of ``val_size`` images from the training part and put
    every part in ``form``."""
    if x_train.ndim != 4 or len(x_train) != len(y_train):
        raise ValueError(f"x_train must be [N, 1, H, W] with N = len(y_train), got {x_train.shape} and {y_train.shape}")
    if x_test.ndim != 4 or len(x_test) != len(y_test) or x_test.shape[1:] != x_train.shape[1:]:
        raise ValueError(f"x_test must be [M, *x_train.shape[1:]], got {x_test.shape} and {x_train.shape}")
    if not 10 <= val_size < len(x_train):
        raise ValueError(f"val_size must lie in [10, {len(x_train)}), got {val_size}")
    x_fit, x_val, y_fit, y_val = train_test_split(
        x_train, y_train, test_size=val_size, stratify=y_train, random_state=val_seed
    )
    rng = np.random.default_rng(dequantise_seed)
    parts = [apply_form(x, levels, form, rng) for x in (x_fit, x_val, x_test)]
    labels = [np.asarray(y, dtype=np.int64) for y in (y_fit, y_val, y_test)]
    return Split(parts[0], labels[0], parts[1], labels[1], parts[2], labels[2], levels)


def load_digits_split(val_size: int = DIGITS_VAL_SIZE, val_seed: int = 0, form: Form = "float",
                      dequantise_seed: int = 0) -> Split:
    """scikit-learn's 8x8 digits with the project's fixed 360-image stratified test set (``random_state=0``)
    and a stratified validation set of ``val_size`` images carved from the other 1437 (seed ``val_seed``)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.int64)[:, None]  # [1797, 1, 8, 8], 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=TEST_SIZE, stratify=digits.target, random_state=0
    )
    return split_raw(x_train, y_train, x_test, y_test, DIGITS_LEVELS, val_size, val_seed, form, dequantise_seed)


def load_split(config: DataConfig) -> Split:
    """The images ``config`` asks for: the digits, or MNIST from ``config.mnist_dir``."""
    if config.dataset == "digits":
        size = DIGITS_VAL_SIZE if config.val_size is None else config.val_size
        return load_digits_split(size, config.val_seed, config.form, config.dequantise_seed)
    from generative.data.mnist import MNIST_VAL_SIZE, load_mnist

    size = MNIST_VAL_SIZE if config.val_size is None else config.val_size
    return load_mnist(Path(config.mnist_dir), size, config.val_seed, config.form, config.dequantise_seed)
