"""Experience replay (notes §11.3, DQN): a fixed-capacity ring of transitions, sampled uniformly.

Observations are stored once. Slot ``i`` holds the state of transition ``i``; its next state is the
observation in slot ``i + 1``, which is also the state of the following transition of the same
episode. When an episode ends, its final observation takes a slot of its own that starts no
transition, and the next episode begins one slot later. So a buffer of ``N`` slots holds about
``N (1 - 1/L)`` transitions for episodes of length ``L`` without a second copy of every
observation, and images stay ``uint8``.

``terminated`` is stored; ``truncated`` only ends the episode in the buffer, so targets bootstrap
through a time limit (the next state of a truncated transition is a real state, not a terminal one).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np


class Batch(NamedTuple):
    """A sampled minibatch; arrays of length ``B`` along the first axis."""

    obs: np.ndarray  # [B, *obs_shape]
    actions: np.ndarray  # [B, *action_shape]
    rewards: np.ndarray  # [B] float32
    next_obs: np.ndarray  # [B, *obs_shape]
    terminated: np.ndarray  # [B] float32, 1 where s' is terminal (no bootstrap)


class ReplayBuffer:
    """Uniform replay over the last ``capacity`` observation slots.

    Arguments:
        capacity: number of observation slots (at least 2).
        observation_space, action_space: give the shapes and dtypes of the stored arrays.
    """

    def __init__(self, capacity: int, observation_space: gym.Space, action_space: gym.Space) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2, got {capacity}")
        self.capacity = int(capacity)
        obs_dtype = np.int64 if isinstance(observation_space, gym.spaces.Discrete) else observation_space.dtype
        act_dtype = np.int64 if isinstance(action_space, gym.spaces.Discrete) else np.float32
        self.obs = np.zeros((capacity, *observation_space.shape), dtype=obs_dtype)
        self.actions = np.zeros((capacity, *action_space.shape), dtype=act_dtype)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.valid = np.zeros(capacity, dtype=bool)  # slot starts a transition whose next slot holds s'
        self.pos = 0  # slot of the current state
        self.continuing = False  # slot `pos` already holds the current state (written as the last s')
        self.filled = 0  # slots [0, filled) have been written; == capacity once the ring wrapped around

    def __len__(self) -> int:
        """Number of stored transitions."""
        return int(self.valid.sum())

    def add(self, obs: Any, action: Any, reward: float, next_obs: Any, terminated: bool, truncated: bool) -> None:
        """Store one transition ``(s, a, r, s', terminated)``; ``truncated`` or ``terminated`` ends the episode."""
        i = self.pos
        if not self.continuing:
            self.obs[i] = obs
        self.actions[i] = action
        self.rewards[i] = reward
        self.terminated[i] = float(terminated)
        self.valid[i] = True
        j = (i + 1) % self.capacity
        self.obs[j] = next_obs
        self.valid[j] = False  # its old transition lost its state
        self.filled = self.capacity if j < i else max(self.filled, j + 1)  # slots are written in order
        if terminated or truncated:
            self.pos, self.continuing = (j + 1) % self.capacity, False
            self.valid[self.pos] = False  # about to be overwritten by the next episode's first state
        else:
            self.pos, self.continuing = j, True

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """``batch_size`` transitions drawn uniformly with replacement, using ``rng``."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        starts = np.flatnonzero(self.valid)
        index = starts[rng.integers(starts.size, size=batch_size)]
        return Batch(
            self.obs[index], self.actions[index], self.rewards[index],
            self.obs[(index + 1) % self.capacity], self.terminated[index],
        )

    def state_dict(self) -> dict[str, Any]:
        """The buffer as numpy arrays and numbers; the arrays hold only the ``filled`` slots written so
        far, so a checkpoint of a barely used buffer stays small (all of them once the ring wrapped)."""
        n = self.filled
        return {"obs": self.obs[:n].copy(), "actions": self.actions[:n].copy(), "rewards": self.rewards[:n].copy(),
                "terminated": self.terminated[:n].copy(), "valid": self.valid[:n].copy(), "capacity": self.capacity,
                "filled": n, "pos": self.pos, "continuing": self.continuing}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` into this buffer's full capacity (the same as the saved one).

        A state without ``filled`` (one that holds every slot) is accepted too.
        """
        capacity = int(state.get("capacity", self.capacity))
        if capacity != self.capacity:
            raise ValueError(f"replay buffer state has capacity {capacity}, this buffer {self.capacity}")
        n = int(state.get("filled", self.capacity))
        if not 0 <= n <= self.capacity:
            raise ValueError(f"replay buffer state has filled={n}, expected a number in [0, {self.capacity}]")
        keys = ("obs", "actions", "rewards", "terminated", "valid")
        for key in keys:  # every check before the first write, so a bad state changes nothing
            expected = (n, *getattr(self, key).shape[1:])
            if np.shape(state[key]) != expected:
                raise ValueError(f"replay buffer field {key!r} has shape {np.shape(state[key])}, expected {expected}")
        for key in keys:  # in place: no second copy of a large buffer
            full = getattr(self, key)
            full[:n] = np.asarray(state[key], dtype=full.dtype)
            full[n:] = 0
        self.filled, self.pos, self.continuing = n, int(state["pos"]), bool(state["continuing"])
