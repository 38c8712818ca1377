"""Monte Carlo methods: value estimates as the mean of sampled returns (notes §11.1).

``V^pi(s) ~ (1/n) sum_i G(s)^i``: after each episode the returns ``G_t = r_t + gamma G_{t+1}`` are
computed backwards and every visited entry moves towards its return, with the sample-average step
``1/N`` (``config.alpha=None``, the default here) or a constant ``alpha``. First-visit MC uses only
the first occurrence of an entry in an episode, every-visit MC all of them (Sutton & Barto 2018,
§5.1). Control (§5.4) evaluates ``Q`` of the epsilon-greedy policy it follows, which improves as ``Q``
does. Monte Carlo does not bootstrap: a truncated episode contributes the return up to the cut.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.tabular.base import ControlAgent, PredictionAgent, TabularAgent, TabularConfig, Transition


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Returns ``G_t = r_t + gamma * G_{t+1}`` [T] of one episode's rewards ``r_t`` [T], with ``G_T = 0``
    (notes §11): the Monte Carlo target, and REINFORCE's reward-to-go (notes §11.3)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be one episode [T], got shape {rewards.shape}")
    G = np.empty_like(rewards)
    g = 0.0
    for t in range(rewards.shape[0] - 1, -1, -1):
        g = rewards[t] + gamma * g
        G[t] = g
    return G


def first_visit_mask(keys: np.ndarray) -> np.ndarray:
    """Boolean [T]: True where ``keys[t]`` (a state, or a state-action index) occurs for the first time."""
    keys = np.asarray(keys)
    mask = np.zeros(keys.shape[0], dtype=bool)
    mask[np.unique(keys, return_index=True)[1]] = True
    return mask


class _MonteCarlo(TabularAgent):
    """Episode memory and the end-of-episode update shared by MC prediction and MC control."""

    first_visit: bool

    def _start_episode(self, state: int) -> int:
        self._states: list[int] = []
        self._actions: list[int] = []
        self._rewards: list[float] = []
        return self._behaviour(state)

    def _step(self, step: Transition) -> int | None:
        self._states.append(step.state)
        self._actions.append(step.action)
        self._rewards.append(step.reward)
        return None if step.done else self._behaviour(step.next_state)

    def _end_episode(self) -> None:
        states, actions = np.array(self._states), np.array(self._actions)
        G = discounted_returns(np.array(self._rewards), self.config.gamma)
        keys = states if self.learns == "V" else states * self.Q.shape[1] + actions
        visits = first_visit_mask(keys) if self.first_visit else np.ones(keys.shape[0], dtype=bool)
        # Backwards, as in Sutton & Barto's pseudocode; with 1/N steps the order does not matter.
        for t in np.flatnonzero(visits)[::-1]:
            s, a = int(states[t]), int(actions[t])
            self._update(s, a, G[t] - self._estimate(s, a))

    def _options(self) -> dict[str, Any]:
        return {"first_visit": self.first_visit}

    @classmethod
    def default_config(cls) -> TabularConfig:
        """Sample averages (``alpha=None``), the notes' empirical mean return."""
        return TabularConfig(alpha=None)


class MonteCarloPrediction(_MonteCarlo, PredictionAgent):
    """Monte Carlo estimate of ``V^pi`` as the mean return after visiting each state (notes §11.1).

    Arguments:
        policy: the evaluated policy, [S] int actions, [S, A] probabilities, or None (uniform).
        config: ``gamma`` and ``alpha`` (None: sample average ``1/N(s)``); ``epsilon`` is unused.
        first_visit: average only the first visit of a state per episode (else every visit).
    """

    name = "mc-prediction"

    def __init__(
        self,
        policy: np.ndarray | None = None,
        config: TabularConfig | None = None,
        first_visit: bool = True,
    ) -> None:
        super().__init__(policy, config)
        self.first_visit = first_visit


class MonteCarloControl(_MonteCarlo, ControlAgent):
    """On-policy Monte Carlo control of ``Q`` with an epsilon-greedy policy (notes §11.1; S&B §5.4).

    Arguments:
        config: ``gamma``, ``alpha`` (None: sample average ``1/N(s, a)``) and ``epsilon``.
        first_visit: average only the first visit of a state-action pair per episode.
    """

    name = "mc"

    def __init__(self, config: TabularConfig | None = None, first_visit: bool = True) -> None:
        super().__init__(config)
        self.first_visit = first_visit
