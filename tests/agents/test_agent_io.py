"""The interface shared by the tabular agents: spaces, seeding, continued training, policies to
evaluate, and saving / loading (agents.tabular.base)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from agents.tabular.base import TabularAgent, TabularConfig, TrainingLog
from agents.tabular.mc import MonteCarloControl, MonteCarloPrediction
from agents.tabular.schedules import Exponential, Linear
from agents.tabular.td import SARSA, TD0, QLearning

CONFIG = TabularConfig(gamma=0.95, alpha=Linear(0.5, 0.05, 100), epsilon=Exponential(1.0, 0.05, 0.97))
STOCHASTIC = np.tile([0.1, 0.4, 0.4, 0.1], (16, 1))


def all_agents() -> list[TabularAgent]:
    return [
        MonteCarloPrediction(STOCHASTIC, TabularConfig(gamma=0.95, alpha=None), first_visit=False),
        MonteCarloControl(TabularConfig(gamma=0.95, alpha=None, epsilon=CONFIG.epsilon), first_visit=True),
        TD0(np.arange(16) % 4, CONFIG),
        SARSA(CONFIG),
        QLearning(CONFIG),
    ]


NAMES = ["mc-prediction", "mc", "td0", "sarsa", "q-learning"]


def lake() -> gym.Env:
    return gym.make("FrozenLake-v1", is_slippery=True)


def assert_same_logs(a: TrainingLog, b: TrainingLog) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("index", range(5), ids=NAMES)
def test_same_seed_same_log_and_tables(index: int) -> None:
    first, second, other = all_agents()[index], all_agents()[index], all_agents()[index]
    assert first.name == NAMES[index] and TabularAgent.registry[first.name] is type(first)
    log = first.fit(lake(), 200, seed=3)
    assert_same_logs(log, second.fit(lake(), 200, seed=3))
    for table in ("Q", "V", "N", "visits"):
        np.testing.assert_array_equal(getattr(first, table), getattr(second, table))
    assert not np.array_equal(log.lengths, other.fit(lake(), 200, seed=4).lengths)
    assert log.returns.shape == log.lengths.shape == log.epsilons.shape == (200,)
    assert first.visits.sum() == log.lengths.sum()


def test_fit_continues_with_the_same_tables_and_schedules() -> None:
    agent = QLearning(CONFIG)
    first = agent.fit(lake(), 30, seed=0)
    visits = agent.visits.copy()
    second = agent.fit(lake(), 20, progress=True)
    assert agent.episodes_done == 50
    np.testing.assert_allclose(first.epsilons, [CONFIG.epsilon(k) for k in range(30)])  # type: ignore[operator]
    np.testing.assert_allclose(second.epsilons, [CONFIG.epsilon(k) for k in range(30, 50)])  # type: ignore[operator]
    assert np.all(agent.visits >= visits) and agent.visits.sum() == first.lengths.sum() + second.lengths.sum()
    with pytest.raises(ValueError, match=r"\[S, A\] = \(16, 4\).*Discrete\(48\)"):
        agent.fit(gym.make("CliffWalking-v1"), 1)


def test_fit_rejects_spaces_that_are_not_discrete() -> None:
    with pytest.raises(ValueError, match=r"observation_space=Box.*action_space=Discrete\(2\)"):
        SARSA().fit(gym.make("CartPole-v1"), 1)


def test_prediction_policies_are_validated() -> None:
    with pytest.raises(ValueError, match="row 1"):
        TD0(np.array([[0.5, 0.5], [0.5, 0.6]]))
    with pytest.raises(ValueError, match="integer actions"):
        TD0(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(16,\)"):
        TD0(np.array([0, 1, 2])).fit(lake(), 1)
    with pytest.raises(ValueError, match="action 4"):
        TD0(np.full(16, 4)).fit(lake(), 1)
    deterministic = TD0(np.arange(16) % 4)
    deterministic.fit(lake(), 1, seed=0)
    np.testing.assert_array_equal(deterministic.policy, np.eye(4)[np.arange(16) % 4])
    assert [deterministic.act(s) for s in range(16)] == list(np.arange(16) % 4)


def test_stochastic_prediction_policy_samples_its_probabilities() -> None:
    agent = MonteCarloPrediction(STOCHASTIC)
    agent.fit(lake(), 1, seed=0)
    rng = np.random.default_rng(0)
    counts = np.bincount([agent.act(5, rng) for _ in range(20_000)], minlength=4) / 20_000
    np.testing.assert_allclose(counts, STOCHASTIC[5], atol=0.015)  # 4.5 standard errors


@pytest.mark.parametrize("index", range(5), ids=NAMES)
def test_save_load_round_trip(index: int, tmp_path: Path) -> None:
    agent = all_agents()[index]
    agent.fit(lake(), 100, seed=1)
    path = tmp_path / "runs" / "agent.npz"
    agent.save(path)
    loaded = TabularAgent.load(path)
    assert type(loaded) is type(agent) and loaded.config == agent.config
    assert loaded.episodes_done == 100 and loaded._options() == agent._options()
    for table in ("Q", "N", "visits", "value", "policy"):
        np.testing.assert_array_equal(getattr(loaded, table), getattr(agent, table))
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    assert [loaded.act(s, rng_a) for s in range(16)] == [agent.act(s, rng_b) for s in range(16)]
    assert type(agent).load(path).name == agent.name
    loaded.fit(lake(), 5, seed=0)  # a loaded agent trains on
    assert loaded.episodes_done == 105
    assert list(tmp_path.joinpath("runs").iterdir()) == [path]  # no temporary file left behind


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    agent = SARSA(CONFIG)
    agent.fit(lake(), 20, seed=0)
    path = tmp_path / "agent.npz"
    agent.save(path)
    return path


def rewrite(path: Path, drop: str | None = None, **replace: np.ndarray) -> None:
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files if key != drop}
    np.savez(path, **{**arrays, **replace})


def test_load_names_the_file_when_it_is_truncated(saved: Path) -> None:
    saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(ValueError, match=rf"agent file {saved}: cannot read the \.npz file \(truncated or corrupted\)"):
        TabularAgent.load(saved)
    saved.write_text("not an archive")
    with pytest.raises(ValueError, match=rf"agent file {saved} is not a NumPy \.npz"):
        TabularAgent.load(saved)


def test_load_names_the_file_and_the_missing_key(saved: Path) -> None:
    rewrite(saved, drop="Q")
    with pytest.raises(ValueError, match=rf"agent file {saved} is missing Q"):
        TabularAgent.load(saved)


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ({"Q": np.zeros((16, 3))}, r"Q of shape \(16, 3\), expected \(16, 4\)"),
        ({"name": np.str_("dqn")}, r"unknown agent 'dqn' \(known: .*q-learning"),
        ({"format_version": np.int64(99)}, "format version 99"),
        ({"config": np.str_('{"gamma": 2.0, "alpha": 0.1, "epsilon": 0.1}')}, "gamma must lie in"),
        ({"config": np.str_('{"gamma": 0.9, "alpha": "linear:1", "epsilon": 0.1}')}, "cannot parse schedule"),
    ],
)
def test_load_names_the_file_and_what_is_wrong(saved: Path, replace: dict[str, np.ndarray], message: str) -> None:
    rewrite(saved, **replace)
    with pytest.raises(ValueError, match=message) as error:
        TabularAgent.load(saved)
    assert str(saved) in str(error.value)


def test_load_missing_file_and_wrong_class(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"agent file .*nothing\.npz does not exist"):
        TabularAgent.load(tmp_path / "nothing.npz")
    with pytest.raises(ValueError, match="holds a SARSA, not a QLearning"):
        QLearning.load(saved)
    assert zipfile.is_zipfile(saved)


def test_config_json_round_trip_and_untrained_agents() -> None:
    assert TabularConfig.from_json(CONFIG.to_json()) == CONFIG
    assert TabularConfig.from_json(TabularConfig(alpha=None).to_json()).alpha is None
    with pytest.raises(ValueError, match="epsilon must lie in"):
        TabularConfig(epsilon=1.5)
    with pytest.raises(RuntimeError, match="no tables yet"):
        QLearning().act(0)
    with pytest.raises(ValueError, match="non-negative"):
        QLearning().fit(lake(), -1)
