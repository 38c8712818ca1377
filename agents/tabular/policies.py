"""Policies as data: epsilon-greedy action choice and validation of the policies agents evaluate.

A policy is ``[S]`` int actions (deterministic), ``[S, A]`` probabilities (stochastic) or ``None`` (the
uniformly random policy); :func:`policy_matrix` turns any of them into ``[S, A]`` probabilities. The
dynamic-programming solvers and the prediction agents share it.
"""

from __future__ import annotations

import numpy as np


def greedy_action(q: np.ndarray, rng: np.random.Generator) -> int:
    """An action maximising ``q`` [A], ties broken uniformly at random with ``rng``."""
    best = np.flatnonzero(q == q.max())
    return int(best[0]) if best.size == 1 else int(best[rng.integers(best.size)])


def epsilon_greedy(q: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    """Epsilon-greedy action for the action values ``q`` [A] (notes §11.2).

    With probability ``epsilon`` a uniformly random action (the greedy one included), otherwise a
    greedy one, so a unique greedy action has probability ``1 - epsilon + epsilon / A``.
    """
    if rng.random() < epsilon:
        return int(rng.integers(q.shape[0]))
    return greedy_action(q, rng)


def check_policy(policy: np.ndarray | None, atol: float = 1e-6) -> np.ndarray | None:
    """Validate a policy to evaluate: None (uniform), [S] int actions, or [S, A] probabilities.

    Raises:
        ValueError: naming the shape, a negative action, or the first row that is not a distribution.
    """
    if policy is None:
        return None
    pi = np.asarray(policy)
    if pi.ndim == 1:
        if not np.issubdtype(pi.dtype, np.integer) or (pi.size and pi.min() < 0):
            raise ValueError(f"policy [S] must hold non-negative integer actions, got {pi.dtype} {pi}")
        return pi.astype(np.int64)
    if pi.ndim != 2 or not np.issubdtype(pi.dtype, np.number):
        raise ValueError(f"policy must be [S] int actions or [S, A] probabilities, got shape {pi.shape}")
    pi = pi.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(pi).all(1) | (pi < 0).any(1) | ~np.isclose(pi.sum(1), 1.0, atol=atol))
    if bad.size:
        raise ValueError(f"policy [S, A] rows must be probability distributions; row {bad[0]} is {pi[bad[0]]}")
    return pi


def policy_matrix(policy: np.ndarray | None, n_states: int, n_actions: int) -> np.ndarray:
    """The [S, A] probabilities of a policy accepted by :func:`check_policy` (None: uniform)."""
    policy = check_policy(policy)
    if policy is None:
        return np.full((n_states, n_actions), 1.0 / n_actions)
    expected = (n_states,) if policy.ndim == 1 else (n_states, n_actions)
    if policy.shape != expected:
        raise ValueError(
            f"policy has shape {policy.shape}, but the environment needs {expected} "
            f"for [S, A] = ({n_states}, {n_actions})"
        )
    if policy.ndim == 2:
        return policy / policy.sum(1, keepdims=True)
    if policy.size and policy.max() >= n_actions:
        raise ValueError(f"policy holds action {policy.max()}, but there are only {n_actions} actions")
    return np.eye(n_actions)[policy]
