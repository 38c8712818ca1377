"""Gridworld MDPs built from text maps (notes §11, Definition 11.1)."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, get_args

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.grid_map import GridMap, MapLike, load_map
from envs.mdp import TabularMDP
from envs.registration import check_choice, check_integer, check_number, discrete_action
from envs.render import disk, draw_background, render_cell_size, stamp_agent
from envs.state import np_random_state, set_np_random_state

ObsType = Literal["index", "onehot", "coords", "rgb"]
ACTION_NAMES = ("left", "down", "right", "up")
ACTION_DELTAS = np.array([[0, -1], [1, 0], [0, 1], [-1, 0]])  # (drow, dcol) per action
ABSORBING = "GH#C"


class Transitions(NamedTuple):
    """Every random outcome of every state-action pair, one entry each (Gymnasium's style)."""

    state: np.ndarray  # [T] int
    action: np.ndarray  # [T] int
    next_state: np.ndarray  # [T] int
    prob: np.ndarray  # [T]
    reward: np.ndarray  # [T]
    terminated: np.ndarray  # [T] bool


class GridWorldEnv(gym.Env):
    """A gridworld from a text map, with the full MDP exposed.

    ## Description
    The agent moves on the cells of a map (see :mod:`envs.grid_map` for the characters): ``S``
    start, ``G`` goal, ``#`` wall, ``H`` hole, ``C`` cliff, ``.`` free, digits for upward wind.
    The exact model is ``env.unwrapped.mdp`` (a :class:`envs.TabularMDP`) and, as in Gymnasium's
    toy-text environments, ``env.unwrapped.P[s][a]`` lists ``(prob, next_state, reward,
    terminated)``, so code written for FrozenLake runs unchanged.

    A step moves one cell in the chosen direction; with probability ``slip`` it goes to one of
    the two perpendicular directions instead (``slip / 2`` each; FrozenLake's slippery ice is
    ``slip=2/3``). A move into a wall or off the map leaves the agent in place. Then the wind of
    the cell the agent started from pushes it that many cells up, stopping at walls and the edge.
    Only the cell where the agent ends up counts.

    ## Action Space
    ``Discrete(4)``: 0 left, 1 down, 2 right, 3 up (FrozenLake's order). ``step`` takes an integer
    scalar (a Python int or a 0-d numpy integer) in ``[0, 4)``, what ``Discrete(4).contains``
    accepts; anything else (``True``, ``2.0``, ``[1]``, ``"1"``) raises ``ValueError``.

    ## Observation Space
    ``obs_type="index"`` (default): ``Discrete(nrow * ncol)``, the state ``row * ncol + col``.
    ``"onehot"``: ``Box(0, 1, (nrow * ncol,), float32)``. ``"coords"``: ``Box((2,), float32)``
    holding ``(row, col)``. ``"rgb"``: ``Box(0, 255, (nrow * cell_size, ncol * cell_size, 3),
    uint8)``, a picture of the grid with the agent, for learning from pixels.
    Wall and cliff cells keep their index (the agent can never occupy them).

    ## Rewards
    ``goal_reward`` on entering ``G``, ``hole_reward`` on entering ``H``, ``cliff_reward`` on
    entering ``C``, ``step_reward`` for every other step.

    ## Episode End
    Terminated on entering ``G`` or ``H``. Truncation comes from ``max_episode_steps`` of the
    registered id (``gym.make`` adds the ``TimeLimit`` wrapper).

    ## Arguments
    ``map`` (rows, multi-line string, built-in name such as ``"cliff"``, or a ``.txt`` path; a
    one-line string with a ``/`` or a file suffix is a path, see :mod:`envs.grid_map`),
    ``slip``, ``step_reward``, ``goal_reward``, ``hole_reward``, ``cliff_reward``, ``gamma``
    (the task's discount, stored in ``mdp``), ``obs_type``, ``render_mode`` (``"ansi"`` or
    ``"rgb_array"``), ``cell_size`` (pixels per cell of ``"rgb"`` observations). Setting the
    attribute ``env.unwrapped.trail = True`` marks the cells visited in the episode on rendered
    frames (not on observations), which makes a path visible in a video. A bad argument (a string
    for a number, ``slip`` outside ``[0, 1]``, an unknown ``obs_type``) raises a one-line ``ValueError``
    that names it.
    ``get_state()`` and ``set_state(state)`` save and restore an episode in progress as plain data
    (see :mod:`envs.state`).

    ## Version History
    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        map: MapLike = "gridworld",  # noqa: A002 - the issue's keyword
        *,
        slip: float = 0.0,
        step_reward: float = 0.0,
        goal_reward: float = 1.0,
        hole_reward: float = -1.0,
        cliff_reward: float = -100.0,
        gamma: float = 0.99,
        obs_type: ObsType = "index",
        render_mode: str | None = None,
        cell_size: int = 8,
    ) -> None:
        slip = check_number("slip", slip, 0.0, 1.0)
        rewards = {kind: check_number(name, value) for kind, name, value in (
            ("step", "step_reward", step_reward), ("G", "goal_reward", goal_reward),
            ("H", "hole_reward", hole_reward), ("C", "cliff_reward", cliff_reward))}
        gamma = check_number("gamma", gamma, 0.0, 1.0)
        obs_type = check_choice("obs_type", obs_type, get_args(ObsType))
        render_mode = check_choice("render_mode", render_mode, [None, *self.metadata["render_modes"]])
        cell_size = check_integer("cell_size", cell_size, 1)
        self.grid: GridMap = load_map(map)
        self.nrow, self.ncol = self.grid.shape
        self.slip, self.gamma = slip, gamma
        self.obs_type, self.render_mode, self.cell_size = obs_type, render_mode, cell_size

        n_states = self.nrow * self.ncol
        cells = self.grid.cells.ravel()
        self.starts = np.flatnonzero(cells == "S")
        initial = np.zeros(n_states)
        initial[self.starts] = 1.0 / self.starts.size
        self.transitions = grid_transitions(self.grid, self.slip, rewards, self.starts)
        self.mdp = TabularMDP.from_transitions(
            n_states, 4, *self.transitions[:5], gamma=self.gamma,
            terminal=np.isin(cells, list(ABSORBING)), initial=initial,
        )
        self._outcomes = _outcome_table(self.transitions, n_states, 4)
        self._P: dict[int, dict[int, list[tuple[float, int, float, bool]]]] | None = None

        self.action_space = spaces.Discrete(4)
        self.observation_space = self._make_observation_space()
        self.s = int(self.starts[0])
        self.lastaction: int | None = None
        self.trail = False
        self._visited: list[int] = []
        self._frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ model views
    @property
    def P(self) -> dict[int, dict[int, list[tuple[float, int, float, bool]]]]:  # noqa: N802
        """Gymnasium's toy-text transition dict, ``P[s][a] = [(prob, next_state, reward, terminated)]``."""
        if self._P is None:
            self._P = {s: {a: [o[1:] for o in outs] for a, outs in enumerate(row)} for s, row in enumerate(self._outcomes)}
        return self._P

    @property
    def shape(self) -> tuple[int, int]:
        return self.nrow, self.ncol

    def to_grid(self, values: np.ndarray) -> np.ndarray:
        """Per-state values ``[S, ...]`` as a ``[nrow, ncol, ...]`` grid, NaN on walls and cliffs."""
        grid = np.asarray(values, dtype=np.float64).reshape(self.nrow, self.ncol, *np.shape(values)[1:]).copy()
        grid[self.grid.mask("#") | self.grid.mask("C")] = np.nan
        return grid

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if self.starts.size == 1:
            self.s = int(self.starts[0])
        else:
            self.s = int(self.starts[self.np_random.integers(self.starts.size)])
        self.lastaction = None
        self._visited = []
        return self._observe(), {"prob": 1.0}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        a = discrete_action(action, 4)
        outcomes = self._outcomes[self.s][a]
        outcome = outcomes[0]
        if len(outcomes) > 1:
            u = self.np_random.random()
            for outcome in outcomes:  # noqa: B007 - the last one is kept if u rounds past the total
                if u < outcome[0]:
                    break
        if self.trail:
            self._visited.append(self.s)
        _, prob, self.s, reward, terminated = outcome
        self.lastaction = a
        return self._observe(), reward, terminated, False, {"prob": prob}

    def get_state(self) -> dict[str, Any]:
        """Everything ``step``, ``reset`` and ``render`` read that changes during an episode, as plain
        data (see :mod:`envs.state`): the cell ``s``, the last action, the trail and ``np_random``."""
        return {"s": self.s, "lastaction": self.lastaction, "trail": self.trail, "visited": list(self._visited),
                "np_random": np_random_state(self)}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`get_state` of an environment built with the same arguments."""
        s = state["s"]
        if not 0 <= s < self.nrow * self.ncol:
            raise ValueError(f"state['s'] must be a cell index in [0, {self.nrow * self.ncol}), got {s!r}")
        self.s, self.lastaction, self.trail = int(s), state["lastaction"], bool(state["trail"])
        self._visited = [int(v) for v in state["visited"]]
        set_np_random_state(self, state["np_random"])

    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' or 'ansi' to gym.make")
            return None
        if self.render_mode == "ansi":
            return self._render_text()
        trail = [divmod(s, self.ncol) for s in self._visited] if self.trail else None
        return self._image(render_cell_size(self.shape), trail)

    # ------------------------------------------------------------------ helpers
    def _make_observation_space(self) -> spaces.Space:
        n_states = self.nrow * self.ncol
        if self.obs_type == "index":
            return spaces.Discrete(n_states)
        if self.obs_type == "onehot":
            return spaces.Box(0.0, 1.0, (n_states,), np.float32)
        if self.obs_type == "coords":
            return spaces.Box(np.zeros(2, np.float32), np.array([self.nrow - 1, self.ncol - 1], np.float32), dtype=np.float32)
        return spaces.Box(0, 255, (self.nrow * self.cell_size, self.ncol * self.cell_size, 3), np.uint8)

    def _observe(self) -> Any:
        if self.obs_type == "index":
            return self.s
        if self.obs_type == "onehot":
            obs = np.zeros(self.nrow * self.ncol, np.float32)
            obs[self.s] = 1.0
            return obs
        if self.obs_type == "coords":
            return np.array(divmod(self.s, self.ncol), np.float32)
        return self._image(self.cell_size)

    def _image(self, cell: int, trail: list[tuple[int, int]] | None = None) -> np.ndarray:
        if cell not in self._frames:
            self._frames[cell] = (draw_background(self.grid, cell), disk(cell))
        background, mask = self._frames[cell]
        return stamp_agent(background, mask, *divmod(self.s, self.ncol), trail)

    def _render_text(self) -> str:
        rows = [list(r) for r in self.grid.rows()]
        r, c = divmod(self.s, self.ncol)
        rows[r][c] = "@"
        text = "\n".join("".join(row) for row in rows)
        if self.lastaction is not None:
            text = f"  ({ACTION_NAMES[self.lastaction]})\n" + text
        return text + "\n"


def grid_transitions(grid: GridMap, slip: float, rewards: dict[str, float], starts: np.ndarray) -> Transitions:
    """All transitions of a map, vectorised over states; see :class:`GridWorldEnv` for the rules.

    Absorbing cells (goal, hole, wall, cliff) get a self-loop with zero reward, as in Gymnasium.
    """
    nrow, ncol = grid.shape
    n_states = nrow * ncol
    cells, wind = grid.cells.ravel(), grid.wind.ravel()
    index = np.arange(n_states)
    rows, cols = np.divmod(index, ncol)
    wall = cells == "#"

    move = np.empty((4, n_states), dtype=np.int64)  # cell reached by one step in each direction
    for d, (dr, dc) in enumerate(ACTION_DELTAS):
        r2, c2 = rows + dr, cols + dc
        inside = (r2 >= 0) & (r2 < nrow) & (c2 >= 0) & (c2 < ncol)
        target = np.where(inside, r2 * ncol + c2, index)
        move[d] = np.where(wall[target], index, target)

    live = np.flatnonzero(~np.isin(cells, list(ABSORBING)))
    n_live = live.size
    action = np.arange(4)
    directions = np.stack([action, (action + 1) % 4, (action + 3) % 4], axis=1)  # [A, 3]: intended, perpendiculars
    probs = np.array([1.0 - slip, slip / 2, slip / 2])
    src = np.broadcast_to(live[:, None, None], (n_live, 4, 3))
    landing = _blow(move[directions[None], src], wind[src], wall, ncol)
    state = src.ravel()
    act = np.broadcast_to(action[None, :, None], (n_live, 4, 3)).ravel()
    prob = np.broadcast_to(probs, (n_live, 4, 3)).ravel()
    landing = landing.ravel()
    keep = prob > 0
    state, act, prob, landing = state[keep], act[keep], prob[keep], landing[keep]

    kind = cells[landing]
    reward = np.select([kind == "G", kind == "H", kind == "C"], [rewards["G"], rewards["H"], rewards["C"]], rewards["step"])
    terminated = (kind == "G") | (kind == "H")
    next_state = landing
    cliff = kind == "C"
    if cliff.any():  # back to the start (spread over the starts when there are several)
        n = starts.size
        back = lambda x: np.repeat(x[cliff], n)  # noqa: E731
        state = np.concatenate([state[~cliff], back(state)])
        act = np.concatenate([act[~cliff], back(act)])
        prob = np.concatenate([prob[~cliff], back(prob) / n])
        reward = np.concatenate([reward[~cliff], back(reward)])
        terminated = np.concatenate([terminated[~cliff], back(terminated)])
        next_state = np.concatenate([next_state[~cliff], np.tile(starts, int(cliff.sum()))])

    absorbing = np.flatnonzero(np.isin(cells, list(ABSORBING)))
    state = np.concatenate([state, np.repeat(absorbing, 4)])
    act = np.concatenate([act, np.tile(action, absorbing.size)])
    next_state = np.concatenate([next_state, np.repeat(absorbing, 4)])
    prob = np.concatenate([prob, np.ones(absorbing.size * 4)])
    reward = np.concatenate([reward, np.zeros(absorbing.size * 4)])
    terminated = np.concatenate([terminated, np.ones(absorbing.size * 4, dtype=bool)])

    order = np.argsort(state * 4 + act, kind="stable")
    return Transitions(state[order], act[order], next_state[order], prob[order], reward[order].astype(np.float64), terminated[order])


def _blow(cell: np.ndarray, strength: np.ndarray, wall: np.ndarray, ncol: int) -> np.ndarray:
    """Push each ``cell`` up by ``strength`` rows, one row at a time, stopping at walls and the top edge."""
    cell, strength = cell.copy(), strength.copy()
    for _ in range(int(strength.max(initial=0))):
        up = cell - ncol
        ok = (strength > 0) & (up >= 0)
        ok[ok] &= ~wall[up[ok]]
        cell = np.where(ok, up, cell)
        strength = np.where(ok, strength - 1, 0)
    return cell


def _outcome_table(t: Transitions, n_states: int, n_actions: int) -> list[list[list[tuple[float, float, int, float, bool]]]]:
    """``table[s][a]`` = outcomes ``(cumulative prob, prob, next_state, reward, terminated)`` for fast stepping."""
    rows = t.state * n_actions + t.action
    bounds = np.searchsorted(rows, np.arange(n_states * n_actions + 1))
    total = np.cumsum(t.prob)
    before = np.concatenate([[0.0], total])[bounds[:-1]]  # running total at the start of each row
    cum = total - np.repeat(before, np.diff(bounds))
    entries = list(zip(cum.tolist(), t.prob.tolist(), t.next_state.tolist(), t.reward.tolist(), t.terminated.tolist()))
    bounds = bounds.tolist()
    flat = [entries[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
    return [flat[s * n_actions : (s + 1) * n_actions] for s in range(n_states)]
