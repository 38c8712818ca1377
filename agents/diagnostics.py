"""What went wrong in an episode: loops of a greedy policy.

A deterministic policy in a deterministic environment that visits a state twice repeats the steps
in between forever, so its episode can only end by the time limit. :func:`find_loop` finds the
first such repeat in the observations of one episode (``rollout(...).observations``); in a
stochastic environment a repeat is not a loop, so use it on deterministic dynamics only (a slippery
gridworld revisits cells by chance). :func:`describe_grid_loop` says where it is in a gridworld.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

import numpy as np

MAX_DESCRIBED_CELLS = 8
"""Longer cycles are described by their first cells and their length."""


class Loop(NamedTuple):
    """A cycle in an episode: ``observations[start + k] == observations[start + k + period]``."""

    start: int
    """Index of the first visit to the repeated state (the step the loop is entered)."""
    period: int
    """Steps per round of the cycle (1: the state does not change)."""
    cycle: list[Any]
    """The ``period`` observations of one round, starting with the repeated one."""


def find_loop(observations: Sequence[Any]) -> Loop | None:
    """The first state the episode returns to, and the cycle from its first visit back to it.

    ``observations`` are those of one episode (ints, numpy arrays or tuples, compared exactly).
    ``None`` when no state repeats.
    """
    first: dict[Hashable, int] = {}
    for i, obs in enumerate(observations):
        key = _key(obs)
        if key in first:
            j = first[key]
            return Loop(start=j, period=i - j, cycle=list(observations[j:i]))
        first[key] = i
    return None


def grid_cell(obs: Any, shape: tuple[int, int]) -> tuple[int, int]:
    """The ``(row, col)`` of a gridworld observation of any ``obs_type`` but ``"rgb"``: a state
    index, a one-hot vector ``[nrow * ncol]`` or coordinates ``[2]``."""
    nrow, ncol = shape
    x = np.asarray(obs)
    if x.ndim == 0 and np.issubdtype(x.dtype, np.integer) and 0 <= int(x) < nrow * ncol:
        row, col = divmod(int(x), ncol)
        return row, col
    if x.shape == (nrow * ncol,):
        row, col = divmod(int(np.argmax(x)), ncol)
        return row, col
    if x.shape == (2,):
        return int(x[0]), int(x[1])
    raise ValueError(f"obs must be a state index, a one-hot vector [{nrow * ncol}] or (row, col) of a {nrow}x{ncol} grid, "
                     f"got {type(obs).__name__} of shape {x.shape}")


def describe_grid_loop(loop: Loop, shape: tuple[int, int]) -> str:
    """One line for people: ``"the greedy policy loops between cells (3, 0) -> (2, 0) -> back to (3, 0),
    from step 1 on"``, or ``"... stays in cell (0, 6) ..."`` for a cycle of one step."""
    cells = [grid_cell(obs, shape) for obs in loop.cycle]
    if loop.period == 1:
        return f"the greedy policy stays in cell {cells[0]} from step {loop.start} on (its action does not move the agent)"
    shown = " -> ".join(str(c) for c in cells[:MAX_DESCRIBED_CELLS])
    more = f" -> ... ({loop.period} cells in all)" if loop.period > MAX_DESCRIBED_CELLS else ""
    return f"the greedy policy loops between cells {shown}{more} -> back to {cells[0]}, from step {loop.start} on"


def _key(obs: Any) -> Hashable:
    """A hashable stand-in for an observation that equals another's exactly when the observations do."""
    if isinstance(obs, np.ndarray):
        return ("array", obs.shape, obs.dtype.str, obs.tobytes())
    if isinstance(obs, (tuple, list)):
        return (type(obs).__name__, *(_key(o) for o in obs))
    if isinstance(obs, dict):
        return ("dict", *((k, _key(v)) for k, v in sorted(obs.items())))
    if isinstance(obs, np.generic):
        return obs.item()
    return obs
