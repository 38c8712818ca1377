"""Tabular reinforcement learning (notes §11, §11.1, §11.2).

Dynamic programming for known models (:mod:`agents.tabular.dp`) and agents that learn from
interaction only: Monte Carlo (:mod:`agents.tabular.mc`), TD(0), SARSA and Q-learning
(:mod:`agents.tabular.td`), all sharing the episode loop of :mod:`agents.tabular.base`.
"""

from agents.tabular.base import TabularAgent, TabularConfig, TrainingLog
from agents.tabular.dp import (
    Solution,
    bellman_backup,
    greedy_policy,
    policy_evaluation,
    policy_iteration,
    value_iteration,
)
from agents.tabular.mc import MonteCarloControl, MonteCarloPrediction
from agents.tabular.schedules import Constant, Exponential, Linear, parse_schedule
from agents.tabular.td import SARSA, TD0, QLearning

__all__ = [
    "SARSA", "TD0", "Constant", "Exponential", "Linear", "MonteCarloControl", "MonteCarloPrediction",
    "QLearning", "Solution", "TabularAgent", "TabularConfig", "TrainingLog", "bellman_backup", "greedy_policy",
    "parse_schedule", "policy_evaluation", "policy_iteration", "value_iteration",
]
