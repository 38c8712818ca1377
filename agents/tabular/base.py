"""Model-free tabular agents: config, training log, epsilon-greedy and the one episode loop (notes §11).

Every agent learns from interaction only, ``(s, a, r, s')`` samples of a Gymnasium environment with
``Discrete`` observation and action spaces; none of them reads the model ``P``. :meth:`TabularAgent.fit`
runs the episode loop for all of them; an agent supplies the hooks

* ``_start_episode(s) -> a``            the first action,
* ``_step(transition) -> a' | None``    the per-step update, returning the next action,
* ``_end_episode()``                    the end-of-episode update (Monte Carlo).

:class:`PredictionAgent` estimates ``V^pi`` of a given policy (notes §11.1, §11.2: MC, TD(0));
:class:`ControlAgent` learns ``Q`` with an epsilon-greedy behaviour policy (MC control, SARSA,
Q-learning). All agents save to and load from one ``.npz`` layout (:meth:`TabularAgent.save`).
"""

from __future__ import annotations

import bisect
import json
import os
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from agents.tabular.policies import check_policy, epsilon_greedy, policy_matrix
from agents.tabular.schedules import Schedule, as_schedule, format_schedule, parse_schedule
from agents.tabular.storage import FORMAT_VERSION, read_agent_file
from envs.io import atomic_path


@dataclass(frozen=True)
class TabularConfig:
    """Hyperparameters shared by the model-free tabular agents."""

    gamma: float = 0.99
    """Discount factor in [0, 1]."""
    alpha: float | Schedule | None = 0.1
    """Step size (a number or a per-episode schedule); None means the sample average 1/N(entry)."""
    epsilon: float | Schedule = 0.1
    """Exploration rate of the epsilon-greedy behaviour policy (control agents; a number or schedule)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma}")
        if isinstance(self.alpha, (int, float)) and not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in (0, 1], got {self.alpha}")
        if isinstance(self.epsilon, (int, float)) and not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must lie in [0, 1], got {self.epsilon}")

    def to_json(self) -> str:
        """JSON with schedules in their text form (see :func:`~agents.tabular.schedules.format_schedule`)."""

        def encode(value: float | Schedule | None) -> float | str | None:
            if value is None or isinstance(value, (int, float)):
                return value
            return format_schedule(value)

        return json.dumps({"gamma": self.gamma, "alpha": encode(self.alpha), "epsilon": encode(self.epsilon)})

    @classmethod
    def from_json(cls, text: str) -> TabularConfig:
        """Inverse of :meth:`to_json`; raises ``ValueError`` on malformed text."""

        def decode(value: Any) -> float | Schedule | None:
            return parse_schedule(value) if isinstance(value, str) else value

        try:
            fields = json.loads(text)
            return cls(
                gamma=float(fields["gamma"]),
                alpha=decode(fields["alpha"]),
                epsilon=decode(fields["epsilon"]),  # type: ignore[arg-type]
            )
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"malformed config JSON {text!r}: {error!r}") from error


class TrainingLog(NamedTuple):
    """Per-episode statistics returned by :meth:`TabularAgent.fit`."""

    returns: np.ndarray  # [N] undiscounted episode return
    lengths: np.ndarray  # [N] number of steps
    epsilons: np.ndarray  # [N] exploration rate used (0 for prediction agents)


class Transition(NamedTuple):
    """One environment step ``(s, a, r, s')`` with Gymnasium's two end flags."""

    state: int
    action: int
    reward: float
    next_state: int
    terminated: bool
    """The MDP reached a terminal state: ``V(s') = 0``, targets do not bootstrap."""
    truncated: bool
    """The episode was cut (time limit): ``s'`` is not terminal, targets still bootstrap."""

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


def discrete_sizes(env: gym.Env[Any, Any]) -> tuple[int, int]:
    """``(S, A)`` of an environment with ``Discrete`` observation and action spaces starting at 0."""
    obs, act = env.observation_space, env.action_space
    if not (
        isinstance(obs, gym.spaces.Discrete)
        and isinstance(act, gym.spaces.Discrete)
        and int(obs.start) == 0
        and int(act.start) == 0
    ):
        raise ValueError(
            "tabular agents need Discrete observation and action spaces starting at 0, got "
            f"observation_space={obs} and action_space={act}"
        )
    return int(obs.n), int(act.n)


class TabularAgent(ABC):
    """A model-free agent with tables ``Q`` [S, A] and ``V`` [S], trained by :meth:`fit`.

    Attributes:
        Q: action values [S, A] (learned by control agents; zeros for prediction agents).
        V: state values [S] (learned by prediction agents; control agents report ``max_a Q``
            through :attr:`value`).
        N: number of updates of each entry of the learned table, [S] or [S, A]; the ``n`` of the
            sample average when ``config.alpha`` is None.
        visits: how often each ``(s, a)`` was taken during training, [S, A].
        episodes_done: episodes trained so far; the index the schedules are evaluated at.
    """

    name: ClassVar[str]
    """Registry name stored in saved files."""
    learns: ClassVar[Literal["V", "Q"]]
    """Which table the agent learns."""
    explores: ClassVar[bool]
    """Whether the behaviour policy is epsilon-greedy (control) rather than the evaluated policy."""
    registry: ClassVar[dict[str, type[TabularAgent]]] = {}
    """Concrete agent classes by :attr:`name`, for :meth:`load`."""

    def __init__(self, config: TabularConfig) -> None:
        self.config = config
        self.alpha: Schedule | None = None if config.alpha is None else as_schedule(config.alpha)
        self.epsilon: Schedule = as_schedule(config.epsilon)
        self.Q = np.zeros((0, 0))
        self.V = np.zeros(0)
        self.N = np.zeros((0,) * (1 if self.learns == "V" else 2), dtype=np.int64)
        self.visits = np.zeros((0, 0), dtype=np.int64)
        self.episodes_done = 0
        self._rng = np.random.default_rng()
        self._alpha_now: float | None = None
        self._epsilon_now = 0.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            TabularAgent.registry[cls.name] = cls

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config}, episodes_done={self.episodes_done})"

    # ----------------------------------------------------------------------------- training loop
    def fit(
        self,
        env: gym.Env[Any, Any],
        episodes: int,
        seed: int | None = None,
        progress: bool = False,
    ) -> TrainingLog:
        """Train for ``episodes`` episodes; a later call continues with the same tables.

        ``seed`` seeds the first ``env.reset`` and the agent's generator (epsilon-greedy, tie-breaks,
        policy sampling); later resets are unseeded, so the same seed gives the same log and tables.
        """
        if episodes < 0:
            raise ValueError(f"episodes must be non-negative, got {episodes}")
        self._prepare(*discrete_sizes(env))
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
        epsilons = np.zeros(episodes)
        recent: deque[float] = deque(maxlen=100)
        bar = tqdm(range(episodes), desc=self.name, unit="episode", disable=not progress)
        for i in bar:
            self._alpha_now = None if self.alpha is None else self.alpha(self.episodes_done)
            self._epsilon_now = self.epsilon(self.episodes_done) if self.explores else 0.0
            state = int(env.reset(seed=seed if i == 0 else None)[0])
            action = self._start_episode(state)
            total, length = 0.0, 0
            while True:
                next_state, reward, terminated, truncated, _ = env.step(action)
                step = Transition(state, action, float(reward), int(next_state), bool(terminated), bool(truncated))
                self.visits[state, action] += 1
                total, length = total + step.reward, length + 1
                next_action = self._step(step)
                if step.done:
                    break
                if next_action is None:
                    raise RuntimeError(f"{type(self).__name__}._step gave no action mid-episode")
                state, action = step.next_state, next_action
            self._end_episode()
            self.episodes_done += 1
            returns[i], lengths[i], epsilons[i] = total, length, self._epsilon_now
            recent.append(total)
            if progress and (i % 10 == 0 or i == episodes - 1):
                bar.set_postfix(mean_return=f"{np.mean(recent):.3g}", epsilon=f"{self._epsilon_now:.3g}")
        return TrainingLog(returns, lengths, epsilons)

    def _start_episode(self, state: int) -> int:
        """Hook: reset per-episode state; return the first action."""
        return self._behaviour(state)

    @abstractmethod
    def _step(self, step: Transition) -> int | None:
        """Hook: learn from one transition; return the next action (None once ``step.done``)."""

    def _end_episode(self) -> None:
        """Hook: learn at the end of an episode."""

    @abstractmethod
    def _behaviour(self, state: int) -> int:
        """An action of the behaviour policy, drawn with the agent's generator."""

    def _step_size(self, n: int) -> float:
        """``alpha`` of the current episode, or ``1 / n`` (sample average) when it is None."""
        return 1.0 / n if self._alpha_now is None else self._alpha_now

    # ------------------------------------------------------------------------------------ tables
    def _prepare(self, n_states: int, n_actions: int) -> None:
        """Create zero tables for ``S`` states and ``A`` actions, or check the existing ones fit."""
        if self.Q.size == 0:
            shape_N = (n_states,) if self.learns == "V" else (n_states, n_actions)
            self._set_tables(
                np.zeros((n_states, n_actions)),
                np.zeros(n_states),
                np.zeros(shape_N, dtype=np.int64),
                np.zeros((n_states, n_actions), dtype=np.int64),
            )
        elif self.Q.shape != (n_states, n_actions):
            raise ValueError(
                f"the agent's tables have [S, A] = {self.Q.shape}, but the environment has "
                f"Discrete({n_states}) observations and Discrete({n_actions}) actions"
            )

    def _set_tables(self, Q: np.ndarray, V: np.ndarray, N: np.ndarray, visits: np.ndarray) -> None:
        self.Q = np.array(Q, dtype=np.float64)
        self.V = np.array(V, dtype=np.float64)
        self.N = np.array(N, dtype=np.int64)
        self.visits = np.array(visits, dtype=np.int64)
        self._on_tables()

    def _on_tables(self) -> None:
        """Hook: the tables (and so ``S`` and ``A``) are now known."""

    def _require_tables(self) -> None:
        if self.Q.size == 0:
            raise RuntimeError(
                f"{type(self).__name__} has no tables yet: call fit(env, ...) or TabularAgent.load(path)"
            )

    @abstractmethod
    def _estimate(self, state: int, action: int) -> float:
        """The current estimate of the learned table: ``V(s)`` or ``Q(s, a)``."""

    @abstractmethod
    def _update(self, state: int, action: int, delta: float) -> None:
        """``estimate <- estimate + step_size * delta`` on the learned entry; counts the update in ``N``."""

    # -------------------------------------------------------------------------------- the result
    @abstractmethod
    def act(self, state: int, rng: np.random.Generator | None = None) -> int:
        """The learned (control) or evaluated (prediction) policy's action in ``state``."""

    @property
    @abstractmethod
    def policy(self) -> np.ndarray:
        """Greedy actions [S] (control) or the evaluated policy's probabilities [S, A] (prediction)."""

    @property
    @abstractmethod
    def value(self) -> np.ndarray:
        """State values [S]: ``V`` (prediction) or ``max_a Q`` (control)."""

    # ------------------------------------------------------------------------------- persistence
    def _options(self) -> dict[str, Any]:
        """Constructor arguments other than ``config`` and ``policy``, as JSON-able values."""
        return {}

    @classmethod
    def _from_saved(cls, config: TabularConfig, options: dict[str, Any], policy: np.ndarray) -> TabularAgent:
        """Rebuild an agent from a saved file's config, options and policy array."""
        return cls(config=config, **options)  # type: ignore[call-arg]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the agent to ``path`` (``.npz``) atomically.

        The file holds the name, the config as JSON (schedules in text form), the constructor
        options, ``Q``, ``V`` (= :attr:`value`), ``N``, ``visits``, :attr:`policy`, ``n_states``,
        ``n_actions``, ``episodes_done`` and a format version.
        """
        self._require_tables()
        n_states, n_actions = self.Q.shape
        with atomic_path(path) as tmp:
            np.savez(
                tmp,
                format_version=np.int64(FORMAT_VERSION),
                name=np.str_(self.name),
                config=np.str_(self.config.to_json()),
                options=np.str_(json.dumps(self._options())),
                Q=self.Q,
                V=self.value,
                N=self.N,
                visits=self.visits,
                policy=self.policy,
                n_states=np.int64(n_states),
                n_actions=np.int64(n_actions),
                episodes_done=np.int64(self.episodes_done),
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TabularAgent:
        """Read an agent saved by :meth:`save`, of the class named in the file.

        Raises:
            ValueError: naming the file and the cause when it is missing, truncated or corrupt, lacks
                a key, holds an unknown agent name, another format version or tables of the wrong shape.
        """
        arrays = read_agent_file(path)

        def fail(cause: str) -> ValueError:
            return ValueError(f"agent file {path} {cause}")

        name = str(arrays["name"])
        if name not in TabularAgent.registry:
            known = ", ".join(sorted(TabularAgent.registry))
            raise fail(f"holds an unknown agent {name!r} (known: {known})")
        agent_cls = TabularAgent.registry[name]
        if not issubclass(agent_cls, cls):
            raise fail(f"holds a {agent_cls.__name__}, not a {cls.__name__}")
        try:
            version, S, A = (int(arrays[key]) for key in ("format_version", "n_states", "n_actions"))
        except (ValueError, TypeError) as error:
            raise fail(f"has a non-integer format_version, n_states or n_actions ({error})") from error
        if version != FORMAT_VERSION:
            raise fail(f"has format version {version}, expected {FORMAT_VERSION}")
        shapes = {
            "Q": (S, A),
            "V": (S,),
            "N": (S,) if agent_cls.learns == "V" else (S, A),
            "visits": (S, A),
            "policy": (S, A) if agent_cls.learns == "V" else (S,),
        }
        for key, shape in shapes.items():
            if arrays[key].shape != shape:
                raise fail(f"has {key} of shape {arrays[key].shape}, expected {shape} for [S, A] = ({S}, {A})")
        try:
            config = TabularConfig.from_json(str(arrays["config"]))
            agent = agent_cls._from_saved(config, json.loads(str(arrays["options"])), arrays["policy"])
            agent._set_tables(arrays["Q"], arrays["V"], arrays["N"], arrays["visits"])
        except (ValueError, TypeError) as error:
            raise fail(f"holds an invalid agent: {error}") from error
        agent.episodes_done = int(arrays["episodes_done"])
        return agent


class PredictionAgent(TabularAgent):
    """Estimates ``V^pi`` of a fixed policy ``pi`` from episodes that follow it (notes §11.1, §11.2).

    ``policy`` is [S] int actions, [S, A] probabilities, or None for the uniform random policy.
    """

    learns = "V"
    explores = False

    def __init__(self, policy: np.ndarray | None = None, config: TabularConfig | None = None) -> None:
        super().__init__(config if config is not None else self.default_config())
        self._policy_arg = check_policy(policy)
        self._pi = np.zeros((0, 0))  # [S, A], once S and A are known
        self._cdf: list[list[float]] = []  # [S][A] cumulative probabilities, for bisect

    @classmethod
    def default_config(cls) -> TabularConfig:
        return TabularConfig()

    @classmethod
    def _from_saved(cls, config: TabularConfig, options: dict[str, Any], policy: np.ndarray) -> TabularAgent:
        return cls(policy=policy, config=config, **options)

    def _on_tables(self) -> None:
        self._pi = policy_matrix(self._policy_arg, *self.Q.shape)
        cdf = np.cumsum(self._pi, axis=1)
        cdf[:, -1] = 1.0
        self._cdf = cdf.tolist()

    def _behaviour(self, state: int) -> int:
        return self._sample(state, self._rng)

    def _sample(self, state: int, rng: np.random.Generator) -> int:
        # bisect on a list: a plain-Python search is several times faster than np.searchsorted here.
        return bisect.bisect_right(self._cdf[state], rng.random())

    def _estimate(self, state: int, action: int) -> float:
        return float(self.V[state])

    def _update(self, state: int, action: int, delta: float) -> None:
        self.N[state] += 1
        self.V[state] += self._step_size(int(self.N[state])) * delta

    def act(self, state: int, rng: np.random.Generator | None = None) -> int:
        """The evaluated policy's action: its only action if deterministic, else a sample (with ``rng``)."""
        self._require_tables()
        row = self._pi[state]
        if row.max() == 1.0:
            return int(row.argmax())
        return self._sample(state, rng if rng is not None else self._rng)

    @property
    def policy(self) -> np.ndarray:
        self._require_tables()
        return self._pi.copy()

    @property
    def value(self) -> np.ndarray:
        return self.V.copy()


# ---------------------------------------------------------------------------------------- control
class ControlAgent(TabularAgent):
    """Learns ``Q`` with an epsilon-greedy behaviour policy; acts greedily (notes §11.2)."""

    learns = "Q"
    explores = True

    def __init__(self, config: TabularConfig | None = None) -> None:
        super().__init__(config if config is not None else self.default_config())

    @classmethod
    def default_config(cls) -> TabularConfig:
        return TabularConfig()

    def _behaviour(self, state: int) -> int:
        return epsilon_greedy(self.Q[state], self._epsilon_now, self._rng)

    def _estimate(self, state: int, action: int) -> float:
        return float(self.Q[state, action])

    def _update(self, state: int, action: int, delta: float) -> None:
        self.N[state, action] += 1
        self.Q[state, action] += self._step_size(int(self.N[state, action])) * delta

    def act(self, state: int, rng: np.random.Generator | None = None) -> int:
        """Greedy action ``argmax_a Q(s, a)``, the lowest index on ties (deterministic; ``rng`` unused)."""
        self._require_tables()
        return int(np.argmax(self.Q[state]))

    @property
    def policy(self) -> np.ndarray:
        self._require_tables()
        return self.Q.argmax(axis=1)

    @property
    def value(self) -> np.ndarray:
        return self.Q.max(axis=1) if self.Q.size else np.zeros(0)
