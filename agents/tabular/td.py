"""Temporal difference learning: TD(0) prediction, SARSA and Q-learning (notes §11.2).

TD methods learn from single transitions ``(s, a, r, s')`` by bootstrapping: the target uses the
current estimate at ``s'``. All three update in the TD-error form ``X <- X + alpha * delta`` with
``delta = target - X``. The notes print ``X <- alpha X + (1 - alpha) target``, which swaps the two
weights (with a small ``alpha`` it would barely keep the old estimate); the standard form is used.

A target bootstraps unless ``s'`` is terminal (``terminated``); a time-limit truncation is not a
terminal state, so its target still uses ``s'``.
"""

from __future__ import annotations

import numpy as np

from agents.tabular.base import ControlAgent, PredictionAgent, Transition


def td_error(V: np.ndarray, s: int, r: float, s_next: int, terminated: bool, gamma: float) -> float:
    """TD error ``delta = r + gamma V(s') - V(s)`` of ``V`` [S], with ``V(s') = 0`` if terminated (notes §11.2)."""
    bootstrap = 0.0 if terminated else gamma * float(V[s_next])
    return r + bootstrap - float(V[s])


def sarsa_target(Q: np.ndarray, r: float, s_next: int, a_next: int | None, terminated: bool, gamma: float) -> float:
    """SARSA target ``r + gamma Q(s', a')`` of ``Q`` [S, A], or ``r`` if terminated (notes §11.2).

    ``a_next`` is the action the behaviour policy takes in ``s'``; it may be None only if terminated.
    """
    if terminated:
        return r
    if a_next is None:
        raise ValueError("sarsa_target needs a_next unless the transition terminated")
    return r + gamma * float(Q[s_next, a_next])


def q_learning_target(Q: np.ndarray, r: float, s_next: int, terminated: bool, gamma: float) -> float:
    """Q-learning target ``r + gamma max_a' Q(s', a')`` of ``Q`` [S, A], or ``r`` if terminated (notes §11.2)."""
    return r if terminated else r + gamma * float(Q[s_next].max())


class TD0(PredictionAgent):
    """TD(0) estimate of ``V^pi``: ``V(s) <- V(s) + alpha * delta`` after every step (notes §11.2).

    The notes' ``V(s) <- alpha V(s) + (1 - alpha)(r + gamma V(s'))`` swaps the weights; this is the
    TD-error form. Arguments: ``policy`` ([S] int, [S, A] probabilities or None for uniform) and
    ``config`` (``gamma``, ``alpha``; ``epsilon`` is unused).
    """

    name = "td0"

    def _step(self, step: Transition) -> int | None:
        delta = td_error(self.V, step.state, step.reward, step.next_state, step.terminated, self.config.gamma)
        self._update(step.state, step.action, delta)
        return None if step.done else self._behaviour(step.next_state)


class SARSA(ControlAgent):
    """On-policy TD control (Rummery and Niranjan, 1994; notes §11.2).

    ``Q(s, a) <- Q(s, a) + alpha (r + gamma Q(s', a') - Q(s, a))`` with ``a'`` the epsilon-greedy
    action actually taken next; the notes' ``alpha Q + (1 - alpha) target`` swaps the weights.
    """

    name = "sarsa"

    def _step(self, step: Transition) -> int | None:
        a_next = None if step.terminated else self._behaviour(step.next_state)
        target = sarsa_target(self.Q, step.reward, step.next_state, a_next, step.terminated, self.config.gamma)
        self._update(step.state, step.action, target - self.Q[step.state, step.action])
        return None if step.done else a_next


class QLearning(ControlAgent):
    """Off-policy TD control towards ``Q*`` (Watkins and Dayan, 1992; notes §11.2).

    ``Q(s, a) <- Q(s, a) + alpha (r + gamma max_a' Q(s', a') - Q(s, a))``, whatever the behaviour
    policy; the notes' ``alpha Q + (1 - alpha) target`` swaps the weights. The next action is chosen
    after the update, as in Sutton & Barto's pseudocode.
    """

    name = "q-learning"

    def _step(self, step: Transition) -> int | None:
        target = q_learning_target(self.Q, step.reward, step.next_state, step.terminated, self.config.gamma)
        self._update(step.state, step.action, target - self.Q[step.state, step.action])
        return None if step.done else self._behaviour(step.next_state)
