"""The agents, listed once: name -> class, config and a one-line summary, for each family.

The command line (``python -m agents train <agent>``), the demo and the benchmarks are generated from
these two tables; adding an agent touches one place.
"""

from __future__ import annotations

from typing import NamedTuple

from agents.tabular.base import TabularAgent
from agents.tabular.mc import MonteCarloControl, MonteCarloPrediction
from agents.tabular.td import SARSA, TD0, QLearning


class TabularEntry(NamedTuple):
    """A model-free tabular agent (notes §11.1-11.2): its class and what it learns."""

    cls: type[TabularAgent]
    summary: str
    control: bool  # learns a policy (epsilon-greedy); else evaluates a given one
    monte_carlo: bool  # first-visit / every-visit averages


class DeepEntry(NamedTuple):
    """A deep agent (notes §11.3): its class, its hyperparameter dataclass and what it does."""

    cls: type
    config: type
    summary: str


TABULAR: dict[str, TabularEntry] = {
    "mc": TabularEntry(MonteCarloControl, "On-policy Monte Carlo control with an epsilon-greedy policy (notes §11.1).",
                       control=True, monte_carlo=True),
    "mc-prediction": TabularEntry(MonteCarloPrediction, "Monte Carlo estimate of V^pi of a given policy (notes §11.1).",
                                  control=False, monte_carlo=True),
    "td0": TabularEntry(TD0, "TD(0) estimate of V^pi of a given policy (notes §11.2).", control=False, monte_carlo=False),
    "sarsa": TabularEntry(SARSA, "SARSA, on-policy TD control (notes §11.2).", control=True, monte_carlo=False),
    "q-learning": TabularEntry(QLearning, "Q-learning, off-policy TD control (notes §11.2).", control=True,
                               monte_carlo=False),
}


def deep_agents() -> dict[str, DeepEntry]:
    """The deep agents (imports torch, so it is a function: the tabular commands never pay for it)."""
    from agents.deep.actor_critic import ActorCritic, ActorCriticConfig
    from agents.deep.dqn import DQN, DQNConfig
    from agents.deep.reinforce import REINFORCE, ReinforceConfig

    return {
        "dqn": DeepEntry(DQN, DQNConfig, "Deep Q-network with a target network and experience replay (notes §11.3)."),
        "reinforce": DeepEntry(REINFORCE, ReinforceConfig,
                               "REINFORCE: Monte Carlo policy gradient with a baseline (notes §11.3)."),
        "actor-critic": DeepEntry(ActorCritic, ActorCriticConfig,
                                  "Synchronous advantage actor-critic (A2C) with n-step returns (notes §11.3)."),
    }
