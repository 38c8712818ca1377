"""Deep reinforcement learning (notes §11.3): networks chosen from the observation space, a replay
buffer, DQN, and one training loop (:mod:`agents.deep.trainer`) shared by every agent."""

from agents.deep.base import DeepAgent, Iteration
from agents.deep.buffer import Batch, ReplayBuffer
from agents.deep.dqn import DQN, DQNConfig
from agents.deep.trainer import RunConfig, RunResult, TrainingDiverged, train

# name -> (agent class, config class); the command line builds agents from here
AGENTS: dict[str, tuple[type[DeepAgent], type]] = {"dqn": (DQN, DQNConfig)}

__all__ = ["AGENTS", "DQN", "Batch", "DQNConfig", "DeepAgent", "Iteration", "ReplayBuffer", "RunConfig",
           "RunResult", "TrainingDiverged", "train"]
