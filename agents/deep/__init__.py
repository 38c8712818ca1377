"""Deep reinforcement learning (notes §11.3): networks chosen from the observation space, a replay
buffer, DQN, REINFORCE, actor-critic, and one training loop (:mod:`agents.deep.trainer`) shared by
every agent."""

from agents.deep.actor_critic import ActorCritic, ActorCriticConfig
from agents.deep.base import DeepAgent, Iteration
from agents.deep.buffer import Batch, ReplayBuffer
from agents.deep.dqn import DQN, DQNConfig
from agents.deep.reinforce import REINFORCE, ReinforceConfig
from agents.deep.trainer import RunConfig, RunResult, TrainingDiverged, train

__all__ = [
           "DQN",
           "REINFORCE",
           "ActorCritic",
           "ActorCriticConfig",
           "Batch",
           "DQNConfig",
           "DeepAgent",
           "Iteration",
           "ReinforceConfig",
           "ReplayBuffer",
           "RunConfig",
           "RunResult",
           "TrainingDiverged",
           "train",
]
