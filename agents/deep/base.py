"""What every deep agent offers the training loop (notes §11.3).

An agent owns its environments (one, or a vector of them) and, per :meth:`DeepAgent.iterate`,
interacts for a while and updates its networks: one step for DQN, whole episodes for REINFORCE,
``n`` steps of every environment for actor-critic. The loop in :mod:`agents.deep.trainer` does the
rest — evaluation, logging, checkpoints — the same way for all of them.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from envs.state import env_state, load_env_state

EnvFactory = Callable[[], gym.Env]


class Iteration(NamedTuple):
    """The outcome of one :meth:`DeepAgent.iterate`."""

    steps: int  # environment steps taken (summed over parallel environments)
    episodes: list[tuple[float, int]]  # (return, length) of the episodes that finished
    losses: dict[str, float]  # training losses of the update, empty if none happened


def finished_episodes(infos: dict[str, Any], dones: np.ndarray | bool) -> list[tuple[float, int]]:
    """``(return, length)`` pairs from ``RecordEpisodeStatistics`` infos of a single or vector env."""
    episode = infos.get("episode")
    if episode is None:
        return []
    if np.ndim(dones) == 0:
        return [(float(episode["r"]), int(episode["l"]))]
    mask = infos.get("_episode", np.asarray(dones, dtype=bool))
    return [(float(r), int(n)) for r, n in zip(episode["r"][mask], episode["l"][mask])]


class DeepAgent(ABC):
    """Base class: seeding, checkpoint state and the interface used by the training loop.

    Subclasses set :attr:`name`, build their networks in ``__init__`` and implement :meth:`iterate`,
    :meth:`act` and :meth:`modules`.
    """

    name: ClassVar[str]

    def __init__(self, make_env: EnvFactory, seed: int) -> None:
        self.make_env = make_env
        self.seed = int(seed)
        self.steps = 0
        self.rng = np.random.default_rng(seed)
        torch.manual_seed(seed)

    @abstractmethod
    def iterate(self) -> Iteration:
        """Interact with the environment(s) and update; return what happened."""

    @abstractmethod
    def act(self, obs: Any, deterministic: bool = True) -> Any:
        """The action for one observation: greedy / mean when ``deterministic``."""

    @abstractmethod
    def modules(self) -> dict[str, torch.nn.Module | torch.optim.Optimizer]:
        """Networks and optimizers whose ``state_dict`` goes into a checkpoint."""

    def close(self) -> None:
        """Close the agent's environments (a vector env's worker processes, physics clients)."""
        for name in ("env", "envs"):
            env = getattr(self, name, None)
            if env is not None:
                env.close()

    def extra_state(self) -> dict[str, Any]:
        """Anything else a resumed run needs (replay buffer, current observation, ...), as plain data."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`extra_state`."""

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        config = getattr(self, "config", None)
        return {
            "name": self.name,
            "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else None,
            "steps": self.steps,
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"checkpoint is for agent {state.get('name')!r}, not {self.name!r}")
        modules = self.modules()
        missing = set(modules) - set(state["modules"])
        if missing:
            raise ValueError(f"checkpoint lacks {', '.join(sorted(missing))}")
        for key, module in modules.items():
            module.load_state_dict(state["modules"][key])
        self.steps = int(state["steps"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        self.load_extra_state(state["extra"])


class StateAccess(gym.Wrapper):
    """Outermost wrapper of each environment of a vector env: ``plain_state`` reads and writes the
    environment's state as plain data (:mod:`envs.state`). Vector envs reach it through ``get_attr`` and
    ``set_attr``, which works the same for ``SyncVectorEnv`` and for ``AsyncVectorEnv``, whose
    environments live in other processes."""

    @property
    def plain_state(self) -> dict[str, Any]:
        return env_state(self.env)

    @plain_state.setter
    def plain_state(self, state: dict[str, Any]) -> None:
        load_env_state(self.env, state)
