"""Loops of greedy policies: found in the observations of an episode and described in grid cells."""

import gymnasium as gym
import numpy as np
import pytest

from agents.diagnostics import Loop, describe_grid_loop, find_loop, grid_cell
from agents.rollout import rollout
from agents.tabular.base import TabularConfig
from agents.tabular.td import SARSA


def test_no_repeat_no_loop():
    assert find_loop([36, 24, 25, 26, 47]) is None
    assert find_loop([]) is None


def test_the_first_repeated_state_and_its_cycle():
    loop = find_loop([0, 1, 2, 3, 1, 2, 3, 1, 9])
    assert loop == Loop(start=1, period=3, cycle=[1, 2, 3])
    assert find_loop([5, 6, 6, 6]) == Loop(start=1, period=1, cycle=[6])


def test_array_and_mixed_integer_observations_compare_by_value():
    frames = [np.array([0.0, 1.0]), np.array([1.0, 1.0]), np.array([0.0, 1.0])]
    loop = find_loop(frames)
    assert loop.start == 0 and loop.period == 2
    assert find_loop([np.int64(3), 4, 3]).period == 2  # numpy and Python ints are the same state
    assert find_loop([np.array([0, 1], np.int8), np.array([0, 1], np.int64)]) is None  # other dtype, other obs


def test_description_names_the_cells_in_order():
    shape = (4, 12)
    assert describe_grid_loop(Loop(3, 2, [13, 1]), shape) == (
        "the greedy policy loops between cells (1, 1) -> (0, 1) -> back to (1, 1), from step 3 on")
    assert describe_grid_loop(Loop(10, 1, [6]), shape) == (
        "the greedy policy stays in cell (0, 6) from step 10 on (its action does not move the agent)")
    long = describe_grid_loop(Loop(0, 10, list(range(10))), shape)
    assert long.count("->") == 9 and "(10 cells in all)" in long


def test_cells_from_every_observation_type():
    shape = (3, 4)
    onehot = np.zeros(12, np.float32)
    onehot[7] = 1
    assert grid_cell(7, shape) == grid_cell(np.int64(7), shape) == grid_cell(onehot, shape) == (1, 3)
    assert grid_cell(np.array([1.0, 3.0], np.float32), shape) == (1, 3)
    with pytest.raises(ValueError, match=r"obs must be a state index, a one-hot vector \[12\] or \(row, col\)"):
        grid_cell(np.zeros((8, 8, 3)), shape)
    with pytest.raises(ValueError, match="obs must be"):
        grid_cell(12, shape)


def test_sarsa_on_the_cliff_learns_a_greedy_policy_that_loops():
    """SARSA, seed 3, 500 episodes, the command line's defaults: the greedy episode runs into the time limit."""
    env = gym.make("mp/CliffWalking-v0")
    agent = SARSA(TabularConfig(gamma=1.0, alpha=0.1, epsilon=0.1))
    agent.fit(env, 500, seed=3)
    episode = rollout(env, agent.act, seed=3)
    assert episode.return_ == -500.0 and episode.truncated
    loop = find_loop(episode.observations)
    assert loop is not None and loop.start < 20
    text = describe_grid_loop(loop, env.unwrapped.shape)
    assert text.startswith("the greedy policy ") and "(0, 6)" in text
    # once in the loop, the episode only repeats it
    tail = episode.observations[loop.start:]
    assert all(obs == loop.cycle[i % loop.period] for i, obs in enumerate(tail))
