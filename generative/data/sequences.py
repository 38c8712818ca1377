"""Long-range sequence tasks for recurrent networks (notes §4).

The adding problem (Hochreiter and Schmidhuber, 1997; in the form of Le, Jaitly and Hinton, 2015):
each step ``t = 1..T`` carries a pair ``(u_t, m_t)`` with ``u_t ~ U[0, 1]`` and a marker ``m_t in {0, 1}``;
exactly two steps are marked, and the target is the sum of their two values. With
``placement="halves"`` (the default, as Le et al.) the first marker lies in the first half
``[0, T//2)`` and the second in the second half ``[T//2, T)``; with ``"anywhere"`` the two marked
steps are any two distinct steps. Predicting the mean, 1, scores ``E[(u_a + u_b - 1)^2] = 2/12 = 1/6``
for every ``T``: the baseline MSE a model must beat to have learnt anything (:data:`BASELINE_MSE`).

The copy task (Hochreiter and Schmidhuber, 1997; Arjovsky et al., 2016): ``length`` symbols from
``1..n_symbols``, then ``delay`` blanks (0), then a go marker (``n_symbols + 1``) and ``length - 1``
more blanks; the target is blank everywhere except the last ``length`` steps, which repeat the symbols.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

BASELINE_MSE = 1.0 / 6.0
"""MSE of always predicting 1, the mean target: the variance of a sum of two U[0, 1] values."""
TEST_SEED = 20_240_401
"""Seed of the fixed test sets."""

Placement = Literal["halves", "anywhere"]


class AddingBatch(NamedTuple):
    """Inputs and targets of the adding problem."""

    x: np.ndarray  # [N, T, 2] float32: (value, marker)
    y: np.ndarray  # [N] float32: sum of the two marked values


def adding_problem(n: int, T: int, rng: np.random.Generator, placement: Placement = "halves") -> AddingBatch:
    """``n`` sequences of length ``T`` (``T >= 2``; the long-range task uses ``T >= 50``)."""
    if n < 0 or T < 2:
        raise ValueError(f"need n >= 0 and T >= 2, got n={n}, T={T}")
    values = rng.uniform(0.0, 1.0, size=(n, T))
    if placement == "halves":
        first = rng.integers(0, T // 2, size=n)
        second = rng.integers(T // 2, T, size=n)
    elif placement == "anywhere":
        first = rng.integers(0, T, size=n)
        second = (first + rng.integers(1, T, size=n)) % T  # any other step, uniformly
    else:
        raise ValueError(f"placement must be 'halves' or 'anywhere', got {placement!r}")
    markers = np.zeros((n, T))
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return AddingBatch(np.stack([values, markers], axis=-1).astype(np.float32), y.astype(np.float32))


def baseline_mse(y: np.ndarray) -> float:  # y: [N]
    """MSE of predicting 1 (the mean of the target distribution) for every sequence; about 1/6."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be [N], got shape {y.shape}")
    return float(np.mean((y - 1.0) ** 2))


def adding_test_set(T: int, n: int = 1000, placement: Placement = "halves", seed: int = TEST_SEED) -> AddingBatch:
    """The fixed test set of the adding problem for length ``T``."""
    return adding_problem(n, T, np.random.default_rng(seed + T), placement)


class CopyBatch(NamedTuple):
    """Inputs and targets of the copy task (integer symbols; 0 is blank)."""

    x: np.ndarray  # [N, 2 length + delay] int64
    y: np.ndarray  # [N, 2 length + delay] int64


def copy_task(n: int, length: int, delay: int, rng: np.random.Generator, n_symbols: int = 8) -> CopyBatch:
    """``n`` copy-task sequences: remember ``length`` symbols over ``delay`` blank steps."""
    if n < 0 or length < 1 or delay < 0 or n_symbols < 1:
        raise ValueError(
            f"need n >= 0, length >= 1, delay >= 0, n_symbols >= 1, got {n}, {length}, {delay}, {n_symbols}"
        )
    steps = 2 * length + delay
    symbols = rng.integers(1, n_symbols + 1, size=(n, length))
    x = np.zeros((n, steps), dtype=np.int64)
    y = np.zeros((n, steps), dtype=np.int64)
    x[:, :length] = symbols
    x[:, length + delay] = n_symbols + 1
    y[:, length + delay :] = symbols
    return CopyBatch(x, y)


def copy_baseline_cross_entropy(length: int, delay: int, n_symbols: int = 8) -> float:
    """Cross-entropy per step of the best memoryless guess: blank where the target is blank (known from
    the position), uniform over the symbols on the last ``length`` steps: ``length log(n_symbols) / steps``."""
    return length * float(np.log(n_symbols)) / (2 * length + delay)
